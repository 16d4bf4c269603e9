"""`predict`: the fit on past runs, its held-out error, the grouping rules and the cold start.

The runs are made by hand at a constant 10 W, so a token of d seconds is 10 · d J exactly: the
prefill token lasts prefill_j / 10 s and every decode token decode_j / 10 s, and the summary's
prefill energy, decode J/token, TTFT and decode ms/token are the numbers the test chose.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from support.law_runs import (  # noqa: F401  (the law and its runs)
    FEATURES,
    HOST,
    KV,
    NOISE,
    PARAMS,
    SETTINGS,
    WATTS,
    A,
    B,
    D,
    E,
    law_run,
    lawful,
)  # fmt: skip

from llm_energy_widget.analysis.devices import device_figures
from llm_energy_widget.analysis.predict import (
    COLD_LABEL,
    Prediction,
    fit_points,
    points_from_runs,
    predict,
    predict_cli_text,
    predicted_vs_measured,
)
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.store import Store


def test_a_run_gives_the_figures_it_was_built_with() -> None:
    [p] = points_from_runs([law_run(8, 5, 0.6, 0.25)])
    assert p.figures["prefill_energy_j"] == pytest.approx(0.6)
    assert p.figures["decode_j_per_token"] == pytest.approx(0.25)
    assert p.figures["ttft_ms"] == pytest.approx(60.0)
    assert p.figures["decode_ms_per_token"] == pytest.approx(25.0)
    assert (p.host, p.source, p.kind, p.prompt_tokens, p.new_tokens) == (
        HOST, "rapl", "measured", 8, 5,
    )  # fmt: skip


def test_the_fit_recovers_the_law_coefficients() -> None:
    runs = [lawful(p, n, e) for (p, n), e in zip(SETTINGS, NOISE, strict=True)]
    pts = points_from_runs(runs)
    pre = fit_points(pts, "prefill_energy_j")
    dec = fit_points(pts, "decode_j_per_token")
    assert pre is not None
    assert dec is not None
    # one model: the weight bytes do not vary and fold into the intercept
    assert dec.columns == ["kv_bytes"]
    assert dec.folded == {"weight_bytes": PARAMS * 4.0}
    assert pre.coefficients["prefill_flops"] == pytest.approx(A, rel=0.03)
    assert pre.coefficients["intercept"] == pytest.approx(B, rel=0.15)
    assert dec.coefficients["kv_bytes"] == pytest.approx(D, rel=0.05)
    assert dec.coefficients["intercept"] == pytest.approx(E, rel=0.05)
    assert dec.loo_mape < 0.02  # noise of ~1 %


def test_leave_one_out_matches_a_hand_calculation() -> None:
    """Four runs, decode J/token 1, 2, 3, 5 J at KV bytes x = 0, 1, 2, 3 (in steps of 4000 B, from
    an offset the intercept takes); each run left out in turn, the line through the other three:
      out x=0: (1,2), (2,3), (3,5): mean x 2, mean y 10/3, Sxx 2, Sxy 3: slope 3/2, intercept
               1/3 -> predicts 1/3
      out x=1: (0,1), (2,3), (3,5): mean x 5/3, mean y 3, Sxx 14/3, Sxy 6: slope 9/7,
               intercept 6/7 -> predicts 15/7
      out x=2: (0,1), (1,2), (3,5): mean x 4/3, mean y 8/3, Sxx 14/3, Sxy 19/3: slope 19/14,
               intercept 6/7 -> predicts 25/7
      out x=3: (0,1), (1,2), (2,3): y = 1 + x -> predicts 4
    Relative errors -2/3, 1/14, 4/21, -1/5.
    """
    # KV bytes = (prompt + n/2) · KV: n = 2 keeps (prompt + 1) · 1000; prompts 3, 7, 11, 15
    # give 4000, 8000, 12000, 16000 = 4000 · (1, 2, 3, 4): x shifted by one, same slopes
    runs = [law_run(p, 2, 0.5, d) for p, d in ((3, 1.0), (7, 2.0), (11, 3.0), (15, 5.0))]
    fit = fit_points(points_from_runs(runs), "decode_j_per_token")
    assert fit is not None
    assert fit.columns == ["kv_bytes"]
    assert fit.loo_predicted == pytest.approx([1 / 3, 15 / 7, 25 / 7, 4.0])
    rel = [-2 / 3, 1 / 14, 4 / 21, -1 / 5]
    assert fit.loo_relative_errors == pytest.approx(rel)
    assert fit.loo_mape == pytest.approx(sum(abs(r) for r in rel) / 4)
    # coverage 0.5: the ceil(5 · 0.5) = 3rd smallest |error| of 4
    q, holds = fit.quantile(0.5)
    assert q == pytest.approx(1 / 5)  # |errors| sorted: 1/14, 4/21, 1/5, 2/3
    assert holds
    q, holds = fit.quantile(0.9)  # ceil(4.5) = 5 > 4 runs: the largest, nominal
    assert q == pytest.approx(2 / 3)
    assert not holds


def test_an_unseen_setting_falls_inside_the_interval() -> None:
    runs = [lawful(p, n, e) for (p, n), e in zip(SETTINGS, NOISE, strict=True)]
    pred = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=runs, machine=HOST)
    assert pred.method == "fit"
    assert pred.kind == "modeled"
    truth = lawful(40, 30).summary()
    for key in ("prefill_energy_j", "decode_j_per_token", "ttft_ms"):
        v, lo, hi = pred.figures[key]  # type: ignore[misc]
        assert lo <= truth[key] <= hi, key
        assert v == pytest.approx(truth[key], rel=0.03)
    total = truth["prefill_energy_j"] + truth["decode_energy_j"]
    v, lo, hi = pred.figures["total_energy_j"]  # type: ignore[misc]
    assert lo <= total <= hi
    assert pred.basis["n_runs"] == 8
    assert (pred.basis["source"], pred.basis["kind"], pred.basis["host"]) == (
        "rapl", "measured", HOST,
    )  # fmt: skip
    assert set(pred.held_out_error) == {
        "prefill_energy_j", "ttft_ms", "decode_j_per_token", "decode_ms_per_token",
    }  # fmt: skip
    d = pred.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["kind"] == "modeled"
    assert d["figures"]["decode_j_per_token"]["unit"] == "J/token"
    assert len(d["fits"]["decode_j_per_token"]["runs"]) == 8
    text = predict_cli_text(pred)
    assert "modeled" in text
    assert "8 runs" in text
    assert "held-out error" in text
    assert "rapl (measured)" in text


def test_estimate_runs_are_not_mixed_with_measured_runs_unless_asked() -> None:
    measured = [lawful(p, n, e) for (p, n), e in zip(SETTINGS[:4], NOISE[:4], strict=True)]
    # estimate runs on the same machine twice as costly: mixing them would show
    estimate = [
        law_run(p, n, 1.0, 2.0, source="estimate", kind="estimated") for p, n in SETTINGS[4:]
    ]
    pred = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=measured + estimate,
                   machine=HOST)  # fmt: skip
    assert pred.basis["kind"] == "measured"
    assert set(pred.basis["run_ids"]) == {r.run_id for r in measured}
    assert any("not mixed" in n for n in pred.notes)
    est = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=measured + estimate,
                  machine=HOST, kind="estimated")  # fmt: skip
    assert set(est.basis["run_ids"]) == {r.run_id for r in estimate}
    assert est.value("decode_j_per_token") == pytest.approx(2.0)
    mixed = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=measured + estimate,
                    machine=HOST, mix=True)  # fmt: skip
    assert mixed.basis["n_runs"] == 8
    assert mixed.basis["kind"] == "mixed"


def test_two_machines_are_not_mixed() -> None:
    a = [lawful(p, n, e) for (p, n), e in zip(SETTINGS[:4], NOISE[:4], strict=True)]
    b = [law_run(p, n, 3.0, 3.0, host="box-b") for p, n in SETTINGS[4:]]
    pa = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=a + b, machine=HOST)
    pb = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=a + b, machine="box-b")
    assert set(pa.basis["run_ids"]) == {r.run_id for r in a}
    assert set(pb.basis["run_ids"]) == {r.run_id for r in b}
    assert pb.value("decode_j_per_token") == pytest.approx(3.0)
    # a machine with no runs: first principles, not the other machine's runs
    pc = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=a + b, machine="box-c",
                 cpu_cores=2)  # fmt: skip
    assert pc.method == "first-principles"


def test_cold_start_gives_the_documented_first_principles_figures() -> None:
    """2 CPU cores: 20 GB/s, 20 W, 0.1 TFLOPS. 100 M fp32 weights = 400 MB; 16 prompt tokens,
    8 new, KV 1000 B/token: a decode step reads 400e6 + (16 + 4) · 1000 = 400.02e6 B in
    0.020001 s (compute 2e8 FLOP / 1e11 = 2 ms, less), 0.40002 J at 20 W; the prefill does
    2 · 1e8 · 16 = 3.2e9 FLOP in 0.032 s (> 400 MB / 20 GB/s = 0.02 s), 0.64 J."""
    pred = predict(FEATURES, prompt_tokens=16, new_tokens=8, runs=[], machine="none",
                   cpu_cores=2)  # fmt: skip
    assert pred.method == "first-principles"
    assert pred.label == COLD_LABEL
    assert pred.kind == "modeled"
    v, lo, hi = pred.figures["decode_j_per_token"]  # type: ignore[misc]
    assert v == pytest.approx(0.40002)
    assert (lo, hi) == (pytest.approx(0.3 * v), pytest.approx(3 * v))
    assert pred.value("decode_ms_per_token") == pytest.approx(20.001)
    assert pred.value("prefill_energy_j") == pytest.approx(0.64)
    assert pred.value("ttft_ms") == pytest.approx(32.0)
    assert pred.value("total_energy_j") == pytest.approx(0.64 + 7 * 0.40002)
    assert "first-principles" in pred.to_text()
    json.dumps(pred.to_dict(), allow_nan=False)  # JSON-ready: `llm-energy predict --json`
    assert pred.parity_figure() is None
    # every figure overridable
    fast = predict(FEATURES, prompt_tokens=16, new_tokens=8, runs=[], machine="none",
                   cpu_cores=2, memory_bandwidth_gb_s=40.0, power_w=10.0)  # fmt: skip
    assert fast.value("decode_j_per_token") == pytest.approx(10.0 * 400.02e6 / 40e9)


def test_cold_start_adds_the_step_overhead_per_layer() -> None:
    """The case above with 30 layers: 30 x 0.3 ms = 9 ms a forward pass on the CPU, drawn by
    one core of two (10 W): 0.09 J. Decode: 0.40002 + 0.09 J in 20.001 + 9 ms; prefill: 0.64 +
    0.09 J in 32 + 9 ms. On an H200 (bf16 weights, 200 MB at 4.8 TB/s = 0.0417 ms) the overhead
    is 30 x 0.75 = 22.5 ms at a quarter of 700 W: 3.9375 J, the step's 0.0417 ms x 700 W besides."""
    feats = {**FEATURES, "layers": 30}
    pred = predict(feats, prompt_tokens=16, new_tokens=8, runs=[], machine="none", cpu_cores=2)
    assert pred.value("decode_j_per_token") == pytest.approx(0.49002)
    assert pred.value("decode_ms_per_token") == pytest.approx(29.001)
    assert pred.value("prefill_energy_j") == pytest.approx(0.73)
    assert pred.value("ttft_ms") == pytest.approx(41.0)
    gpu = predict(feats, prompt_tokens=16, new_tokens=8, runs=[], device="cuda",
                  accelerator="NVIDIA H200", dtype="bfloat16")  # fmt: skip
    step_s = (PARAMS * 2 + 20 * KV / 2) / 4.8e12  # the KV cache kept in bf16 too: 500 B/token
    assert gpu.value("decode_j_per_token") == pytest.approx(700 * step_s + 175 * 0.0225)
    assert gpu.value("decode_ms_per_token") == pytest.approx(1000 * step_s + 22.5)
    none = predict(feats, prompt_tokens=16, new_tokens=8, runs=[], machine="none", cpu_cores=2,
                   step_overhead_ms_per_layer=0)  # fmt: skip
    assert none.value("decode_j_per_token") == pytest.approx(0.40002)


