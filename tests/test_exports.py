"""Exports of a synthetic run: JSON, CSV, Parquet and the Chrome/Perfetto trace."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.exports import MissingDependencyError
from llm_energy_widget.run import Run
from llm_energy_widget.testing import synthetic_run


@pytest.fixture(scope="module")
def run() -> Run:
    return synthetic_run(n_tokens=8, n_layers=2)


def test_json_is_strict_and_round_trips(run: Run, tmp_path: Path) -> None:
    p = run.to_json(tmp_path / "sub" / "run.json")
    d = json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert d["run_id"] == run.run_id and len(d["tokens"]) == 8
    back = Run.from_dict(d)
    assert back.tokens() == run.tokens()
    assert back.summary()["decode_j_per_token"] == pytest.approx(
        run.summary()["decode_j_per_token"]
    )


def test_csv_one_file_per_table(run: Run, tmp_path: Path) -> None:
    paths = run.to_csv(tmp_path / "csv")
    assert {p.name for p in paths} == {
        "tokens.csv", "phases.csv", "power.csv", "layers.csv", "summary.csv", "labels.csv"
    }  # fmt: skip
    layers = pd.read_csv(tmp_path / "csv" / "layers.csv")
    assert len(layers) == 8 * 2 * 9
    assert list(layers.columns[:3]) == ["token", "layer", "component"]
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
    assert len(paths) == 6
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
    assert doc["displayTimeUnit"] == "ms" and isinstance(doc["traceEvents"], list)
    ev = doc["traceEvents"]
    for e in ev:
        assert {"ph", "pid", "name"} <= e.keys()
        if e["ph"] in ("X", "C"):
            assert isinstance(e["ts"], (int, float))
        if e["ph"] == "X":
            assert e["dur"] >= 0 and "tid" in e
    xs = [e for e in ev if e["ph"] == "X"]
    by_cat = {c: [e for e in xs if e["cat"] == c] for c in ("phase", "token", "layer", "component")}
    assert [e["name"] for e in by_cat["phase"]] == ["prefill", "decode"]
    assert len(by_cat["token"]) == 8 and len(by_cat["layer"]) == 8 * 2
    assert len(by_cat["component"]) == 8 * 2 * 9
    assert len({e["tid"] for e in xs}) == 3  # separate tracks
    # components sit inside their token's interval, and say their placement is modeled
    tok0 = by_cat["token"][0]
    comps0 = [e for e in by_cat["component"] if e["args"]["token"] == 0]
    assert min(e["ts"] for e in comps0) == pytest.approx(tok0["ts"])
    end = max(e["ts"] + e["dur"] for e in comps0)
    assert end == pytest.approx(tok0["ts"] + tok0["dur"], rel=1e-6)
    assert all("modeled placement" in e["args"]["placement"] for e in comps0)
    assert tok0["ts"] == pytest.approx(run.tokens()[0]["start_ms"] * 1000)  # µs
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
    assert len(live.to_csv(tmp_path / "c")) == 6
