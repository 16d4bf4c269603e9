"""RAPL on a fake powercap tree: nesting without double counting, wraparound, permissions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.sources import t_of

from llm_energy_widget.errors import SourceUnavailableError
from llm_energy_widget.power.rapl import RaplSource, discover_zones

MAX_UJ = 262_143_328_850


def zone(root: Path, dirname: str, name: str, uj: int, max_uj: int = MAX_UJ) -> Path:
    d = root / dirname
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """psys > package-0 > core/uncore/dram, a second package, and the MMIO mirror."""
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl").mkdir()  # the control type dir: no energy_uj
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)
    zone(root, "intel-rapl:0:1", "uncore", 100_000)
    zone(root, "intel-rapl:0:2", "dram", 2_000_000)
    zone(root, "intel-rapl:1", "package-1", MAX_UJ - 1_000_000)  # about to wrap
    zone(root, "intel-rapl:2", "psys", 9_000_000)
    zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    return root


def bump(root: Path, dirname: str, uj: int) -> None:
    (root / dirname / "energy_uj").write_text(f"{uj}\n")


def test_zones_chosen_without_double_counting(tree: Path) -> None:
    zones = discover_zones(tree)
    assert sorted((z.label.split(" ")[0], z.rail) for z in zones) == [
        ("dram", "dram"),
        ("package-0", "cpu"),
        ("package-1", "cpu"),
    ]


def test_energy_since_open_with_wraparound(tree: Path) -> None:
    src = RaplSource(tree)
    assert RaplSource.availability(tree).available
    src.open(100.0)
    assert src.poll() == []  # too soon after open for a meaningful power
    time.sleep(0.02)
    bump(tree, "intel-rapl:0", 3_000_000)  # +2 J
    bump(tree, "intel-rapl:0:0", 9_999_999)  # core: never added
    bump(tree, "intel-rapl:0:2", 2_500_000)  # dram +0.5 J
    bump(tree, "intel-rapl:1", 500_000)  # wrapped at max_energy_range_uj: +1.5 J
    bump(tree, "intel-rapl:2", 99_000_000)  # psys: never added when packages exist
    (s,) = src.poll()
    expected_cpu = 2.0 + (1_000_000 + 500_000) / 1e6
    assert s.energy_j == pytest.approx(expected_cpu + 0.5)
    assert s.power_w["total"] == pytest.approx(s.power_w["cpu"] + s.power_w["dram"])
    assert s.power_w["cpu"] / s.power_w["dram"] == pytest.approx(expected_cpu / 0.5)
    time.sleep(0.02)
    bump(tree, "intel-rapl:0", 4_000_000)
    (s2,) = src.poll()
    assert s2.energy_j == pytest.approx(expected_cpu + 0.5 + 1.0)
    assert s2.power_w["dram"] == 0.0
    assert s2.power_w["cpu"] == pytest.approx(1.0 / (t_of(s2) - t_of(s)))


def test_psys_alone_when_there_is_no_package(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "psys", 0)
    zone(tmp_path, "intel-rapl:0:0", "core", 0)
    src = RaplSource(tmp_path)
    src.open(100.0)
    time.sleep(0.02)
    bump(tmp_path, "intel-rapl:0", 3_000_000)
    (s,) = src.poll()
    assert s.energy_j == pytest.approx(3.0)
    assert set(s.power_w) == {"total"}


def test_amd_zone_names(tmp_path: Path) -> None:
    zone(tmp_path, "amd-rapl:0", "package-0", 0)
    assert [z.rail for z in discover_zones(tmp_path)] == ["cpu"]


def test_permission_denied_explains_the_remedy(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.read_text

    def deny(self: Path, *a: object, **k: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", deny)
    a = RaplSource.availability(tree)
    assert not a.available
    assert "permission denied" in a.reason
    assert "CVE-2020-8694" in a.reason
    assert "chmod o+r" in a.reason
    assert "udev" in a.reason
    with pytest.raises(SourceUnavailableError, match="permission denied"):
        RaplSource(tree).open(100.0)


def test_no_powercap(tmp_path: Path) -> None:
    a = RaplSource.availability(tmp_path / "absent")
    assert not a.available
    assert "does not exist" in a.reason
    with pytest.raises(SourceUnavailableError, match="no RAPL zones"):
        discover_zones(tmp_path)