def test_device_figures_are_the_datasheet_ones() -> None:
    h200 = device_figures("cuda", "NVIDIA H200")
    assert (h200["memory_bandwidth_gb_s"], h200["power_w"]) == (4800.0, 700.0)
    assert device_figures("cuda:0", "NVIDIA H100 PCIe")["memory_bandwidth_gb_s"] == 2000.0
    assert device_figures("cuda", "NVIDIA A100-SXM4-80GB")["memory_bandwidth_gb_s"] == 2039.0
    assert device_figures("mps", "Apple M2 Max")["memory_bandwidth_gb_s"] == 400.0
    cpu = device_figures("cpu", cpu_cores=4)
    assert (cpu["memory_bandwidth_gb_s"], cpu["power_w"]) == (40.0, 40.0)
    with pytest.raises(InvalidInputError, match="accelerator="):
        device_figures("cuda", "Mystery GPU")


def test_another_model_than_the_runs_falls_back_to_first_principles() -> None:
    runs = [lawful(p, n, e) for (p, n), e in zip(SETTINGS, NOISE, strict=True)]
    other = {**FEATURES, "parameters": 3 * PARAMS}
    pred = predict(other, prompt_tokens=40, new_tokens=30, runs=runs, machine=HOST, cpu_cores=2)
    assert pred.method == "first-principles"
    assert any("weight_bytes" in n for n in pred.notes)


