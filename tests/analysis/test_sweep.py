"""sweep() on a tiny random Llama with the SmolLM2 tokenizer, through the real profiler."""

from __future__ import annotations

import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.models import tiny_llama
from support.runs import num

from llm_energy_widget.analysis import sweep
from llm_energy_widget.analysis.sweep import SweepWarning, grid_points
from llm_energy_widget.errors import InvalidInputError, RunError
from llm_energy_widget.store import Store

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(smollm_tokenizer: Any) -> tuple[Any, Any]:
    """A 2-layer random Llama; the SmolLM2 tokenizer comes from the session fixture."""
    tok = smollm_tokenizer
    model = tiny_llama(vocab_size=len(tok), max_positions=2048, heads=2, kv_heads=1)
    return model, tok


def test_grid_points() -> None:
    pts = grid_points({"max_new_tokens": [2, 4], "batch": 2, "do_sample": [False, True]})
    assert len(pts) == 4
    assert all(p["batch_size"] == 2 for p in pts)
    assert grid_points(None) == [{}]
    with pytest.raises(InvalidInputError, match="positive integers"):
        grid_points({"input_tokens": [0]})
    with pytest.raises(InvalidInputError, match="no values"):
        grid_points({"temperature": []})


@pytest.mark.parametrize("executor", [None, "threads"])
def test_sweep_stores_every_point_under_one_experiment(
    tiny: tuple[Any, Any], tmp_path: Path, executor: str | None
) -> None:
    model, tok = tiny
    path = tmp_path / "runs.sqlite"
    grid = {"max_new_tokens": [2, 4], "input_tokens": 6, "batch_size": [1, 2]}
    ex = ThreadPoolExecutor(max_workers=1) if executor else None
    c = sweep(
        (model, tok), "The quick brown fox", grid, executor=ex, experiment="exp-a",
        store=path, power="estimate", level="token", baseline_s=0.0,
    )  # fmt: skip
    assert len(c.runs) == 4
    assert not c.notes
    assert c.experiment == "exp-a"
    assert sorted((r.settings["max_new_tokens"], r.settings["batch_size"]) for r in c.runs) == [
        (2, 1), (2, 2), (4, 1), (4, 2)
    ]  # fmt: skip
    # every row of a batch counts: 6 prompt tokens and max_new_tokens new ones per sequence
    for r in c.runs:
        b = r.settings["batch_size"]
        assert r.n_sequences == b
        assert r.prompt_tokens == 6 * b
        assert r.settings["input_tokens"] == 6
        assert r.n_tokens == r.settings["max_new_tokens"] * b
        s = r.summary()
        decode = [t for t in r.tokens() if t["phase"] == "decode"]
        assert s["decode_tokens"] == len(decode) == (r.settings["max_new_tokens"] - 1) * b
        assert s["decode_j_per_token"] == pytest.approx(
            sum(num(t["energy_j"]) for t in decode) / len(decode), rel=1e-9
        )
    assert set(c.table["label"]) == {
        "max_new_tokens=2 · batch_size=1", "max_new_tokens=2 · batch_size=2",
        "max_new_tokens=4 · batch_size=1", "max_new_tokens=4 · batch_size=2",
    }  # fmt: skip
    store = Store(path)
    store.flush()
    df = store.runs(experiment="exp-a")
    assert set(df["run_id"]) == {r.run_id for r in c.runs}
    assert set(df["status"]) == {"completed"}
    loaded = store.load(c.runs[0].run_id)
    assert loaded.settings["sweep_point"] == c.runs[0].settings["sweep_point"]


def test_sweep_dtype_axis_restores_the_model(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    c = sweep(
        [(model, tok)], ["Hi", "Hello world"], {"dtype": ["float32", "bfloat16"],
        "max_new_tokens": 2}, store=False, power="estimate", baseline_s=0.0,
    )  # fmt: skip
    assert len(c.runs) == 4
    assert sorted({r.settings["dtype"] for r in c.runs}) == ["bfloat16", "float32"]
    assert model.dtype == torch.float32


def test_sweep_bad_input(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    with pytest.raises(InvalidInputError, match="models must be"):
        sweep(42, "hi", store=False)
    with pytest.raises(InvalidInputError, match="prompts must be"):
        sweep((model, tok), [], store=False)
    with pytest.raises(InvalidInputError, match="executor must have submit"):
        sweep((model, tok), "hi", executor=object(), store=False)
    with pytest.warns(SweepWarning, match="1 of 2 sweep points failed"):
        c = sweep((model, tok), "hi", {"dtype": ["float32", "float99"], "max_new_tokens": 2},
                  store=False, power="estimate", baseline_s=0.0)  # fmt: skip
    assert len(c.runs) == 1
    assert c.notes[0] == "1 of 2 sweep points failed"
    assert any("unknown dtype 'float99'" in n for n in c.notes)
    assert [f["point"]["dtype"] for f in c.failures] == ["float99"]
    with pytest.raises(RunError, match=r"1 of 2 sweep points failed.*float99"):
        sweep((model, tok), "hi", {"dtype": ["float32", "float99"], "max_new_tokens": 2},
              store=False, power="estimate", baseline_s=0.0, on_error="raise")  # fmt: skip
    with pytest.raises(InvalidInputError, match="on_error"):
        sweep((model, tok), "hi", store=False, on_error="ignore")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_in_a_notebook_and_quiet_when_piped(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model, tok = tiny
    kw: dict[str, Any] = {"store": False, "power": "estimate", "baseline_s": 0.0}
    sweep((model, tok), "hi", {"max_new_tokens": [2, 3]}, **kw)
    assert capsys.readouterr().err == ""  # piped: quiet

    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    sweep((model, tok), "hi", {"max_new_tokens": [2, 3]}, experiment="e", **kw)
    out = tty.getvalue()
    assert out.startswith("\rsweep e: 0/2 points done")
    assert "\rsweep e: 1/2 points done" in out
    assert "ETA" in out
    assert out.endswith("\x1b[K\n")  # one line, rewritten, ended when the sweep is
    monkeypatch.undo()

    shown: list[tuple[str, str]] = []

    class Handle:
        def update(self, obj: dict[str, str], raw: bool) -> None:
            shown.append(("update", obj["text/plain"]))

    def display(obj: dict[str, str], raw: bool, display_id: bool) -> Handle:
        shown.append(("display", obj["text/plain"]))
        return Handle()

    import IPython.display

    from llm_energy_widget.notebook import cells

    monkeypatch.setattr(cells, "in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    sweep((model, tok), "hi", {"max_new_tokens": [2, 3]}, experiment="nb", **kw)
    assert [k for k, _ in shown] == ["display", "update", "update"]  # one output, updated
    assert shown[-1][1].startswith("sweep nb: 2/2 points done")
    assert capsys.readouterr().err == ""


def test_a_batch_point_is_the_prompt_batch_times_through_the_batched_path(
    tiny: tuple[Any, Any],
) -> None:
    model, tok = tiny
    c = sweep(
        (model, tok), "The quick brown fox", {"max_new_tokens": 3, "batch_size": 2},
        power="estimate", level="token", baseline_s=0.0, store=False,
    )  # fmt: skip
    (run,) = c.runs
    assert run.settings["prompts"] == ["The quick brown fox"] * 2
    assert [t["sequence"] for t in run.tokens()] == [0, 1] * 3
    assert run.texts[0] == run.texts[1]  # the same prompt, greedy: the same text
