"""Saved conversations: a chat kept under a random id in the local feedback database, so a reload keeps it.

The app puts the id in the page URL (`?c=...`) and stores the conversation, as JSON, in the same
SQLite file as the feedback (`feedback.db_path`): on the machine that runs the app, never sent
anywhere. Whoever has the URL of a conversation on that server can open it, so the id is 128
random bits. "Delete this conversation" in the sidebar, or `psyqa conversations delete`, removes it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import sqlite3
import sys
from pathlib import Path

from assistant import feedback
from assistant.models import Answer
from assistant.settings import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    messages TEXT NOT NULL
)
"""
_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def new_id() -> str:
    """A fresh conversation id: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def valid_id(chat_id: object) -> bool:
    return isinstance(chat_id, str) and bool(_ID.match(chat_id))


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = feedback.connect(path)
    conn.execute(_SCHEMA)
    conn.commit()
    return conn


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def to_records(messages: list[dict]) -> list[dict]:
    """Chat messages as JSON-ready dicts (an Answer becomes its fields)."""
    out = []
    for m in messages:
        rec = dict(m)
        if isinstance(rec.get("answer"), Answer):
            rec["answer"] = rec["answer"].model_dump(mode="json")
        out.append(rec)
    return out


def from_records(records: list[dict]) -> list[dict]:
    """`to_records` reversed; a record that no longer validates is dropped, not fatal."""
    out = []
    for rec in records:
        if not isinstance(rec, dict) or rec.get("role") not in ("user", "assistant"):
            continue
        m = dict(rec)
        if isinstance(m.get("answer"), dict):
            try:
                m["answer"] = Answer.model_validate(m["answer"])
            except ValueError:
                continue
        out.append(m)
    return out


def save(path: Path | str, chat_id: str, messages: list[dict]) -> None:
    """Store (or replace) conversation `chat_id`."""
    if not valid_id(chat_id):
        raise ValueError(f"not a conversation id: {chat_id!r}")
    data = json.dumps(to_records(messages), ensure_ascii=False)
    conn = _connect(path)
    try:
        with conn:
            now = _now()
            conn.execute(
                "INSERT INTO conversations (id, created_at, updated_at, messages) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, "
                "messages = excluded.messages", (chat_id, now, now, data))
    finally:
        conn.close()


def load(path: Path | str, chat_id: str) -> list[dict] | None:
    """The messages of conversation `chat_id`, or None when there is no such conversation."""
    if not valid_id(chat_id) or not Path(path).exists():
        return None
    conn = _connect(path)
    try:
        row = conn.execute("SELECT messages FROM conversations WHERE id = ?", (chat_id,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    try:
        return from_records(json.loads(row[0]))
    except ValueError:
        return None


def delete(path: Path | str, chat_id: str | None = None) -> int:
    """Delete conversation `chat_id` (every conversation when None); the number deleted."""
    if not Path(path).exists():
        return 0
    conn = _connect(path)
    try:
        with conn:
            if chat_id is None:
                cur = conn.execute("DELETE FROM conversations")
            else:
                cur = conn.execute("DELETE FROM conversations WHERE id = ?", (chat_id,))
        return cur.rowcount
    finally:
        conn.close()


def listing(path: Path | str) -> list[dict]:
    """id, created_at, updated_at and the number of questions of every saved conversation."""
    if not Path(path).exists():
        return []
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT id, created_at, updated_at, messages FROM conversations "
                            "ORDER BY updated_at").fetchall()
    finally:
        conn.close()
    out = []
    for cid, created, updated, data in rows:
        try:
            n = sum(1 for m in json.loads(data) if m.get("role") == "user")
        except ValueError:
            n = 0
        out.append({"id": cid, "created_at": created, "updated_at": updated, "questions": n})
    return out


def cmd(args, settings: Settings) -> int:
    path = feedback.db_path(settings)
    if args.conversations_cmd == "list":
        for c in listing(path):
            print(f"{c['id']}  {c['updated_at']}  {c['questions']} question(s)")
        return 0
    if not args.all and not args.id:
        print("psyqa conversations delete: give a conversation id, or --all", file=sys.stderr)
        return 2
    n = delete(path, None if args.all else args.id)
    print(f"psyqa: {n} saved conversation(s) deleted from {path}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    """Add `psyqa conversations list` and `psyqa conversations delete ID|--all` to the CLI."""
    p = subparsers.add_parser("conversations", help="conversations saved by the chat app")
    sub = p.add_subparsers(dest="conversations_cmd", required=True)
    sub.add_parser("list", help="id, last change and size of each").set_defaults(func=cmd)
    d = sub.add_parser("delete", help="delete one conversation, or all of them")
    d.add_argument("id", nargs="?", help="the id (the c=... part of the app's URL)")
    d.add_argument("--all", action="store_true", help="delete every saved conversation")
    d.set_defaults(func=cmd)
