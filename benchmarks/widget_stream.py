"""Widget streaming benchmark: a synthetic 2,000-token component-level run (30 layers x 9
components) played in real time through a real EnergyWidget, its traffic (custom messages and
trait values, captured from `send`/trait changes) delivered to the built bundle in headless
Chromium through a fake anywidget model.

Reports messages and bytes per token, kernel->browser latency (p50/p95; here the hop is the
Chrome DevTools protocol, not Jupyter's ZMQ + websocket), event->painted latency, browser frame
(draw) time p95, and the per-update cost near token 10 vs near the last token.

    .venv/bin/python benchmarks/widget_stream.py [--tokens 2000] [--token-ms 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import support.widget as wh  # noqa: E402
from support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from llm_energy_widget.core.recorder import Recorder  # noqa: E402
from llm_energy_widget.testing import new_synthetic_run  # noqa: E402
from llm_energy_widget.view import widget as widget_mod  # noqa: E402

TARGETS = {"latency_p95_ms": 100.0, "bytes_per_token": 2048.0, "frame_p95_ms": 16.0}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


def run_benchmark(n_tokens: int, n_layers: int, token_ms: float, rate_hz: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    encode_ms: dict[int, float] = {}
    real_encode = widget_mod.encode

    def timed_encode(batch: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = real_encode(batch, **kw)
        encode_ms[kw["seq"]] = (time.perf_counter() - t0) * 1000.0
        return out

    widget_mod.encode = timed_encode  # the flusher looks `encode` up in the module
    run = new_synthetic_run(n_layers=n_layers)
    run.settings["max_new_tokens"] = n_tokens
    Recorder(run).status("running")
    events = list(wh.events_with_full_power(n_tokens, n_layers, token_ms=token_ms))

    items: queue.Queue[Any] = queue.Queue()
    w = widget_mod.EnergyWidget(max_rate_hz=rate_hz)
    cap = wh.capture(w, wh.Capture(on_item=items.put))

    rows: list[dict[str, Any]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.set_content(wh.page_html())
        page.wait_for_function("window.lewReady === true")
        page.evaluate("window.lew.render()")
        w.attach(run)

        def produce() -> None:
            wh.play(run, events, speed=1.0)
            Recorder(run).finish("completed", "benchmark run complete")

        producer = threading.Thread(target=produce, daemon=True)
        t_start = time.time()
        producer.start()
        done = False
        while not done:
            item = items.get(timeout=60)
            kind, _t_sent, content, buffers = item
            expr, arg = wh.deliver_js(item)
            res = page.evaluate(expr, arg)
            if kind == "msg":
                n_tok = len(content.get("tokens", {}).get("text", []))
                rows.append(
                    {
                        "seq": content["seq"],
                        "tokens": n_tok,
                        "last_token": (content["tokens"]["first"] + n_tok - 1) if n_tok else None,
                        "bytes": sum(len(b) for b in buffers) + len(json.dumps(content)),
                        "event_ms": content.get("event_ms"),
                        "sent_ms": content["sent_ms"],
                        "recv_ms": res["recv"],
                        "apply_ms": res["applyMs"],
                        "encode_ms": encode_ms.get(content["seq"]),
                    }
                )
            if kind == "snapshot":
                snapshot_bytes = sum(len(b) for b in buffers) + len(json.dumps(content))
                done = True
        page.wait_for_timeout(300)
        frames = page.evaluate("window.lew.frames")
        painted_tokens = page.evaluate("document.querySelectorAll('.lew-tok').length")
        wh.ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(wh.ARTIFACTS / "widget-benchmark.png"), full_page=True)
        browser.close()
    wall_s = time.time() - t_start
    widget_mod.encode = real_encode
    del cap

    # the first frame that drew each seq
    frame_seq = np.array([f["seq"] for f in frames])
    frame_at = np.array([f["frameAt"] for f in frames], dtype=np.float64)
    for r in rows:
        k = int(np.searchsorted(frame_seq, r["seq"], side="left"))
        r["painted_ms"] = float(frame_at[k]) if k < len(frames) else float("nan")
        r["draw_ms"] = float(frames[k]["drawMs"]) if k < len(frames) else float("nan")

    transport = [r["recv_ms"] - r["sent_ms"] for r in rows]
    to_paint = [r["painted_ms"] - r["event_ms"] for r in rows if r["event_ms"]]
    sent_to_paint = [r["painted_ms"] - r["sent_ms"] for r in rows]
    draws = [f["drawMs"] for f in frames]
    intervals = np.diff([r["sent_ms"] for r in rows]) / 1000.0

    def window(pred: Any) -> dict[str, float]:
        sel = [r for r in rows if r["last_token"] is not None and pred(r["last_token"])][:10]
        return {
            "updates": len(sel),
            "bytes_per_update": float(np.mean([r["bytes"] for r in sel])),
            "tokens_per_update": float(np.mean([r["tokens"] for r in sel])),
            "encode_ms": float(np.median([r["encode_ms"] for r in sel])),
            "apply_ms": float(np.median([r["apply_ms"] for r in sel])),
            "draw_ms": float(np.median([r["draw_ms"] for r in sel])),
        }

    total_bytes = sum(r["bytes"] for r in rows)
    return {
        "tokens": n_tokens,
        "layers": n_layers,
        "components": len(run.component_names),
        "token_ms": token_ms,
        "decode_tokens_per_s": run.summary().get("decode_tokens_per_s"),
        "wall_s": wall_s,
        "messages": len(rows),
        "messages_per_token": len(rows) / n_tokens,
        "updates_per_s_max": float(1.0 / intervals.min()) if intervals.size else None,
        "bytes_total": total_bytes,
        "bytes_per_token": total_bytes / n_tokens,
        "snapshot_bytes": snapshot_bytes,
        "latency_transport_ms": {"p50": pct(transport, 50), "p95": pct(transport, 95)},
        "latency_sent_to_painted_ms": {
            "p50": pct(sent_to_paint, 50),
            "p95": pct(sent_to_paint, 95),
        },
        "latency_event_to_painted_ms": {"p50": pct(to_paint, 50), "p95": pct(to_paint, 95)},
        "frames": len(frames),
        "frame_draw_ms": {"p50": pct(draws, 50), "p95": pct(draws, 95), "max": max(draws)},
        "apply_ms": {
            "p50": pct([r["apply_ms"] for r in rows], 50),
            "p95": pct([r["apply_ms"] for r in rows], 95),
        },
        "at_token_10": window(lambda t: t >= 10),
        "at_last_tokens": window(lambda t: t >= n_tokens - 30),
        "tokens_in_page": painted_tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--token-ms", type=float, default=20.0, help="synthetic decode step (ms)")
    ap.add_argument("--rate", type=float, default=20.0, help="max updates per second")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    res = run_benchmark(args.tokens, args.layers, args.token_ms, args.rate)
    print(json.dumps(res, indent=2))
    checks = {
        "event->painted p95 <= 100 ms": res["latency_event_to_painted_ms"]["p95"] <= 100.0,
        "bytes/token <= 2 KB": res["bytes_per_token"] <= TARGETS["bytes_per_token"],
        "frame draw p95 <= 16 ms": res["frame_draw_ms"]["p95"] <= TARGETS["frame_p95_ms"],
        "<= ~20 updates/s": (res["updates_per_s_max"] or 0) <= args.rate * 1.1,
        "all tokens shown": res["tokens_in_page"] == args.tokens,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
