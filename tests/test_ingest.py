"""Ingest as a sync: identity, incremental runs, settings changes, SIGKILL at any moment,
the ingest lock, and the CLI's machine-readable output. Real Chroma (embedded and `chroma run`),
the real bundled model, the installed `psyqa` command.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (PSYQA, assert_consistent, cli_env, doc_ids, fresh_like, open_collection,
                     parse_one_json, psyqa, snapshot, write_doc)

from assistant.errors import IndexMismatchError
from assistant import index
from assistant.bm25 import BM25Index
from ingest.pipeline import run

pytestmark = pytest.mark.slow

WORDS = ("psilocybin therapy session depression remission trial placebo dose patient outcome "
         "integration preparation screening ketamine infusion response rate week follow-up "
         "clinician consent serotonin receptor blinded cohort adverse event").split()


def sentences(seed, n: int, words: int = 14) -> str:
    rng = random.Random(str(seed))
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(n))


def small_corpus(corpus: Path) -> None:
    """Four documents; `long.md` spans several chunks."""
    write_doc(corpus / "alpha.md", "Alpha", f"## Background\n\n{sentences('a1', 3)}\n\n## Results\n\n{sentences('a2', 3)}\n",
              source_type="summary", substances=["mdma"])
    write_doc(corpus / "beta.md", "Beta", f"## Methods\n\n{sentences('b1', 3)}\n", source_type="trial")
    write_doc(corpus / "sub" / "gamma.md", "Gamma", f"## Safety\n\n{sentences('g1', 4)}\n")
    write_doc(corpus / "long.md", "Long", "## Part one\n\n" + sentences("l1", 40) + "\n\n## Part two\n\n" + sentences("l2", 5) + "\n")


def ids_of(snap, doc: str) -> set[str]:
    return {cid for cid, (d, _, _) in snap.items() if d == doc}


def bm25_ids(settings) -> list[str]:
    col = open_collection(settings)
    gen = index.generation(col)
    lex = BM25Index.load(index.bm25_dir(settings, gen))
    assert lex is not None, f"no BM25 files for generation {gen}"
    assert lex.generation == gen
    return lex.ids


def assert_bm25_matches(settings) -> None:
    ids = bm25_ids(settings)
    col_ids = open_collection(settings).get()["ids"]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(col_ids), "BM25 files of the current generation differ from the collection"
    host = f"{settings.chroma_host.replace(':', '_')}_{settings.chroma_port}-" if settings.chroma_host else ""
    gens = [d for d in (settings.index_dir / "bm25").iterdir()
            if d.is_dir() and d.name.startswith(f"{host}{settings.collection}-g")]
    assert len(gens) == 1, f"older BM25 generations left behind: {gens}"


def assert_equals_clean_build(settings, embedder, tmp_path: Path, name: str = "clean", **overrides) -> None:
    clean = fresh_like(settings, tmp_path / name, **overrides)
    report = run([settings.corpus_dir], clean, embedder=embedder)
    got, want = snapshot(settings), snapshot(clean)
    assert_consistent(got)
    assert doc_ids(got) == doc_ids(want)
    assert set(got) == set(want), (f"missing {sorted(set(want) - set(got))[:5]}, "
                                   f"extra {sorted(set(got) - set(want))[:5]}")
    assert got == want
    return report


# ----------------------------------------------------------------------------- identity and incremental

def test_unchanged_second_run_embeds_nothing(backend, embedder):
    small_corpus(backend.corpus_dir)
    first = run([backend.corpus_dir], backend, embedder=embedder)
    assert (first.added, first.updated, first.removed, first.failed) == (4, 0, 0, [])
    before = snapshot(backend)
    gen = open_collection(backend).metadata["generation"]
    second = run([backend.corpus_dir], backend, embedder=embedder)
    assert second.chunks_embedded == 0
    assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 4, 0)
    assert snapshot(backend) == before
    assert open_collection(backend).metadata["generation"] == gen, "a no-op run bumped the generation"
    assert_bm25_matches(backend)


def test_changed_file_replaces_only_its_chunks(backend, embedder):
    small_corpus(backend.corpus_dir)
    run([backend.corpus_dir], backend, embedder=embedder)
    before = snapshot(backend)
    long_path = backend.corpus_dir / "long.md"
    long_path.write_text(long_path.read_text().replace("## Part two\n\n", "## Part two\n\nA new first sentence here. "))
    report = run([backend.corpus_dir], backend, embedder=embedder)
    after = snapshot(backend)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 3, 0)
    old, new = ids_of(before, "long.md"), ids_of(after, "long.md")
    gone, fresh = old - new, new - old
    assert gone and fresh, "editing a section must change some chunk ids"
    assert not gone & set(after), "old chunk ids of the changed file are still there"
    assert report.chunks_embedded == len(fresh), "unchanged chunks were re-embedded"
    for doc in ("alpha.md", "beta.md", "sub/gamma.md"):
        assert {k: before[k] for k in ids_of(before, doc)} == {k: after[k] for k in ids_of(after, doc)}
    assert_consistent(after)
    assert_bm25_matches(backend)


def test_removed_file_loses_its_chunks(backend, embedder):
    small_corpus(backend.corpus_dir)
    run([backend.corpus_dir], backend, embedder=embedder)
    before = snapshot(backend)
    (backend.corpus_dir / "sub" / "gamma.md").unlink()
    report = run([backend.corpus_dir], backend, embedder=embedder)
    after = snapshot(backend)
    assert (report.removed, report.unchanged, report.chunks_embedded) == (1, 3, 0)
    assert "sub/gamma.md" not in doc_ids(after)
    assert set(after) == set(before) - ids_of(before, "sub/gamma.md")
    assert_bm25_matches(backend)


def test_failing_file_keeps_its_previous_chunks(backend, embedder):
    small_corpus(backend.corpus_dir)
    run([backend.corpus_dir], backend, embedder=embedder)
    before = snapshot(backend)
    (backend.corpus_dir / "beta.md").write_text("---\ntitle: [broken\n---\n\nBody.\n")
    report = run([backend.corpus_dir], backend, embedder=embedder)
    assert [f["path"] for f in report.failed] == ["beta.md"]
    assert report.removed == 0
    assert snapshot(backend) == before, "nothing already indexed may be lost when a file fails"
    assert_bm25_matches(backend)


def test_sequence_of_changes_equals_clean_build(backend, embedder, tmp_path):
    corpus = backend.corpus_dir
    small_corpus(corpus)
    run([corpus], backend, embedder=embedder)
    (corpus / "alpha.md").write_text((corpus / "alpha.md").read_text().replace("## Results", "## Outcomes"))
    (corpus / "beta.md").unlink()
    write_doc(corpus / "delta.md", "Delta", f"## Notes\n\n{sentences('d1', 6)}\n")
    write_doc(corpus / "renamed.md", "Gamma", (corpus / "sub" / "gamma.md").read_text().split("---\n", 2)[2])
    (corpus / "sub" / "gamma.md").unlink()
    report = run([corpus], backend, embedder=embedder)
    assert (report.added, report.updated, report.removed, report.unchanged) == (2, 1, 2, 1)
    report = run([corpus], backend, embedder=embedder)
    assert report.chunks_embedded == 0 and report.unchanged == 4
    assert_equals_clean_build(backend, embedder, tmp_path)
    assert_bm25_matches(backend)


def test_ingesting_a_subfolder_only_removes_inside_it(settings_factory, embedder):
    settings = settings_factory()
    corpus = settings.corpus_dir
    small_corpus(corpus)
    write_doc(corpus / "sub" / "epsilon.md", "Epsilon", f"## Notes\n\n{sentences('e1', 2)}\n")
    run([corpus], settings, embedder=embedder)
    before = snapshot(settings)
    (corpus / "sub" / "epsilon.md").unlink()
    (corpus / "beta.md").unlink()  # outside the folder given: must stay indexed for now
    report = run([corpus / "sub"], settings, embedder=embedder)
    after = snapshot(settings)
    assert (report.removed, report.unchanged, report.added) == (1, 1, 0)
    assert doc_ids(after) == {"alpha.md", "beta.md", "long.md", "sub/gamma.md"}
    assert set(after) == set(before) - ids_of(before, "sub/epsilon.md")
    report = run(None, settings, embedder=embedder)  # the default: the whole corpus folder
    assert (report.removed, report.unchanged) == (1, 3)
    assert "beta.md" not in doc_ids(snapshot(settings))
    assert_bm25_matches(settings)


def test_other_chunking_settings_need_rebuild(backend, embedder, tmp_path):
    small_corpus(backend.corpus_dir)
    run([backend.corpus_dir], backend, embedder=embedder)
    before = snapshot(backend)
    other = backend.model_copy(update={"max_tokens": 200})
    with pytest.raises(IndexMismatchError) as info:
        run([backend.corpus_dir], other, embedder=embedder)
    assert "psyqa ingest --rebuild" in str(info.value)
    assert "max_tokens" in str(info.value)
    assert snapshot(backend) == before, "a refused run changed the index"
    report = run([backend.corpus_dir], other, rebuild=True, embedder=embedder)
    assert report.failed == [] and report.added == 4
    assert open_collection(other).metadata["max_tokens"] == 200
    assert snapshot(other) != before
    assert_equals_clean_build(other, embedder, tmp_path, max_tokens=200)
    assert_bm25_matches(other)
    names = [c.name if hasattr(c, "name") else c for c in _client(other).list_collections()]
    assert f"{other.collection}__rebuild" not in names, "the staging collection was left behind"
    # ...and the old settings are now the mismatch.
    with pytest.raises(IndexMismatchError):
        run([backend.corpus_dir], backend, embedder=embedder)


def _client(settings):
    from assistant import store

    return store.open_client(settings)


# ----------------------------------------------------------------------------- SIGKILL

def kill_doc(corpus: Path, i: int, version: int) -> None:
    write_doc(corpus / f"doc-{i:03d}.md", f"Document {i}",
              f"## Background\n\n{sentences((i, version, 'b'), 5)}\n\n## Findings\n\n{sentences((i, version, 'f'), 5)}\n",
              source_type="summary")


def _holds_ingest_lock(pid: int, lock: Path) -> bool:
    """Whether process `pid` holds the ingest lock (its flock, as /proc/locks lists it), read
    without taking the lock: probing it would make the ingest under test refuse to start."""
    try:
        ino = lock.stat().st_ino
        entries = Path("/proc/locks").read_text()
    except OSError:
        return False
    for line in entries.splitlines():
        f = line.split()
        # "1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<inode> 0 EOF"
        if len(f) > 5 and f[1] == "FLOCK" and f[4] == str(pid) and f[5].endswith(f":{ino}"):
            return True
    return False


def _timed_ingest(settings, corpus: Path, kill_after: float | None, *extra: str) -> tuple[str, float]:
    """`psyqa ingest` in a child process, SIGKILLed `kill_after` seconds after it took the ingest
    lock (None: run to the end). The clock starts at the lock, not at the launch, so the Python
    start-up and imports (seconds, and most of the variance on a loaded machine) do not decide
    where the kill lands. Returns (outcome, seconds the run held the lock before it ended)."""
    proc = subprocess.Popen([PSYQA, "ingest", str(corpus), *extra], cwd=str(Path(__file__).resolve().parents[1]),
                            env=cli_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    lock = settings.index_dir / "ingest.lock"
    try:
        deadline = time.monotonic() + 600
        while not _holds_ingest_lock(proc.pid, lock) and proc.poll() is None:
            assert time.monotonic() < deadline, "the ingest never took its lock"
            time.sleep(0.005)
        locked = time.monotonic()
        try:
            proc.wait(timeout=kill_after)
            return f"finished before the kill (rc {proc.returncode})", time.monotonic() - locked
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return "killed", time.monotonic() - locked
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def _kill_at(settings, corpus: Path, frac: float, work: float, change, *extra: str) -> list[str]:
    """Kill an ingest `frac` of the way through `work` seconds of locked work. A run that
    finished first (a loaded machine is not slow every time, and a run that repairs a killed one
    has less to do than a full one) is tried again, after `change` gives it new work, with half
    the delay: up to six runs. Returns every outcome."""
    outcomes = []
    delay = frac * work
    for _ in range(6):
        outcome, _ = _timed_ingest(settings, corpus, delay, *extra)
        outcomes.append(f"{outcome} at {delay:.2f}s")
        if outcome == "killed":
            break
        change()
        delay /= 2
    return outcomes


def test_sigkill_at_any_moment_then_rerun_equals_clean_build(tmp_path, settings_factory, embedder):
    corpus = tmp_path / "corpus"
    for i in range(48):
        kill_doc(corpus, i, 0)
    measure = settings_factory(tmp_path / "measure", corpus_dir=corpus)
    outcome, work = _timed_ingest(measure, corpus, None)  # how long a full ingest holds the lock
    assert "rc 0" in outcome, outcome
    assert len(doc_ids(snapshot(measure))) == 48

    victim = settings_factory(tmp_path / "victim", corpus_dir=corpus)
    outcomes = []
    rng = random.Random(42)
    next_id = 48
    versions = iter(range(100, 10**6))

    def change() -> None:  # edit three documents: the next run has chunks to embed and write
        present = sorted(int(p.stem.split("-")[1]) for p in corpus.glob("doc-*.md"))
        for i in rng.sample(present, 3):
            kill_doc(corpus, i, next(versions))

    for step, frac in enumerate([0.15, 0.35, 0.55, 0.75, 0.9]):
        if step >= 1:  # change the corpus between kills: edit some, delete some, add some
            present = sorted(int(p.stem.split("-")[1]) for p in corpus.glob("doc-*.md"))
            for i in rng.sample(present, 3):
                kill_doc(corpus, i, step)
            for i in rng.sample(present, 2):
                (corpus / f"doc-{i:03d}.md").unlink(missing_ok=True)
            for _ in range(2):
                kill_doc(corpus, next_id, 0)
                next_id += 1
        tried = _kill_at(victim, corpus, frac, work, change)
        outcomes.append((frac, tried, assert_consistent_or_partial(victim)))
    outcomes.append(("rebuild 0.8", _kill_at(victim, corpus, 0.8, work, change, "--rebuild"),
                     assert_consistent_or_partial(victim)))
    final = psyqa("ingest", corpus, "--json", settings=victim)
    assert final.returncode == 0, final.stderr
    assert parse_one_json(final.stdout)["failed"] == []
    # Every step ends in a kill (each is retried until one lands, up to six runs).
    assert all(tried[-1].startswith("killed") for _, tried, _ in outcomes), outcomes

    clean = settings_factory(tmp_path / "clean", corpus_dir=corpus)
    run([corpus], clean, embedder=embedder)
    got, want = snapshot(victim), snapshot(clean)
    assert_consistent(got)
    assert doc_ids(got) == doc_ids(want)
    assert got == want, f"after kills {outcomes}: index differs from a clean build"
    assert_bm25_matches(victim)
    status = psyqa("status", "--json", settings=victim)
    assert status.returncode == 0, status.stderr
    st = parse_one_json(status.stdout)
    assert st["drift"] == {"new": [], "changed": [], "removed": []}, st["drift"]
    assert st["documents"] == len(doc_ids(want)) and st["chunks"] == len(want)


def assert_consistent_or_partial(settings) -> int:
    """After a kill the store must still open and hold no duplicate ids (half-written docs allowed).
    Returns the number of chunks found, for the failure message."""
    if settings.chroma_dir.exists():
        return len(snapshot(settings))
    return 0


@pytest.mark.server
def test_sigkill_against_server_then_rerun_equals_clean_build(tmp_path, chroma_server, embedder):
    from helpers import unique_collection

    from assistant.settings import Settings

    host, port = chroma_server
    corpus = tmp_path / "corpus"
    for i in range(30):
        kill_doc(corpus, i, 0)
    victim = Settings(data_dir=tmp_path / "victim", corpus_dir=corpus, chroma_host=host, chroma_port=port,
                      collection=unique_collection("kill"))
    # Kill while writing: wait until the first chunks are in the collection, then kill at once.
    proc = subprocess.Popen([PSYQA, "ingest", str(corpus)], env=cli_env(victim),
                            cwd=str(Path(__file__).resolve().parents[1]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    killed_with, col = None, None
    while time.monotonic() < deadline and proc.poll() is None:
        if col is None:
            col = open_collection(victim)
        n = col.count() if col is not None else 0
        if n > 0:
            os.kill(proc.pid, signal.SIGKILL)
            killed_with = n
            break
        time.sleep(0.1)
    proc.wait(30)
    snapshot(victim)  # the half-written collection still reads, without duplicate ids
    kill_doc(corpus, 3, 1)
    (corpus / "doc-007.md").unlink()
    res = psyqa("ingest", corpus, settings=victim)
    assert res.returncode == 0, res.stderr
    assert_equals_clean_build(victim, embedder, tmp_path)
    assert_bm25_matches(victim)
    assert killed_with is not None, "the run finished before any chunk was seen: nothing was killed mid-write"


# ----------------------------------------------------------------------------- lock

def test_second_ingest_refused_while_lock_held(tmp_path, settings_factory):
    from filelock import FileLock

    settings = settings_factory()
    write_doc(settings.corpus_dir / "a.md", "A", "Body text.\n")
    settings.index_dir.mkdir(parents=True)
    with FileLock(str(settings.index_dir / "ingest.lock")):
        t0 = time.perf_counter()
        res = psyqa("ingest", settings.corpus_dir, settings=settings, timeout=60)
        took = time.perf_counter() - t0
    assert res.returncode != 0
    assert "another" in res.stderr.lower() and "ingest" in res.stderr and "running" in res.stderr, res.stderr
    assert took < 30, f"took {took:.1f} s to give up"
    assert not settings.chroma_dir.exists(), "the refused run opened the store"
    assert open_collection(settings) is None, "the refused run wrote to the index"


# ----------------------------------------------------------------------------- output

def test_json_output_is_one_object(tmp_path, settings_factory):
    settings = settings_factory()
    small_corpus(settings.corpus_dir)
    (settings.corpus_dir / "bad.md").write_text("")
    res = psyqa("ingest", settings.corpus_dir, "--json", settings=settings)
    assert res.returncode == 1, res.stderr
    out = parse_one_json(res.stdout)
    assert isinstance(out, dict)
    for key in ("added", "updated", "unchanged", "removed", "chunks_embedded"):
        assert isinstance(out[key], int) and not isinstance(out[key], bool), key
    assert isinstance(out["seconds"], (int, float)) and out["seconds"] > 0
    assert (out["added"], out["updated"], out["unchanged"], out["removed"]) == (4, 0, 0, 0)
    assert out["chunks_embedded"] == len(snapshot(settings))
    assert isinstance(out["failed"], list) and len(out["failed"]) == 1
    assert set(out["failed"][0]) == {"path", "error"}
    assert out["failed"][0]["path"] == "bad.md" and "empty" in out["failed"][0]["error"]
    # A second run: JSON again, everything unchanged.
    (settings.corpus_dir / "bad.md").unlink()
    again = parse_one_json(psyqa("ingest", settings.corpus_dir, "--json", settings=settings).stdout)
    assert (again["unchanged"], again["chunks_embedded"], again["failed"]) == (4, 0, [])


def test_check_validates_without_writing(tmp_path, settings_factory, embedder):
    settings = settings_factory()
    small_corpus(settings.corpus_dir)
    (settings.corpus_dir / "bad.md").write_text("---\ntitle: Bad\nflavour: mint\n---\n\nBody.\n")
    res = psyqa("ingest", settings.corpus_dir, "--check", settings=settings)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if "bad.md" in ln]
    assert len(lines) == 1 and "flavour" in lines[0], res.stderr
    assert "1 file(s) failed" in res.stdout
    assert not settings.chroma_dir.exists(), "--check created the store"
    assert open_collection(settings) is None, "--check created a collection"
    # Over an existing index: nothing changes, not even the generation.
    (settings.corpus_dir / "bad.md").unlink()
    run([settings.corpus_dir], settings, embedder=embedder)
    before, meta = snapshot(settings), dict(open_collection(settings).metadata)
    (settings.corpus_dir / "beta.md").write_text((settings.corpus_dir / "beta.md").read_text() + "\nMore text.\n")
    res = psyqa("ingest", settings.corpus_dir, "--check", "--json", settings=settings)
    assert res.returncode == 0, res.stderr
    assert parse_one_json(res.stdout)["failed"] == []
    assert snapshot(settings) == before and dict(open_collection(settings).metadata) == meta


def test_status_json_and_drift(tmp_path, settings_factory, embedder):
    settings = settings_factory()
    small_corpus(settings.corpus_dir)
    empty = parse_one_json(psyqa("status", "--json", settings=settings).stdout)
    assert empty["chunks"] == 0 and sorted(empty["drift"]["new"]) == ["alpha.md", "beta.md", "long.md", "sub/gamma.md"]
    report = run([settings.corpus_dir], settings, embedder=embedder)
    res = psyqa("status", "--json", settings=settings)
    assert res.returncode == 0, res.stderr
    st = parse_one_json(res.stdout)
    meta = open_collection(settings).metadata
    assert st["documents"] == 4 and st["chunks"] == report.chunks_embedded == len(snapshot(settings))
    assert st["embedding_model"] == settings.embedding_model
    assert st["last_ingest"] == meta["last_ingest"] and st["last_ingest"]
    assert st["corpus_hash"] == meta["corpus_hash"] and st["corpus_hash"]
    assert st["drift"] == {"new": [], "changed": [], "removed": []}
    (settings.corpus_dir / "alpha.md").write_text((settings.corpus_dir / "alpha.md").read_text() + "\nEdited.\n")
    (settings.corpus_dir / "beta.md").unlink()
    write_doc(settings.corpus_dir / "new.md", "New", "Fresh.\n")
    st = parse_one_json(psyqa("status", "--json", settings=settings).stdout)
    assert st["drift"] == {"new": ["new.md"], "changed": ["alpha.md"], "removed": ["beta.md"]}, st["drift"]


def test_config_honours_env_and_dotenv(tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / ".env").write_text("PSYQA_TOP_K=9\nPSYQA_COLLECTION=from-dotenv\nPSYQA_MAX_PER_DOC=5\n")
    env = cli_env(None, PSYQA_MAX_PER_DOC="3", PSYQA_DATA_DIR=str(tmp_path / "d"))
    res = psyqa("config", cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    lines = set(res.stdout.splitlines())
    assert "PSYQA_TOP_K = 9" in lines                 # from .env
    assert "PSYQA_COLLECTION = from-dotenv" in lines  # from .env
    assert "PSYQA_MAX_PER_DOC = 3" in lines           # the environment wins over .env
    assert f"PSYQA_DATA_DIR = {tmp_path / 'd'}" in lines
    assert "PSYQA_MAX_TOKENS = 256" in lines          # a default
    as_json = json.loads(psyqa("config", "--json", cwd=work, env=env).stdout)
    assert as_json["top_k"] == 9 and as_json["max_per_doc"] == 3 and as_json["collection"] == "from-dotenv"
    # From that cwd the .env applies to ingest too (absolute corpus path): --check only reads.
    corpus = tmp_path / "corpus"
    write_doc(corpus / "a.md", "A", "Body.\n")
    res = psyqa("ingest", "--check", "--json", corpus, cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    assert parse_one_json(res.stdout)["failed"] == []


@pytest.mark.parametrize("var, value", [("PSYQA_TOP_K", "abc"), ("PSYQA_LLM__TIMEOUT_S", "soon")])
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path, var, value):
    env = cli_env(None, PSYQA_DATA_DIR=str(tmp_path / "d"), **{var: value})
    for args in (("config",), ("status",)):
        res = psyqa(*args, cwd=tmp_path, env=env)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr and "ValidationError" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and var in lines[0] and repr(value) in lines[0], lines


# ----------------------------------------------------------------------------- sentence vectors

def test_every_chunk_stores_its_sentences_with_a_vector_each(backend, embedder):
    """The answerer ranks sentences by similarity to the question: each stored chunk carries its
    sentence offsets and one vector per sentence, pooled from the chunk's own encode."""
    import numpy as np

    small_corpus(backend.corpus_dir)
    run([backend.corpus_dir], backend, embedder=embedder)
    got = open_collection(backend).get(include=["documents", "metadatas", "embeddings"])
    for text, meta, vec in zip(got["documents"], got["metadatas"], got["embeddings"]):
        stored = index.sentences(meta)
        assert stored is not None, meta.get("source")
        spans, vecs = stored
        assert spans and vecs.shape == (len(spans), len(vec))
        assert all(0 <= a < b <= len(text) and text[a:b] == text[a:b].strip() for a, b in spans)
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)
        # Each pooled vector stands for its own sentence: nearer its separate encode than the
        # other sentences' encodes are (on average), and near the chunk it belongs to.
        own = np.asarray(embedder.embed_documents([text[a:b] for a, b in spans]))
        sims = vecs @ own.T
        assert float(np.diag(sims).min()) > 0.5
        if len(spans) > 1:
            off = (sims.sum() - np.trace(sims)) / (sims.size - len(spans))
            assert float(np.diag(sims).mean()) > off
        assert float((vecs @ np.asarray(vec)).min()) > 0.3


