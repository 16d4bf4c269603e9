"""`run.to_html(path)`: one self-contained HTML file that opens offline, with no kernel.

The page inlines the widget's own bundle and CSS and renders the same views from the run's full
snapshot embedded beside it (a read-only model, `staticModel` in js/widget.ts); bundle and data
are deflated and base64 (`view.saved`: 285 KB -> ~215 KB for a 48-token 30 x 12 run), unpacked
with the browser's DecompressionStream. The static SVG and tables are in the page too, so it
still says everything with JavaScript off (or in a browser without DecompressionStream). Nothing
is fetched from a URL.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError
from .bundle import BUNDLE_CSS, BUNDLE_JS
from .palette import KIND_COLORS
from .saved import bundle_payload, pack_snapshot
from .static import (
    SUMMARY_HEADERS,
    below_resolution_line,
    phase_rows,
    render_svg,
    render_text,
    sampling_lines,
    summary_table_rows,
    summary_warnings,
    token_note,
)
from .text import esc as _esc
from .text import fmt_pct, fmt_sig, response_texts
from .wire import snapshot_of

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["BOOT_JS", "MAX_TOKEN_ROWS", "PAGE_CSS", "TOKEN_HEADERS", "to_html"]

MAX_TOKEN_ROWS = 5000

PAGE_CSS = """
body { margin: 0; padding: 16px 24px; font-family: system-ui, sans-serif; color-scheme: light dark;
       background: Canvas; color: CanvasText; }
h1 { font-size: 18px; margin: 0 0 4px; }
.meta { color: GrayText; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12px; }
th, td { border: 1px solid rgba(128,128,128,.35); padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; word-break: break-word; }
.note { color: KIND_ESTIMATED; }
#lew-fallback svg { max-width: 100%; height: auto; }
""".replace("KIND_ESTIMATED", KIND_COLORS["estimated"])

BOOT_JS = """
const el = document.getElementById("lew-widget");
const inflate = (b64) => {
  const s = atob(b64);
  const a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
  const stream = new Blob([a]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Response(stream).arrayBuffer();
};
const text = (id) => document.getElementById(id).textContent.trim();
try {
  const lib = JSON.parse(new TextDecoder().decode(await inflate(text("lew-bundle"))));
  const url = URL.createObjectURL(new Blob([lib.js], { type: "text/javascript" }));
  const mod = await import(url);
  const buf = await inflate(text("lew-data"));
  const n = new DataView(buf).getUint32(0, true);
  const d = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  let at = 4 + n;
  const buffers = d.sizes.map((k) => { const v = new DataView(buf, at, k); at += k; return v; });
  const model = mod.staticModel({ meta: d.meta, snapshot: { header: d.header, buffers } });
  mod.default.render({ model, el });
  document.getElementById("lew-fallback").hidden = true;
  document.documentElement.dataset.lewRendered = "1";
} catch (err) {
  el.textContent = "Interactive view unavailable: " + err + " (static figures below).";
  document.documentElement.dataset.lewRendered = "error";
}
"""


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_esc(c)}</td>' if i in numeric else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


TOKEN_HEADERS = ["#", "text", "phase", "duration ms", "energy J", "avg power W", "layers", "note"]


def _token_rows(run: Run) -> list[list[str]]:
    """One row per token; one shorter than the power source's resolution is flagged, never a
    bare energy: its energy is interpolated between readings."""
    rows = []
    toks = run.tokens()
    sampled = any(t.get("instrumented") is False for t in toks)
    for t in toks[:MAX_TOKEN_ROWS]:
        e = t["energy_j"]
        p = t["avg_power_w"]
        cov = t.get("layer_coverage")
        rows.append(
            [
                str(t["index"]),
                json.dumps(t["text"], ensure_ascii=False),
                str(t["phase"]),
                f"{t['duration_ms']:.2f}",
                fmt_sig(e, digits=6),
                fmt_sig(p, digits=4),
                fmt_pct(cov),
                token_note(dict(t), sampled),
            ]
        )
    return rows


def to_html(run: Run, path: str | os.PathLike[str]) -> Path:
    """Write the report; returns its path. Parent folders are created."""
    out = Path(path)
    if out.is_dir():
        raise InvalidInputError(f"to_html needs a file path, got the folder {out}")
    out.parent.mkdir(parents=True, exist_ok=True)

    have_bundle = BUNDLE_JS.is_file()
    if not have_bundle:
        warnings.warn(
            f"{BUNDLE_JS} is missing (run `npm run build`): the report has static figures only",
            stacklevel=2,
        )
    css = BUNDLE_CSS.read_text(encoding="utf-8") if BUNDLE_CSS.is_file() else ""
    if "</style" in css.lower():
        raise InvalidInputError("widget.css contains '</style', which would break the page")

    title = f"LLM energy report · {run.model.get('name', 'run')} · {run.run_id}"
    kind = run.labels()["tokens"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{_esc(title)}</title>",
        f"<style>{PAGE_CSS}{css}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">{_esc(render_text(run).splitlines()[0])} · created {_esc(run.created_at)}'
        f"<br>prompt: {_esc(run.prompt[:500])}</p>",
        '<div id="lew-widget"></div>',
    ]
    if not have_bundle:
        parts.append('<p class="note">Interactive view not included (bundle not built).</p>')
    parts += [
        f'<section id="lew-fallback">{render_svg(run, cell_titles=False)}</section>',
        "<section><h2>Summary</h2>",
        *(f'<p class="note">⚠ {_esc(w)}</p>' for w in summary_warnings(run)),
        *(f"<p>{_esc(x)}</p>" for x in sampling_lines(run)),
        _table(SUMMARY_HEADERS, summary_table_rows(run)),
        "<h2>Phases</h2>",
        _table(["phase", "duration", "energy", "avg power", "kind"], phase_rows(run)),
    ]
    if run.error_message:
        parts.append(f'<p class="note">Error: {_esc(run.error_message)}</p>')
    batched = run.n_sequences > 1
    parts.append("<h2>Responses</h2>" if batched else "<h2>Response</h2>")
    for label, text in response_texts(run) or [("response", "")]:
        if batched:
            parts.append(f"<h3>{_esc(label)}</h3>")
        parts.append(f"<pre>{_esc(text)}</pre>")
    parts += [
        f"<details><summary>Tokens ({run.n_tokens}; energy {_esc(kind)}, from E(t))</summary>",
        *([f"<p>{_esc(below)}</p>"] if (below := below_resolution_line(run)) else []),
        _table(TOKEN_HEADERS, _token_rows(run), numeric={0, 3, 4, 5, 6}),
        "</details></section>",
        # base64 only: nothing in these two can close their <script>
        '<script type="application/octet-stream" id="lew-data">'
        f"{pack_snapshot(run, snapshot_of(run))}</script>",
    ]
    payload = bundle_payload() if have_bundle else None
    if payload is not None:
        parts += [
            f'<script type="application/octet-stream" id="lew-bundle">{payload[0]}</script>',
            f'<script type="module">{BOOT_JS}</script>',
        ]
    parts.append("</body></html>")
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
