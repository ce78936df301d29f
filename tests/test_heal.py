"""A damaged index heals from the corpus, and what people wrote is never lost (issue 17).

Fault injection, each fault on a copy of a clean build: the CLI (`psyqa status`, `psyqa ask`,
`psyqa ingest`) ends with one line naming the path and the fix, no traceback; after the fix the
index equals the clean build (chunk ids, texts, metadata other than the generation bookkeeping,
BM25 ids), and the feedback database is byte-identical:

- embedded: corrupted database header (and the app shows the same line); a truncated and a
  deleted segment file (on an index big enough for Chroma to have persisted its HNSW segment);
  a deleted BM25 folder (healed by the next reader, with a notice); a generation number with no
  chunks, chunks lost under the metadata, BM25 files of a generation the collection never reached;
  the disk filling during `--rebuild` (a real small tmpfs; the previous index keeps serving);
- server (`chroma run`): the collection deleted under a running app; the server killed in the
  middle of an ingest; two ingests from two processes with different data folders (one runs, the
  other refuses; after SIGKILL of the first the second takes over) and a stale lease of another
  host taken over;
- user data: `make clean-data` and `psyqa ingest --rebuild` leave the feedback database
  byte-identical; the database of the old layout moves to data/user/ without losing a row;
  `psyqa feedback backup` is a consistent copy that restores.

Real components throughout: embedded Chroma and `chroma run`, the bundled model, the installed CLI,
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

from assistant import feedback, index, saved
from assistant.bm25 import BM25Index
from assistant.settings import Settings
from helpers import (PSYQA, REPO, cli_env, open_collection, psyqa, start_chroma_server,
                     unique_collection, write_doc)
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


SAVED_ID = "heal-saved-conversation-0001"


def seed_user_data(settings: Settings) -> None:
    """Feedback rows and a saved conversation (assistant.saved), as the app writes them."""
    db = feedback.db_path(settings)
    for i in range(3):
        feedback.save(db, question=f"q{i}", answer="a [1]", chunk_ids=[f"c{i}"], corpus_hash="h",
                      rating=1 if i % 2 else -1, comment=f"comment {i}")
    saved.save(db, SAVED_ID, [{"role": "user", "content": "a saved conversation"}])


def user_bytes(settings: Settings) -> str:
    files = sorted(p for p in settings.user_dir.iterdir() if p.name.startswith(feedback.FILENAME))
    assert files, f"no feedback database in {settings.user_dir}"
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def user_rows(settings: Settings) -> tuple:
    """The feedback rows and the seeded saved conversation (for a test in which the app saves
    conversations of its own, so the file's bytes change by design)."""
    db = feedback.db_path(settings)
    return feedback.rows(db), saved.load(db, SAVED_ID)


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


@pytest.fixture(scope="module")
def big_build(tmp_path_factory, embedder):
    """A clean build big enough to have persisted HNSW segment files."""
    base = tmp_path_factory.mktemp("heal-big")
    corpus = base / "corpus"
    bird_corpus(corpus)
    many_sections_corpus(corpus)
    settings = Settings(data_dir=base / "data", corpus_dir=corpus)
    report = run([corpus], settings, embedder=embedder)
    assert not report.failed and report.chunks_total >= 1000, report.as_json()
    seed_user_data(settings)
    return settings.data_dir, corpus, snapshot(settings)


def copy_of(build, tmp_path: Path) -> Settings:
    data, corpus, _ = build
    shutil.copytree(data, tmp_path / "data")
    return Settings(data_dir=tmp_path / "data", corpus_dir=corpus)


def segment_dir(settings: Settings) -> Path:
    dirs = [p for p in settings.chroma_dir.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def assert_damage_reported(settings: Settings, *needles: str) -> str:
    """status, ask and ingest each end in the same one line naming the path and the fix."""
    lines = [one_line(psyqa("status", settings=settings), *needles),
             one_line(psyqa("ask", QUESTION, settings=settings), *needles),
             one_line(psyqa("ingest", settings.corpus_dir, settings=settings), *needles)]
    for line in lines:
        assert "is damaged" in line and "psyqa ingest --rebuild" in line, line
    assert "Nothing was changed" in lines[2]
    st = json.loads(psyqa("status", "--json", settings=settings).stdout)
    assert st["damaged"] and all(n in st["damaged"] for n in needles), st
    return lines[0]


def assert_healed(settings: Settings, build, before: str, embedder) -> None:
    """The index equals the clean build, feedback is byte-identical, status is clean and a
    question is answered from it (in this process, with the session's model)."""
    from assistant.assistant import Assistant
    from assistant.services import Services
    from ingest.status import index_status

    assert snapshot(settings) == build[2], "the index after the fix differs from a clean build"
    assert user_bytes(settings) == before, "the feedback database changed"
    st = index_status(settings)
    assert st["damaged"] is None and st["drift"] == {"new": [], "changed": [], "removed": []}, st
    ans = Assistant(Services(settings=settings, embedder=embedder)).ask(QUESTION)
    assert ans.status == "answered" and ans.citations, ans.answer


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


# ------------------------------------------------------------------ embedded: damaged files

def test_corrupted_database_header(clean_build, tmp_path, monkeypatch, embedder):
    settings = copy_of(clean_build, tmp_path)
    before = user_bytes(settings)
    db = settings.chroma_dir / "chroma.sqlite3"
    with open(db, "r+b") as fh:  # what a bad disk, a half-copied backup or a sync tool does
        fh.write(b"\x00" * 100)
    assert_damage_reported(settings, str(db), "not a readable SQLite database")

    # The app: the same line, no traceback, nothing rebuilt behind the maintainer's back.
    from streamlit.testing.v1 import AppTest

    from test_app import APP, no_traceback, only_env

    monkeypatch.chdir(REPO)
    only_env(monkeypatch, PSYQA_DATA_DIR=str(settings.data_dir), PSYQA_CORPUS_DIR=str(settings.corpus_dir))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    no_traceback(at)
    shown = [e.value.replace("\\", "") for e in at.error]
    assert any(str(db) in e and "psyqa ingest --rebuild" in e for e in shown), shown
    damaged_bytes = db.read_bytes()

    said = rebuild(settings, embedder, cli=True)
    kept = sorted(index.damaged_dir(settings).glob("chroma-*/chroma.sqlite3"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes, "the damaged store was not kept"
    assert str(kept[0].parent) in said
    assert_healed(settings, clean_build, before, embedder)


@pytest.mark.parametrize("fault", ["truncated", "deleted"])
def test_truncated_or_deleted_segment_file(big_build, tmp_path, fault, embedder):
    settings = copy_of(big_build, tmp_path)
    before = user_bytes(settings)
    seg = segment_dir(settings)
    assert (seg / "index_metadata.pickle").exists(), "Chroma did not persist the segment: nothing to damage"
    if fault == "truncated":
        target = seg / "data_level0.bin"
        with open(target, "r+b") as fh:
            fh.truncate(target.stat().st_size // 2)
        needles = (str(target), "truncated")
    else:
        target = seg / "header.bin"
        target.unlink()
        needles = (str(target), "missing")
    assert_damage_reported(settings, *needles)
    rebuild(settings, embedder, cli=fault == "truncated")
    assert_healed(settings, big_build, before, embedder)


def test_deleted_segment_folder_is_reported(big_build, tmp_path):
    """Chroma itself answers this one with silently wrong results (one hit from its log)."""
    settings = copy_of(big_build, tmp_path)
    seg = segment_dir(settings)
    shutil.rmtree(seg)
    assert_damage_reported(settings, str(seg), "missing")


def test_deleted_bm25_folder_is_rebuilt_by_the_next_reader(clean_build, tmp_path, embedder):
    settings = copy_of(clean_build, tmp_path)
    before = user_bytes(settings)
    folder = index.bm25_dir(settings, index.generation(open_collection(settings)))
    shutil.rmtree(folder)
    res = psyqa("ask", QUESTION, settings=settings)
    assert res.returncode == 0 and "[1]" in res.stdout and "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(folder) in lines[0] and "rebuilt" in lines[0], lines
    assert_healed(settings, clean_build, before, embedder)


# ------------------------------------------------------------------ embedded: contradicting counts

def _no_chunks(settings: Settings) -> tuple[str, ...]:
    col = open_collection(settings)
    gen = index.generation(col)
    got = col.get(include=["metadatas"])
    col.update(ids=got["ids"], metadatas=[{"gen": gen + 5}] * len(got["ids"]))
    return (f"generation {gen} has no chunks",)


def _chunks_lost(settings: Settings) -> tuple[str, ...]:
    col = open_collection(settings)
    col.delete(ids=col.get()["ids"][:2])
    return ("holds", "should have")


def _bm25_of_a_future_generation(settings: Settings) -> tuple[str, ...]:
    col = open_collection(settings)
    gen = index.generation(col)
    future = index.bm25_dir(settings, gen + 7)
    shutil.copytree(index.bm25_dir(settings, gen), future)
    return (str(future), f"generation {gen + 7}")


@pytest.mark.parametrize("fault", [_no_chunks, _chunks_lost, _bm25_of_a_future_generation],
                         ids=["generation-without-chunks", "chunks-lost", "bm25-future-generation"])
def test_contradicting_index_is_reported_then_rebuilt(clean_build, tmp_path, fault, embedder):
    settings = copy_of(clean_build, tmp_path)
    before = user_bytes(settings)
    needles = fault(settings)
    assert_damage_reported(settings, str(settings.chroma_dir), *needles)
    rebuild(settings, embedder)
    assert_healed(settings, clean_build, before, embedder)
    assert sorted(index.damaged_dir(settings).glob("chroma-*/chroma.sqlite3")), "the damaged store was not kept"


def test_heal_reports_and_rebuilds_as_make_run_does(clean_build, tmp_path, embedder):
    settings = copy_of(clean_build, tmp_path)
    before = user_bytes(settings)
    _no_chunks(settings)
    res = psyqa("ingest", "--heal", settings.corpus_dir, settings=settings, timeout=900)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    # Said before the rebuild (it takes minutes on a real corpus), and what became of the store.
    assert lines[0].startswith("psyqa: The index at") and "is damaged" in lines[0], lines
    assert "Rebuilding it from the corpus now" in lines[0], lines
    assert "rebuilt the damaged index from the corpus" in lines[-1], lines
    kept = sorted(index.damaged_dir(settings).glob("chroma-*.txt"))
    assert len(kept) == 1 and str(kept[0].with_suffix("")) in lines[-1], (kept, lines)
    assert "has no chunks" in kept[0].read_text()
    assert_healed(settings, clean_build, before, embedder)


# ------------------------------------------------------------------ embedded: disk full during --rebuild

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
    many_sections_corpus(corpus, docs=20, sections=30)  # enough writes for the disk to fill mid-way
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
    one_line(res, "the disk is full", str(settings.data_dir), "the previous index is intact")

    # While the disk is still full: the previous index serves, nothing of the rebuild is left.
    assert not index.rebuild_dir(settings).exists(), "the partial rebuild was left on the full disk"
    assert snapshot(settings) == before
    ans = psyqa("ask", QUESTION, settings=settings)
    assert ans.returncode == 0 and "[1]" in ans.stdout and "Traceback" not in ans.stderr, ans.stderr
    st = psyqa("status", "--json", settings=settings)
    assert st.returncode == 0 and json.loads(st.stdout)["damaged"] is None, st.stdout + st.stderr

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
    """data/chroma, data/bm25, data/reports and data/feedback.sqlite3 (the layout before issue 17)
    move on first use: the index into data/index/, the feedback database (every table) into
    data/user/."""
    new = copy_of(clean_build, tmp_path)
    data = new.data_dir
    os.rename(new.chroma_dir, data / "chroma")
    os.rename(new.index_dir / "bm25", data / "bm25")
    os.rename(new.index_dir / "reports", data / "reports")
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
    assert st["indexed"] and st["damaged"] is None and st["store"].endswith(str(new.chroma_dir)), st
    assert not (data / "chroma").exists() and new.chroma_dir.exists()
    assert st["last_run"] and (new.index_dir / "reports").is_dir() and not (data / "reports").exists()
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
    copy.close()
    assert saved.load(backup, SAVED_ID) == [{"role": "user", "content": "a saved conversation"}]
    assert 50 <= len(backed) <= during
    assert [q for _, q in backed[3:]] == [f"question {i}" for i in range(len(backed) - 3)]

    # Restore as the README says: the app stopped, the current database (and its -wal, -shm)
    # moved aside, the backup copied into its place.
    feedback.save(db, question="after the backup", answer="a", chunk_ids=[], corpus_hash=None, rating=1)
    aside = tmp_path / "aside"
    aside.mkdir()
    for current in db.parent.glob(db.name + "*"):
        current.rename(aside / current.name)
    shutil.copyfile(backup, db)
    assert [(r["id"], r["question"]) for r in feedback.rows(db)] == backed


def test_status_and_app_compare_with_the_folders_the_index_was_built_from(tmp_path, embedder, monkeypatch):
    default, other = tmp_path / "corpus", tmp_path / "some" / "other"
    bird_corpus(other)
    write_doc(default / "x.md", "X", "## A\n\nSomething else.\n")
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=default)
    res = psyqa("ingest", other, settings=settings, timeout=900)
    assert res.returncode == 0, res.stderr
    st = json.loads(psyqa("status", "--json", settings=settings).stdout)
    assert st["roots"] == [str(other)] and st["root_folders"] == [str(other.resolve())], st
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


# ------------------------------------------------------------------ server mode

def server_settings(tmp_path: Path, host: str, port: int, name: str, corpus: Path, collection: str) -> Settings:
    return Settings(data_dir=tmp_path / name, corpus_dir=corpus, chroma_host=host, chroma_port=port,
                    collection=collection)


def server_snapshot(settings: Settings) -> dict:
    snap = snapshot(settings)
    snap.pop("roots")  # the same corpus; kept only to compare like with like below
    return snap


def clean_server_build(settings: Settings, tmp_path: Path, embedder) -> dict:
    clean = settings.model_copy(update={"data_dir": tmp_path / "clean", "collection": unique_collection("clean")})
    assert not run([settings.corpus_dir], clean, embedder=embedder).failed
    return server_snapshot(clean)


def test_server_collection_deleted_under_a_running_app(tmp_path, chroma_server, embedder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from assistant import store
    from test_app import APP, no_traceback, only_env, texts

    host, port = chroma_server
    corpus = tmp_path / "corpus"
    bird_corpus(corpus)
    settings = server_settings(tmp_path, host, port, "data", corpus, unique_collection("del"))
    assert not run([corpus], settings, embedder=embedder).failed
    seed_user_data(settings)
    before = user_rows(settings)
    monkeypatch.chdir(REPO)
    only_env(monkeypatch, PSYQA_DATA_DIR=str(settings.data_dir), PSYQA_CORPUS_DIR=str(corpus),
             PSYQA_CHROMA_HOST=host, PSYQA_CHROMA_PORT=str(port), PSYQA_COLLECTION=settings.collection)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.chat_input[0].set_value(QUESTION).run()
    no_traceback(at)
    assert any("[1]" in t.replace("\\", "") for t in texts(at.chat_message[-1]))

    store.open_client(settings).delete_collection(settings.collection)  # under the running app
    at.chat_input[0].set_value("What were the adverse events in the pelican trial?").run()
    no_traceback(at)
    errors = [e.value.replace("\\", "") for e in at.chat_message[-1].get("error")]
    assert len(errors) == 1, errors
    assert f"'{settings.collection}'" in errors[0] and "is gone" in errors[0] and "psyqa ingest" in errors[0]
    assert "\n" not in errors[0].strip()
    res = psyqa("ask", QUESTION, settings=settings)
    one_line(res, "psyqa ingest")

    assert not run([corpus], settings, embedder=embedder).failed  # the documented fix: ingest
    assert server_snapshot(settings) == clean_server_build(settings, tmp_path, embedder)
    # The app saved this conversation next to them (its own row); what was there is unchanged.
    assert user_rows(settings) == before
    assert len(saved.listing(feedback.db_path(settings))) == 2
    at.chat_input[0].set_value(QUESTION).run()  # the same app, not restarted
    no_traceback(at)
    last = at.chat_message[-1]
    assert not last.get("error") and any("[1]" in t.replace("\\", "") for t in texts(last))


def numbered_corpus(corpus: Path, n: int = 30) -> None:
    words = ("psilocybin therapy session depression remission trial placebo dose patient outcome "
             "integration screening ketamine infusion response week clinician serotonin cohort").split()
    for i in range(n):
        body = " ".join(" ".join(words[(i * 7 + j * 3 + k) % len(words)] for k in range(14)).capitalize() + "."
                        for j in range(12))
        write_doc(corpus / f"doc-{i:03d}.md", f"Document {i}", f"## Part\n\n{body}\n\n## More\n\n{body}\n")


def start_ingest(settings: Settings, **env: str) -> subprocess.Popen:
    return subprocess.Popen([PSYQA, "ingest", str(settings.corpus_dir)], cwd=REPO,
                            env=cli_env(settings, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(what, timeout: float = 300, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what.__name__}")


def leased(settings: Settings):
    """The ingest lease recorded on the server for `settings`' collection (None: none), once the
    run that wrote it has let go of the short claim it holds while writing it."""
    col = open_collection(settings)
    if col is None or open_collection(settings, settings.collection + "__claim") is not None:
        return None
    return index.lease_of(col.metadata)


def test_server_killed_in_the_middle_of_an_ingest(tmp_path, embedder):
    """The ingest is frozen (SIGSTOP) right after it recorded its lease, the server is killed,
    the ingest goes on: it ends in one line. The server restarted, `psyqa ingest` takes the dead
    run's lease over and the index equals a clean build."""
    from test_reliability import kill, launch_chroma

    path = tmp_path / "server"
    proc, host, port = start_chroma_server(path)
    try:
        corpus = tmp_path / "corpus"
        numbered_corpus(corpus)
        settings = server_settings(tmp_path, host, port, "data", corpus, unique_collection("srvkill"))
        seed_user_data(settings)
        before = user_bytes(settings)
        ingest = start_ingest(settings)
        try:
            record = wait_for(lambda: leased(settings))
            assert record["ingest_pid"] == ingest.pid, record
            os.killpg(ingest.pid, signal.SIGSTOP)
            kill(proc)  # the server dies in the middle of the ingest
            os.killpg(ingest.pid, signal.SIGCONT)
            out, err = ingest.communicate(timeout=300)
        finally:
            if ingest.poll() is None:
                os.killpg(ingest.pid, signal.SIGKILL)
                ingest.wait(30)
        res = subprocess.CompletedProcess(ingest.args, ingest.returncode, out, err)
        one_line(res, f"{host}:{port}", "psyqa ingest")

        proc = launch_chroma(path, port)  # the fix: start the server again, run ingest again
        assert leased(settings) is not None, "the dead run's lease should still be recorded"
        res = psyqa("ingest", corpus, settings=settings, timeout=900)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert "took over" in res.stderr, res.stderr
        assert server_snapshot(settings) == clean_server_build(settings, tmp_path, embedder)
        assert leased(settings) is None, "the lease was left behind"
        assert user_bytes(settings) == before
    finally:
        kill(proc)


def test_two_ingests_against_one_server_one_refuses_then_takes_over(tmp_path, chroma_server, embedder):
    """Two machines (two data folders) ingest into one collection. The first holds the lease (it
    is frozen mid-run so the timing is certain); the second refuses, naming it; after a SIGKILL
    of the first, the second takes over and the result equals a clean build."""
    host, port = chroma_server
    corpus = tmp_path / "corpus"
    numbered_corpus(corpus)
    collection = unique_collection("lease")
    first = server_settings(tmp_path, host, port, "machine-a", corpus, collection)
    second = server_settings(tmp_path, host, port, "machine-b", corpus, collection)
    env_b = cli_env(second, PSYQA_INGEST_LEASE_S="60")
    a = start_ingest(first, PSYQA_INGEST_LEASE_S="60")
    try:
        record = wait_for(lambda: leased(first))
        assert record["ingest_pid"] == a.pid and record["ingest_host"], record
        os.killpg(a.pid, signal.SIGSTOP)
        refused = psyqa("ingest", corpus, settings=second, timeout=120, env=env_b)
        one_line(refused, "Another 'psyqa ingest' is writing", f"pid {a.pid}", collection)
        assert not (second.index_dir / "bm25").exists(), "the refused run wrote derived files"
        assert leased(first)["ingest_token"] == record["ingest_token"], "the refused run touched the lease"
        os.killpg(a.pid, signal.SIGKILL)  # the first machine's ingest crashes
        a.wait(30)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait(30)
    res = psyqa("ingest", corpus, settings=second, timeout=900, env=env_b)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "took over" in res.stderr and f"pid {a.pid}" in res.stderr, res.stderr
    assert leased(second) is None
    assert server_snapshot(second) == clean_server_build(second, tmp_path, embedder)


def test_a_fresh_lease_of_another_host_is_refused_and_a_stale_one_taken_over(tmp_path, chroma_server, embedder):
    from assistant import store

    host, port = chroma_server
    corpus = tmp_path / "corpus"
    bird_corpus(corpus)
    settings = server_settings(tmp_path, host, port, "data", corpus, unique_collection("stale"))
    assert not run([corpus], settings, embedder=embedder).failed
    col = store.get_collection(store.open_client(settings), settings.collection)
    record = {"ingest_host": "elsewhere.example", "ingest_pid": 4242, "ingest_started": index.now(),
              "ingest_heartbeat": time.time(), "ingest_token": "t0ken"}
    col.modify(metadata=dict(col.metadata) | record)
    env = cli_env(settings, PSYQA_INGEST_LEASE_S="30")
    one_line(psyqa("ingest", corpus, settings=settings, env=env), "elsewhere.example", "pid 4242",
             "taken over once its heartbeat is 30 s old")
    col = store.get_collection(store.open_client(settings), settings.collection)
    col.modify(metadata=dict(col.metadata) | {"ingest_heartbeat": time.time() - 31})
    res = psyqa("ingest", corpus, settings=settings, env=env)
    assert res.returncode == 0 and "took over" in res.stderr and "elsewhere.example" in res.stderr, res.stderr
    assert index.lease_of(open_collection(settings).metadata) is None
    assert server_snapshot(settings) == clean_server_build(settings, tmp_path, embedder)


def test_damaged_server_collection_is_renamed_aside_by_rebuild(tmp_path, chroma_server, embedder):
    from assistant import store

    host, port = chroma_server
    corpus = tmp_path / "corpus"
    bird_corpus(corpus)
    settings = server_settings(tmp_path, host, port, "data", corpus, unique_collection("aside"))
    assert not run([corpus], settings, embedder=embedder).failed
    col = open_collection(settings)
    col.delete(ids=col.get()["ids"][:2])  # chunks lost under the metadata
    for args in (("status",), ("ask", QUESTION), ("ingest", corpus)):
        one_line(psyqa(*args, settings=settings), f"{host}:{port}", "is damaged", "psyqa ingest --rebuild")
    res = psyqa("ingest", corpus, "--rebuild", settings=settings, timeout=900)
    assert res.returncode == 0, res.stderr
    names = [c.name for c in store.open_client(settings).list_collections()]
    aside = [n for n in names if n.startswith(f"{settings.collection}__damaged-")]
    assert len(aside) == 1 and aside[0] in res.stderr, (names, res.stderr)
    assert server_snapshot(settings) == clean_server_build(settings, tmp_path, embedder)
