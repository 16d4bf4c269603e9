"""A plain prompt goes through the chat template; a run cut short by the end token says why;
the first run on a model is preceded by an unmeasured warm-up that is in none of its figures.

Expected token ids come from plain `model.generate` on ids built here with the tokenizer, never
from the profiler; forwards are counted by a wrapper around the model, and the sampler's opening
is timed by the power source itself.
"""

from __future__ import annotations

import copy
import io
import threading
import time
from typing import Any

import pytest
import torch
from support.models import tiny_llama
from support.sources import ConstantSource

from llm_energy_widget.cli import build_parser, profile_cmd
from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.profiler import EnergyProfiler
from llm_energy_widget.view.static import render_text
from llm_energy_widget.view.wire import snapshot_of

PROMPT = "Energy is the capacity to do work"


def _profiler(model: Any, tok: Any, **kw: Any) -> EnergyProfiler:
    kw.setdefault("power", ConstantSource(10.0))
    kw.setdefault("baseline_s", 0.0)
    kw.setdefault("store", False)
    kw.setdefault("interval_ms", 20)
    return EnergyProfiler(model, tok, **kw)


def _plain(model: Any, ids: torch.Tensor, n: int, **kw: Any) -> list[int]:
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False, **kw
        )
    return [int(x) for x in out[0, ids.shape[1] :]]


def _templated(tok: Any, text: str) -> torch.Tensor:
    enc = tok.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    return enc["input_ids"]


def _raw(tok: Any, text: str) -> torch.Tensor:
    return tok(text, return_tensors="pt")["input_ids"]


@pytest.fixture(scope="module")
def plain_tokenizer(smollm_tokenizer: Any) -> Any:
    """The SmolLM2 tokenizer without its chat template, as a base model's would be."""
    tok = copy.deepcopy(smollm_tokenizer)
    tok.chat_template = None
    return tok


def _views_warnings(run: Any) -> dict[str, list[str]]:
    """The warnings each consumer shows: the summary, the widget's data, the static text."""
    header = snapshot_of(run)["header"]
    return {
        "summary": list(run.summary()["warnings"]),
        "widget": list(header["summary"]["warnings"]),
        "static": [
            line[len("warning: ") :]
            for line in render_text(run).splitlines()
            if line.startswith("warning: ")
        ],
    }


