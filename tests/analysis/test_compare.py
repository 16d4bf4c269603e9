"""Comparison of synthetic runs: table, labels, figures, display, and loading by id."""

from __future__ import annotations

from pathlib import Path

import pytest
import support.runs as hr
from support.runs import hand_run

from llm_energy_widget.analysis import Comparison, compare
from llm_energy_widget.analysis.compare import HEADLINE
from llm_energy_widget.analysis.theme import plain_title
from llm_energy_widget.core.schema import SUMMARY_LABELS
from llm_energy_widget.errors import InvalidInputError, UnknownRunError
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run


def _runs() -> list[Run]:
    a = synthetic_run(n_tokens=8, n_layers=2, seed=1)
    b = synthetic_run(n_tokens=12, n_layers=2, seed=2, token_ms=40.0)
    a.settings["max_new_tokens"], b.settings["max_new_tokens"] = 8, 12
    return [a, b]


def test_table_has_one_row_per_run_with_efficiency() -> None:
    a, b = _runs()
    c = compare([a, b])
    t = c.table.set_index("run_id")
    assert list(c.labels) == ["max_new_tokens=8", "max_new_tokens=12"]
    assert t.loc[a.run_id, "decode_j_per_token"] == pytest.approx(a.summary()["decode_j_per_token"])
    assert t.loc[b.run_id, "tokens_per_s"] == pytest.approx(b.summary()["tokens_per_s"])
    # a column, then its row: `.loc[row, col]` is typed as any pandas scalar, not a float
    shares = float(t["prefill_share"].loc[a.run_id]) + float(t["decode_share"].loc[a.run_id])
    assert shares == pytest.approx(1)
    assert t.loc[a.run_id, "energy_kind"] == "modeled"
    assert {"ttft_ms", "total_energy_j", "net_energy_j", "output_tokens"} <= set(c.table.columns)
    recs = c.records()
    assert recs[0]["run_id"] == a.run_id
    assert isinstance(recs[0]["decode_j_per_token"], float)


def test_headline_columns_by_their_names() -> None:
    """The hand run: decode 0.75 J/token, prefill 0.25 J/prompt token, 2 decode tokens in 150 ms."""
    a, b = hand_run(), hand_run()
    c = compare([a, b])
    row = c.table.iloc[0]
    assert row["decode_j_per_token"] == pytest.approx(hr.DECODE_J_PER_TOKEN)
    assert row["prefill_j_per_prompt_token"] == pytest.approx(hr.PREFILL_J_PER_PROMPT_TOKEN)
    assert row["decode_tokens_per_s"] == pytest.approx(2 / 0.150)
    assert row["tokens_per_s"] == pytest.approx(3 / 0.250)
    assert row["layer_coverage"] == pytest.approx(hr.COVERAGE)
    assert row["energy_scope"] == "device"
    text = c.to_text()
    for key in ("decode_j_per_token", "prefill_j_per_prompt_token", "decode_tokens_per_s"):
        assert SUMMARY_LABELS[key] in text
    assert "decode_j_per_token" not in text
    head = c.headline_html()
    for key in HEADLINE:
        assert f"<th>{SUMMARY_LABELS[key]}</th>" in head
    eff = c.figures["efficiency"]
    assert [t.name for t in eff.data] == [
        "decode J/token", "prefill J/prompt token", "decode tokens/s"
    ]  # fmt: skip
    assert list(eff.data[1].x) == pytest.approx([0.25, 0.25])
    assert list(eff.data[2].x) == pytest.approx([2 / 0.150] * 2, rel=1e-3)
    assert [t.name for t in c.figures["phase_split"].data] == ["prefill", "decode", "tail"]


def test_layer_energy_is_the_mean_over_decode_tokens() -> None:
    # decode cells per layer: L0 0.2 (token 1) and 0.4 (token 2), L1 0.2 and 0.4: mean 0.3 each
    # (with the prefill token it would be 0.333 and 0.267)
    fig = compare([hand_run()]).figures["layer_energy"]
    assert list(fig.data[0].x) == ["L0", "L1"]
    assert list(fig.data[0].y) == pytest.approx([0.3, 0.3])
    assert "mean over 2 decode tokens (prefill excluded)" in fig.data[0].name
    assert "prefill excluded" in fig.layout.title.text


def test_figures_and_display() -> None:
    a, b = _runs()
    c = compare([a, b])
    assert set(c.figures) == {"efficiency", "phase_split", "power", "layer_energy"}
    eff = c.figures["efficiency"]
    assert list(eff.data[0].x) == pytest.approx(
        [a.summary()["decode_j_per_token"], b.summary()["decode_j_per_token"]], rel=1e-3
    )
    assert list(eff.data[0].y) == c.labels  # horizontal bars: run labels read on the y axis
    assert "modeled" in plain_title(eff.layout.title.text)
    split = c.figures["phase_split"]
    assert split.layout.barmode == "stack"
    assert [t.name for t in split.data] == ["prefill", "decode"]
    power = c.figures["power"]
    assert len(power.data) == 2
    assert power.data[0].x[0] <= 0.0
    assert "time since prefill start" in power.layout.xaxis.title.text
    assert a.run_id in repr(c)
    w = c.widget()
    assert len(w.children[1].children) == 4


