"""A rebuilt index is swapped in only when complete, and what people wrote is never lost (issue 17).

- the disk filling during `psyqa ingest --rebuild` (a real small tmpfs, filled by another writer
  once the rebuild writes its first chunks): one line, no traceback; the previous index keeps
  serving and nothing of the rebuild is left; after freeing space the rebuild equals the index;
- a running reader moves to the rebuilt store when another process swaps it in;
- `make clean-data` and `psyqa ingest --rebuild` leave the feedback database byte-identical;
- the layout before this (data/chroma, data/bm25, data/feedback.sqlite3) moves on first use, the
  index into data/index/ and the feedback database (every table, every row) into data/user/;
- `psyqa feedback backup` is a consistent copy while the app writes, and restores as documented;
- `psyqa status` and the app compare with the folders the index was built from, so indexing
  another folder does not make every document look removed.

Real components throughout: embedded Chroma, the bundled model, the installed CLI and Makefile,
the Streamlit app (AppTest), SQLite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from assistant import feedback, index
from assistant.bm25 import BM25Index
from assistant.settings import Settings
from helpers import REPO, cli_env, open_collection, psyqa, write_doc
from ingest.pipeline import run

pytestmark = pytest.mark.slow

QUESTION = "What did the heron trial of psilocybin find?"


# ------------------------------------------------------------------ corpora and snapshots

def bird_corpus(corpus: Path) -> None:
    for name, bird in (("a", "zebrafinch"), ("b", "heron"), ("c", "pelican"), ("d", "osprey")):
        write_doc(corpus / f"{name}.md", f"The {bird} psilocybin trial",
                  f"## Results\n\nThe {bird} trial of psilocybin for depression reported remission "
                  f"in forty percent of adults at week six.\n\n## Safety\n\nIn the {bird} trial, "
                  "headache and nausea were the most common adverse events of psilocybin.\n",
                  substances=["psilocybin"], conditions=["depression"], source_type="trial")


def many_sections_corpus(corpus: Path, docs: int = 35, sections: int = 30) -> None:
    """docs x sections one-line sections: one short chunk each, so that Chroma (which keeps up to
    1,000 records in its log and only then persists the HNSW segment) has segment files."""
    for d in range(docs):
        body = "".join(f"## S{s}\n\nItem d{d}s{s} heron.\n\n" for s in range(sections))
        write_doc(corpus / f"m{d:02d}.md", f"M{d}", body)


def snapshot(settings: Settings) -> dict:
    """What a reader of the committed generation sees: chunk ids with their texts and metadata
    (without `gen`/`dead`, the generation bookkeeping), every record visible, and the BM25 ids."""
    col = open_collection(settings)
    assert col is not None, f"no collection in {settings.chroma_dir}"
    gen = index.generation(col)
    got = col.get(include=["documents", "metadatas"])
    chunks = {cid: (doc, {k: v for k, v in meta.items() if k not in ("gen", "dead")})
              for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])
              if index.visible(meta, gen)}
    assert len(chunks) == len(got["ids"]), "records left over that no reader sees"
    lex = BM25Index.load(index.bm25_dir(settings, gen))
    assert lex is not None, f"no BM25 files for generation {gen}"
    meta = col.metadata or {}
    return {"chunks": chunks, "bm25": sorted(lex.ids), "documents": meta.get("documents"),
            "count": meta.get("chunks"), "roots": meta.get("roots")}


def seed_user_data(settings: Settings) -> None:
    """Feedback rows, and a table of its own as saved conversations will be (issue 16)."""
    db = feedback.db_path(settings)
    for i in range(3):
        feedback.save(db, question=f"q{i}", answer="a [1]", chunk_ids=[f"c{i}"], corpus_hash="h",
                      rating=1 if i % 2 else -1, comment=f"comment {i}")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS conversations (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO conversations (body) VALUES ('a saved conversation')")
    conn.close()


def user_bytes(settings: Settings) -> str:
    files = sorted(p for p in settings.user_dir.iterdir() if p.name.startswith(feedback.FILENAME))
    assert files, f"no feedback database in {settings.user_dir}"
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def one_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with exactly one line on stderr (no traceback) that holds `needles`."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out[-3000:]
    assert res.returncode != 0, out[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory, embedder):
    """A clean build of the bird corpus with user data beside it: (data folder, corpus, snapshot)."""
    base = tmp_path_factory.mktemp("heal-clean")
    corpus = base / "corpus"
    bird_corpus(corpus)
    settings = Settings(data_dir=base / "data", corpus_dir=corpus)
    assert not run([corpus], settings, embedder=embedder).failed
    seed_user_data(settings)
    return settings.data_dir, corpus, snapshot(settings)


def copy_of(build, tmp_path: Path) -> Settings:
    data, corpus, _ = build
    shutil.copytree(data, tmp_path / "data")
    return Settings(data_dir=tmp_path / "data", corpus_dir=corpus)


def rebuild(settings: Settings, embedder, cli: bool = False) -> str:
    """The documented fix, `psyqa ingest --rebuild` (the installed CLI, or the same run in this
    process with the session's model). Returns what the CLI printed on stderr."""
    if not cli:
        report = run([settings.corpus_dir], settings, rebuild=True, embedder=embedder)
        assert not report.failed, report.failed
        return ""
    res = psyqa("ingest", settings.corpus_dir, "--rebuild", settings=settings, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return res.stderr


# ------------------------------------------------------------------ --rebuild: swapped in when complete

@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill_when_writing_starts(settings: Settings, filler: Path, stop: threading.Event, hit: list) -> None:
    """Another process filling the disk: as soon as the rebuild writes its first chunks (Chroma
    creates the segment folder at the first add), take every free byte."""
    target = index.rebuild_dir(settings)
    while not stop.is_set():
        if target.is_dir() and any(p.is_dir() for p in target.iterdir()):
            with open(filler, "wb") as fh:
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
                except OSError:
                    pass
            hit.append(time.monotonic())
            return
        time.sleep(0.002)


def test_disk_full_during_rebuild_keeps_the_previous_index_serving(tmp_path, small_disk, embedder):
    corpus = tmp_path / "corpus"
    bird_corpus(corpus)
    many_sections_corpus(corpus, docs=10, sections=30)  # enough writes for the disk to fill mid-way
    settings = Settings(data_dir=small_disk / "data", corpus_dir=corpus)
    assert not run([corpus], settings, embedder=embedder).failed
    seed_user_data(settings)
    before_user, before = user_bytes(settings), snapshot(settings)
    filler, stop, hit = small_disk / "filler", threading.Event(), []
    thread = threading.Thread(target=fill_when_writing_starts, args=(settings, filler, stop, hit), daemon=True)
    thread.start()
    res = psyqa("ingest", corpus, "--rebuild", settings=settings, timeout=900)
    stop.set()
    thread.join(30)
    assert hit, "the disk was never filled: the rebuild did not write (or finished first)"
    # Full in the middle of writing (not the check before the first write, which would say
    # "Not enough disk space ... Nothing was written").
    line = one_line(res, "the disk is full", str(settings.data_dir), "the previous index is intact")

    # While the disk is still full: the previous index serves, nothing of the rebuild is left.
    assert not index.rebuild_dir(settings).exists(), "the partial rebuild was left on the full disk"
    assert snapshot(settings) == before
    ans = psyqa("ask", QUESTION, settings=settings)
    assert ans.returncode == 0 and "[1]" in ans.stdout and "Traceback" not in ans.stderr, ans.stderr
    st = psyqa("status", "--json", settings=settings)
    assert st.returncode == 0 and json.loads(st.stdout)["indexed"], st.stdout + st.stderr

    filler.unlink()  # the documented fix: free space, run the command again
    rebuild(settings, embedder)
    after = snapshot(settings)
    assert after == before and user_bytes(settings) == before_user


def test_a_running_reader_moves_to_the_rebuilt_store(clean_build, tmp_path, embedder):
    """`psyqa ingest --rebuild` (another process) swaps a new store folder in; an Assistant that
    was answering from the old one notices (one stat per question) and answers from the new."""
    from assistant.assistant import Assistant
    from assistant.services import Services

    settings = copy_of(clean_build, tmp_path)
    corpus = tmp_path / "corpus"
    shutil.copytree(settings.corpus_dir, corpus)
    settings = settings.model_copy(update={"corpus_dir": corpus})
    asst = Assistant(Services(settings=settings, embedder=embedder))
    assert asst.ask(QUESTION).status == "answered"
    write_doc(corpus / "k.md", "The kestrel psilocybin trial",
              "## Results\n\nThe kestrel trial of psilocybin for anxiety reported remission in half "
              "of the adults at week eight.\n", substances=["psilocybin"], source_type="trial")
    old_db = (settings.chroma_dir / "chroma.sqlite3").stat().st_ino
    res = psyqa("ingest", corpus, "--rebuild", settings=settings, timeout=900)
    assert res.returncode == 0, res.stderr
    assert (settings.chroma_dir / "chroma.sqlite3").stat().st_ino != old_db, "no new store was swapped in"
    ans = asst.ask("What did the kestrel trial of psilocybin find?")
    assert ans.status == "answered" and any(c.source == "k.md" for c in ans.citations), ans.answer
    assert asst.ask(QUESTION).status == "answered"


# ------------------------------------------------------------------ user data

def test_clean_data_and_rebuild_leave_feedback_byte_identical(clean_build, tmp_path, embedder):
    settings = copy_of(clean_build, tmp_path)
    before = user_bytes(settings)
    env = cli_env(settings)
    stamp = REPO / ".venv" / ".psyqa-installed"
    # `-o stamp`: the install step counts as done (this test runs inside that install).
    res = subprocess.run(["make", "-s", "-o", str(stamp), "clean-data"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not settings.index_dir.exists() or not any(
        p.name != "ingest.lock" for p in settings.index_dir.iterdir()), list(settings.index_dir.iterdir())
    assert str(settings.user_dir) in res.stderr, res.stderr
    assert user_bytes(settings) == before, "make clean-data changed the feedback database"
    assert not run([settings.corpus_dir], settings, embedder=embedder).failed
    assert user_bytes(settings) == before, "ingest changed the feedback database"
    rebuild(settings, embedder, cli=True)
    assert user_bytes(settings) == before, "psyqa ingest --rebuild changed the feedback database"
    assert snapshot(settings)["chunks"] == clean_build[2]["chunks"]


def test_old_layout_moves_to_index_and_user_folders_without_losing_rows(clean_build, tmp_path):
    """data/chroma, data/bm25 and data/feedback.sqlite3 (the layout before issue 17) move on
    first use: the index into data/index/, the feedback database (every table) into data/user/."""
    new = copy_of(clean_build, tmp_path)
    data = new.data_dir
    os.rename(new.chroma_dir, data / "chroma")
    os.rename(new.index_dir / "bm25", data / "bm25")
    os.rename(new.user_dir / feedback.FILENAME, data / feedback.FILENAME)
    shutil.rmtree(new.index_dir)
    shutil.rmtree(new.user_dir)
    old_db = data / feedback.FILENAME
    conn = sqlite3.connect(old_db)  # rows still in the -wal, as a running app leaves them
    conn.execute("PRAGMA journal_mode = WAL")
    rows = conn.execute("SELECT * FROM feedback ORDER BY id").fetchall()
    convs = conn.execute("SELECT * FROM conversations").fetchall()
    assert rows and convs

    res = psyqa("feedback", "export", settings=new)
    conn.close()
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == len(rows) + 1
    moved = sqlite3.connect(new.user_dir / feedback.FILENAME)
    assert moved.execute("SELECT * FROM feedback ORDER BY id").fetchall() == rows
    assert moved.execute("SELECT * FROM conversations").fetchall() == convs
    moved.close()
    assert not old_db.exists() and list(data.glob(f"{feedback.FILENAME}.migrated-*")), list(data.iterdir())
    st = json.loads(psyqa("status", "--json", settings=new).stdout)
    assert st["indexed"] and st["store"].endswith(str(new.chroma_dir)), st
    assert not (data / "chroma").exists() and new.chroma_dir.exists()
    assert snapshot(new) == clean_build[2]


WRITER = textwrap.dedent("""
    import sys
    from assistant import feedback
    db = sys.argv[1]
    i = 0
    while True:
        feedback.save(db, question=f"question {i}", answer="answer " * 50, chunk_ids=[f"c{i}"],
                      corpus_hash="h", rating=1, comment=f"comment {i}")
        i += 1
""")


def test_feedback_backup_is_consistent_while_the_app_writes_and_restores(clean_build, tmp_path):
    settings = copy_of(clean_build, tmp_path)
    db = feedback.db_path(settings)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(feedback.rows(db)) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        backup = tmp_path / "backups" / "fb.sqlite3"
        res = psyqa("feedback", "backup", backup, settings=settings)
        during = len(feedback.rows(db))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "restore" in res.stderr and str(db) in res.stderr, res.stderr
    copy = sqlite3.connect(backup)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    backed = copy.execute("SELECT id, question FROM feedback ORDER BY id").fetchall()
    assert copy.execute("SELECT body FROM conversations").fetchall() == [("a saved conversation",)]
    copy.close()
    assert 50 <= len(backed) <= during
    assert [q for _, q in backed[3:]] == [f"question {i}" for i in range(len(backed) - 3)]

    # Restore as the README says: with the app stopped, copy the backup over the database.
    feedback.save(db, question="after the backup", answer="a", chunk_ids=[], corpus_hash=None, rating=1)
    for leftover in db.parent.glob(db.name + "-*"):
        leftover.unlink()
    shutil.copyfile(backup, db)
    assert [(r["id"], r["question"]) for r in feedback.rows(db)] == backed


# ------------------------------------------------------------------ drift

def test_status_and_app_compare_with_the_folders_the_index_was_built_from(tmp_path, embedder, monkeypatch):
    default, other = tmp_path / "corpus", tmp_path / "some" / "other"
    bird_corpus(other)
    write_doc(default / "x.md", "X", "## A\n\nSomething else.\n")
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=default)
    res = psyqa("ingest", other, settings=settings, timeout=900)
    assert res.returncode == 0, res.stderr
    st = json.loads(psyqa("status", "--json", settings=settings).stdout)
    assert st["roots"] == [str(other)], st["roots"]
    assert st["drift"] == {"new": [], "changed": [], "removed": []}, st["drift"]
    (other / "d.md").unlink()
    write_doc(other / "e.md", "E", "## A\n\nA new one.\n")
    st = json.loads(psyqa("status", "--json", settings=settings).stdout)
    assert st["drift"] == {"new": ["e.md"], "changed": [], "removed": ["d.md"]}, st["drift"]
    text = psyqa("status", settings=settings).stdout
    assert f"built from:      {other}" in text and "removed: d.md" in text, text
    # The default corpus folder indexed too: two roots, each compared with its own folder.
    assert psyqa("ingest", other, settings=settings, timeout=900).returncode == 0
    assert not run([default], settings, embedder=embedder).failed
    st = json.loads(psyqa("status", "--json", settings=settings).stdout)
    assert sorted(st["roots"]) == sorted([str(other), str(default)]), st["roots"]
    assert st["drift"] == {"new": [], "changed": [], "removed": []}, st["drift"]

    from streamlit.testing.v1 import AppTest

    from test_app import APP, no_traceback, only_env, texts

    monkeypatch.chdir(REPO)
    only_env(monkeypatch, PSYQA_DATA_DIR=str(settings.data_dir), PSYQA_CORPUS_DIR=str(default))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    no_traceback(at)
    side = " ".join(texts(at.sidebar))
    assert "5 documents" in side and "corpus folder changed" not in side, side
