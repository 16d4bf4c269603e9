"""`llm-energy predict` on a store of hand-built runs that follow a known law.

The law (tests/support/law_runs.py): a 100 M-parameter fp32 model, KV cache 1000 B/token,
prefill J = 2e-10 · FLOPs + 0.05 with FLOPs = 2 · 1e8 · prompt tokens, decode J/token =
2e-6 · KV bytes + 0.30 with KV bytes = (prompt + new / 2) · 1000, at a constant 10 W.
For 40 prompt tokens and 30 new ones, by hand:
    FLOPs 8e9: prefill 1.6 + 0.05 = 1.65 J, TTFT 165 ms
    KV bytes (40 + 15) · 1000 = 55,000: decode 0.11 + 0.30 = 0.41 J/token, 41 ms/token
    total 1.65 + 29 · 0.41 = 13.54 J in 165 + 29 · 41 = 1354 ms
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.law_runs import HOST, NOISE, SETTINGS, lawful

from llm_energy_widget.cli import build_parser, main
from llm_energy_widget.store import Store

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "predict.schema.json").read_text()
)
ARGS = ["--model", "law-model", "--prompt-tokens", "40", "--new-tokens", "30", "--machine", HOST]


def _store(path: Path, noise: list[float]) -> Path:
    with Store(path) as s:
        for (p, n), e in zip(SETTINGS, noise, strict=True):
            s.save(lawful(p, n, e))
    return path


@pytest.fixture
def exact(tmp_path: Path) -> Path:
    return _store(tmp_path / "exact.sqlite", [0.0] * len(SETTINGS))


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    return _store(tmp_path / "noisy.sqlite", NOISE)


def _json(store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    assert main(["predict", *ARGS, "--store", str(store), "--json", *extra]) == 0
    out = json.loads(capsys.readouterr().out)
    jsonschema.validate(out, SCHEMA)
    return out


def test_the_exact_law_is_predicted_with_no_held_out_error(
    exact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _json(exact, capsys)
    f = out["figures"]
    assert out["kind"] == "modeled"
    assert out["method"] == "fit"
    assert f["prefill_energy_j"]["value"] == pytest.approx(1.65, rel=1e-6)
    assert f["decode_j_per_token"]["value"] == pytest.approx(0.41, rel=1e-6)
    assert f["total_energy_j"]["value"] == pytest.approx(13.54, rel=1e-6)
    assert f["ttft_ms"]["value"] == pytest.approx(165.0, rel=1e-6)
    assert f["decode_ms_per_token"]["value"] == pytest.approx(41.0, rel=1e-6)
    assert f["total_time_ms"]["value"] == pytest.approx(1354.0, rel=1e-6)
    assert f["decode_j_per_token"]["unit"] == "J/token"
    for err in out["held_out_error"].values():
        assert err == pytest.approx(0.0, abs=1e-6)
    assert out["basis"]["n_runs"] == 8
    assert (out["basis"]["source"], out["basis"]["kind"], out["basis"]["host"]) == (
        "rapl", "measured", HOST,
    )  # fmt: skip


def test_noisy_runs_give_an_interval_around_the_law(
    noisy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _json(noisy, capsys)
    for key, truth in (("prefill_energy_j", 1.65), ("decode_j_per_token", 0.41),
                       ("total_energy_j", 13.54)):  # fmt: skip
        fig = out["figures"][key]
        assert fig["low"] <= truth <= fig["high"], key
        assert fig["value"] == pytest.approx(truth, rel=0.03), key
    # the runs' noise is ~1 %: the held-out error is that order, not zero
    assert 0.001 < out["held_out_error"]["decode_j_per_token"] < 0.03


def test_text_names_the_figures_kind_runs_and_held_out_error(
    noisy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", *ARGS, "--store", str(noisy)]) == 0
    text = capsys.readouterr().out
    assert "predicted (modeled" in text
    assert "learned from 8 runs" in text
    assert f"power source rapl (measured) on {HOST}" in text
    for label in ("total energy", "prefill energy", "decode J/token", "TTFT", "decode ms/token"):
        assert label in text
    line = next(s for s in text.splitlines() if "decode J/token" in s and "[" in s)
    assert "0.41" in line  # 0.41 J/token at 1 % noise: 0.40.. or 0.41..
    held = next(s for s in text.splitlines() if "held-out error" in s)
    for label in ("prefill energy", "TTFT", "decode J/token", "decode ms/token"):
        assert label in held


def test_another_machine_or_no_store_is_a_first_principles_estimate(
    noisy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _json(noisy, capsys, "--machine", "elsewhere")
    assert out["method"] == "first-principles"
    assert out["basis"]["n_runs"] == 0
    assert "first-principles" in out["notes"][0]


def test_include_estimates_mixes_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.sqlite"
    with Store(path) as s:
        for (p, n), e in zip(SETTINGS[:4], NOISE[:4], strict=True):
            s.save(lawful(p, n, e))
        for (p, n), e in zip(SETTINGS[4:], NOISE[4:], strict=True):
            s.save(lawful(p, n, e, source="estimate", kind="estimated"))
    assert _json(path, capsys)["basis"]["n_runs"] == 4
    assert _json(path, capsys, "--kind", "estimated")["basis"]["source"] == "estimate"
    mixed = _json(path, capsys, "--include-estimates")
    assert mixed["basis"]["n_runs"] == 8
    assert mixed["basis"]["kind"] == "mixed"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt-tokens", "0"], "--prompt-tokens must be a positive number"),
        (["--new-tokens", "-3"], "--new-tokens must be a positive number"),
        (["--batch", "0"], "--batch must be a positive number"),
        (["--coverage", "1.5"], "--coverage must be between 0 and 1"),
        (["--device", "tpu"], "--device must be cpu, cuda or mps"),
        (["--model", "no-such-model"], "--model no-such-model: neither"),
        (["--dtype", "float7"], "unknown dtype"),
        (["--include-estimates", "--kind", "measured"], "not with --source/--kind"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    noisy: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["predict", *ARGS, "--store", str(noisy), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-energy: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_a_missing_store_is_an_error_not_a_new_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.sqlite"
    assert main(["predict", *ARGS, "--store", str(missing)]) == 2
    assert "no such store file" in capsys.readouterr().err
    assert not missing.exists()


def test_every_option_states_its_default() -> None:
    parser = build_parser()
    sub: Any = next(a for a in parser._actions if a.dest == "command")
    predict = sub.choices["predict"]
    for action in predict._actions:
        if action.dest == "help":
            continue
        assert "default" in (action.help or ""), action.option_strings


def test_a_profiled_run_prints_what_its_history_predicted(exact: Path) -> None:
    """`llm-energy profile`'s text (print_run) after a run saved in a store with a history:
    the law predicts 0.41 J/token for 40 prompt and 30 new tokens; the run is the law exactly."""
    import io

    from llm_energy_widget.cli.run_text import print_run

    run = lawful(40, 30)
    run.store_path = str(exact)  # type: ignore[attr-defined]  # as the profiler sets it
    buf = io.StringIO()
    print_run(run, buf, quiet=True)
    text = buf.getvalue()
    assert f"predicted (modeled) from 8 earlier runs of rapl on {HOST}" in text
    line = next(x for x in text.splitlines() if "decode J/token: predicted" in x)
    assert "predicted 0.41 J/token" in line
    assert "error +0.0 %" in line
