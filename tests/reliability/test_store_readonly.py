"""A store in a read-only directory can be listed and loaded; writing fails early and clearly
(issue 14, point 4).

Tests run as root here, and root ignores permission bits, so a chmod-ed directory proves
nothing. As root the reader runs in its own mount namespace (`unshare -m`) with the store's
directory bind-mounted read-only: creating `-wal`/`-shm` then really fails (EROFS), as it does
for a user without write access. As a normal user a chmod 0555 directory does the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run

REPO = Path(__file__).resolve().parents[2]

READER = """
import json, sys
from llm_energy_widget.errors import StoreError
from llm_energy_widget.store import Store
from llm_energy_widget.testing import synthetic_run
path = sys.argv[1]
out = {}
ro = Store(path, read_only=True)
out["ids"] = ro.ids()
out["listed"] = list(ro.runs()["run_id"])
out["tokens"] = {rid: ro.load(rid).n_tokens for rid in out["ids"]}
default = Store(path)  # what the profiler and the CLI open
out["fell_back"] = default.read_only
out["default_listed"] = list(default.runs()["run_id"])
for name, call in [("check_writable", default.check_writable),
                   ("record", lambda: default.record(synthetic_run(n_tokens=2)))]:
    try:
        call()
        out[name] = None
    except StoreError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


def _read_only_unshare_works() -> bool:
    if os.geteuid() != 0:
        return True  # chmod is enough
    if shutil.which("unshare") is None:
        return False
    probe = "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && ! touch /tmp/.lew-ro"
    res = subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True, check=False)
    return res.returncode == 0


def _run_in_read_only_dir(directory: Path, script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", script, *args]
    if os.geteuid() == 0:
        d = str(directory)
        shell = f'mount --bind "{d}" "{d}" && mount -o remount,bind,ro "{d}" && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", shell, "sh", *cmd]
    else:
        directory.chmod(0o555)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    finally:
        directory.chmod(0o755)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


needs_read_only = pytest.mark.skipif(
    not _read_only_unshare_works(), reason="cannot make a read-only directory here"
)


def _store_with_runs(directory: Path) -> tuple[Path, list[str]]:
    directory.mkdir()
    path = directory / "runs.sqlite"
    runs = [synthetic_run(n_tokens=5), synthetic_run(n_tokens=7)]
    with Store(path) as s:
        for r in runs:
            s.save(r)
    return path, [r.run_id for r in runs]


@needs_read_only
def test_wal_store_without_sidecars_reads_in_a_read_only_directory(tmp_path: Path) -> None:
    path, ids = _store_with_runs(tmp_path / "ro")
    assert path.read_bytes()[18:20] == b"\x02\x02"  # a WAL database ...
    assert sorted(p.name for p in path.parent.iterdir()) == ["runs.sqlite"]  # ... no -wal/-shm
    out = _run_in_read_only_dir(path.parent, READER, str(path))
    assert sorted(out["ids"]) == sorted(ids)
    assert sorted(out["listed"]) == sorted(ids)
    assert sorted(out["tokens"].values()) == [5, 7]
    assert out["fell_back"]
    assert sorted(out["default_listed"]) == sorted(ids)
    for name in ("check_writable", "record"):
        assert out[name], out[name]
        assert "read-only" in out[name], out[name]
        assert str(path) in out[name], out[name]


@needs_read_only
def test_read_only_directory_with_a_live_writer_sees_its_wal(tmp_path: Path) -> None:
    """While a writer elsewhere holds the store, -wal/-shm exist and hold the newest runs: a
    read-only reader must read through them (immutable would miss them)."""
    path, ids = _store_with_runs(tmp_path / "ro")
    writer = Store(path)
    late = synthetic_run(n_tokens=3)
    writer.save(late)
    assert (path.parent / "runs.sqlite-wal").stat().st_size > 0  # not checkpointed yet
    out = _run_in_read_only_dir(path.parent, READER, str(path))
    writer.close()
    assert sorted(out["ids"]) == sorted([*ids, late.run_id])
    assert out["tokens"][late.run_id] == 3


def test_check_writable_passes_for_a_writable_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.sqlite")
    store.check_writable()  # no error
    assert not store.read_only
