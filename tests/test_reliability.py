"""Reliability under faults, with nothing lost (issue 7).

- Ingest while answering: a thread keeps asking through one `Assistant.ask` while
  `ingest.pipeline.run` adds, changes and removes documents; no error, and every answer's cited
  chunk ids belong to the chunk ids of ONE committed generation.
- Chroma server killed mid-conversation (SIGKILL): the next question fails fast with a
  StoreUnavailableError naming the server; after a restart on the same port and path the same
  Assistant answers again by itself. The same through the app (AppTest).
- The disk fills during ingest (a small tmpfs as the data dir): the CLI ends with a one-line message
  about disk space and no traceback, and the previous index stays usable.
- SIGKILL during feedback writes loses no committed row; the database is intact and in WAL mode.

Real components: embedded Chroma and a real `chroma run`, the real model, the installed CLI.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import traceback
import threading
import time
from pathlib import Path

import pytest

from assistant.errors import StoreUnavailableError
from assistant.index import visible
from assistant.settings import Settings
from helpers import CHROMA, REPO, cli_env, open_collection, psyqa, start_chroma_server, unique_collection, write_doc

pytestmark = pytest.mark.slow


def build_assistant(settings: Settings, embedder):
    from assistant.assistant import Assistant
    from assistant.services import Services

    return Assistant(Services(settings=settings, embedder=embedder))


def generation_ids(settings: Settings, col=None) -> tuple[int, set[str]]:
    """The committed generation and the chunk ids a reader of it sees (`col`: read through that
    collection handle instead of a fresh client)."""
    col = col if col is not None else open_collection(settings)
    gen = int((col.metadata or {}).get("generation", 0))
    got = col.get(include=["metadatas"])
    return gen, {cid for cid, m in zip(got["ids"], got["metadatas"]) if visible(m, gen)}


def doc(corpus: Path, name: str, bird: str, extra: str = "") -> None:
    write_doc(corpus / f"{name}.md", f"The {bird} psilocybin trial",
              f"## Results\n\nThe {bird} trial of psilocybin for depression reported remission in "
              f"forty percent of adults at week six. {extra}\n\n## Safety\n\nIn the {bird} trial, "
              "headache and nausea were the most common adverse events of psilocybin.\n",
              substances=["psilocybin"], conditions=["depression"], source_type="trial")


# ------------------------------------------------------------------ ingest while answering

def test_answers_come_from_one_generation_while_ingest_changes_the_corpus(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus)
    from ingest.pipeline import run

    doc(corpus, "a", "zebrafinch")
    doc(corpus, "b", "heron")
    doc(corpus, "c", "pelican")
    assert not run([corpus], settings, embedder=embedder).failed
    asst = build_assistant(settings, embedder)
    # Read generations through the Assistant's own client: a fresh client (which drops Chroma's
    # per-path system cache) while the asker runs would test the test, not the product.
    gens = dict([generation_ids(settings, asst.services.collection())])
    questions = [f"What did the {b} trial of psilocybin find?" for b in
                 ("zebrafinch", "kingfisher", "heron", "pelican", "osprey")]
    results: list[tuple[str, str, set[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def asker() -> None:
        i = 0
        while not stop.is_set():
            q = questions[i % len(questions)]
            i += 1
            try:
                ans = asst.ask(q)
                results.append((q, ans.status, {c.chunk_id for c in ans.citations}))
            except BaseException as exc:  # noqa: BLE001 - recorded and asserted below
                errors.append(exc)

    thread = threading.Thread(target=asker, daemon=True)
    thread.start()

    def step() -> None:
        before = len(results)
        report = run([corpus], settings, embedder=embedder)
        assert not report.failed, report.failed
        gen, ids = generation_ids(settings, asst.services.collection())
        gens[gen] = ids
        deadline = time.monotonic() + 60
        while len(results) < before + 3 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)  # let the asker see this generation too

    doc(corpus, "d", "osprey")                       # add
    step()
    doc(corpus, "a", "kingfisher")                   # change: zebrafinch -> kingfisher
    step()
    (corpus / "c.md").unlink()                       # remove
    step()
    doc(corpus, "a", "zebrafinch", "Follow-up lasted twelve months.")  # change again
    step()
    stop.set()
    thread.join(120)
    assert not thread.is_alive(), "the asking thread hung"
    assert not errors, f"{len(errors)} errors while answering during ingest; the first:\n" + "".join(
        traceback.format_exception(errors[0]))[-3000:]
    assert len(gens) == 5, sorted(gens)
    assert len(results) >= 12, len(results)
    answered = [r for r in results if r[2]]
    assert answered, "no answer cited anything: the check below would be empty"
    for q, status, cited in results:
        owners = [g for g, ids in gens.items() if cited <= ids]
        assert owners, f"{q!r} ({status}) cited chunks of no single generation: {sorted(cited)}"
    # the markers really moved between generations (so the check above had something to catch)
    g1, g3 = gens[min(gens)], gens[min(gens) + 2]
    assert g1 - g3 and g3 - g1


def test_answers_stay_whole_while_psyqa_ingest_runs_in_another_process(tmp_path, embedder):
    """The deployment case: the app answers (this process) while `psyqa ingest` (another process)
    adds, changes and removes documents in the same embedded store. No error; every answer from
    one committed generation; the new generation is noticed without rebuilding the Assistant."""
    from ingest.pipeline import run

    corpus = tmp_path / "corpus"
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus)
    doc(corpus, "a", "zebrafinch")
    doc(corpus, "b", "heron")
    doc(corpus, "c", "pelican")
    assert not run([corpus], settings, embedder=embedder).failed
    asst = build_assistant(settings, embedder)
    gens = dict([generation_ids(settings, asst.services.collection())])
    doc(corpus, "a", "kingfisher")
    (corpus / "c.md").unlink()
    doc(corpus, "d", "osprey")
    questions = [f"What did the {b} trial of psilocybin find?" for b in
                 ("zebrafinch", "kingfisher", "heron", "pelican", "osprey")]
    results: list[tuple[float, str, str, set[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def asker() -> None:
        i = 0
        while not stop.is_set():
            q = questions[i % len(questions)]
            i += 1
            try:
                ans = asst.ask(q)
                results.append((time.monotonic(), q, ans.status, {c.chunk_id for c in ans.citations}))
            except BaseException as exc:  # noqa: BLE001 - recorded and asserted below
                errors.append(exc)
                error_times.append(time.monotonic())
                time.sleep(0.1)

    error_times: list[float] = []
    thread = threading.Thread(target=asker, daemon=True)
    thread.start()
    res = psyqa("ingest", corpus, settings=settings, timeout=600)
    finished = time.monotonic()
    deadline = finished + 30
    while time.monotonic() < deadline:  # until the asker has seen the new index
        if any(t > finished and "osprey" in q and cited for t, q, _, cited in results):
            break
        time.sleep(0.1)
    stop.set()
    thread.join(120)
    assert res.returncode == 0, res.stderr[-2000:]
    late = sum(t > finished for t in error_times)
    assert not errors, (f"{len(errors)} errors while another process ingested ({late} of them after it "
                        f"had finished, {sum(t > finished for t, *_ in results)} answers after it); the "
                        "first:\n" + "".join(traceback.format_exception(errors[0]))[-3000:])
    gen, ids = generation_ids(settings)
    gens[gen] = ids
    assert len(gens) == 2, sorted(gens)
    for _, q, status, cited in results:
        assert any(cited <= g for g in gens.values()), f"{q!r} ({status}) mixes generations: {sorted(cited)}"
    assert any(t > finished and "osprey" in q and cited for t, q, _, cited in results), \
        "the answering process never saw the document the other process added"


# ------------------------------------------------------------------ Chroma server killed

def launch_chroma(path: Path, port: int) -> subprocess.Popen:
    log = open(path / "server.log", "ab")
    proc = subprocess.Popen([CHROMA, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (path / "server.log").read_text(errors="replace")[-2000:]
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port,
                                settings=ChromaSettings(anonymized_telemetry=False)).heartbeat()
            return proc
        except Exception:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("chroma run did not come back within 90 s")


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def test_chroma_server_killed_then_restarted(tmp_path, embedder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ingest.pipeline import run
    from test_app import APP, no_traceback, only_env, texts

    path = tmp_path / "server"
    proc, host, port = start_chroma_server(path)
    try:
        corpus = tmp_path / "corpus"
        doc(corpus, "a", "zebrafinch")
        doc(corpus, "b", "heron")
        settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, chroma_host=host,
                            chroma_port=port, collection=unique_collection("kill"))
        assert not run([corpus], settings, embedder=embedder).failed
        asst = build_assistant(settings, embedder)
        q = "What did the heron trial of psilocybin find?"
        first = asst.ask(q)
        assert first.status == "answered", first.answer

        monkeypatch.chdir(REPO)
        only_env(monkeypatch, PSYQA_DATA_DIR=str(settings.data_dir), PSYQA_CORPUS_DIR=str(corpus),
                 PSYQA_CHROMA_HOST=host, PSYQA_CHROMA_PORT=str(port), PSYQA_COLLECTION=settings.collection)
        at = AppTest.from_file(APP, default_timeout=300)
        at.run()
        no_traceback(at)
        at.chat_input[0].set_value(q).run()
        no_traceback(at)
        assert any("[1]" in t.replace("\\", "") for t in texts(at.chat_message[-1]))

        kill(proc)  # SIGKILL mid-conversation
        for _ in range(2):
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailableError) as err:
                asst.ask("And what about its side effects?", [{"role": "user", "content": q},
                                                              {"role": "assistant", "content": first.answer}])
            assert time.monotonic() - t0 < 10, "a lost server must fail fast, not hang"
            assert f"{host}:{port}" in str(err.value) and "Chroma server" in str(err.value)

        if at.chat_input:
            at.chat_input[0].set_value("What are the adverse events in the heron trial?").run()
        else:
            at.run()
        no_traceback(at)
        shown = [e.value.replace("\\", "") for e in at.error]  # escaped Markdown
        assert any(f"{host}:{port}" in e for e in shown), shown
        assert "not medical advice" in at.info[0].value  # the page is still up

        proc = launch_chroma(path, port)  # same port, same data
        again = asst.ask(q)  # the same Assistant, not rebuilt
        assert again.status == "answered" and again.answer == first.answer
        at.run()
        at.chat_input[0].set_value("What did the zebrafinch trial of psilocybin find?").run()
        no_traceback(at)
        last = texts(at.chat_message[-1])
        assert not at.chat_message[-1].get("error"), last
        assert any("zebrafinch" in t for t in last), last
    finally:
        kill(proc)


# ------------------------------------------------------------------ disk full during ingest

@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_during_ingest_keeps_the_previous_index(tmp_path, small_disk, embedder):
    from assistant.assistant import Assistant
    from ingest.pipeline import run

    small, big = tmp_path / "small", tmp_path / "big"
    for name, bird in (("a", "zebrafinch"), ("b", "heron"), ("c", "pelican")):
        doc(small, name, bird)
        doc(big, name, bird)
    words = ("psilocybin therapy session depression remission trial placebo dose patient outcome "
             "integration screening ketamine infusion response week clinician serotonin cohort").split()
    for i in range(12):
        body = " ".join(" ".join(words[(i * 7 + j * 3 + k) % len(words)] for k in range(14)).capitalize() + "."
                        for j in range(25))
        write_doc(big / f"extra{i:02d}.md", f"Extra document {i}", f"## Part\n\n{body}\n")
    settings = Settings(data_dir=small_disk / "data", corpus_dir=small)
    assert not run([small], settings, embedder=embedder).failed
    gen_before, ids_before = generation_ids(settings)
    # Leave ~100 KB free: the small index fits, the bigger corpus does not.
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - 100 * 1024))

    problems: list[str] = []
    res = psyqa("ingest", big, settings=settings, timeout=600)
    out = res.stdout + res.stderr
    if res.returncode == 0:
        problems.append(f"ingest into a full disk exited 0: {out[-500:]}")
    if "Traceback" in out:
        problems.append("psyqa ingest printed a raw traceback on a full disk:\n" + res.stderr[-1500:])
    msgs = [ln for ln in res.stderr.splitlines() if ln.startswith("psyqa:") or ln.startswith("error:")]
    if not any(("space" in ln.lower() or "disk" in ln.lower() or "full" in ln.lower()) for ln in msgs):
        problems.append(f"no one-line message about disk space; stderr ends: {res.stderr[-300:]!r}")

    # While the disk is still full, the previous index must be usable.
    status = psyqa("status", "--json", settings=settings)
    if status.returncode != 0 or "Traceback" in status.stderr:
        problems.append(f"psyqa status fails after the failed ingest: {status.stderr[-400:]}")
    try:
        gen_after, ids_after = generation_ids(settings)
        if (gen_after, ids_after) != (gen_before, ids_before):
            problems.append(f"the committed generation changed: {gen_before} -> {gen_after}")
        ans = Assistant.from_settings(settings).ask("What did the heron trial of psilocybin find?")
        if ans.status != "answered" or not {c.chunk_id for c in ans.citations} <= ids_before:
            problems.append(f"ask did not answer from the previous generation: {ans.status} {ans.answer[:200]}")
    except Exception as exc:  # noqa: BLE001 - reported with the other problems
        problems.append(f"reading the previous index failed while the disk is full: {type(exc).__name__}: {exc}")

    # Once space is freed the previous generation is still what readers see.
    filler.unlink()
    try:
        gen_after, ids_after = generation_ids(settings)
        if (gen_after, ids_after) != (gen_before, ids_before):
            problems.append(f"after freeing space the generation is {gen_after}, not {gen_before}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"after freeing space the index is unreadable: {type(exc).__name__}: {exc}")
    assert not problems, "\n\n".join(problems)


# ------------------------------------------------------------------ SIGKILL during feedback writes

WRITER = textwrap.dedent("""
    import sys
    from assistant import feedback
    db = sys.argv[1]
    i = 0
    while True:
        rid = feedback.save(db, question=f"question {i}", answer="answer " * 200, chunk_ids=[f"c{i}"],
                            corpus_hash="h", rating=1 if i % 2 else -1, comment=f"comment {i}")
        print(rid, flush=True)
        i += 1
""")


def test_sigkill_during_feedback_writes_loses_nothing_committed(tmp_path):
    db = tmp_path / "data" / "feedback.sqlite3"
    committed: list[int] = []
    for stop_after in (5, 40, 17):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=REPO, env=cli_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            got = 0
            while got < stop_after:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                committed.append(int(line))
                got += 1
            os.killpg(proc.pid, signal.SIGKILL)  # mid-loop: the next save is under way
            proc.wait(30)
            rest = proc.stdout.read()  # ids printed after our last read were committed too
            committed += [int(x) for x in rest.split()]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            have = {r[0] for r in conn.execute("SELECT id FROM feedback")}
        finally:
            conn.close()
        missing = sorted(set(committed) - have)
        assert not missing, f"committed rows lost after SIGKILL: {missing}"
    from assistant import feedback

    rows = feedback.rows(db)  # and the store still works through its own API
    assert {r["id"] for r in rows} >= set(committed)
    assert feedback.save(db, question="after", answer="a", chunk_ids=[], corpus_hash=None, rating=1) > max(committed)

