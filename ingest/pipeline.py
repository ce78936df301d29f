"""`run(paths, settings) -> IngestReport`: sync corpus files into the index by diff.

The sync is crash-safe without a second ledger: every chunk carries its document's content hash
and chunk count, so the next run can tell a complete, current document from a half-written or
stale one by reading the collection alone. Per document it adds the missing chunks first (at the
next generation), then refreshes the metadata of kept chunks, then marks the extra ones dead from
the next generation; removed documents go last; the generation number is bumped only when
everything has been written, and chunks dead at it are deleted after that.

Before writing, the live index is checked (`store.open_client`, `store.verify`): a damaged one is
refused with the one-line fix (`psyqa ingest --rebuild`), or with `heal` rebuilt at once. A
rebuild of the embedded store is built in a folder of its own and swapped in only when complete
(`index.swap_in`); against a Chroma server it is a staging collection renamed into place, and the
whole run holds the server's ingest lease (`ingest.lease`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant import index, store
from assistant.bm25 import build_from_collection
from assistant.errors import DocumentError, IndexDamagedError, IngestBusyError, PsyqaError
from assistant.models import Chunk
from assistant.settings import Settings
from ingest.chunking import ChunkParams, chunk_document, hf_counter
from ingest.loaders import SUPPORTED, load

log = logging.getLogger("psyqa.ingest")

# Bump when loaders or chunking change what a file turns into: every document is re-chunked.
PIPELINE_VERSION = "2"  # 2: reflowed paragraphs, PDF layout, page chrome and back matter left out
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,199}$")
SKIP_NAMES = {"README.md", "readme.md", "README.txt"}


@dataclass
class SourceFile:
    path: Path
    root: Path
    rel: str           # path relative to root, posix
    root_key: str      # how the root is named in the index


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    seconds: float = 0.0
    generation: int = 0
    checked_only: bool = False
    # Per failed file: problem, fix, whether its previous version is still served, its content hash.
    failure_details: dict[str, dict] = field(default_factory=dict)
    damaged: str | None = None        # the damage a --rebuild (or heal) replaced: where and what
    kept: str | None = None           # where the damaged store (or collection) was kept
    took_over: str | None = None      # server mode: the crashed ingest whose lease this run took

    def as_json(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "removed": self.removed, "failed": self.failed, "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
        }

    def fail(self, path: str, error: str) -> None:
        self.failed.append({"path": path, "error": error})

    def fail_document(self, path: str, exc: DocumentError, serving_previous: bool,
                      content_hash: str | None) -> None:
        """A file that could not be indexed, and what readers still get from it."""
        self.fail(path, f"{exc.problem}; {exc.fix}")
        self.failure_details[path] = {"problem": exc.problem, "fix": exc.fix,
                                      "serving_previous": serving_previous, "doc_hash": content_hash}


Progress = Callable[[str, int, int], None]  # (stage, done, total)


# ------------------------------------------------------------------------------ discovery

def discover(paths: list[Path], settings: Settings, report: IngestReport) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """Files to index, and the (root_key, directory prefix) scopes in which absent docs are removed."""
    files: list[SourceFile] = []
    scopes: list[tuple[str, str]] = []
    corpus_root = settings.corpus_dir.resolve()
    for given in paths:
        p = Path(given)
        if not p.exists():
            report.fail(str(given), "does not exist; check the path")
            continue
        resolved = p.resolve()
        if resolved == corpus_root or corpus_root in resolved.parents:
            root = corpus_root
        else:
            root = resolved if resolved.is_dir() else resolved.parent
        key = _root_key(root)
        if resolved.is_dir():
            prefix = "" if resolved == root else resolved.relative_to(root).as_posix() + "/"
            scopes.append((key, prefix))
            candidates = sorted(x for x in p.rglob("*") if x.is_file() or x.is_symlink())
        else:
            candidates = [p]
        for f in candidates:
            rel_path = Path(os.path.relpath(f.absolute(), root))
            rel = rel_path.as_posix()
            if any(part.startswith(".") for part in rel_path.parts):
                continue  # hidden files and folders (.git, editor swap files)
            if f.name in SKIP_NAMES and f.parent.resolve() == root:
                continue  # the maintainers' guide is not a source
            real = f.resolve()
            if real != root and root not in real.parents:
                report.fail(rel, "is a symlink that points outside the corpus folder; "
                            "copy the file into the corpus instead")
                continue
            if f.suffix.lower() not in SUPPORTED:
                report.skipped.append({"path": rel, "reason": f"unsupported extension '{f.suffix}' "
                                       f"(supported: {', '.join(sorted(SUPPORTED))})"})
                continue
            files.append(SourceFile(real, root, rel, key))
    return files, scopes


def _root_key(root: Path) -> str:
    try:
        return root.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return root.as_posix()


# ------------------------------------------------------------------------------ state in Chroma

@dataclass
class DocState:
    doc_id: str
    source: str
    root: str
    ids: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    expected: int = -1
    gens: dict[str, int] = field(default_factory=dict)   # chunk id -> generation it appeared in
    doomed: int = 0                                      # chunks marked dead by an unfinished run
    sentences: dict[str, str] = field(default_factory=dict)  # chunk id -> stored sentence offsets
    without_vectors: int = 0                             # chunks stored without sentence vectors
    facets: dict[str, list[str]] = field(default_factory=dict)  # its filterable values

    def complete(self, doc_hash: str) -> bool:
        return (self.hashes == {doc_hash} and len(self.ids) == self.expected and not self.doomed
                and not self.without_vectors)


def read_state(collection, committed: int | None = None) -> dict[str, DocState]:
    """Documents as the collection holds them. Chunks already dead at the committed generation
    (left by a run killed after its commit) are not part of any document: `garbage_ids` finds them."""
    if committed is None:
        committed = index.generation(collection)
    docs: dict[str, DocState] = {}
    for cid, m in _all_metadatas(collection):
        dead = index.dies(m)
        if dead <= committed:
            continue
        d = docs.setdefault(m["doc_id"], DocState(m["doc_id"], m.get("source", ""), m.get("root", "")))
        d.ids.add(cid)
        d.hashes.add(m.get("doc_hash", ""))
        d.expected = int(m.get("doc_chunks", -1))
        d.gens[cid] = index.born(m)
        d.facets = index.facets_of(m)
        if index.retiring(m):  # retired at a generation not yet committed
            d.doomed += 1
        if index.has_sentences(m):
            d.sentences[cid] = str(m[index.SENTENCE_SPANS])
        else:
            d.without_vectors += 1
    return docs


def _all_metadatas(collection, batch: int = 10000):
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=batch, offset=offset)
        yield from zip(got["ids"], got["metadatas"])
        offset += len(got["ids"])
        if len(got["ids"]) < batch:
            break


# ------------------------------------------------------------------------------ the run

def run(paths: list[Path] | None, settings: Settings, *, rebuild: bool = False, check: bool = False,
        heal: bool = False, progress: Progress | None = None, embedder=None) -> IngestReport:
    """Sync `paths` (default: the corpus folder) into the index and return what happened.

    `rebuild`: build the index afresh (also when the store cannot be opened). `heal`: sync as
    usual, but rebuild instead of refusing when the index is damaged (what `make run` does)."""
    t0 = time.perf_counter()
    report = IngestReport(checked_only=check)
    paths = paths or [settings.corpus_dir]
    files, scopes = discover(paths, settings, report)
    if check:
        _check_only(files, settings, report, progress)
        report.seconds = time.perf_counter() - t0
        return report
    index.adopt_old_layout(settings)
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock, Timeout

    lock_path = settings.index_dir / "ingest.lock"
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise IngestBusyError(
            f"Another 'psyqa ingest' is running (lock {lock_path}). "
            "Wait for it to finish, then run again.") from None
    try:
        work = _Work(files, scopes, settings, report, progress, embedder)
        if settings.chroma_host:
            _sync_server(work, rebuild, heal)
        else:
            _sync_embedded(work, rebuild, heal)
        report.seconds = time.perf_counter() - t0
        save_report(report, settings, paths)
    except PsyqaError as exc:  # stopped before its commit: the previous index is what readers see
        report.seconds = time.perf_counter() - t0
        save_report(report, settings, paths, stopped=str(exc))
        raise
    finally:
        lock.release()
    return report


def save_report(report: IngestReport, settings: Settings, paths: list[Path],
                stopped: str | None = None) -> None:
    """Keep what the run did where `psyqa status` and the app read it (`index.ingest_report_path`),
    written atomically: readers see the previous report or this one, never half of one. `stopped`
    is the error that ended a run before its commit."""
    data = report.as_json() | {
        "finished": index.now(), "stopped": stopped, "paths": [str(p) for p in paths],
        "generation": report.generation,
        "documents_total": report.documents_total, "chunks_total": report.chunks_total,
        "failed": [f | report.failure_details.get(f["path"], {"serving_previous": False})
                   for f in report.failed],
        "skipped": report.skipped,
    }
    target = index.ingest_report_path(settings)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, target)
    except OSError as exc:  # the index is committed; only the report is missing
        report.warnings.append(f"could not write the ingest report {target}: {exc.strerror}")


def doc_hash(data: bytes, rel: str) -> str:
    """The content hash a document's chunks carry: changes with its bytes, its path and the
    pipeline version, so any of them changing re-chunks it."""
    h = hashlib.sha256()
    h.update(f"{PIPELINE_VERSION}\x1f{rel}\x1f".encode())
    h.update(data)
    return h.hexdigest()[:32]


def _read(sf: SourceFile, settings: Settings) -> bytes:
    size = sf.path.stat().st_size
    limit = int(settings.max_file_mb * 1024 * 1024)
    if size > limit:
        raise DocumentError(sf.rel, f"is {size / 1024 / 1024:.1f} MB, over the {settings.max_file_mb:g} MB limit",
                            "split it into smaller files or raise PSYQA_MAX_FILE_MB")
    try:
        return sf.path.read_bytes()
    except OSError as exc:
        raise DocumentError(sf.rel, f"cannot be read ({exc.strerror})", "check its permissions") from None


def _doc_id(sf: SourceFile, meta_id: str | None) -> str:
    doc_id = meta_id if meta_id else sf.rel
    if not _SAFE_ID.match(doc_id) or ".." in doc_id.split("/") or doc_id.startswith("/"):
        raise DocumentError(sf.rel, f"document id {doc_id!r} is not allowed (it must be a relative "
                            "name without '..', made of letters, digits, '.', '_', '-', '/')",
                            "fix the front-matter 'id' or rename the file")
    return doc_id


def _prepare(sf: SourceFile, data: bytes, settings: Settings, count, report: IngestReport,
             doc_hash: str) -> list[Chunk]:
    doc = load(sf.path, sf.rel, data)
    report.warnings.extend(doc.warnings)
    doc_id = _doc_id(sf, doc.meta.id)
    params = ChunkParams.from_settings(settings)
    extra = {"root": sf.root_key, "doc_hash": doc_hash}
    chunks = chunk_document(doc, doc_id, sf.rel, params, count, extra)
    for c in chunks:
        c.metadata = dict(c.metadata) | {"doc_chunks": len(chunks)}
    return chunks


def _check_only(files, settings, report, progress) -> None:
    from assistant.embeddings import load_tokenizer

    count = hf_counter(load_tokenizer(settings.embedding_model))
    seen: dict[str, str] = {}
    for i, sf in enumerate(files):
        try:
            data = _read(sf, settings)
            chunks = _prepare(sf, data, settings, count, report, "")
            did = chunks[0].doc_id if chunks else sf.rel
            if did in seen:
                raise DocumentError(sf.rel, f"has the same document id {did!r} as {seen[did]}",
                                    "give one of them another 'id'")
            seen[did] = sf.rel
        except DocumentError as exc:
            report.fail(sf.rel, f"{exc.problem}; {exc.fix}")
        if progress:
            progress("check", i + 1, len(files))


@dataclass
class _DocWork:
    """A document whose chunks must be (re)written, with what the collection holds of it."""

    doc_id: str
    chunks: list[Chunk]
    previous: DocState | None

    @property
    def have(self) -> set[str]:
        return self.previous.ids if self.previous else set()


@dataclass
class _Plan:
    """What one sync will do, decided from the files and the collection before anything is written."""

    committed: int                                          # the generation readers see now
    state: dict[str, DocState]                              # the collection as it was read
    work: list[_DocWork] = field(default_factory=list)      # documents to (re)write
    doomed: list[str] = field(default_factory=list)         # chunk ids to mark dead

    @property
    def new_gen(self) -> int:
        return self.committed + 1

    def new_chunks(self) -> list[Chunk]:
        return [c for w in self.work for c in w.chunks if c.chunk_id not in w.have]

    def stale_sentences(self) -> list[Chunk]:
        """Kept chunks whose stored sentences are missing or were split differently (the text is
        the same, so the chunk keeps its vector and generation; its sentence vectors are redone)."""
        return [c for w in self.work if w.previous is not None for c in w.chunks
                if c.chunk_id in w.have
                and w.previous.sentences.get(c.chunk_id) != index.spans_value(c.sentences)]

    def kept_chunks(self) -> list[tuple[Chunk, int]]:
        """Unchanged chunks of rewritten documents, with the generation they appeared in."""
        return [(c, w.previous.gens.get(c.chunk_id, self.new_gen)) for w in self.work
                for c in w.chunks if w.previous is not None and c.chunk_id in w.have]


@dataclass
class _Work:
    """What one run syncs, and how it reports."""

    files: list[SourceFile]
    scopes: list[tuple[str, str]]
    settings: Settings
    report: IngestReport
    progress: Progress | None
    embedder: object
    fence: Callable[[], None] = lambda: None   # raises when this run must stop writing (lease lost)
    lease: object = None


def _sync_embedded(work: _Work, rebuild: bool, heal: bool) -> None:
    """The embedded store: sync the live collection, or rebuild into a folder of its own."""
    settings = work.settings
    index.finish_interrupted_swap(settings, writer=True)
    if not rebuild:
        try:
            client = store.open_client(settings)
            col = _live(client, settings)
        except IndexDamagedError as exc:
            if not heal:
                raise
            _found(work.report, exc)
        else:
            _sync(client, col, work)
            return
    _rebuild_embedded(work)


def _found(report: IngestReport, exc: IndexDamagedError) -> None:
    """A damaged live index that this run rebuilds: say so now, before the minutes of embedding."""
    report.damaged = exc.what or str(exc)
    log.warning("%s. Rebuilding it from the corpus now (%s).", report.damaged, exc.aside or "kept")


def _live(client, settings: Settings):
    """The live collection, checked (IndexDamagedError) and of the current settings, created when
    there is none yet."""
    col = store.get_collection(client, settings.collection)
    if col is None:
        return store.create_collection(client, settings.collection, settings)
    if index.generation(col) > 0:
        col = store.verify(client, settings, col)
    index.check_identity(col, settings)
    return col


def _rebuild_embedded(work: _Work) -> None:
    """Build a fresh store from the corpus in `index.rebuild_dir`, then swap it in.

    The live store is never written meanwhile: a kill or a full disk during the build leaves it
    serving (and the partial build is removed). A damaged live store is moved to damaged/<time>/
    (kept); a healthy one is replaced. Generations go on from the highest the old store or its
    BM25 files reached, so derived files never collide."""
    settings, report = work.settings, work.report
    live_gen = 0
    if report.damaged is None:
        damage, live_gen = _live_state(settings)
        if damage is not None:
            _found(report, damage)
    problem = report.damaged
    base = max([live_gen, *index.bm25_generations(settings)])
    target = index.rebuild_dir(settings)
    shutil.rmtree(target, ignore_errors=True)
    client = col = None
    try:
        client = store.open_client(settings, path=target)
        col = store.create_collection(client, settings.collection, settings, generation=base)
        _sync(client, col, work, fresh=True)
        index.mark_complete(settings, problem)
    except BaseException:
        client = col = None
        store.forget_embedded_clients()
        shutil.rmtree(target, ignore_errors=True)  # frees the space a full disk needs back
        raise
    client = col = None
    store.forget_embedded_clients()  # this process's handles point at the rebuild folder
    kept = index.swap_in(settings)
    index.prune_bm25(index.bm25_dir(settings, report.generation))
    if problem and kept:
        report.kept = str(kept)


def _live_state(settings: Settings) -> tuple[IndexDamagedError | None, int]:
    """(the damage of the live embedded store or None, its committed generation)."""
    if not (settings.chroma_dir / "chroma.sqlite3").exists():
        return None, 0
    try:
        client = store.open_client(settings)
        col = store.get_collection(client, settings.collection)
        if col is None:
            return None, 0
        if index.generation(col) > 0:
            store.verify(client, settings, col)
        return None, index.generation(col)
    except IndexDamagedError as exc:
        return exc, 0
    except Exception as exc:  # noqa: BLE001 - Chroma cannot read it: damaged, and rebuilt
        if store.is_disk_full(exc):
            raise
        return store.damaged(settings, f"Chroma cannot read it ({store.first_line(exc)})"), 0


def _sync_server(work: _Work, rebuild: bool, heal: bool) -> None:
    """A Chroma server: hold its ingest lease for the whole run; sync the live collection, or
    build a staging collection and rename it into place (--rebuild, or heal on damage)."""
    from ingest import lease as leases

    settings, report = work.settings, work.report
    client = store.open_client(settings)
    held = leases.acquire(client, settings)
    work.lease, work.fence = held, held.fence
    if held.took_over:
        report.took_over = leases.describe(held.took_over)
    try:
        if not rebuild:
            try:
                col = _live(client, settings)
            except IndexDamagedError as exc:
                if not heal:
                    raise
                _found(report, exc)
            else:
                _sync(client, col, work)
                return
        if report.damaged is None:
            damage = _server_live_damage(client, settings)
            if damage is not None:
                _found(report, damage)
        staging = _staging(client, settings)
        _sync(client, staging, work, fresh=True, swap=True)
    finally:
        held.release()


def _sync(client, col, work: _Work, *, fresh: bool = False, swap: bool = False) -> None:
    """plan → embed → write → commit → cleanup on `col`. A run killed at any step leaves a
    collection that the next run's plan repairs, and readers of the committed generation never
    notice. `fresh`: `col` was just created (commit even an empty corpus); `swap`: `col` is a
    staging collection renamed over the live one at the commit."""
    settings, report = work.settings, work.report
    plan = _plan(col, work.files, work.scopes, settings, report, work.progress)
    vectors = _embed(plan.new_chunks() + plan.stale_sentences(), settings, report, work.progress,
                     work.embedder)
    _write(col, plan, vectors, _max_batch(client), work.fence)
    generation, final = _commit(client, col, plan, work, fresh, swap)
    if generation != plan.committed:
        _cleanup(col, settings, generation)
    report.generation = generation
    report.documents_total = len(final)
    report.chunks_total = sum(len(d.ids) for d in final.values())


def _server_live_damage(client, settings: Settings) -> IndexDamagedError | None:
    """The damage of the live collection on the server (None: none, or no collection)."""
    col = store.get_collection(client, settings.collection)
    if col is None or index.generation(col) == 0:
        return None
    try:
        store.verify(client, settings, col)
    except IndexDamagedError as exc:
        return exc
    return None


def _staging(client, settings: Settings):
    """A fresh staging collection for a server --rebuild, numbered on from the live one."""
    staging = f"{settings.collection}__rebuild"
    if store.get_collection(client, staging) is not None:
        client.delete_collection(staging)  # left by a killed --rebuild; the live one is intact
    live = store.get_collection(client, settings.collection)
    base = max([index.generation(live) if live is not None else 0, *index.bm25_generations(settings)])
    return store.create_collection(client, staging, settings, generation=base)


def _plan(col, files, scopes, settings: Settings, report: IngestReport, progress) -> _Plan:
    """Read the collection and the files; decide which documents to write, keep and remove."""
    committed = index.generation(col)
    # Chunks already dead at the committed generation: a run was killed after its commit.
    col.delete(where=index.dead_where(committed))
    plan = _Plan(committed, read_state(col, committed))
    by_source = {(d.root, d.source): d for d in plan.state.values()}
    count = None
    seen_docs: dict[str, str] = {}
    kept_docs: set[str] = set()
    for i, sf in enumerate(files):
        h = None
        try:
            data = _read(sf, settings)
            h = doc_hash(data, sf.rel)
            prev = by_source.get((sf.root_key, sf.rel))
            if prev is not None and prev.complete(h) and prev.doc_id not in seen_docs:
                report.unchanged += 1
                seen_docs[prev.doc_id] = sf.rel
                kept_docs.add(prev.doc_id)
                continue
            if count is None:
                from assistant.embeddings import load_tokenizer

                count = hf_counter(load_tokenizer(settings.embedding_model))
            chunks = _prepare(sf, data, settings, count, report, h)
            doc_id = chunks[0].doc_id
            if doc_id in seen_docs:
                raise DocumentError(sf.rel, f"has the same document id {doc_id!r} as {seen_docs[doc_id]}",
                                    "give one of them another 'id' in its front matter")
            seen_docs[doc_id] = sf.rel
            kept_docs.add(doc_id)
            previous = plan.state.get(doc_id)
            plan.work.append(_DocWork(doc_id, chunks, previous))
            # Chunks of the old version that the new one no longer has.
            plan.doomed += sorted((previous.ids if previous else set()) - {c.chunk_id for c in chunks})
            if previous is None:
                report.added += 1
            else:
                report.updated += 1
        except DocumentError as exc:
            # Nothing already indexed is lost: a failing file keeps its previous chunks.
            prev = by_source.get((sf.root_key, sf.rel))
            if prev is not None:
                kept_docs.add(prev.doc_id)
            report.fail_document(sf.rel, exc, serving_previous=prev is not None, content_hash=h)
        if progress:
            progress("read", i + 1, len(files))
    # Documents that disappeared from a scanned folder. Failed files keep their chunks.
    for d in plan.state.values():
        if d.doc_id in kept_docs:
            continue
        if any(d.root == key and d.source.startswith(prefix) for key, prefix in scopes):
            plan.doomed += sorted(d.ids)
            report.removed += 1
    return plan


@dataclass
class _Vectors:
    """What the model computed for one chunk: its vector and one per sentence."""

    chunk: list[float]
    sentences: object  # np.ndarray (len(chunk.sentences), dim)


def _embed(chunks: list[Chunk], settings: Settings, report: IngestReport, progress,
           embedder) -> dict[str, _Vectors]:
    """Vectors of the given chunks and of their sentences, from one forward pass per chunk, in
    large batches (encode() sorts by length inside each)."""
    if not settings.chroma_host:
        _check_space(settings, chunks)
    vectors: dict[str, _Vectors] = {}
    if chunks:
        if embedder is None:
            from assistant.embeddings import BundledEmbeddings

            embedder = BundledEmbeddings(settings.embedding_model, settings.embed_batch_size)
        step = max(256, settings.embed_batch_size * 4)
        for k in range(0, len(chunks), step):
            part = chunks[k:k + step]
            texts = [c.embed_text() for c in part]
            # Sentence offsets in the embedded text: the passage follows the title/section line.
            spans = [[(a + len(t) - len(c.text), b + len(t) - len(c.text)) for a, b in c.sentences]
                     for c, t in zip(part, texts)]
            chunk_vecs, sent_vecs = embedder.encode_with_spans(texts, spans)
            for c, v, sv in zip(part, chunk_vecs, sent_vecs):
                vectors[c.chunk_id] = _Vectors(v.tolist(), sv)
            if progress:
                progress("embed", min(k + step, len(chunks)), len(chunks))
    report.chunks_embedded = len(chunks)
    return vectors


def _write(col, plan: _Plan, vectors: dict[str, _Vectors], max_batch: int,
           fence: Callable[[], None] = lambda: None) -> None:
    """New chunks become visible at the next generation; kept chunks keep the generation they
    appeared in (their text is unchanged; stale sentence vectors are replaced in place); doomed
    chunks are marked dead from the next generation. Nothing a reader of the committed generation
    can see is removed before the commit.

    One write per `max_batch` chunks across documents (per-document calls cost more than the
    writes themselves on small files); order does not matter before the commit.
    """
    new, kept = plan.new_chunks(), plan.kept_chunks()
    for k in range(0, len(new), max_batch):
        part = new[k:k + max_batch]
        fence()
        col.upsert(ids=[c.chunk_id for c in part], documents=[c.text for c in part],
                   metadatas=[index.chunk_meta(c, plan.new_gen, vectors[c.chunk_id].sentences)
                              for c in part],
                   embeddings=[vectors[c.chunk_id].chunk for c in part])
    for k in range(0, len(kept), max_batch):
        part = kept[k:k + max_batch]
        fence()
        col.update(ids=[c.chunk_id for c, _ in part],
                   metadatas=[index.chunk_meta(c, g, vectors[c.chunk_id].sentences
                                               if c.chunk_id in vectors else None) for c, g in part])
    for k in range(0, len(plan.doomed), max_batch):
        part = plan.doomed[k:k + max_batch]
        fence()
        col.update(ids=part, metadatas=[index.retired(plan.new_gen)] * len(part))


def _commit(client, col, plan: _Plan, work: _Work, fresh: bool, swap: bool) -> tuple[int, dict[str, DocState]]:
    """Build the new generation's BM25 files, then commit it (and for a server --rebuild swap the
    staging collection in). Returns the generation readers now see and the documents it holds."""
    settings, report = work.settings, work.report
    changed_any = bool(plan.work or plan.doomed)
    final = read_state(col, plan.new_gen) if changed_any else plan.state
    corpus_hash = _corpus_hash(final)
    roots = _roots(final, work.files, work.scopes, col)
    meta = col.metadata or {}
    # A run killed after its writes but before this commit left the hash behind: commit now.
    changed = (changed_any or fresh or corpus_hash != meta.get("corpus_hash")
               or json.dumps(roots, sort_keys=True) != meta.get("roots"))
    if not (changed or plan.committed == 0):
        return plan.committed, final
    generation = plan.new_gen
    work.fence()
    target = index.bm25_dir(settings, generation)
    build_from_collection(col, generation).save(target)
    lease = work.lease
    with lease.lock if lease is not None else contextlib.nullcontext():
        extra = {}
        if lease is not None:
            lease.confirm()  # fresh from the server: still ours, right before the commit point
            extra = lease.fields()
        index.commit(col, settings, generation, documents=len(final),
                     chunks=sum(len(d.ids) for d in final.values()), corpus_hash=corpus_hash,
                     facets=index.count_facets(d.facets for d in final.values()), roots=roots,
                     extra=extra)
        if swap:
            _swap_collection(client, col, settings, report)
    return generation, final


def _swap_collection(client, col, settings: Settings, report: IngestReport) -> None:
    """Rename the committed staging collection over the live one; a damaged live collection is
    renamed aside (kept, dated) instead of deleted."""
    name = settings.collection
    live = store.get_collection(client, name)
    if live is not None:
        if report.damaged:
            stamp = index.now().replace(":", "").replace("-", "").replace("+0000", "Z")
            aside = f"{name}__damaged-{stamp}"
            live.modify(name=aside)
            report.kept = f"collection '{aside}' on {store.where_is(settings)}"
        else:
            client.delete_collection(name)
    col.modify(name=name)


def _roots(final: dict[str, DocState], files: list[SourceFile], scopes, col) -> list[dict]:
    """The corpus folders the index holds documents from: those of this run's files and scanned
    folders, and those recorded before that still have documents."""
    paths = {sf.root_key: sf.root for sf in files}
    for r in index.roots_of(col):
        paths.setdefault(r["key"], Path(r["path"]))
    keys = {d.root for d in final.values()} | {key for key, _ in scopes} | {sf.root_key for sf in files}
    out = []
    for key in sorted(keys):
        path = paths.get(key)
        if path is None:  # an index from before roots were recorded: the key is the path
            path = Path(key)
        out.append(index.root_entry(key, path))
    return out


def _cleanup(col, settings: Settings, generation: int) -> None:
    """After the commit: chunks dead at it and older BM25 files are no one's any more."""
    col.delete(where=index.dead_where(generation))
    index.prune_bm25(index.bm25_dir(settings, generation))


