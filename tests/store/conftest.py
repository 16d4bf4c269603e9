from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_energy_widget.store import Store


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = Store(store_path)
    yield s
    s.close()
