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


@pytest.fixture(scope="session")
def records_fixture():
    """tests/fixtures/records/make_records.py as a module: fixture run records for board tests."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent / "fixtures" / "records" / "make_records.py"
    spec = importlib.util.spec_from_file_location("dermbench_fixture_records_shared", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
