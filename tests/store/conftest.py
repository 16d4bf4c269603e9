from __future__ import annotations

from pathlib import Path

import pytest

from llm_energy_widget.store import Store


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite"


@pytest.fixture
def store(store_path: Path) -> Store:
    s = Store(store_path)
    yield s
    s.close()