def test_notes_flag_mixed_kinds_and_unfinished_runs() -> None:
    a, b = _runs()
    b.power_info = {**b.power_info, "kind": "measured", "source": "rapl"}
    live = synthetic_run(n_tokens=4, n_layers=2, finish=False)
    c = compare([a, b, live])
    assert any("not comparable" in n for n in c.notes)
    assert any(live.run_id in n and "running" in n for n in c.notes)
    assert "note:" in c.to_text()


def test_compare_by_id_prefix_and_dataframe(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    a, b = _runs()
    a.experiment = b.experiment = "exp"
    store.save(a)
    store.save(b)
    c = compare([a.run_id[:7], b.run_id], store=store)
    assert [r.run_id for r in c.runs] == [a.run_id, b.run_id]
    c2 = compare(store.runs(experiment="exp"), store=store)
    assert isinstance(c2, Comparison)
    assert len(c2.runs) == 2
    with pytest.raises(UnknownRunError):
        compare(["nope"], store=store)


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="at least one run"):
        compare([])
    with pytest.raises(InvalidInputError, match="Run objects, run dicts or run ids"):
        compare([3.5])


def _run_with(seed: int, model: str = "synthetic", prompt: str = "p", **settings: object) -> Run:
    r = synthetic_run(n_tokens=6, n_layers=2, seed=seed)
    r.model = {**r.model, "name": model}
    r.prompt = prompt
    gen = {k: v for k, v in settings.items() if k in ("do_sample", "temperature")}
    r.settings = {
        "generate_kwargs": {"max_new_tokens": 6, "pad_token_id": 0, **gen},
        "max_new_tokens": 6, "interval_ms": 100.0 + seed, "price_per_kwh": 0.1 * seed,
        **{k: v for k, v in settings.items() if k not in gen},
    }  # fmt: skip
    return r


def test_runs_are_labelled_by_what_differs_between_them() -> None:
    a = _run_with(1, "HuggingFaceTB/SmolLM2-135M-Instruct", "Tell a story about a lighthouse")
    b = _run_with(2, "openai-community/gpt2", "Tell a story about a dragon", do_sample=True)
    c = compare([a, b])
    # model (its last path part), the prompt's distinct end, then the settings that differ;
    # the poll interval, prices and pad_token_id tell runs apart for no reader
    assert c.labels == [
        "SmolLM2-135M-Instruct · prompt “…lighthouse” · do_sample=None",
        "gpt2 · prompt “…dragon” · do_sample=True",
    ]
    assert c.shared["max_new_tokens"] == 6
    assert c.shared["level"] == "component"
    assert "all share level component, power synthetic, max_new_tokens=6" in c.headline_html()
    long = _run_with(3, prompt="Summarise the following article in three sentences please")
    short = _run_with(4, prompt="Hi")
    assert compare([long, short]).labels == [
        "prompt “Summarise the following…”", "prompt “Hi”"
    ]  # fmt: skip


def test_settings_order_and_a_last_resort_for_repeats() -> None:
    runs = [_run_with(i, batch_size=bs, dtype=dt) for i, (bs, dt) in
            enumerate([(1, "float32"), (2, "float32"), (1, "bfloat16")])]  # fmt: skip
    assert compare(runs).labels == [
        "batch_size=1 · dtype=float32", "batch_size=2 · dtype=float32",
        "batch_size=1 · dtype=bfloat16",
    ]  # fmt: skip
    same = [_run_with(5), _run_with(6)]
    labels = compare(same).labels
    assert labels == [f"run 1 · {same[0].run_id[:6]}", f"run 2 · {same[1].run_id[:6]}"]


def test_the_headline_says_each_columns_kind() -> None:
    a, b = _runs()
    c = compare([a, b])
    head = c.headline_html()
    sub = head.split("</tr>", 1)[1].split("</tr>", 1)[0]  # the second header row: unit · kind
    assert sub.count(">modeled<") == 3  # decode J/token, prefill J/prompt token, prefill share
    assert sub.count(">measured<") == 1  # decode tokens/s, whatever the power source
    assert sub.count(">J · modeled<") == 4  # prefill, decode, tail and total energy
    s = a.summary()
    for key in ("decode_j_per_token", "decode_tokens_per_s", "total_energy_j"):
        assert f">{s[key]:.4g}<" in head
    b.power_info = {**b.power_info, "kind": "measured", "scope": "device", "source": "rapl"}
    mixed = compare([a, b]).headline_html()
    assert ">J · kind per run →<" in mixed
    assert "measured · device (rapl)" in mixed
    assert "not comparable" in mixed


def test_labels_with_markup_are_shown_as_text() -> None:
    a = _run_with(1, prompt="<b>bold</b> <img src=x onerror=alert(1)>")
    b = _run_with(2, prompt="plain")
    c = compare([a, b])
    head = c.headline_html()
    assert "<img" not in head
    assert "&lt;b&gt;bold&lt;/b&gt; &lt;img src=x…" in head
    ticks = list(c.figures["efficiency"].data[0].y)
    assert all("<" not in t for t in ticks)
    assert "&lt;b&gt;bold&lt;/b&gt;" in ticks[0]
