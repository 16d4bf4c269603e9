"""A JupyterLab server on localhost for the browser tests, and the page-side probes they use.

The server runs with a temporary root, settings, workspaces and run store, so a test run never
touches the user's JupyterLab settings (the dark-theme test changes the theme) or run store. It is
stopped by process id: its process group first, then every kernel it started (kernels run in
sessions of their own, so the server's group does not hold them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
JUPYTER = Path(sys.executable).parent / "jupyter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1
) -> Any:
    """Poll `check` until it returns a truthy value; a TimeoutError names what never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class LabServer:
    """One `jupyter lab` process and what it needs to be driven and cleaned up."""

    root: Path
    state: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    kernel_pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state / "jupyter-lab.log"

    @property
    def store_path(self) -> Path:
        return self.state / "runs.sqlite"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LLM_ENERGY_STORE=str(self.store_path),
            JUPYTERLAB_SETTINGS_DIR=str(self.state / "lab-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.state / "lab-workspaces"),
            JUPYTER_RUNTIME_DIR=str(self.state / "runtime"),
            PYTHONUNBUFFERED="1",
        )
        env.pop("JUPYTER_TOKEN", None)
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(JUPYTER),
            "lab",
            "--no-browser",
            f"--port={self.port}",
            "--ip=127.0.0.1",
            "--ServerApp.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False",
            "--allow-root",
            "--ServerApp.disable_check_xsrf=True",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/api", timeout=2) as r:
                    return bool(r.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(ready, timeout_s, f"jupyter lab on port {self.port}", interval_s=0.2)
        except TimeoutError as e:
            self.stop()
            raise TimeoutError(f"{e}\n{self.log_tail()}") from None

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no server log)"

    # -- REST --------------------------------------------------------------------------------------
    def api(self, method: str, path: str, timeout_s: float = 10.0) -> Any:
        req = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            body = r.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/kernels"))

    def _remember_kernel_pids(self) -> None:
        if self.proc is None:
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        self.kernel_pids.update(c.pid for c in children)

    def shutdown_kernels(self, timeout_s: float = 15.0) -> None:
        """Shut down every kernel (between tests: a leftover generation would steal the CPU)."""
        self._remember_kernel_pids()
        try:
            for k in self.kernels():
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout_s=timeout_s)
        except (urllib.error.URLError, OSError):
            pass  # the server is gone; stop() kills what is left by pid

    # -- teardown ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the server and its kernels by process id; nothing is left running."""
        if self.proc is None:
            return
        self._remember_kernel_pids()
        if self.proc.poll() is None:
            self.shutdown_kernels(timeout_s=5.0)
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        else:
            _signal_group(self.proc.pid, signal.SIGKILL)  # any child left in its group
        for pid in sorted(self.kernel_pids):
            _stop_pid(pid)
        self.proc = None

    def leftovers(self) -> list[int]:
        """Processes this server started that are still alive (for a test of clean teardown)."""
        return [pid for pid in sorted(self.kernel_pids) if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_pid(pid: int) -> None:
    if not _alive(pid):
        return
    try:
        p = psutil.Process(pid)
        p.terminate()
        p.wait(timeout=5)
    except psutil.TimeoutExpired:
        p.kill()
    except psutil.NoSuchProcess:
        pass


# -- notebooks -------------------------------------------------------------------------------------


def code_cell(source: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source,
    }


def write_notebook(path: Path, sources: list[str]) -> Path:
    nb = {
        "cells": [code_cell(s) for s in sources],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path
