"""The feedback store: SQLite round trip, hostile strings through parameterised SQL, WAL mode, CLI export."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import threading

import pytest

from assistant import feedback
from assistant.settings import Settings

HOSTILE = [
    "it's \"quoted\"",
    "'); DROP TABLE feedback; --",
    "Robert'); DELETE FROM feedback WHERE ('1'='1",
    "=HYPERLINK(\"http://x\")",
    "line\nbreak, comma; semicolon\ttab \x00nul? no: \u202e rtl \U0001f600",
]


def _save(path, **kw):
    base = dict(question="Q?", answer="A. [1]", chunk_ids=["c1", "c2"], corpus_hash="h1",
                rating=1, comment="", evidence_wrong=False, status="answered")
    return feedback.save(path, **(base | kw))


def test_round_trip_store_and_export(tmp_path):
    db = tmp_path / "fb" / "feedback.sqlite3"
    first = _save(db, comment="good", rating=1)
    second = _save(db, question="Q2", rating=-1, evidence_wrong=True, chunk_ids=[])
    assert second > first
    rows = feedback.rows(db)
    assert [r["question"] for r in rows] == ["Q?", "Q2"]
    assert rows[0]["rating"] == 1 and rows[1]["rating"] == -1
    assert rows[1]["evidence_wrong"] == 1 and rows[0]["evidence_wrong"] == 0
    assert json.loads(rows[0]["chunk_ids"]) == ["c1", "c2"]
    assert rows[0]["corpus_hash"] == "h1"
    assert rows[0]["created_at"].endswith("+00:00")  # UTC ISO
    out = io.StringIO()
    assert feedback.export_csv(db, out) == 2
    back = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["comment"] for r in back] == ["good", ""]
    assert list(back[0]) == list(feedback.COLUMNS)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_stored_verbatim(tmp_path, text):
    db = tmp_path / "feedback.sqlite3"
    _save(db, question=text, answer=text, comment=text, chunk_ids=[text])
    _save(db)  # the table survived
    rows = feedback.rows(db)
    assert len(rows) == 2
    assert rows[0]["question"] == text and rows[0]["comment"] == text
    assert json.loads(rows[0]["chunk_ids"]) == [text]
    out = io.StringIO()
    feedback.export_csv(db, out)
    exported = next(csv.DictReader(io.StringIO(out.getvalue())))["comment"]
    # Verbatim in the store; in the CSV a leading formula character is neutralised with a quote.
    assert exported == (("'" + text) if text[:1] in "=+-@" else text)


def test_wal_mode_and_busy_timeout(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    _save(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    c = feedback.connect(db)
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] == feedback.BUSY_TIMEOUT_MS
    c.close()


def test_concurrent_writers_all_land(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    errors = []

    def work(n):
        try:
            for i in range(10):
                _save(db, comment=f"{n}-{i}")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(feedback.rows(db)) == 40


def test_invalid_rating_is_refused(tmp_path):
    with pytest.raises(ValueError):
        _save(tmp_path / "f.sqlite3", rating=0)


def test_absent_database_exports_header_only(tmp_path):
    out = io.StringIO()
    assert feedback.export_csv(tmp_path / "none.sqlite3", out) == 0
    assert out.getvalue().strip() == ",".join(feedback.COLUMNS)
    assert not (tmp_path / "none.sqlite3").exists()


def test_cli_export_to_stdout_and_file(tmp_path, monkeypatch):
    from helpers import PSYQA

    data = tmp_path / "data"
    monkeypatch.setenv("PSYQA_DATA_DIR", str(data))
    _save(feedback.db_path(Settings()), comment="'); DROP TABLE feedback; --")
    res = subprocess.run([PSYQA, "feedback", "export"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows[0]["comment"] == "'); DROP TABLE feedback; --"
    out = tmp_path / "fb.csv"
    res = subprocess.run([PSYQA, "feedback", "export", "--out", str(out)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert list(csv.DictReader(out.open(encoding="utf-8")))[0]["question"] == "Q?"
