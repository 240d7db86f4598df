"""Shared test fixtures: where the real sample logs live."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data`` relative to the project root: the real recorded logs.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"real sample data not found at {DATA} (expected ../shared/data beside the project)")
    return DATA
