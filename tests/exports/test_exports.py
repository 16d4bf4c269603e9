"""Exports of a synthetic run: JSON, CSV, Parquet and the Chrome/Perfetto trace."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import support.runs as hr
from support.runs import hand_run, num

from llm_energy_widget.core.schema import SUMMARY_DEFINITIONS
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.exports import MissingDependencyError
from llm_energy_widget.run import Run
from llm_energy_widget.testing import LAYER_COVERAGE, synthetic_run


@pytest.fixture(scope="module")
def run() -> Run:
    return synthetic_run(n_tokens=8, n_layers=2)


def test_json_is_strict_and_round_trips(run: Run, tmp_path: Path) -> None:
    p = run.to_json(tmp_path / "sub" / "run.json")
    d = json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert d["run_id"] == run.run_id
    assert len(d["tokens"]) == 8
    back = Run.from_dict(d)
    assert back.tokens() == run.tokens()
    assert back.summary()["decode_j_per_token"] == pytest.approx(
        run.summary()["decode_j_per_token"]
    )


def test_csv_one_file_per_table(run: Run, tmp_path: Path) -> None:
    paths = run.to_csv(tmp_path / "csv")
    assert {p.name for p in paths} == {
        "tokens.csv", "phases.csv", "power.csv", "layers.csv", "summary.csv", "labels.csv",
        "columns.csv",
    }  # fmt: skip
    layers = pd.read_csv(tmp_path / "csv" / "layers.csv")
    assert len(layers) == 8 * 2 * 9
    assert list(layers.columns) == [
        "token", "layer", "component",
        "time_ms", "energy_j", "mean_abs_x", "std_x", "max_abs_x", "sparsity",
    ]  # fmt: skip
    # modeled layer energies of a token add up to its energy inside the layers (synthetic: 75 %)
    tokens = pd.read_csv(tmp_path / "csv" / "tokens.csv")
    per_token = layers.groupby("token")["energy_j"].sum()
    assert per_token.to_numpy() == pytest.approx(0.75 * tokens["energy_j"].to_numpy(), rel=1e-4)
    inside = tokens["energy_j"] - tokens["outside_layers_j"]
    assert per_token.to_numpy() == pytest.approx(inside.to_numpy(), rel=1e-4)
    summary = pd.read_csv(tmp_path / "csv" / "summary.csv")
    assert summary.loc[0, "energy_kind"] == "modeled"
    assert summary.loc[0, "decode_j_per_token"] == pytest.approx(
        run.summary()["decode_j_per_token"]
    )


def test_parquet_matches_csv(run: Run, tmp_path: Path) -> None:
    paths = run.to_parquet(tmp_path / "pq")
    assert len(paths) == 7
    tokens = pd.read_parquet(tmp_path / "pq" / "tokens.parquet")
    assert tokens["energy_j"].tolist() == pytest.approx([t["energy_j"] for t in run.tokens()])


def test_parquet_without_pyarrow_says_what_to_install(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *a: Any, **k: Any) -> Any:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(MissingDependencyError, match="pip install pyarrow"):
        run.to_parquet(tmp_path / "pq")


def test_chrome_trace_is_valid_and_complete(run: Run, tmp_path: Path) -> None:
    p = run.to_chrome_trace(tmp_path / "run.trace.json")
    doc = json.loads(p.read_text())
    assert doc["displayTimeUnit"] == "ms"
    assert isinstance(doc["traceEvents"], list)
    ev = doc["traceEvents"]
    for e in ev:
        assert {"ph", "pid", "name"} <= e.keys()
        if e["ph"] in ("X", "C"):
            assert isinstance(e["ts"], (int, float))
        if e["ph"] == "X":
            assert e["dur"] >= 0
            assert "tid" in e
    xs = [e for e in ev if e["ph"] == "X"]
    by_cat = {
        c: [e for e in xs if e["cat"] == c]
        for c in ("phase", "token", "layer", "component", "outside_layers")
    }
    assert [e["name"] for e in by_cat["phase"]] == ["prefill", "decode"]
    assert len(by_cat["token"]) == 8
    assert len(by_cat["layer"]) == 8 * 2
    assert len(by_cat["component"]) == 8 * 2 * 9
    assert len(by_cat["outside_layers"]) == 8
    assert len({e["tid"] for e in xs}) == 3  # separate tracks
    # components keep their measured time (75 % of the synthetic token) from the token's start;
    # the token's last quarter is its 'outside layers' slice; placements say they are modeled
    tok0 = by_cat["token"][0]
    comps0 = [e for e in by_cat["component"] if e["args"]["token"] == 0]
    assert min(e["ts"] for e in comps0) == pytest.approx(tok0["ts"])
    end = max(e["ts"] + e["dur"] for e in comps0)
    assert end == pytest.approx(tok0["ts"] + LAYER_COVERAGE * tok0["dur"], rel=1e-5)
    out0 = by_cat["outside_layers"][0]
    assert out0["ts"] == pytest.approx(end, rel=1e-5)
    assert out0["ts"] + out0["dur"] == pytest.approx(tok0["ts"] + tok0["dur"], rel=1e-6)
    assert out0["args"]["energy_j"] == pytest.approx(run.tokens()[0]["outside_layers_j"])
    assert all("modeled placement" in e["args"]["placement"] for e in [*comps0, out0])
    assert tok0["ts"] == pytest.approx(num(run.tokens()[0]["start_ms"]) * 1000)  # µs
    counters = {e["name"] for e in ev if e["ph"] == "C"}
    assert any(n.startswith("power total_w (W, modeled, synthetic)") for n in counters)
    assert any(n.startswith("power cpu_w") for n in counters)
    assert any(n.startswith("cumulative energy (J") for n in counters)


def test_trace_detail_and_bad_paths(run: Run, tmp_path: Path) -> None:
    from llm_energy_widget.exports import to_chrome_trace

    doc = json.loads(to_chrome_trace(run, tmp_path / "t.json", detail="token").read_text())
    assert not [e for e in doc["traceEvents"] if e.get("cat") in ("layer", "component")]
    with pytest.raises(InvalidInputError, match="detail must be"):
        to_chrome_trace(run, tmp_path / "t.json", detail="everything")
    with pytest.raises(InvalidInputError, match="is a directory"):
        run.to_json(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        run.to_csv(tmp_path / "file")


def test_unfinished_run_exports(tmp_path: Path) -> None:
    live = synthetic_run(n_tokens=4, n_layers=1, finish=False)
    doc = json.loads(live.to_chrome_trace(tmp_path / "t.json").read_text())
    assert doc["otherData"]["status"] == "running"
    assert len(live.to_csv(tmp_path / "c")) == 7


def test_tokens_and_summary_csv_carry_resolution_and_coverage(tmp_path: Path) -> None:
    """The hand run: resolution 75 ms (polled every 50 ms), tokens of 100, 50 and 100 ms."""
    hand_run().to_csv(tmp_path)
    tokens = pd.read_csv(tmp_path / "tokens.csv")
    assert tokens["below_resolution"].tolist() == [False, True, False]
    assert tokens["layers_ms"].tolist() == pytest.approx([60.0, 40.0, 80.0])
    assert tokens["layer_coverage"].tolist() == pytest.approx([0.6, 0.8, 0.8])
    assert tokens["outside_layers_j"].tolist() == pytest.approx(list(hr.OUTSIDE_J))
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.loc[0, "energy_resolution_ms"] == 75.0  # the source's, not the 50 ms poll
    assert summary.loc[0, "tokens_below_resolution"] == 1
    warnings = summary.loc[0, "warnings"]
    assert isinstance(warnings, str)
    assert "1 of 3 tokens are shorter" in warnings
    assert summary.loc[0, "layer_coverage"] == pytest.approx(hr.COVERAGE)
    layers = pd.read_csv(tmp_path / "layers.csv")
    assert layers.groupby("token")["mean_abs_x"].mean().tolist() == list(hr.MEAN_ABS_X)


def test_columns_sheet_gives_every_column_its_name_unit_and_kind(tmp_path: Path) -> None:
    hand_run().to_csv(tmp_path)
    cols = pd.read_csv(tmp_path / "columns.csv", keep_default_na=False)
    assert list(cols.columns) == ["table", "column", "name", "unit", "kind", "definition"]
    for table in ("tokens", "layers"):
        written = pd.read_csv(tmp_path / f"{table}.csv").columns
        assert set(written) == set(cols[cols["table"] == table]["column"])
    layer = cols[cols["table"] == "layers"].set_index("column")
    assert layer.loc["time_ms", "kind"] == "measured"
    assert layer.loc["time_ms", "unit"] == "ms"
    assert layer.loc["energy_j", "kind"] == "modeled"
    assert layer.loc["energy_j", "unit"] == "J"
    for col, name in (("mean_abs_x", "mean |x|"), ("std_x", "std x"), ("max_abs_x", "max |x|")):
        assert layer.loc[col, "name"] == name
        assert layer.loc[col, "kind"] == "measured"
    tok = cols[cols["table"] == "tokens"].set_index("column")
    assert tok.loc["energy_j", "kind"] == "measured"  # the hand run's source is measured
    assert tok.loc["outside_layers_j", "kind"] == "modeled"
    below = tok.loc["below_resolution", "definition"]
    assert isinstance(below, str)
    assert "75 ms" in below


def test_token_level_tables_have_the_same_token_columns(tmp_path: Path) -> None:
    r = synthetic_run(n_tokens=3, n_layers=0, components=())
    r.level = "token"
    r.to_csv(tmp_path)
    tokens = pd.read_csv(tmp_path / "tokens.csv")
    assert {"below_resolution", "layers_ms", "layer_coverage", "outside_layers_j"} <= set(
        tokens.columns
    )
    assert tokens["layer_coverage"].isna().all()


def test_trace_of_the_hand_run(tmp_path: Path) -> None:
    doc = json.loads(hand_run().to_chrome_trace(tmp_path / "t.json").read_text())
    other = doc["otherData"]
    assert other["energy_resolution_ms"] == 75.0
    assert other["power_interval_ms"] == 50.0
    assert other["energy_scope"] == "device"
    assert other["layer_coverage"] == pytest.approx(0.72)
    assert "mean_abs_x" in other["metrics"]
    assert "act_mean" not in other["metrics"]
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    phases = {e["name"]: e for e in xs if e["cat"] == "phase"}
    assert list(phases) == ["prefill", "decode", "tail"]
    tail = phases["tail"]
    assert (tail["ts"], tail["dur"]) == (250_000, 50_000)
    assert tail["args"]["energy_j"] == pytest.approx(hr.TAIL_J)
    assert tail["args"]["note"] == SUMMARY_DEFINITIONS["tail_energy_j"]
    threads = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"]
    assert "tokens (energy measured, resolution 75 ms)" in threads
    tok1 = next(e for e in xs if e["name"] == "token 1")
    assert tok1["args"]["below_resolution"] is True
    assert tok1["args"]["outside_layers_j"] == pytest.approx(0.1)
    # token 0, 0-100 ms: L0 40 ms, L1 20 ms (their measured times), outside layers 40 ms, 0.4 J
    slices0 = [
        (e["name"], e["ts"], e["dur"], e["args"]["energy_j"])
        for e in xs
        if e["cat"] in ("layer", "outside_layers") and e["args"]["token"] == 0
    ]
    assert slices0 == [
        ("L0", 0, 40_000, pytest.approx(0.4)),
        ("L1", 40_000, 20_000, pytest.approx(0.2)),
        ("outside layers", 60_000, 40_000, pytest.approx(0.4)),
    ]
    comp = next(e for e in xs if e["cat"] == "component" and e["args"]["token"] == 0)
    assert comp["args"]["mean_abs_x"] == 10.0
    assert comp["args"]["max_abs_x"] == 20.0
    assert "act_mean" not in comp["args"]
