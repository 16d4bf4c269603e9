"""Where the built frontend lies (esbuild writes it; the wheel ships it): read by the widget, the
HTML report and the saved outputs, none of which needs anywidget for it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLE_CSS", "BUNDLE_JS", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent.parent / "static"
BUNDLE_JS = STATIC_DIR / "widget.js"
BUNDLE_CSS = STATIC_DIR / "widget.css"
