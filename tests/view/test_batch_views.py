"""A batched run in the views: the wire carries each token's sequence (only for a batch), and
the static text, HTML, saved output and report show one text per sequence with its energy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.models import tiny_llama
from support.profilers import quick_profiler

from llm_energy_widget.view.report import to_html
from llm_energy_widget.view.saved import saved_html
from llm_energy_widget.view.static import render_html, render_text
from llm_energy_widget.view.text import esc, fmt_energy, response_texts
from llm_energy_widget.view.wire import saved_snapshot

PROMPTS = ["Energy is", "The capital of France is", "Hello"]


def _run(tok: Any, prompt: Any) -> Any:
    run = quick_profiler(tiny_llama(), tok, level="token").generate(
        prompt, chat=False, max_new_tokens=3, do_sample=False
    )
    assert run.wait(60)
    assert run.status == "completed"
    return run


@pytest.fixture(scope="module")
def batched(smollm_tokenizer: Any) -> Any:
    return _run(smollm_tokenizer, PROMPTS)


def test_the_wire_carries_sequences_for_a_batch_only(batched: Any, smollm_tokenizer: Any) -> None:
    header = saved_snapshot(batched)["header"]
    assert header["tokens"]["sequence"] == [0, 1, 2] * 3
    single = _run(smollm_tokenizer, PROMPTS[0])
    assert "sequence" not in saved_snapshot(single)["header"]["tokens"]


def test_each_view_shows_every_sequences_text_and_energy(batched: Any, tmp_path: Path) -> None:
    seqs = batched.summary()["sequences"]
    labels = [
        f"sequence {q['sequence']} (3 tokens, {fmt_energy(q['energy_j'])} modeled)" for q in seqs
    ]
    assert response_texts(batched) == list(zip(labels, batched.texts, strict=True))
    text = render_text(batched)
    for label, t in zip(labels, batched.texts, strict=True):
        assert f"{label}: {t}" in text
    report = to_html(batched, tmp_path / "r.html").read_text()
    for page in (render_html(batched), saved_html(batched, "", interactive=False), report):
        for label, t in zip(labels, batched.texts, strict=True):
            assert esc(label) in page
            assert esc(t) in page
    assert "<h2>Responses</h2>" in report


def test_one_prompt_shows_its_response_as_before(smollm_tokenizer: Any) -> None:
    run = _run(smollm_tokenizer, PROMPTS[1])
    assert response_texts(run) == [("response", run.response)]
    assert f"response: {run.response}" in render_text(run)