def _check_space(settings: Settings, chunks: list[Chunk]) -> None:
    """Refuse before writing when the disk cannot hold the new chunks (embedded store).

    Chroma fails mid-write on a full disk and cannot even be read until space is freed, so the
    only safe moment to stop is before the first write. The estimate is generous: vectors are
    stored in the log, the index and SQLite, text twice (document and full-text index).
    """
    need = sum(384 * 4 * 3 + len(c.text.encode()) * 4 + 1024 for c in chunks) + 256 * 1024
    free = shutil.disk_usage(settings.index_dir).free
    if free < need:
        raise PsyqaError(
            f"Not enough disk space under {settings.data_dir}: about {need / 1e6:.1f} MB needed for "
            f"{len(chunks)} new chunks, {free / 1e6:.1f} MB free. Nothing was written; the previous "
            "index is intact. Free some space and run 'psyqa ingest' again.")



def _corpus_hash(state: dict[str, DocState]) -> str:
    text = "".join(f"{k}:{sorted(v.hashes)}:{len(v.ids)}\n" for k, v in sorted(state.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _max_batch(client) -> int:
    try:
        return max(1, min(5000, int(client.get_max_batch_size())))
    except Exception:  # older clients or servers without the endpoint
        return 1000


def progress_bar() -> Progress | None:
    """A tqdm bar on a terminal; None (quiet) otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        unit = "chunks" if stage == "embed" else "files"
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit=unit, leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


__all__ = ["run", "IngestReport", "discover", "PsyqaError"]
