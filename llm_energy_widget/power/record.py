"""The one record every power reading is stored and exported as.

Sources hand the sampler `SourceSample`s (raw, in their own clock); the sampler turns them into
`PowerReading`s: time relative to the sampler's start, watts per rail, cumulative energy.

Besides the fixed rails (RAILS, one column each everywhere), a reading may carry per-device
rails (`rails`: NVML's `gpu0_w`, `gpu0_energy_j`, ... one pair per counted GPU), kept as a
mapping so a machine with 8 GPUs needs no new column: the run keeps them per reading, the store
as JSON (`power.rails_json`), the CSV as extra columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "KINDS",
    "POWER_COLUMNS",
    "RAILS",
    "RAIL_COLUMNS",
    "READING_FIELDS",
    "Kind",
    "PowerReading",
    "SourceSample",
    "device_rail",
]

RAILS: tuple[str, ...] = ("cpu", "gpu", "ane", "dram")
"""Rails a reading may carry; a source without a rail leaves it `None`."""

Kind = Literal["measured", "estimated", "modeled"]
KINDS: tuple[str, ...] = ("measured", "estimated", "modeled")

RAIL_COLUMNS: tuple[str, ...] = tuple(f"{r}_w" for r in RAILS)
POWER_COLUMNS: tuple[str, ...] = ("t_ms", *RAIL_COLUMNS, "total_w", "energy_j")
"""The numeric columns of a reading, in the order the run stores, the wire sends and the CSV
writes them (`js/protocol.ts` is checked against this list)."""
READING_FIELDS: tuple[str, ...] = (*POWER_COLUMNS, "source", "kind")


def device_rail(kind: str, index: int) -> str:
    """The rail of one device: `device_rail("gpu", 1)` is "gpu1" (its columns `gpu1_w`,
    `gpu1_energy_j`), the NVML index."""
    return f"{kind}{index}"


@dataclass(frozen=True)
class SourceSample:
    """What a source read, before the sampler puts it on the run's clock.

    t_s: `time.monotonic()` seconds the sample stands for (its end); None means "now".
    power_w: watts per rail (keys from RAILS) and/or "total"; missing rails are absent.
    energy_j: the source's own cumulative energy counter in joules since it was opened, or None
        when the source has no counter (the sampler then integrates power).
    rails: per-device columns (`gpu1_w`, `gpu1_energy_j`: that GPU's power, and its energy
        since open), beside the summed rails above.
    """

    t_s: float | None
    power_w: dict[str, float] = field(default_factory=dict)
    energy_j: float | None = None
    rails: dict[str, float] = field(default_factory=dict)

    @property
    def total_w(self) -> float | None:
        if "total" in self.power_w:
            return self.power_w["total"]
        rails = [self.power_w[r] for r in RAILS if r in self.power_w]
        return float(sum(rails)) if rails else None


@dataclass(frozen=True)
class PowerReading:
    """One reading on the run's clock (the record of `llm-energy power --json`)."""

    t_ms: float
    cpu_w: float | None
    gpu_w: float | None
    ane_w: float | None
    dram_w: float | None
    total_w: float
    energy_j: float
    source: str
    kind: str
    rails: dict[str, float] = field(default_factory=dict)  # per device (`SourceSample.rails`)

    def to_dict(self) -> dict[str, Any]:
        """READING_FIELDS, plus `rails` where the reading has per-device rails."""
        d = asdict(self)
        if not d["rails"]:
            del d["rails"]
        return d
