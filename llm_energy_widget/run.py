"""The public `Run`: the core's run data plus the shortcuts a notebook user reaches for.

`run.show()`-style display, exports and figures live in consumers (`view/`, `exports`,
`analysis/`); this subclass sits above them and imports each on first use (they pull in anywidget,
plotly or pandas), so the core never depends on a consumer and `import llm_energy_widget` stays
fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.run import RunData

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Run"]


class Run(RunData):
    """Everything measured in one profiled generation, live or loaded, with its views."""

    # -- tables (pandas) --------------------------------------------------------------------------
    def tokens_df(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.tokens())

    def phases_df(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.phases())

    def power_df(self) -> pd.DataFrame:
        """One row per reading; per-device rails (`gpu1_w`, `gpu1_energy_j`, ...) as columns."""
        import pandas as pd

        rows = []
        for rec in self.power_records():
            row: dict[str, Any] = dict(rec)
            row.update(row.pop("rails", None) or {})
            rows.append(row)
        return pd.DataFrame(rows)

    def layers_df(self) -> pd.DataFrame:
        """Long table: one row per token x layer x component, one column per metric."""
        import pandas as pd

        arr = self.layers
        t, nl, nc, _ = arr.shape
        idx = pd.MultiIndex.from_product(
            [range(t), self.layer_names, self.component_names],
            names=["token", "layer", "component"],
        )
        flat = arr.reshape(t * nl * nc, len(self.metric_names))  # -1 fails on zero tokens
        return pd.DataFrame(flat, index=idx, columns=self.metric_names).reset_index()

    # -- exports and views ------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends; True if it did within `timeout` seconds.

        In a notebook cell the kernel keeps handling widget messages meanwhile, so the widget's
        Stop button works (`kernel_wait`). An interrupt (Ctrl-C, or the notebook's interrupt
        button) while waiting cancels the run, waits for it to wind down (hooks removed, sampler
        stopped, data kept), then re-raises.
        """
        from .notebook.kernel_wait import wait_processing_kernel_events

        try:
            return wait_processing_kernel_events(self._done, timeout)
        except KeyboardInterrupt:
            self.cancel()
            self._done.wait(30)
            raise

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write `to_dict()` as JSON (the CLI's --json shape)."""
        from .exports import to_json

        return to_json(self, path)

    def to_csv(self, directory: str | os.PathLike[str]) -> list[Path]:
        """One CSV file per table (tokens, phases, power, layers, summary)."""
        from .exports import to_csv

        return to_csv(self, directory)

    def to_parquet(self, directory: str | os.PathLike[str]) -> list[Path]:
        """One Parquet file per table (needs pyarrow)."""
        from .exports import to_parquet

        return to_parquet(self, directory)

    def to_chrome_trace(self, path: str | os.PathLike[str]) -> Path:
        """Phases, tokens and layer components on a timeline, power as counters (Perfetto)."""
        from .exports import to_chrome_trace

        return to_chrome_trace(self, path)

    def to_html(self, path: str | os.PathLike[str]) -> Path:
        """A self-contained HTML report that opens offline."""
        from .view.report import to_html

        return Path(to_html(self, path))

    @property
    def figures(self) -> Any:
        """Plotly figures: power timeline, token waterfall, heatmap, treemap, sankey."""
        from .analysis.figures import RunFigures

        return RunFigures(self)

    def widget(self) -> Any:
        """The live/finished notebook widget for this run."""
        from .view.widget import widget_for

        return widget_for(self)

    def _ipython_display_(self) -> None:
        """A live view, replaced by the run's image, text and HTML when it ends (no widget).

        Nothing when `live()` already displayed it in the running cell (`w = lew.live(...); w`).
        """
        if self._displayed_in_cell:
            return
        from .view.widget import display_run

        display_run(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        from .view.widget import run_mimebundle

        return run_mimebundle(self)
