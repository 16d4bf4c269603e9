"""Linux RAPL energy counters through powercap sysfs (Intel, and AMD Zen through the same driver).

Zones nest: psys (platform) contains the packages, a package contains its core/uncore (and on
servers dram) subzones. Summing them all would count the same joules twice, so the total is the
top-level package zones plus the dram zones (a DRAM is not inside the package's energy), never
core/uncore; psys alone is used only when there is no package zone. `intel-rapl-mmio` zones
mirror the package through MMIO and are skipped for the same reason.

Resolution: the counters update about every 1 ms (native_interval_ms = 1), but polls closer than
5 ms give no reading. Aliasing: none; energy is the counter's own delta, exact whatever the load's
rhythm. The power shown is that delta over each poll interval (power_window_ms = the interval).
Needs read access to energy_uj (root since Linux 5.10; see PERMISSION_REMEDY).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError, SourceUnavailableError
from .base import Availability, PowerSource
from .record import SourceSample

__all__ = [
    "MIN_INTERVAL_S",
    "PERMISSION_REMEDY",
    "POWERCAP",
    "ZONE_PREFIXES",
    "RaplSource",
    "Zone",
    "discover_zones",
]

POWERCAP = Path("/sys/class/powercap")
ZONE_PREFIXES = ("intel-rapl:", "amd-rapl:")
MIN_INTERVAL_S = 0.005  # below this, a power from counter deltas is noise (counters tick ~1 ms)

PERMISSION_REMEDY = (
    "RAPL energy counters are readable by root only since Linux 5.10 (CVE-2020-8694, "
    "'Platypus'). Run as root, or allow reading: `sudo chmod o+r "
    "/sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj` "
    '(until reboot), or a udev rule such as `SUBSYSTEM=="powercap", ACTION=="add", '
    'RUN+="/bin/chmod o+r /sys%p/energy_uj"` in /etc/udev/rules.d/99-rapl.rules'
)


@dataclass
class Zone:
    """One powercap zone we count: its energy file, wrap range and rail."""

    path: Path
    label: str  # e.g. "package-0"
    rail: str  # "cpu" or "dram"; "total" for psys
    max_uj: int
    last_uj: int = 0
    energy_j: float = 0.0


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as exc:
        raise SourceUnavailableError(
            f"cannot read {path}: permission denied. {PERMISSION_REMEDY}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def discover_zones(root: Path = POWERCAP) -> list[Zone]:
    """The zones to sum, without double counting; raises SourceUnavailableError if none."""
    if not root.is_dir():
        raise SourceUnavailableError(f"{root} does not exist: no powercap/RAPL on this machine")
    found: list[tuple[str, Path, str]] = []  # (dir name, path, zone name)
    for d in sorted(root.iterdir()):
        if not d.name.startswith(ZONE_PREFIXES) or not (d / "energy_uj").exists():
            continue
        try:
            label = (d / "name").read_text().strip()
        except OSError:
            continue
        found.append((d.name, d, label))
    if not found:
        raise SourceUnavailableError(f"no RAPL zones (intel-rapl:*, amd-rapl:*) under {root}")

    def depth(dir_name: str) -> int:
        return dir_name.count(":")

    packages = [(p, lbl) for n, p, lbl in found if depth(n) == 1 and lbl.startswith("package")]
    drams = [(p, lbl) for n, p, lbl in found if lbl == "dram"]
    psys = [(p, lbl) for n, p, lbl in found if depth(n) == 1 and lbl == "psys"]
    chosen: list[tuple[Path, str, str]] = [(p, lbl, "cpu") for p, lbl in packages]
    chosen += [(p, lbl, "dram") for p, lbl in drams]
    if not packages:
        if not psys:
            names = ", ".join(sorted({lbl for _, _, lbl in found}))
            raise SourceUnavailableError(
                f"no package or psys RAPL zone under {root} (found {names})"
            )
        chosen = [(p, lbl, "total") for p, lbl in psys]
    zones = []
    for path, label, rail in chosen:
        max_file = path / "max_energy_range_uj"
        max_uj = _read_int(max_file) if max_file.exists() else 2**32 - 1
        zones.append(Zone(path / "energy_uj", f"{label} ({path.name})", rail, max_uj))
    return zones


class RaplSource(PowerSource):
    """CPU package (+ DRAM) energy from RAPL counters: measured, ~1 ms counter updates."""

    name = "rapl"
    kind = "measured"
    rails = ("cpu", "dram")
    native_interval_ms = 1.0  # the counters update about every 1 ms
    scope = "CPU packages + DRAM (RAPL)"

    def __init__(self, root: str | os.PathLike[str] = POWERCAP) -> None:
        self.root = Path(root)
        self.counter_starts_at_open = True
        self.zones: list[Zone] = []
        self._last_s: float | None = None
        self._last_energy: dict[str, float] = {}

    @classmethod
    def availability(cls, root: Path = POWERCAP) -> Availability:
        try:
            zones = discover_zones(root)
            for z in zones:
                _read_int(z.path)
        except (SourceUnavailableError, SourceError) as exc:
            return Availability(False, str(exc))
        labels = ", ".join(z.label for z in zones)
        return Availability(True, f"Linux RAPL energy counters: {labels}")

    def describe(self) -> str:
        if not self.zones:
            return (
                "Linux RAPL energy counters via powercap (package and dram zones, or psys); "
                "core/uncore not added"
            )
        labels = ", ".join(z.label for z in self.zones)
        return (
            f"Linux RAPL energy counters via powercap, reading {labels}; core/uncore not added; "
            "counters update about every 1 ms"
        )

    def open(self, interval_ms: float) -> None:
        self.zones = discover_zones(self.root)
        self.scope = ", ".join(z.label.split(" ")[0] for z in self.zones)
        self.power_window_ms = float(interval_ms)  # power = counter delta over each poll
        for z in self.zones:
            z.last_uj = _read_int(z.path)
            z.energy_j = 0.0
        self._last_s = time.monotonic()
        self._last_energy = {}

    def poll(self) -> list[SourceSample]:
        if self._last_s is None:
            raise SourceError("rapl source polled before open()")
        t_s = time.monotonic()
        if t_s - self._last_s < MIN_INTERVAL_S:
            return []  # too soon after the last read to give a power worth reporting
        by_rail: dict[str, float] = {}
        for z in self.zones:
            now_uj = _read_int(z.path)
            delta = now_uj - z.last_uj
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += z.max_uj
            z.last_uj = now_uj
            z.energy_j += delta / 1e6
            by_rail[z.rail] = by_rail.get(z.rail, 0.0) + z.energy_j
        dt_s = t_s - self._last_s
        power = {r: (e - self._last_energy.get(r, 0.0)) / dt_s for r, e in by_rail.items()}
        if set(power) != {"total"}:
            power["total"] = sum(power.values())
        self._last_s, self._last_energy = t_s, by_rail
        return [SourceSample(t_s=t_s, power_w=power, energy_j=sum(by_rail.values()))]
