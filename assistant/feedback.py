"""Feedback on answers: a small SQLite store in the user-data folder, `psyqa feedback export` and
`psyqa feedback backup`.

The database lives in `settings.user_dir` (data/user/), apart from the derived index, so nothing that
rebuilds or cleans the index touches it; a database left at the old place (data/feedback.sqlite3)
is copied over on first use, every table and row, and the old file is kept, renamed.

One row per rating: question, answer, the cited chunk ids (JSON), the corpus hash the answer was
built from, rating (+1 / -1), an optional comment, the "evidence is wrong" flag and the UTC time.
WAL mode (readers never block the app), a busy timeout (two app sessions writing at once wait
instead of failing) and parameterised SQL only.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from assistant.settings import Settings

FILENAME = "feedback.sqlite3"
BUSY_TIMEOUT_MS = 5000
COLUMNS = ("id", "created_at", "rating", "evidence_wrong", "comment", "question", "answer",
           "chunk_ids", "corpus_hash", "status")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    evidence_wrong INTEGER NOT NULL DEFAULT 0 CHECK (evidence_wrong IN (0, 1)),
    comment TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    chunk_ids TEXT NOT NULL DEFAULT '[]',
    corpus_hash TEXT,
    status TEXT
)
"""

MAX_COMMENT = 4000


def db_path(settings: Settings) -> Path:
    """The feedback database (in the user-data folder); moves one left at the old place first."""
    path = Path(settings.user_dir) / FILENAME
    old = Path(settings.data_dir) / FILENAME
    if old.exists() and not path.exists():
        migrate(old, path)
    return path


def migrate(old: Path, new: Path) -> None:
    """Copy the database at `old` to `new` (SQLite's online backup: every table, a consistent
    snapshot even while another process writes), check that every table has the same rows, then
    rename `old` to `<name>.migrated-<UTC time>` so no one writes to it any more. Nothing is deleted.
    Two processes migrating at once: a file lock makes the second one find the copy done."""
    from filelock import FileLock

    new.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(new.parent / f".{FILENAME}.migrate.lock")):
        if new.exists() or not old.exists():
            return
        tmp = new.with_name(f".{new.name}.migrating")
        tmp.unlink(missing_ok=True)
        backup(old, tmp)
        if _contents(old) != _contents(tmp):
            tmp.unlink(missing_ok=True)
            raise OSError(f"copying {old} to {new} did not give the same rows; nothing was changed")
        os.replace(tmp, new)
        _fold_wal(old)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        os.replace(old, old.with_name(f"{old.name}.migrated-{stamp}"))


def _fold_wal(path: Path) -> None:
    """Write a WAL database's -wal back into the main file, so the file alone is complete."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError:
        pass  # another process still has it open: its -wal stays beside it
    finally:
        conn.close()


def _contents(path: Path) -> list[str]:
    """The whole database as SQL statements (schema and every row, values included), as
    `sqlite3.Connection.iterdump` writes them: two databases with the same rows give the same."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


_INSERT = re.compile(r'INSERT INTO "((?:[^"]|"")+)" VALUES')


