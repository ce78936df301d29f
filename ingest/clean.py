"""`psyqa clean` (and `make clean-data`): remove the derived data, never the user data.

Derived: everything under `settings.index_dir` (the embedded store, BM25 files, a rebuild in
progress, damaged stores a rebuild kept), the benchmark caches, and the same folders of the old
layout (data/chroma, data/bm25, data/reports). Not touched: `settings.user_dir` (feedback, saved
conversations) and anything else in the data folder, such as a feedback database of the old
layout that has not been moved yet. A Chroma server's collection is not touched either.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from assistant.errors import IngestBusyError
from assistant.settings import Settings


# What each entry of the index folder is, for the lines `psyqa clean` prints.
WHAT = {"chroma": "the embedded Chroma store", "bm25": "BM25 files", "reports": "the last ingest report",
        "damaged": "damaged stores kept by earlier rebuilds", "chroma.rebuild": "an unfinished rebuild",
        "bench": "benchmark caches"}


def describe(path: Path) -> str:
    """`path` with what it holds, when it is one of the known entries."""
    what = WHAT.get(path.name)
    return f"{path} ({what})" if what else str(path)


def derived_paths(settings: Settings) -> list[Path]:
    """What `clean` removes, when it exists."""
    data = Path(settings.data_dir)
    return [settings.index_dir, data / "bench", data / "chroma", data / "bm25", data / "reports",
            data / "ingest.lock"]


def clean(settings: Settings) -> tuple[list[Path], Path]:
    """Remove the derived data; returns (what was removed, the user-data folder kept)."""
    from filelock import FileLock, Timeout

    lock_path = settings.index_dir / "ingest.lock"
    removed: list[Path] = []
    if settings.index_dir.exists():
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise IngestBusyError(f"A 'psyqa ingest' is running (lock {lock_path}); nothing was "
                                  "removed. Wait for it to finish, then run again.") from None
        try:
            for entry in sorted(settings.index_dir.iterdir()):
                if entry == lock_path:
                    continue  # held by us; removing it would let another ingest lock a new file
                _remove(entry)
                removed.append(entry)
        finally:
            lock.release()
        lock_path.unlink(missing_ok=True)
    for path in derived_paths(settings)[1:]:
        if path.exists() or path.is_symlink():
            _remove(path)
            removed.append(path)
    return removed, settings.user_dir


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
