"""Execute a notebook headless (`make demo`): no frontend renders it, so each run's outputs are
made in the kernel (image, text, HTML: `view.saved`) and the saved file reopens with its results
anywhere. Widget state is not stored: no output needs it, and nbclient would keep every widget
model ever opened, the bundle included (~40 KB each)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["execute_notebook"]


def execute_notebook(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: int = 600,
    kernel_name: str = "python3",
    sign: bool = True,
) -> Path:
    """Run every cell of `src` with nbclient; write it with its outputs to `dest`.

    `sign`: record the executed notebook as trusted in this user's Jupyter signature store, as
    JupyterLab does for a notebook it saves: its outputs' interactive views then render when
    it is opened here (an untrusted notebook shows their static image and tables).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(os.fspath(src), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name=kernel_name,
        resources={"metadata": {"path": os.fspath(cwd or Path(src).parent)}},
        store_widget_state=False,
    )
    client.execute()
    dest_path = Path(dest)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    if sign:
        from nbformat.sign import NotebookNotary

        NotebookNotary().sign(nb)
    nbformat.write(nb, os.fspath(dest_path))
    return dest_path
