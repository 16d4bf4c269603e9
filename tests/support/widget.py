"""Shared by the widget tests and benchmarks/widget_stream.py: synthetic runs played in real time,
the kernel->browser traffic captured from a real EnergyWidget, a decoder, and a browser page with
the built bundle and a fake anywidget model."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_energy_widget.core.recorder import Recorder
from llm_energy_widget.run import Run
from llm_energy_widget.testing import apply_event, new_synthetic_run, synthetic_events
from llm_energy_widget.view.widget import BUNDLE_JS, EnergyWidget
from llm_energy_widget.view.wire import dequantize_rows

XSS_TEXTS = [
    " Hello",
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    " &amp;",
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def events_with_full_power(n_tokens: int, n_layers: int, **kw: Any) -> Iterator[tuple[str, Any]]:
    """`synthetic_events`, plus power readings until after the last token, so every token's
    energy is covered by E(t) (the generator stops its power a little early on long runs)."""
    last_power: dict[str, Any] | None = None
    last_token_end = 0.0
    interval = float(kw.get("interval_ms", 100.0))
    for name, args in synthetic_events(n_tokens=n_tokens, n_layers=n_layers, **kw):
        if name == "power":
            last_power = args[0]
        if name == "token":
            last_token_end = float(args[4])
        yield name, args
    assert last_power is not None
    t, e, p = last_power["t_ms"], last_power["energy_j"], last_power["total_w"]
    while t < last_token_end + interval:
        t += interval
        e += p * interval / 1000.0
        yield "power", ({**last_power, "t_ms": t, "energy_j": e}, "decode")


def full_run(
    n_tokens: int = 24,
    n_layers: int = 4,
    texts: list[str] | None = None,
    tail_ms: float | None = None,
    **kw: Any,
) -> Run:
    """A finished synthetic run; `tail_ms`: a `tail` phase after the last token (wrap-up)."""
    run = new_synthetic_run(n_layers=n_layers, **kw)
    Recorder(run).status("running")
    last_end = 0.0
    for name, args in events_with_full_power(n_tokens, n_layers, texts=texts, **kw):
        apply_event(run, name, args)
        if name == "token":
            last_end = float(args[4])
    if tail_ms is not None:
        Recorder(run).phase_start("tail", last_end)
        Recorder(run).phase_end("tail", last_end + tail_ms)
    Recorder(run).finish("completed", "synthetic run complete")
    return run


@dataclass
class Capture:
    """What the kernel side sent: custom messages (with buffers) and trait values, in order."""

    items: list[tuple[str, float, Any, list[bytes]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_item: Callable[[tuple[str, float, Any, list[bytes]]], None] | None = None

    def add(self, kind: str, content: Any, buffers: list[bytes]) -> None:
        item = (kind, time.time(), content, [bytes(b) for b in buffers])
        with self.lock:
            self.items.append(item)
        if self.on_item is not None:
            self.on_item(item)

    @property
    def messages(self) -> list[tuple[float, dict[str, Any], list[bytes]]]:
        return [(t, c, b) for k, t, c, b in self.items if k == "msg"]


def capture(widget: EnergyWidget, cap: Capture | None = None) -> Capture:
    """Intercept the widget's `send` and synced traits (what ipywidgets puts on the wire)."""
    cap = cap or Capture()

    def send(content: Any, buffers: Any = None) -> None:
        cap.add("msg", content, list(buffers or []))

    widget.send = send

    def on_trait(change: dict[str, Any]) -> None:
        value = change["new"]
        if change["name"] == "snapshot" and value:
            cap.add("snapshot", value["header"], list(value["buffers"]))
        else:
            cap.add(change["name"], value, [])

    widget.observe(on_trait, names=["meta", "snapshot"])
    return cap


def play(run: Run, events: list[tuple[str, Any]], speed: float = 1.0) -> None:
    """Apply producer events at their own pace (synthetic ms / speed), as the profiler would."""
    t0 = time.monotonic()
    for name, args in events:
        t_ms = _event_time_ms(name, args)
        if t_ms is not None:
            delay = t0 + t_ms / 1000.0 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        apply_event(run, name, args)


def _event_time_ms(name: str, args: Any) -> float | None:
    if name == "power":
        return float(args[0]["t_ms"])
    if name == "token":
        return float(args[4])
    if name in ("phase_start", "phase_end"):
        return float(args[1])
    return None


# -- a Python decoder of the wire format (mirrors js/codec.ts) -------------------------------------

