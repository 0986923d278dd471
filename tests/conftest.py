"""Shared fixtures: the real datasets beside the checkout at ``<repo>/../shared/data``."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data_path() -> Path | None:
    """``<repo>/../shared/data`` when present; a fresh clone has no ``../shared``."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_path()
    if path is None:
        pytest.skip(f"../shared/data is absent: no real images at {SHARED_DATA}")
    return path
