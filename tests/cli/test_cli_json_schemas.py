"""Each JSON-printing command's actual --json output validates against its schema in
docs/schemas/ (the documented, stable shape), and each schema is itself a valid schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_energy_widget.cli import main
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
FAST = ["--power", "estimate", "--baseline-s", "0"]


def _validator(name: str) -> Any:
    docs = [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))]
    registry = referencing.Registry().with_resources(
        (d["$id"], referencing.Resource.from_contents(d)) for d in docs
    )
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry)


def _valid(name: str, doc: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator(name).iter_errors(doc)]
    assert errors == []


def _out(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> str:
    assert main(argv) == code
    return capsys.readouterr().out


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "runs.sqlite"
    runs = [synthetic_run(n_tokens=4, n_layers=2, seed=1), synthetic_run(n_tokens=5, seed=2)]
    with Store(path) as s:
        for r in runs:
            s.save(r)
    return path, [r.run_id for r in runs]


def test_every_schema_is_a_valid_schema() -> None:
    names = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    for name in ("compare", "power", "run", "runs", "sources", "sweep"):
        assert f"{name}.schema.json" in names
    for name in names:
        _validator(name)


def test_show_runs_compare(
    store: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = store
    _valid(
        "run.schema.json",
        json.loads(_out(["show", ids[0], "--json", "--store", str(path)], capsys)),
    )
    _valid("runs.schema.json", json.loads(_out(["runs", "--json", "--store", str(path)], capsys)))
    doc = json.loads(_out(["compare", *ids, "--json", "--store", str(path)], capsys))
    assert len(doc) == 2
    _valid("compare.schema.json", doc)


def test_a_schema_catches_a_wrong_shape(
    store: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = store
    doc = json.loads(_out(["show", ids[0], "--json", "--store", str(path)], capsys))
    doc["power"]["kind"] = "guessed"
    del doc["tokens"][0]["energy_j"]
    errors = list(_validator("run.schema.json").iter_errors(doc))
    assert len(errors) == 2


def test_power_and_sources(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _out(["power", "--source", "estimate", "--seconds", "0.3", "--json"], capsys)
    records = [json.loads(x) for x in lines.splitlines()]
    assert records
    for rec in records:
        _valid("power.schema.json", rec)
    _valid("sources.schema.json", json.loads(_out(["sources", "--json"], capsys)))


def test_profile_and_sweep(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = json.loads(
        _out(["profile", "--prompt", "Hi", "--model", str(tiny_model_dir), "--max-new-tokens",
              "3", "--no-store", "--quiet", "--no-warmup", "--json", "-", *FAST], capsys)
    )  # fmt: skip
    assert len(run["tokens"]) == 3
    _valid("run.schema.json", run)
    argv = ["sweep", "--model", str(tiny_model_dir), "--prompt", "Hi", "--max-new-tokens",
            "2", "--do-sample", "--temperature", "0.7,0", "--store", str(tmp_path / "r.sqlite"),
            "--quiet", "--json", *FAST]  # fmt: skip
    doc = json.loads(_out(argv, capsys, code=1))
    assert len(doc["runs"]) == 1
    assert len(doc["failures"]) == 1
    _valid("sweep.schema.json", doc)
