"""Per-device rails (NVML's `gpu1_w`, `gpu1_energy_j`, ...) survive the store, and a store
made before they existed still loads (its readings simply have none)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.store.schema import MIGRATIONS, SCHEMA_VERSION, _statements


def gpu_run() -> Run:
    """Readings every 100 ms from GPUs 1 (200 W) and 3 (400 W): gpu_w 600 W, energy 60 J per
    reading, GPU 1's share 20 J and GPU 3's 40 J."""
    run = Run(model={"name": "split"}, prompt="p", power={"source": "nvml", "kind": "measured"})
    rec = Recorder(run)
    rec.status("running")
    for k in range(5):
        rec.power(
            {
                "t_ms": 100.0 * k,
                "cpu_w": None,
                "gpu_w": 600.0,
                "ane_w": None,
                "dram_w": None,
                "total_w": 600.0,
                "energy_j": 60.0 * k,
                "source": "nvml",
                "kind": "measured",
                "rails": {
                    "gpu1_w": 200.0,
                    "gpu1_energy_j": 20.0 * k,
                    "gpu3_w": 400.0,
                    "gpu3_energy_j": 40.0 * k,
                },
            },
            "decode",
        )
    rec.finish("completed", "done")
    return run


def test_rails_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    run = gpu_run()
    store.save(run)
    loaded = store.load(run.run_id)
    rails = loaded.rail_arrays()
    assert set(rails) == {"gpu1_w", "gpu1_energy_j", "gpu3_w", "gpu3_energy_j"}
    np.testing.assert_array_equal(rails["gpu1_energy_j"], [0.0, 20.0, 40.0, 60.0, 80.0])
    np.testing.assert_array_equal(rails["gpu3_w"], [400.0] * 5)
    assert loaded.power_records()[2]["rails"]["gpu3_energy_j"] == 80.0
    np.testing.assert_array_equal(loaded.power_arrays()["energy_j"], [0, 60, 120, 180, 240])
    # and through the run's JSON
    again = Run.from_dict(loaded.to_dict())
    np.testing.assert_array_equal(again.rail_arrays()["gpu1_energy_j"], rails["gpu1_energy_j"])
    store.close()


def test_store_of_the_previous_version_still_loads(tmp_path: Path) -> None:
    """Made with every migration but the newest, holding a run with readings (no rails)."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[: SCHEMA_VERSION - 1]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.execute(
        "INSERT INTO runs (run_id, created_at, updated_at, status, level, power_json) VALUES "
        "('old', 'd', 'd', 'completed', 'token', '{\"source\": \"nvml\", \"kind\": \"measured\"}')"
    )
    conn.executemany(
        "INSERT INTO power (run_id, seq, t_ms, gpu_w, total_w, energy_j, phase) "
        "VALUES ('old', ?, ?, 50.0, 50.0, ?, 'decode')",
        [(k, 100.0 * k, 5.0 * k) for k in range(3)],
    )
    conn.commit()
    conn.close()
    store = Store(path)
    loaded = store.load("old")
    assert loaded.rail_arrays() == {}
    assert "rails" not in loaded.power_records()[0]
    np.testing.assert_array_equal(loaded.power_arrays()["energy_j"], [0.0, 5.0, 10.0])
    assert loaded.curve().energy_between(0.0, 200.0) == pytest.approx(10.0)
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_views_and_exports_list_the_per_gpu_rails(tmp_path: Path) -> None:
    from llm_energy_widget.exports import column_dictionary, tables, to_csv
    from llm_energy_widget.view.static import render_svg

    run = gpu_run()
    run.power_info["gpus"] = [
        {"index": 1, "name": "H200", "rail": "gpu1"},
        {"index": 3, "name": "H200", "rail": "gpu3"},
    ]
    power = tables(run)["power"]
    assert list(power["gpu3_energy_j"]) == [0.0, 40.0, 80.0, 120.0, 160.0]
    assert "rails" not in power.columns
    to_csv(run, tmp_path / "csv")
    header = (tmp_path / "csv" / "power.csv").read_text().splitlines()[0].split(",")
    assert {"gpu1_w", "gpu1_energy_j", "gpu3_w", "gpu3_energy_j"} <= set(header)
    described = {(r["table"], r["column"]) for r in column_dictionary(run)}
    assert ("power", "gpu3_w") in described
    svg = render_svg(run)
    assert svg.count('class="device-rail"') == 2
    assert "<title>gpu1</title>" in svg


def test_png_draws_a_line_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_energy_widget.view import png

    labels: list[str] = []
    real_draw = png._draw_power

    def spy(ax: object, run: Run) -> None:
        real_draw(ax, run)
        labels.extend(line.get_label() for line in ax.get_lines())  # type: ignore[attr-defined]

    monkeypatch.setattr(png, "_draw_power", spy)
    assert png.render_png(gpu_run()).startswith(b"\x89PNG")
    assert {"gpu1", "gpu3", "total"} <= set(labels)