# -- 1. the chat template ----------------------------------------------------------------------
def test_plain_prompt_goes_through_the_chat_template_by_default(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    ids = _templated(smollm_tokenizer, PROMPT)
    expected = _plain(model, ids, 6, min_new_tokens=6, pad_token_id=0)
    run = _profiler(model, smollm_tokenizer, level="token").generate(
        PROMPT, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
    )
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    assert [t["token_id"] for t in run.tokens()] == expected
    assert run.prompt == PROMPT  # the user's text, not the template's markup
    assert run.prompt_tokens == ids.shape[1]
    assert run.settings["chat"] == "auto"
    assert run.settings["chat_template"] is True
    assert run.settings["prompt_sent"].startswith("<|im_start|>")
    assert PROMPT in run.settings["prompt_sent"]


@pytest.mark.parametrize("chat", [False, "auto-without-template"])
def test_raw_text_when_asked_or_without_a_template(
    chat: Any, smollm_tokenizer: Any, plain_tokenizer: Any
) -> None:
    tok = plain_tokenizer if chat == "auto-without-template" else smollm_tokenizer
    model = tiny_llama()
    ids = _raw(smollm_tokenizer, PROMPT)
    expected = _plain(model, ids, 5, min_new_tokens=5, pad_token_id=0)
    run = _profiler(model, tok, level="token").generate(
        PROMPT,
        chat=False if chat is False else "auto",
        max_new_tokens=5,
        min_new_tokens=5,
        do_sample=False,
        pad_token_id=0,
    )
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    assert [t["token_id"] for t in run.tokens()] == expected
    assert run.prompt_tokens == ids.shape[1]
    assert run.settings["chat_template"] is False
    assert "prompt_sent" not in run.settings


@pytest.mark.parametrize(
    ("prompt", "chat", "tok", "match"),
    [
        (PROMPT, True, "plain", "chat=True, but this tokenizer has no chat template"),
        ([{"role": "user", "content": "hi"}], False, "smol", "chat messages need the chat"),
        (torch.tensor([[1, 2, 3]]), True, "smol", "input ids are sent as given"),
        (PROMPT, "yes", "smol", 'chat must be "auto", True or False'),
        (PROMPT, 1, "smol", 'chat must be "auto", True or False'),
    ],
)
def test_bad_chat_choices_are_named(
    prompt: Any, chat: Any, tok: str, match: str, smollm_tokenizer: Any, plain_tokenizer: Any
) -> None:
    model = tiny_llama()
    prof = _profiler(model, plain_tokenizer if tok == "plain" else smollm_tokenizer)
    with pytest.raises(InvalidInputError, match=match):
        prof.generate(prompt, chat=chat)
    assert prof.runs == []


def test_chat_true_with_a_template_matches_messages(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    prof = _profiler(model, smollm_tokenizer, level="token")
    a = prof.generate(PROMPT, chat=True, max_new_tokens=4, do_sample=False, pad_token_id=0)
    b = prof.generate(
        [{"role": "user", "content": PROMPT}], max_new_tokens=4, do_sample=False, pad_token_id=0
    )
    assert a.wait(60)
    assert b.wait(60)
    assert [t["token_id"] for t in a.tokens()] == [t["token_id"] for t in b.tokens()]
    assert a.prompt_tokens == b.prompt_tokens == _templated(smollm_tokenizer, PROMPT).shape[1]


def test_profile_passes_chat_and_warmup_through(smollm_tokenizer: Any) -> None:
    from llm_energy_widget.profiler import profile

    model = tiny_llama()
    kw = {"power": ConstantSource(10.0), "baseline_s": 0.0, "store": False, "level": "token"}
    raw = profile(model, smollm_tokenizer, PROMPT, chat=False, warmup=False, max_new_tokens=2, **kw)
    assert raw.settings["chat_template"] is False
    assert raw.settings["warmup"]["why_not"] == "warmup=False"
    chat = profile(model, smollm_tokenizer, PROMPT, max_new_tokens=2, **kw)
    assert chat.settings["chat_template"] is True
    assert "already warm" in chat.settings["warmup"]["why_not"]  # the measured run warmed it


# -- 2. a run ended by the end token after <= 2 tokens --------------------------------------------
def _ended_by_eos(model: Any, tok: Any, ids: torch.Tensor, k: int, **gen: Any) -> Any:
    """A run whose (k+1)-th greedy token is made the end token: it ends after k+1 tokens."""
    plain = _plain(model, ids, 4, min_new_tokens=4, pad_token_id=0)
    assert plain[k] not in plain[:k], plain  # the end token appears first at k
    run = _profiler(model, tok, level="token").generate(
        PROMPT, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=plain[k], **gen
    )
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    assert run.n_tokens == k + 1
    return run


def test_raw_prompt_ended_by_the_end_token_names_the_chat_template(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    run = _ended_by_eos(model, smollm_tokenizer, _raw(smollm_tokenizer, PROMPT), 0, chat=False)
    short = [w for w in run.warnings if w.startswith("the model ended after 1 token ")]
    assert len(short) == 1, run.warnings
    assert "chat model given a raw prompt (chat=False)" in short[0]
    assert "Pass chat=True (--chat in the CLI) or chat messages" in short[0]
    for where, shown in _views_warnings(run).items():
        assert short[0] in shown, where


def test_two_tokens_then_the_end_token_is_flagged_three_are_not(smollm_tokenizer: Any) -> None:
    ids = _raw(smollm_tokenizer, PROMPT)
    two = _ended_by_eos(tiny_llama(), smollm_tokenizer, ids, 1, chat=False)
    assert any(w.startswith("the model ended after 2 tokens ") for w in two.warnings)
    three = _ended_by_eos(tiny_llama(), smollm_tokenizer, ids, 2, chat=False)
    assert not [w for w in three.warnings if "the model ended" in w]


def test_a_run_cut_by_max_new_tokens_is_not_flagged(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    first = _plain(model, _raw(smollm_tokenizer, PROMPT), 1, pad_token_id=0)[0]
    assert first not in {model.generation_config.eos_token_id, smollm_tokenizer.eos_token_id}
    run = _profiler(model, smollm_tokenizer, level="token").generate(
        PROMPT, chat=False, max_new_tokens=1, do_sample=False, pad_token_id=0
    )
    assert run.wait(60)
    assert run.n_tokens == 1
    assert not [w for w in run.warnings if "the model ended" in w]


def test_short_run_with_the_template_applied_or_none_to_apply(
    smollm_tokenizer: Any, plain_tokenizer: Any
) -> None:
    chat = _ended_by_eos(tiny_llama(), smollm_tokenizer, _templated(smollm_tokenizer, PROMPT), 0)
    assert any("although its chat template was applied" in w for w in chat.warnings)
    base = _ended_by_eos(tiny_llama(), plain_tokenizer, _raw(smollm_tokenizer, PROMPT), 0)
    assert any("read the prompt as a finished text" in w for w in base.warnings), base.warnings


# -- 4. the warm-up ----------------------------------------------------------------------------
class OpenTimedSource(ConstantSource):
    """Records when the sampler opened it: every forward before that is outside the run."""

    def __init__(self) -> None:
        super().__init__(10.0)
        self.opened_at: list[float] = []

    def open(self, interval_ms: float) -> None:
        self.opened_at.append(time.monotonic())


def _count_forwards(model: Any) -> list[float]:
    calls: list[float] = []
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return original(*args, **kwargs)

    model.forward = forward
    return calls


def test_first_run_is_preceded_by_an_unmeasured_warm_up(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    ids = _raw(smollm_tokenizer, PROMPT)
    expected = _plain(model, ids, 6, min_new_tokens=6, pad_token_id=0)
    calls = _count_forwards(model)
    src = OpenTimedSource()
    prof = _profiler(model, smollm_tokenizer, power=src, level="component")
    run = prof.generate(
        PROMPT, chat=False, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
    )
    assert run.wait(60), run.end_reason
    assert run.status == "completed", run.end_reason
    (opened,) = src.opened_at
    # the warm-up: one prefill and 3 decode forwards, all before the sampler opened
    assert len([t for t in calls if t < opened]) == 4
    assert len([t for t in calls if t >= opened]) == 6  # the run's own forwards, one per token
    assert [t["token_id"] for t in run.tokens()] == expected
    assert run.layers.shape[0] == 6  # no layer row of the warm-up
    warm = run.settings["warmup"]
    assert warm["tokens"] == 4
    assert warm["counted"] is False
    assert warm["duration_ms"] > 0
    assert warm["prompt_tokens"] == min(ids.shape[1], 16)
    line = f"warm-up of 4 tokens ({warm['duration_ms']:.0f} ms) before this run, not counted"
    for where, shown in _views_warnings(run).items():
        assert any(w.startswith(line) for w in shown), (where, shown)

    calls.clear()
    again = prof.generate(PROMPT, chat=False, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert again.wait(60)
    assert again.status == "completed"
    assert len([t for t in calls if t < src.opened_at[1]]) == 0  # warm already
    assert again.settings["warmup"]["tokens"] == 0
    assert "already warm on this thread" in again.settings["warmup"]["why_not"]
    assert not [w for w in again.warnings if w.startswith("warm-up")]


def test_warmup_false_runs_none(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    calls = _count_forwards(model)
    src = OpenTimedSource()
    run = _profiler(model, smollm_tokenizer, power=src, warmup=False).generate(
        PROMPT, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0
    )
    assert run.wait(60)
    assert run.status == "completed"
    assert [t for t in calls if t < src.opened_at[0]] == []
    assert run.settings["warmup"] == {"tokens": 0, "why_not": "warmup=False"}
    with pytest.raises(InvalidInputError, match="warmup must be True or False"):
        EnergyProfiler(model, smollm_tokenizer, warmup="yes")  # type: ignore[arg-type]


def test_warm_up_leaves_a_seeded_sampled_run_unchanged(smollm_tokenizer: Any) -> None:
    """The warm-up samples too; the random state is restored, so seeds still reproduce."""
    cold, never = tiny_llama(), tiny_llama()  # same weights (tiny_llama seeds its init)
    runs = []
    for model, warmup in ((cold, True), (never, False)):
        torch.manual_seed(1234)
        run = _profiler(model, smollm_tokenizer, level="token", warmup=warmup).generate(
            PROMPT, max_new_tokens=8, min_new_tokens=8, do_sample=True, top_k=0, pad_token_id=0
        )
        assert run.wait(60)
        assert run.status == "completed"
        runs.append([t["token_id"] for t in run.tokens()])
    assert runs[0] == runs[1]


def _hook_count(model: Any) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + ("forward" in m.__dict__)
        for m in model.modules()
    )


def test_a_failure_in_the_warm_up_fails_the_run_cleanly(smollm_tokenizer: Any) -> None:
    model = tiny_llama()

    def bomb(module: Any, args: Any, out: Any) -> None:
        raise RuntimeError("injected warm-up failure")

    handle = model.model.layers[0].mlp.register_forward_hook(bomb)
    src = OpenTimedSource()
    prof = _profiler(model, smollm_tokenizer, power=src, level="component")
    try:
        run = prof.generate(PROMPT, max_new_tokens=4, pad_token_id=0)
        assert run.wait(60)
    finally:
        handle.remove()
    assert run.status == "failed"
    assert "injected warm-up failure (in the warm-up, before measuring)" in (run.end_reason or "")
    assert _hook_count(model) == 0  # the profiler's wrappers are gone too
    assert src.opened_at == []
    assert run.phases() == []
    assert run.power_records() == []
    after = prof.generate(PROMPT, max_new_tokens=3, pad_token_id=0)  # nothing left held
    assert after.wait(60), after.end_reason
    assert after.status == "completed", after.end_reason
    assert after.settings["warmup"]["tokens"] == 4  # the failed warm-up warmed nothing


def test_cancel_during_the_warm_up_measures_nothing(smollm_tokenizer: Any) -> None:
    model = tiny_llama()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def cancel_on_first_call(module: Any, args: Any, out: Any) -> None:
        if not started.is_set():
            started.set()
            holder["run"].cancel()

    handle = model.model.layers[0].register_forward_hook(cancel_on_first_call)
    src = OpenTimedSource()
    prof = _profiler(model, smollm_tokenizer, power=src, level="layer")
    ready = threading.Event()
    # the hook needs the run: hand it over before the worker reaches the first forward
    original = prof._warm_up

    def warm_up(*a: Any, **kw: Any) -> None:
        ready.wait(10)
        original(*a, **kw)

    prof._warm_up = warm_up  # type: ignore[method-assign]
    try:
        holder["run"] = run = prof.generate(PROMPT, max_new_tokens=8, pad_token_id=0)
        ready.set()
        assert run.wait(60)
    finally:
        handle.remove()
    assert run.status == "cancelled"
    assert run.n_tokens == 0
    assert src.opened_at == []
    assert run.phases() == []
    assert _hook_count(model) == 0


# -- the CLI --------------------------------------------------------------------------------------
def _cli(monkeypatch: pytest.MonkeyPatch, model: Any, tok: Any, *flags: str) -> tuple[Any, str]:
    monkeypatch.setattr(profile_cmd, "_load", lambda _arg: (model, tok))
    model.config._llm_energy_name = "tiny"
    argv = ["profile", "--prompt", PROMPT, "--no-store", "--baseline-s", "0"]
    argv += ["--power", "estimate", "--max-new-tokens", "4", "--level", "token", *flags]
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    run = profile_cmd.run_profile(args, out=out)
    return run, out.getvalue()


def test_cli_chat_flags(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    smollm_tokenizer: Any,
    plain_tokenizer: Any,
) -> None:
    model = tiny_llama()
    run, _ = _cli(monkeypatch, model, smollm_tokenizer)
    assert run.settings["chat"] == "auto"
    assert run.settings["chat_template"] is True
    assert run.prompt == PROMPT
    assert run.settings["warmup"]["tokens"] == 4
    for flag in ("--no-chat", "--raw"):
        run, _ = _cli(monkeypatch, model, smollm_tokenizer, flag)
        assert run.settings["chat"] is False
        assert run.settings["chat_template"] is False
    run, _ = _cli(monkeypatch, model, smollm_tokenizer, "--chat")
    assert run.settings["chat"] is True
    assert run.settings["chat_template"] is True
    with pytest.raises(InvalidInputError, match="no chat template"):
        _cli(monkeypatch, model, plain_tokenizer, "--chat")
    with pytest.raises(InvalidInputError, match="not allowed with argument --chat"):
        _cli(monkeypatch, model, smollm_tokenizer, "--chat", "--no-chat")  # a one-line error
    run, _ = _cli(monkeypatch, tiny_llama(), smollm_tokenizer, "--no-warmup")
    assert run.settings["warmup"] == {"tokens": 0, "why_not": "warmup=False"}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--chat always apply the tokenizer's chat template" in help_text
    assert "default: apply it when the tokenizer has one" in help_text


def test_cli_prints_the_short_run_warning(
    monkeypatch: pytest.MonkeyPatch, smollm_tokenizer: Any
) -> None:
    model = tiny_llama()
    first = _plain(model, _raw(smollm_tokenizer, PROMPT), 1, pad_token_id=0)[0]
    model.generation_config.eos_token_id = first  # the raw prompt's first token ends it
    run, printed = _cli(monkeypatch, model, smollm_tokenizer, "--no-chat")
    assert run.n_tokens == 1
    assert "warning: the model ended after 1 token with its end token" in printed
    assert "a chat model given a raw prompt (chat=False)?" in printed


# -- with the real default model --------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm() -> tuple[Any, Any]:
    import llm_energy_widget as lew

    return lew.load_default_model()


@pytest.mark.integration
def test_default_model_answers_a_plain_prompt_and_says_why_a_raw_one_is_empty(
    smollm: tuple[Any, Any],
) -> None:
    model, tok = smollm
    prof = EnergyProfiler(model, tok, power="estimate", store=False, baseline_s=0.0, level="token")
    chat = prof.generate("Why is the sky blue?", max_new_tokens=24, do_sample=False)
    raw = prof.generate("Why is the sky blue?", chat=False, max_new_tokens=24, do_sample=False)
    assert chat.wait(120)
    assert raw.wait(120)
    assert chat.status == raw.status == "completed"
    # through the template: an answer, not one end token
    assert chat.n_tokens > 10, chat.response
    assert len(chat.response.split()) > 8, chat.response
    assert chat.settings["chat_template"] is True
    assert chat.prompt == "Why is the sky blue?"
    assert not [w for w in chat.warnings if "the model ended" in w]
    # raw, as before the fix: one end token and nothing said
    assert raw.n_tokens == 1
    assert raw.response.strip() == ""
    assert raw.tokens()[0]["token_id"] in {tok.eos_token_id, model.generation_config.eos_token_id}
    short = [w for w in raw.warnings if w.startswith("the model ended after 1 token")]
    assert short
    assert "chat model given a raw prompt" in short[0]
    assert short[0] in raw.summary()["warnings"]
