"""Execute a notebook headless, keeping widget state so the saved file reopens with its results."""

from __future__ import annotations

import os
from pathlib import Path


def execute_notebook(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: int = 600,
    kernel_name: str = "python3",
) -> Path:
    """Run every cell of `src` with nbclient; write it with outputs and widget state to `dest`."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(os.fspath(src), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name=kernel_name,
        resources={"metadata": {"path": os.fspath(cwd or Path(src).parent)}},
        store_widget_state=True,
    )
    client.execute()
    dest_path = Path(dest)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, os.fspath(dest_path))
    return dest_path
