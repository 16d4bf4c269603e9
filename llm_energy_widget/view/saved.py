"""What a finished run leaves in a notebook output: a bundle every renderer can show, no widget.

An output that holds the widget-view mime type shows "Error displaying widget: model not found"
in JupyterLab once its kernel is gone unless widget state was saved, whatever fallback sits beside
it (jupyterlab#15361, ipywidgets#3773); VS Code never saves widget state. So when a run ends, each
of its outputs is replaced (`update_display`) by this bundle:

- `image/png`: the power curve, the layer x component heatmap and the headline figures with their
  kinds, drawn in the kernel (`view.png`), so a notebook executed headless carries it too;
- `text/plain`: the summary, every figure with its kind;
- `text/html`: the same image (a data URI), the summary, phase and token tables, the response, and
  an interactive view: a classic `<script>` that renders the widget's own bundle (inlined,
  deflate-compressed) from the run's data embedded beside it, with no kernel. It runs where a
  frontend executes scripts in trusted HTML (JupyterLab for a notebook it trusts, nbconvert's
  HTML, VS Code); sanitizers (GitHub, an untrusted notebook in JupyterLab) strip the scripts and
  keep the static part, which the script hides only once the interactive view has rendered.

The embedded data is the run's saved snapshot (`widget.snapshot_of`): every token's text, times
and energy exact, each token's layer times for up to `widget.SAVED_TIME_ROWS` tokens and the exact
means over the decode tokens; a token's own activation statistics are not in it (they stay in
`run.layers`, the run store and `run.to_html()`). Sizes: `benchmarks/notebook_sizes.py`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import struct
import threading
import weakref
import zlib
from typing import TYPE_CHECKING, Any

from .predicted import predicted_html, predicted_of
from .static import (
    SUMMARY_HEADERS,
    below_resolution_line,
    phase_rows,
    render_text,
    sampling_lines,
    source_line,
    summary_rows,
    summary_table_rows,
    summary_warnings,
    token_note,
)
from .text import esc as _esc
from .text import fmt_energy, kind_text, response_texts

if TYPE_CHECKING:
    from ..run import Run

__all__ = [
    "TOKEN_TABLE_ROWS",
    "bundle_payload",
    "pack_snapshot",
    "saved_bundle",
    "saved_html",
]

TOKEN_TABLE_ROWS = 32
"""Tokens listed in the static token table (the response text is always complete)."""

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

BOOT_JS = """(function () {
  var me = document.currentScript;
  var box = me && me.parentElement ? me.parentElement.closest(".lew-saved") : null;
  if (!box || box.getAttribute("data-lew-booted")) return;
  box.setAttribute("data-lew-booted", "1");
  if (typeof DecompressionStream === "undefined") return;
  function inflate(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    var stream = new Blob([a]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }
  var key = "__lewSaved_%(hash)s";
  var lib = window[key] || (window[key] = inflate("%(bundle)s").then(function (buf) {
    var b = JSON.parse(new TextDecoder().decode(buf));
    if (!document.getElementById(key)) {
      var st = document.createElement("style");
      st.id = key;
      st.textContent = b.css;
      document.head.appendChild(st);
    }
    var url = URL.createObjectURL(new Blob([b.js], { type: "text/javascript" }));
    return import(url);
  }));
  var data = box.querySelector("script.lew-saved-data");
  Promise.all([lib, inflate(data.textContent.trim())]).then(function (r) {
    var mod = r[0], buf = r[1];
    var n = new DataView(buf).getUint32(0, true);
    var d = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    var at = 4 + n, buffers = [];
    d.sizes.forEach(function (k) { buffers.push(new DataView(buf, at, k)); at += k; });
    var el = box.querySelector(".lew-saved-live");
    var model = mod.staticModel({ meta: d.meta, snapshot: { header: d.header, buffers: buffers } });
    mod.default.render({ model: model, el: el });
    el.hidden = false;
    box.querySelector(".lew-saved-static").hidden = true;
    box.setAttribute("data-lew-rendered", "1");
  }).catch(function (err) {
    box.setAttribute("data-lew-rendered", "error");
    console.warn("llm-energy-widget: interactive view unavailable, static view kept:", err);
  });
})();"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=4)
def _bundle_for(js_mtime_ns: int, css_mtime_ns: int) -> tuple[str, str] | None:
    from .bundle import BUNDLE_CSS, BUNDLE_JS

    if not BUNDLE_JS.is_file():
        return None
    js = BUNDLE_JS.read_text(encoding="utf-8")
    css = BUNDLE_CSS.read_text(encoding="utf-8") if BUNDLE_CSS.is_file() else ""
    raw = json.dumps({"js": js, "css": css}, ensure_ascii=True).encode("ascii")
    return _b64(zlib.compress(raw, 9)), hashlib.sha256(raw).hexdigest()[:12]


def bundle_payload() -> tuple[str, str] | None:
    """(base64 of the deflated {js, css} bundle, its content hash), or None when not built."""
    from .bundle import BUNDLE_CSS, BUNDLE_JS

    try:
        js_m = BUNDLE_JS.stat().st_mtime_ns
    except OSError:
        return None
    try:
        css_m = BUNDLE_CSS.stat().st_mtime_ns
    except OSError:
        css_m = 0
    return _bundle_for(js_m, css_m)


def pack_snapshot(run: Run, snap: dict[str, Any]) -> str:
    """A snapshot and the run's meta as one deflated, base64 blob: a little-endian uint32 length,
    the JSON {meta, header, sizes}, then the buffers (`UNPACK_JS` reads it back)."""
    from .wire import run_meta

    head = {
        "meta": run_meta(run, snap["header"]["run_key"]),
        "header": snap["header"],
        "sizes": [len(b) for b in snap["buffers"]],
    }
    text = json.dumps(head, ensure_ascii=False, allow_nan=False).encode("utf-8")
    blob = struct.pack("<I", len(text)) + text + b"".join(bytes(b) for b in snap["buffers"])
    return _b64(zlib.compress(blob, 9))


def _data_payload(run: Run) -> str:
    from .wire import saved_snapshot

    return pack_snapshot(run, saved_snapshot(run))


def _table(headers: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _token_rows(run: Run) -> list[list[str]]:
    rows = []
    toks = run.tokens()
    sampled = any(t.get("instrumented") is False for t in toks)
    for t in toks[:TOKEN_TABLE_ROWS]:
        dur = t["duration_ms"]
        rows.append(
            [
                str(t["index"]),
                json.dumps(t["text"], ensure_ascii=False),
                str(t["phase"]),
                "–" if dur is None else f"{dur:.1f} ms",
                fmt_energy(t["energy_j"]),
                token_note(dict(t), sampled),
            ]
        )
    return rows


def saved_html(run: Run, png_b64: str, interactive: bool = True) -> str:
    """The `text/html` of a finished run's output: static figures, then the interactive view.

    Only what sanitizers keep: tables, an <img> with a data URI, <details>, <pre>, class names;
    no <svg>, <style> or event attributes. Every piece of run text is escaped.
    """
    title = render_text(run).splitlines()[0]
    alt = "; ".join(f"{n}: {v} ({k})" for n, v, k in summary_rows(run)[:4])
    static = [
        f"<p><strong>{_esc(title)}</strong><br>{_esc(source_line(run))}<br>"
        f"prompt: {_esc(run.prompt[:300])}{'…' if len(run.prompt) > 300 else ''}</p>",
        f'<p><img class="lew-saved-image" src="data:image/png;base64,{png_b64}" '
        f'alt="{_esc("power chart and layer × component heatmap. " + alt)}" '
        'style="max-width:100%;height:auto"></p>',
    ]
    static += [f"<p>⚠ {_esc(w)}</p>" for w in summary_warnings(run)]
    if (below := below_resolution_line(run)) is not None:
        static.append(f"<p>{_esc(below)}</p>")
    static += [f"<p>{_esc(x)}</p>" for x in sampling_lines(run)]
    static.append(_table(SUMMARY_HEADERS, summary_table_rows(run), "lew-saved-summary"))
    static.append(predicted_html(predicted_of(run)))
    if run.phases():
        static.append(
            _table(
                ["phase", "duration", "energy", "avg power", "kind"],
                phase_rows(run),
                "lew-saved-phases",
            )
        )
    if run.error_message:
        static.append(f"<p>Error: {_esc(run.error_message)}</p>")
    for label, text in response_texts(run):
        if run.n_sequences > 1:
            static.append(f"<p><strong>{_esc(label)}</strong></p>")
        static.append(f'<pre class="lew-saved-response">{_esc(text)}</pre>')
    if run.n_tokens:
        shown = min(run.n_tokens, TOKEN_TABLE_ROWS)
        more = f" (first {shown})" if shown < run.n_tokens else ""
        kind = kind_text(run.labels()["tokens"], run.power_info.get("scope"))
        static.append(
            f"<details><summary>tokens: {run.n_tokens}{more}</summary>"
            + _table(
                ["#", "text", "phase", "duration", f"energy ({kind})", "note"],
                _token_rows(run),
                "lew-saved-tokens",
            )
            + "</details>"
        )
    parts = [
        f'<div class="lew-saved tex2jax_ignore" data-lew-run="{_esc(run.run_id)}">',
        '<div class="lew-saved-live" hidden></div>',
        '<div class="lew-saved-static">',
        *static,
        "</div>",
    ]
    payload = bundle_payload() if interactive else None
    if payload is not None:
        bundle_b64, digest = payload
        parts += [
            f'<script type="application/octet-stream" class="lew-saved-data">{_data_payload(run)}'
            "</script>",
            f"<script>{BOOT_JS % {'hash': digest, 'bundle': bundle_b64}}</script>",
        ]
    parts.append("</div>")
    return "".join(parts)


_CACHE: weakref.WeakKeyDictionary[Run, tuple[str, tuple[dict[str, str], dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()


def _fingerprint(run: Run) -> str:
    """What the bundle depends on that can change after the run ended (a reprice, say)."""
    summary = json.dumps(run.summary(), sort_keys=True, default=str)
    return hashlib.blake2b(
        f"{run.status}|{run.n_tokens}|{summary}".encode(), digest_size=8
    ).hexdigest()


def saved_bundle(run: Run) -> tuple[dict[str, str], dict[str, Any]]:
    """(data, metadata) of a finished run's output; made once per run (the image takes ~0.3 s)."""
    from .png import render_png

    key = _fingerprint(run)
    with _CACHE_LOCK:
        hit = _CACHE.get(run)
    if hit is not None and hit[0] == key:
        return hit[1]
    png_b64 = _b64(render_png(run))
    data = {
        "image/png": png_b64,
        "text/plain": render_text(run),
        "text/html": saved_html(run, png_b64),
    }
    out: tuple[dict[str, str], dict[str, Any]] = (data, {})
    with _CACHE_LOCK:
        _CACHE[run] = (key, out)
    return out