def test_an_index_without_sentence_vectors_gains_them_in_place(tmp_path, settings_factory, embedder):
    """An index built before sentence vectors existed: the next ingest adds them without
    re-chunking or hiding anything (same chunk ids, texts, vectors and generations)."""
    settings = settings_factory(tmp_path)
    small_corpus(settings.corpus_dir)
    run([settings.corpus_dir], settings, embedder=embedder)
    col = open_collection(settings)
    old = col.get(include=["metadatas", "embeddings", "documents"])
    stripped = [{k: (None if k in (index.SENTENCE_SPANS, index.SENTENCE_VECTORS) else v)
                 for k, v in m.items()} for m in old["metadatas"]]
    col.update(ids=old["ids"], metadatas=stripped)  # None deletes the key
    assert not any(index.has_sentences(m) for m in open_collection(settings).get()["metadatas"])

    report = run([settings.corpus_dir], settings, embedder=embedder)
    assert report.failed == [] and report.added == 0 and report.removed == 0
    new = open_collection(settings).get(include=["metadatas", "embeddings", "documents"])
    assert new["ids"] == old["ids"] and new["documents"] == old["documents"]
    assert all(index.has_sentences(m) for m in new["metadatas"])
    assert [m["gen"] for m in new["metadatas"]] == [m["gen"] for m in old["metadatas"]]
    assert [list(e) for e in new["embeddings"]] == [list(e) for e in old["embeddings"]]
    again = run([settings.corpus_dir], settings, embedder=embedder)
    assert again.chunks_embedded == 0 and again.unchanged == 4