DTYPES = {
    "power": np.float32,
    "tok_time": np.float32,
    "tok_id": np.int32,
    "te_idx": np.uint32,
    "te_j": np.float32,
    "layer_idx": np.uint32,
    "layer_range": np.float32,
    "layer_q": np.uint8,
    "layer_ms": np.float32,
    "lt_idx": np.uint32,
    "lt_range": np.float32,
    "lt_q": np.uint8,
    "lt_ms": np.float32,
    "lm": np.float32,
}


def decode(header: dict[str, Any], buffers: list[bytes]) -> dict[str, np.ndarray]:
    out = {
        name: np.frombuffer(buf, dtype=DTYPES[name])
        for name, buf in zip(header["buffers"], buffers, strict=True)
    }
    # indices in a row come as their first one (header "first"), not as a buffer
    if "te_j" in out and "te_idx" not in out:
        first = header["token_energy"]["first"]
        out["te_idx"] = np.arange(first, first + out["te_j"].size, dtype=np.uint32)
    if "layer_q" in out and "layer_idx" not in out:
        first, n_m = header["layers"]["first"], header["layers"]["shape"][2]
        out["layer_idx"] = np.arange(first, first + out["layer_range"].size // (2 * n_m))
    if "layer_q" in out:
        n_l, n_c, n_m = header["layers"]["shape"]
        n = out["layer_idx"].size
        out["layer_q"] = out["layer_q"].reshape(n, n_l, n_c, n_m)
        out["layer_range"] = out["layer_range"].reshape(n, n_m, 2)
        out["layers"] = dequantize_rows(out["layer_q"], out["layer_range"])
    if "lt_q" in out:  # a saved snapshot's time-only rows
        if "lt_idx" not in out:
            first = header["layer_time"]["first"]
            out["lt_idx"] = np.arange(first, first + out["lt_ms"].size, dtype=np.uint32)
        n_l, n_c = header["layer_time"]["shape"]
        n = out["lt_idx"].size
        out["lt_q"] = out["lt_q"].reshape(n, n_l, n_c, 1)
        out["lt_range"] = out["lt_range"].reshape(n, 1, 2)
        out["layer_time"] = dequantize_rows(out["lt_q"], out["lt_range"])[..., 0]
    if "power" in out:
        out["power"] = out["power"].reshape(-1, 7)
    return out


# -- the browser page: the built bundle + a fake anywidget model -----------------------------------

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>%CSS%</style></head>
<body style="margin:0;width:1100px"><div id="w"></div>
<script type="module">
const listeners = {};
const state = { meta: {}, snapshot: {} };
const sent = [];
const model = {
  get: (k) => state[k],
  on: (e, cb) => (listeners[e] = listeners[e] || []).push(cb),
  off: (e, cb) => { listeners[e] = (listeners[e] || []).filter((f) => f !== cb); },
  send: (content) => sent.push(content),
};
const b64 = (s) => { const bin = atob(s); const u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i); return new DataView(u.buffer); };
const frames = [];
const el = document.getElementById("w");
el.addEventListener("lew-frame", (ev) => frames.push(ev.detail));
const mod = await import("data:text/javascript;base64,%BUNDLE%");
window.lew = {
  model, sent, frames, state, mod,
  set(k, v) { state[k] = v; (listeners["change:" + k] || []).forEach((cb) => cb()); },
  setSnapshot(h, bufs) { this.set("snapshot", { header: h, buffers: bufs.map(b64) }); },
  msg(h, bufs) {
    const recv = Date.now();
    const t0 = performance.now();
    (listeners["msg:custom"] || []).forEach((cb) => cb(h, bufs.map(b64)));
    return { recv, applyMs: performance.now() - t0 };
  },
  render() { mod.default.initialize({ model }); this.cleanup = mod.default.render({ model, el }); },
};
window.lewReady = true;
</script></body></html>"""


def page_html() -> str:
    css = (BUNDLE_JS.parent / "widget.css").read_text(encoding="utf-8")
    bundle = base64.b64encode(BUNDLE_JS.read_bytes()).decode("ascii")
    return PAGE.replace("%CSS%", css).replace("%BUNDLE%", bundle)


def deliver_js(item: tuple[str, float, Any, list[bytes]]) -> tuple[str, Any]:
    """(JS expression, argument) that hands one captured item to the page's fake model."""
    kind, _t, content, buffers = item
    bufs = [base64.b64encode(b).decode("ascii") for b in buffers]
    if kind == "msg":
        return "([h, b]) => window.lew.msg(h, b)", [content, bufs]
    if kind == "snapshot":
        return "([h, b]) => window.lew.setSnapshot(h, b)", [content, bufs]
    return f"(v) => window.lew.set({json.dumps(kind)}, v)", content
