"""Old import path, kept for benchmarks/widget_stream.py until it imports `support.browser`."""

from support.browser import CHROMIUM, CHROMIUM_ARGS

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]
