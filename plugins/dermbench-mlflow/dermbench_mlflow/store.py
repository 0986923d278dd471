"""A local SQLite tracking store that concurrent and killed runs share safely.

MLflow creates and migrates a SQLite store on first use, in place: runs started together race to
create the same tables (one wins, the others fail with "duplicate column name" or "table ...
already exists"), and a run killed during the migration leaves a store every later run fails on.
Here the store is made once, by the first run, under a file lock: migrated in a temporary file,
then moved into place, so the store's path never holds a half-made database, and the runs that
waited for the lock open the finished one. A temporary file of a killed creator is removed by the
next. Afterwards SQLite itself serialises the writers; a call that still finds the database locked
(another run's write outlasting SQLite's busy timeout) is tried again, a few times, with a growing
pause: a transaction that reported the lock did not commit, so trying again writes nothing twice.

SQLite's locking is unreliable on network filesystems: runs on several machines (a cluster sweep)
should share a tracking server (``MLFLOW_TRACKING_URI=http://...``) instead.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

LOCKED = "database is locked"
TRIES = 6
PAUSE_S = 0.5  # the first pause; then 1, 1.5, ... seconds


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def ready_sqlite_store(db: Path, artifact_root: str | None) -> None:
    """Make the store at ``db`` once, whoever else is making it now (see the module's docstring)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        for stale in db.parent.glob(f".{db.name}.*.tmp"):  # a creator killed mid-migration
            stale.unlink(missing_ok=True)
        if db.exists():
            return
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        tmp = db.parent / f".{db.name}.{os.getpid()}.tmp"
        store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root or str(db.parent / "artifacts"))
        store.engine.dispose()
        os.replace(tmp, db)


class RetryingClient:
    """An MlflowClient whose calls are tried again while SQLite reports the database locked."""

    def __init__(self, client: Any, tries: int = TRIES, pause_s: float = PAUSE_S) -> None:
        self._client, self._tries, self._pause_s = client, tries, pause_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, self._tries + 1):
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if LOCKED not in str(exc) or attempt == self._tries:
                        raise
                    time.sleep(self._pause_s * attempt)
            raise AssertionError("unreachable")

        return call
