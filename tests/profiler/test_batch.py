"""Batched generation: a batch of prompts is one run, each token carries its sequence, every
step's energy is split equally among the tokens it chose (issue 13, item 1).

The power source is a constant 10 W, so a step's energy is known by hand: 10 W x the step's
time; each of its k tokens carries 10 W x time / k.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from support.models import tiny_llama
from support.profilers import quick_profiler
from support.sources import ConstantSource

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.run import Run
from llm_energy_widget.store import Store

PROMPTS = [
    "Energy is",
    "The capital of France is a city that",
    "Hello",
    "One two three four five six",
]
WATTS = 10.0
NEW = 6


def _plain(model: Any, tok: Any, prompts: list[str], **kw: Any) -> list[list[int]]:
    """Plain batched greedy `generate` on the tokenizer's own left-padded batch, per row the
    new ids up to and including the first end token (what a finished row emits after it is
    padding)."""
    pad = tok.eos_token_id
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=NEW, do_sample=False, pad_token_id=pad, **kw)
    eos = kw.get("eos_token_id")
    rows = []
    for r in out[:, enc["input_ids"].shape[1] :].tolist():
        cut = next((i + 1 for i, x in enumerate(r) if x == eos), len(r)) if eos else len(r)
        rows.append(r[:cut])
    return rows


def _by_sequence(run: Any) -> list[list[int]]:
    rows: list[list[int]] = [[] for _ in range(run.n_sequences)]
    for t in run.tokens():
        rows[t["sequence"]].append(t["token_id"])
    return rows


def _run(model: Any, tok: Any, prompt: Any, **kw: Any) -> Any:
    prof_kw = {k: kw.pop(k) for k in ("level", "store") if k in kw}
    run = quick_profiler(model, tok, power=ConstantSource(WATTS), **prof_kw).generate(
        prompt, chat=False, max_new_tokens=NEW, do_sample=False, **kw
    )
    assert run.wait(120), "run did not finish"
    assert run.status == "completed", run.end_reason
    return run


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_llama()


def test_padded_inputs_are_the_tokenizers_left_padded_batch(
    model: Any, smollm_tokenizer: Any
) -> None:
    prof = quick_profiler(model, smollm_tokenizer)
    enc = prof._encode(PROMPTS, False)
    ref = smollm_tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    assert torch.equal(enc.inputs["input_ids"], ref["input_ids"])
    assert torch.equal(enc.inputs["attention_mask"], ref["attention_mask"])
    assert smollm_tokenizer.padding_side == "right"  # the shared tokenizer is left as it was
    assert enc.texts == tuple(PROMPTS)
    assert enc.prompt_tokens == int(ref["attention_mask"].sum())


def test_batch_of_four_matches_plain_generate_and_splits_energy(
    model: Any, smollm_tokenizer: Any
) -> None:
    expected = _plain(model, smollm_tokenizer, PROMPTS)
    run = _run(model, smollm_tokenizer, PROMPTS, level="layer")
    assert run.n_sequences == 4
    assert _by_sequence(run) == expected  # token by token, every row
    texts = [smollm_tokenizer.decode(r, skip_special_tokens=True) for r in expected]
    assert run.texts == texts
    assert run.response == texts[0]
    assert run.settings["prompts"] == PROMPTS
    assert run.prompt == PROMPTS[0]

    toks = run.tokens()
    assert len(toks) == 4 * NEW
    # each step: 4 tokens, sequences 0..3, the step's time, 10 W x time / 4 each
    for k in range(NEW):
        step = toks[4 * k : 4 * k + 4]
        assert [t["sequence"] for t in step] == [0, 1, 2, 3]
        assert len({(t["start_ms"], t["end_ms"]) for t in step}) == 1
        assert all(t["step_tokens"] == 4 and t["energy_kind"] == "modeled" for t in step)
        assert all(t["phase"] == ("prefill" if k == 0 else "decode") for t in step)
        for t in step:
            assert t["energy_j"] == pytest.approx(WATTS * t["duration_ms"] / 1000 / 4, rel=1e-6)
            assert t["avg_power_w"] == pytest.approx(WATTS, rel=1e-6)  # the step's power
    assert run.labels()["tokens"] == "modeled"

    s = run.summary()
    decode = toks[4:]
    decode_e = sum(t["energy_j"] for t in decode)
    assert s["output_tokens"] == 24
    assert s["decode_tokens"] == 20
    assert s["decode_j_per_token"] == pytest.approx(decode_e / 20, rel=1e-9)
    # by hand: 10 W x the decode phase (first token's end to the last's) / 20 generated tokens
    dec_ms = toks[-1]["end_ms"] - toks[0]["end_ms"]
    assert s["decode_j_per_token"] == pytest.approx(WATTS * dec_ms / 1000 / 20, rel=1e-6)
    # generated tokens per second, not steps: 20 tokens over the 5 decode steps' time
    step_ms = sum(toks[4 * k]["duration_ms"] for k in range(1, NEW))
    assert s["decode_tokens_per_s"] == pytest.approx(20 / (step_ms / 1000), rel=1e-9)
    assert s["tokens_per_s"] == pytest.approx(24 / (s["generation_ms"] / 1000), rel=1e-9)
    # the sequences' energies sum to the run's token energy; the prefill is split equally
    seqs = s["sequences"]
    assert [q["sequence"] for q in seqs] == [0, 1, 2, 3]
    assert [q["tokens"] for q in seqs] == [NEW] * 4
    assert [q["text"] for q in seqs] == texts
    assert sum(q["energy_j"] for q in seqs) == pytest.approx(s["generation_energy_j"], rel=1e-9)
    prefill_e = WATTS * toks[0]["duration_ms"] / 1000
    assert all(q["prefill_energy_j"] == pytest.approx(prefill_e / 4, rel=1e-6) for q in seqs)
    assert s["prefill_j_per_prompt_token"] == pytest.approx(prefill_e / run.prompt_tokens, 1e-6)
    # one layer row per step, on its first token
    rows = run.layers
    assert rows.shape[0] == 4 * NEW  # a row per token, NaN for the later tokens of a step
    t_idx = run.metric_names.index("time_ms")
    for k in range(NEW):
        assert (rows[4 * k, :, :, t_idx] > 0).all()
        if 4 * k + 1 < rows.shape[0]:
            assert torch.isnan(torch.from_numpy(rows[4 * k + 1 : 4 * k + 4])).all()


def test_a_sequence_that_finishes_early_gets_no_energy_after_it(
    model: Any, smollm_tokenizer: Any
) -> None:
    free = _plain(model, smollm_tokenizer, PROMPTS)
    eos = free[1][1]  # sequence 1's second token ends it
    expected = _plain(model, smollm_tokenizer, PROMPTS, eos_token_id=eos)
    run = _run(model, smollm_tokenizer, PROMPTS, eos_token_id=eos)
    got = _by_sequence(run)
    assert got == expected
    assert len(got[1]) == 2
    toks = run.tokens()
    steps: dict[float, list[dict[str, Any]]] = {}
    for t in toks:
        steps.setdefault(t["end_ms"], []).append(t)
    ordered = [steps[k] for k in sorted(steps)]
    for k, step in enumerate(ordered):
        alive = [b for b, r in enumerate(expected) if len(r) > k]
        assert [t["sequence"] for t in step] == alive  # finished rows chose no token
        for t in step:
            assert t["step_tokens"] == len(alive)
            share = WATTS * t["duration_ms"] / 1000 / len(alive)
            assert t["energy_j"] == pytest.approx(share, rel=1e-6)
    seqs = run.summary()["sequences"]
    assert seqs[1]["tokens"] == 2
    assert seqs[1]["energy_j"] == pytest.approx(
        sum(t["energy_j"] for t in toks if t["sequence"] == 1)
    )
    assert sum(q["energy_j"] for q in seqs) == pytest.approx(
        run.summary()["generation_energy_j"], rel=1e-9
    )


def test_input_ids_with_attention_mask_are_the_same_batch(
    model: Any, smollm_tokenizer: Any
) -> None:
    enc = smollm_tokenizer(PROMPTS[:2], return_tensors="pt", padding=True, padding_side="left")
    run = _run(model, smollm_tokenizer, enc["input_ids"], attention_mask=enc["attention_mask"])
    assert _by_sequence(run) == _plain(model, smollm_tokenizer, PROMPTS[:2])
    assert run.prompt_tokens == int(enc["attention_mask"].sum())


def test_one_prompt_is_as_before(model: Any, smollm_tokenizer: Any) -> None:
    run = _run(model, smollm_tokenizer, PROMPTS[1])
    toks = run.tokens()
    assert run.n_sequences == 1
    assert run.texts == [run.response]
    assert all(t["sequence"] == 0 and t["step_tokens"] == 1 for t in toks)
    assert all(t["energy_kind"] == "measured" for t in toks)
    assert run.labels()["tokens"] == "measured"
    for t in toks:
        assert t["energy_j"] == pytest.approx(WATTS * t["duration_ms"] / 1000, rel=1e-6)
    s = run.summary()
    assert s["decode_tokens"] == NEW - 1
    assert s["prefill_j_per_prompt_token"] == pytest.approx(
        toks[0]["energy_j"] / run.prompt_tokens, rel=1e-9
    )


def test_store_round_trip_and_csv_keep_sequences(
    model: Any, smollm_tokenizer: Any, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite"
    run = _run(model, smollm_tokenizer, PROMPTS[:3], store=str(path))
    run.store_writer.wait(10)
    store = Store(path)
    try:
        loaded = store.load(run.run_id)
    finally:
        store.close()
    assert [t["sequence"] for t in loaded.tokens()] == [t["sequence"] for t in run.tokens()]
    assert loaded.texts == run.texts
    assert len(loaded.texts) == 3
    for a, b in zip(loaded.summary()["sequences"], run.summary()["sequences"], strict=True):
        assert a["text"] == b["text"]
        assert a["tokens"] == b["tokens"]
        assert a["energy_j"] == pytest.approx(b["energy_j"], rel=1e-9)
    from_json = Run.from_dict(json.loads(json.dumps(run.to_dict())))
    assert from_json.texts == run.texts
    assert [t["sequence"] for t in from_json.tokens()] == [t["sequence"] for t in run.tokens()]
    files = run.to_csv(tmp_path / "csv")
    tokens_csv = next(f for f in files if f.name.startswith("tokens"))
    with tokens_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["sequence"]) for r in rows] == [t["sequence"] for t in run.tokens()]
    assert {r["energy_kind"] for r in rows} == {"modeled"}


@pytest.mark.parametrize(
    ("prompt", "kw", "message"),
    [
        ([], {}, "prompt must be a non-empty string"),
        (["a", [{"role": "user", "content": "b"}]], {}, "prompt 1 a list"),
        (["a", ""], {}, "prompt 1 of the batch: the prompt is empty"),
        (
            torch.ones((2, 3), dtype=torch.long),
            {"attention_mask": torch.ones((2, 4))},
            "attention_mask has shape (2, 4), input_ids (2, 3)",
        ),
        (
            torch.ones((1, 3), dtype=torch.long),
            {"attention_mask": torch.tensor([[1, 2, 1]])},
            "only 0 and 1",
        ),
        (
            torch.ones((1, 3), dtype=torch.long),
            {"attention_mask": torch.zeros((1, 3), dtype=torch.long)},
            "masks every token",
        ),
        ("a text", {"attention_mask": torch.ones((1, 3))}, "attention_mask= goes with input ids"),
    ],
)
def test_bad_batches_fail_before_a_run(
    prompt: Any, kw: dict[str, Any], message: str, smollm_tokenizer: Any
) -> None:
    prof = quick_profiler(tiny_llama(), smollm_tokenizer)
    with pytest.raises(InvalidInputError, match=None) as err:
        prof.generate(prompt, chat=False, **kw)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert prof.runs == []


def test_a_batch_of_chats_goes_through_the_template_like_single_prompts(
    model: Any, smollm_tokenizer: Any
) -> None:
    chats = [[{"role": "user", "content": p}] for p in PROMPTS[:2]]
    prof = quick_profiler(model, smollm_tokenizer)
    enc = prof._encode(chats, "auto")
    singles = [prof._encode(c, "auto") for c in chats]
    assert enc.chat_template
    ids, mask = enc.inputs["input_ids"], enc.inputs["attention_mask"]
    for b, one in enumerate(singles):
        row = one.inputs["input_ids"][0]
        n = row.numel()
        assert torch.equal(ids[b, -n:], row)  # the template's ids, padded on the left
        assert int(mask[b].sum()) == n
        assert bool((mask[b, : ids.shape[1] - n] == 0).all())
    # the same for a batch of texts with chat="auto": each text as one user message
    texts = prof._encode(PROMPTS[:2], "auto")
    assert torch.equal(texts.inputs["input_ids"], ids)