def _table_counts(path: Path) -> dict[str, int]:
    """Rows per table, counted from the dump (no SQL is built from a table's name)."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        counts = {r[0]: 0 for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        for stmt in conn.iterdump():
            m = _INSERT.match(stmt)
            if m:
                name = m.group(1).replace('""', '"')
                counts[name] = counts.get(name, 0) + 1
        return counts
    finally:
        conn.close()


def backup(src: Path | str, dest: Path | str) -> dict[str, int]:
    """A consistent copy of the whole database `src` (every table) at `dest`, made with SQLite's
    online backup API, so the app may keep writing meanwhile. `dest` is written to a temporary
    file next to it and renamed into place only when complete. Returns the rows per table."""
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise FileNotFoundError(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    source = sqlite3.connect(str(src), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        target = sqlite3.connect(str(tmp))
        try:
            source.backup(target)
            # A self-contained file: no -wal beside it that a copy could leave behind.
            target.execute("PRAGMA journal_mode = DELETE")
            ok = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    finally:
        source.close()
    if ok != "ok":
        tmp.unlink(missing_ok=True)
        raise OSError(f"the copy of {src} failed SQLite's integrity check ({ok})")
    os.replace(tmp, dest)
    return _table_counts(dest)


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating when missing) the feedback database in WAL mode with a busy timeout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_SCHEMA)
    conn.commit()
    return conn


def save(path: Path | str, *, question: str, answer: str, chunk_ids: Iterable[str],
         corpus_hash: str | None, rating: int, comment: str = "", evidence_wrong: bool = False,
         status: str | None = None) -> int:
    """Store one rating and return its row id. `rating` is +1 (helpful) or -1 (not helpful)."""
    if rating not in (-1, 1):
        raise ValueError(f"rating must be 1 or -1, got {rating!r}")
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    row = (created, int(rating), 1 if evidence_wrong else 0, (comment or "")[:MAX_COMMENT],
           question or "", answer or "", json.dumps(list(chunk_ids)), corpus_hash, status)
    conn = connect(path)
    try:
        with conn:
            cur = conn.execute(
                "INSERT INTO feedback (created_at, rating, evidence_wrong, comment, question, "
                "answer, chunk_ids, corpus_hash, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return int(cur.lastrowid or 0)
    finally:
        conn.close()


def save_for(path: Path | str, answer, question: str, corpus_hash: str | None, *, rating: int,
             comment: str = "", evidence_wrong: bool = False) -> int:
    """`save` for an Answer as the app shows it (its text, cited chunk ids and status)."""
    return save(path, question=question, answer=answer.answer,
                chunk_ids=[c.chunk_id for c in answer.citations], corpus_hash=corpus_hash,
                rating=rating, comment=comment, evidence_wrong=evidence_wrong, status=answer.status)


def rows(path: Path | str) -> list[dict]:
    """All feedback rows, oldest first (an absent database has none)."""
    if not Path(path).exists():
        return []
    conn = connect(path)
    try:
        conn.row_factory = sqlite3.Row
        cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY id")
        return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _cell(value):
    """Neutralise spreadsheet formulas: a comment starting with '=' must not run in Excel."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(path: Path | str, out: TextIO) -> int:
    """Write every row as CSV (header first) to `out`; return the number of rows."""
    data = rows(path)
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in data:
        writer.writerow({k: _cell(v) for k, v in r.items()})
    return len(data)


def cmd_export(args, settings: Settings) -> int:
    path = db_path(settings)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as fh:
            n = export_csv(path, fh)
        print(f"psyqa: {n} feedback row(s) written to {args.out}", file=sys.stderr)
    else:
        export_csv(path, sys.stdout)
    return 0


def cmd_backup(args, settings: Settings) -> int:
    from assistant.errors import PsyqaError

    path = db_path(settings)
    if not path.exists():
        raise PsyqaError(f"No feedback database at {path} yet: nothing to back up.")
    dest = Path(args.path)
    if dest.is_dir():
        dest = dest / FILENAME
    if dest.resolve() == path.resolve():
        raise PsyqaError(f"{dest} is the live database; give another path for the backup.")
    counts = backup(path, dest)
    rows_text = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    print(f"psyqa: backed up {path} to {dest} ({rows_text or 'no tables'}). To restore it, stop "
          f"the app and copy it back to {path}.", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    """Add `psyqa feedback export [--out FILE]` and `psyqa feedback backup PATH` to the CLI."""
    p = subparsers.add_parser("feedback", help="feedback given in the chat app")
    sub = p.add_subparsers(dest="feedback_cmd", required=True)
    e = sub.add_parser("export", help="write all feedback as CSV (stdout by default)")
    e.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    e.set_defaults(func=cmd_export)
    b = sub.add_parser("backup", help="a consistent copy of the whole user database (SQLite online backup)")
    b.add_argument("path", type=Path, help="file (or folder) to write the copy to")
    b.set_defaults(func=cmd_backup)
