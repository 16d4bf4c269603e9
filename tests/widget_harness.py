"""Old import path (was tests/widget/widget_harness.py), kept for benchmarks/widget_stream.py and
benchmarks/notebook_sizes.py until they import `support.widget` (they put tests/ on sys.path)."""

from support.widget import (
    ARTIFACTS,
    Capture,
    capture,
    deliver_js,
    events_with_full_power,
    page_html,
    play,
)

__all__ = [
    "ARTIFACTS",
    "Capture",
    "capture",
    "deliver_js",
    "events_with_full_power",
    "page_html",
    "play",
]