def test_display_parity_figure_and_html() -> None:
    runs = [lawful(p, n, e) for (p, n), e in zip(SETTINGS, NOISE, strict=True)]
    pred = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=runs, machine=HOST)
    fig = pred.parity_figure()
    assert fig is not None
    title = fig.layout.title.text
    assert "Predicted vs measured" in title
    assert "modeled" in title
    assert "rapl" in title
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(markers) == 4
    assert all(len(t.x) == 8 for t in markers)
    h = pred._repr_html_()
    assert "modeled" in h
    assert "held-out error" in h
    assert isinstance(pred, Prediction)


def test_from_a_store_and_predicted_vs_measured(tmp_path: Any) -> None:
    store = Store(tmp_path / "runs.sqlite")
    runs = [lawful(p, n, e) for (p, n), e in zip(SETTINGS, NOISE, strict=True)]
    for r in runs:
        store.save(r)
    pred = predict(FEATURES, prompt_tokens=40, new_tokens=30, store=store, machine=HOST)
    # the stored summaries give the same fit as the runs themselves
    direct = predict(FEATURES, prompt_tokens=40, new_tokens=30, runs=runs, machine=HOST)
    for key, fig in direct.figures.items():
        assert pred.figures[key] == pytest.approx(fig), key
    assert pred.method == "fit"
    assert pred.basis["n_runs"] == 8
    by_name = predict("law-model", prompt_tokens=40, new_tokens=30, store=store, machine=HOST)
    assert by_name.value("decode_j_per_token") == pytest.approx(pred.value("decode_j_per_token"))
    new = lawful(40, 30, 0.005)
    store.save(new)
    pvm = predicted_vs_measured(new, store)
    assert pvm is not None
    assert pvm["kind"] == "modeled"
    assert pvm["method"] == "fit"
    assert new.run_id not in pvm["basis"]["run_ids"]
    row = next(r for r in pvm["rows"] if r["key"] == "decode_j_per_token")
    assert row["measured"] == pytest.approx(new.summary()["decode_j_per_token"])
    assert abs(row["error"]) < 0.03
    store.close()


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InvalidInputError):
        predict(FEATURES, prompt_tokens=0, runs=[])
    with pytest.raises(InvalidInputError):
        predict(FEATURES, device="tpu", runs=[])
    with pytest.raises(InvalidInputError):
        predict({"dtype": "float32"}, runs=[])
    with pytest.raises(InvalidInputError):
        predict(FEATURES, coverage=1.5, runs=[])
    assert math.isfinite(predict(FEATURES, runs=[], cpu_cores=1).value("total_energy_j") or 0)


def test_predicted_vs_measured_is_none_for_a_run_it_cannot_describe() -> None:
    run = law_run(8, 5, 0.6, 0.25)
    run.model = {"name": "no features"}
    assert predicted_vs_measured(run, None) is None


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "predict.ipynb"


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_predict_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """notebooks/predict.ipynb runs headless (the real default model, a temporary store)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]))  # the kernel imports this checkout
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    cell = next(c for c in nb.cells if c.cell_type == "code" and "prediction = " in c.source)
    head, *rest = cell.outputs
    assert "modeled" in head["data"]["text/html"]
    assert "learned from 6 runs" in head["data"]["text/plain"]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in rest)
    cold = [c for c in nb.cells if c.cell_type == "code" and "machine='elsewhere'" in c.source]
    assert "first-principles" in cold[0].outputs[0]["data"]["text/plain"]


def test_with_no_store_it_is_a_cold_start_and_creates_none() -> None:
    import os

    path = Path(os.environ["LLM_ENERGY_STORE"])
    assert not path.exists()
    pred = predict(FEATURES, prompt_tokens=16, new_tokens=8, cpu_cores=2)
    assert pred.method == "first-principles"
    assert not path.exists()
