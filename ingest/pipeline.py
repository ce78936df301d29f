"""`run(paths, settings) -> IngestReport`: sync corpus files into the index by diff.

The sync is crash-safe without a second ledger: every chunk carries its document's content hash
and chunk count, so the next run can tell a complete, current document from a half-written or
stale one by reading the collection alone. Per document it adds the missing chunks first (at the
next generation), then refreshes the metadata of kept chunks, then marks the extra ones dead from
the next generation; removed documents go last; the generation number is bumped only when
everything has been written, and chunks dead at it are deleted after that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant import store
from assistant.errors import DocumentError, IngestBusyError, PsyqaError
from assistant.lexical import build_from_collection, lexical_dir, prune
from assistant.models import Chunk
from assistant.settings import Settings
from ingest.chunking import ChunkParams, chunk_document, hf_counter
from ingest.loaders import SUPPORTED, load

# Bump when loaders or chunking change what a file turns into: every document is re-chunked.
PIPELINE_VERSION = "1"
# Chunks carry `gen` (the generation whose commit made them visible) and `dead` (the generation
# from which they are invisible; NEVER while alive). Readers of generation G filter on
# gen <= G < dead, so an answer sees one committed generation, never a sync in progress.
NEVER = 10**15
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

    def as_json(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "removed": self.removed, "failed": self.failed, "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
        }

    def fail(self, path: str, error: str) -> None:
        self.failed.append({"path": path, "error": error})


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

    def complete(self, doc_hash: str) -> bool:
        return self.hashes == {doc_hash} and len(self.ids) == self.expected and not self.doomed


def read_state(collection, committed: int | None = None) -> dict[str, DocState]:
    """Documents as the collection holds them. Chunks already dead at the committed generation
    (left by a run killed after its commit) are not part of any document: `garbage_ids` finds them."""
    if committed is None:
        committed = int((collection.metadata or {}).get("generation", 0))
    docs: dict[str, DocState] = {}
    for cid, m in _all_metadatas(collection):
        dead = int(m.get("dead", NEVER))
        if dead <= committed:
            continue
        d = docs.setdefault(m["doc_id"], DocState(m["doc_id"], m.get("source", ""), m.get("root", "")))
        d.ids.add(cid)
        d.hashes.add(m.get("doc_hash", ""))
        d.expected = int(m.get("doc_chunks", -1))
        d.gens[cid] = int(m.get("gen", 0))
        if dead != NEVER:
            d.doomed += 1
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
        progress: Progress | None = None, embedder=None) -> IngestReport:
    """Sync `paths` (default: the corpus folder) into the index and return what happened."""
    t0 = time.perf_counter()
    report = IngestReport(checked_only=check)
    paths = paths or [settings.corpus_dir]
    files, scopes = discover(paths, settings, report)
    if check:
        _check_only(files, settings, report, progress)
        report.seconds = time.perf_counter() - t0
        return report
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock, Timeout

    lock = FileLock(str(settings.data_dir / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise IngestBusyError(
            f"Another 'psyqa ingest' is running (lock {settings.data_dir / 'ingest.lock'}). "
            "Wait for it to finish, then run again.") from None
    try:
        _sync(files, scopes, settings, report, rebuild, progress, embedder)
    finally:
        lock.release()
    report.seconds = time.perf_counter() - t0
    return report


def _doc_hash(data: bytes, rel: str) -> str:
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
    params = ChunkParams(settings.max_tokens, settings.overlap_sentences)
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


def chroma_meta(c: Chunk, gen: int = 0) -> dict:
    m = dict(c.metadata)
    m.update(gen=gen, dead=NEVER)
    m.update(doc_id=c.doc_id, source=c.source, title=c.title, section=c.section,
             start=c.start, end=c.end, ordinal=c.ordinal)
    if c.page is not None:
        m["page"] = c.page
    return m


def _sync(files, scopes, settings: Settings, report: IngestReport, rebuild: bool, progress, embedder) -> None:
    client = store.open_client(settings)
    name = settings.collection
    staging = f"{name}__rebuild"
    if rebuild:
        if store.get_collection(client, staging) is not None:
            client.delete_collection(staging)
        col = store.create_collection(client, staging, settings)
        live = store.get_collection(client, name)
        if live is not None:  # keep generations increasing so derived files never collide
            col.modify(metadata=dict(col.metadata or {}) | {
                "generation": int((live.metadata or {}).get("generation", 0))})
    else:
        if store.get_collection(client, staging) is not None:
            client.delete_collection(staging)  # left by a killed --rebuild; the live one is intact
        col = store.get_collection(client, name) or store.create_collection(client, name, settings)
        store.check_identity(col, settings)
    committed = int((col.metadata or {}).get("generation", 0))
    new_gen = committed + 1
    max_batch = _max_batch(client)
    # Chunks already dead at the committed generation: a run was killed after its commit.
    _delete_where(col, {"dead": {"$lte": committed}})
    state = read_state(col, committed)
    by_source = {(d.root, d.source): d for d in state.values()}

    count = None
    embed = embedder
    seen_docs: dict[str, str] = {}
    kept_docs: set[str] = set()
    work: list[tuple[str, list[Chunk], DocState | None]] = []  # doc_id, chunks, previous
    for i, sf in enumerate(files):
        try:
            data = _read(sf, settings)
            h = _doc_hash(data, sf.rel)
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
            work.append((doc_id, chunks, state.get(doc_id)))
        except DocumentError as exc:
            report.fail(sf.rel, f"{exc.problem}; {exc.fix}")
            # Nothing already indexed is lost: a failing file keeps its previous chunks.
            prev = by_source.get((sf.root_key, sf.rel))
            if prev is not None:
                kept_docs.add(prev.doc_id)
        if progress:
            progress("read", i + 1, len(files))

    # Embed everything new in large batches (length-sorted inside encode()), then write per doc.
    to_embed: list[Chunk] = []
    for doc_id, chunks, previous in work:
        have = previous.ids if previous else set()
        to_embed.extend(c for c in chunks if c.chunk_id not in have)
    if not settings.chroma_host:
        _check_space(settings, to_embed)
    vectors: dict[str, list[float]] = {}
    if to_embed:
        if embed is None:
            from assistant.embeddings import BundledEmbeddings

            embed = BundledEmbeddings(settings.embedding_model, settings.embed_batch_size)
        step = max(256, settings.embed_batch_size * 4)
        done = 0
        for k in range(0, len(to_embed), step):
            part = to_embed[k:k + step]
            arr = embed.embed_documents([c.embed_text() for c in part])
            for c, v in zip(part, arr):
                vectors[c.chunk_id] = v
            done += len(part)
            if progress:
                progress("embed", done, len(to_embed))
    report.chunks_embedded = len(to_embed)

    # Write: new chunks become visible at new_gen; kept chunks keep the generation they appeared
    # in (their text is unchanged); extra chunks are marked dead from new_gen. Nothing a reader of
    # the committed generation can see is removed before the commit.
    doomed: list[str] = []
    new_all: list[Chunk] = []
    keep_all: list[tuple[Chunk, int]] = []
    for doc_id, chunks, previous in work:
        have = previous.ids if previous else set()
        new_all += [c for c in chunks if c.chunk_id not in have]
        keep_all += [(c, previous.gens.get(c.chunk_id, new_gen)) for c in chunks if c.chunk_id in have]
        doomed += sorted(have - {c.chunk_id for c in chunks})
        if previous is None:
            report.added += 1
        else:
            report.updated += 1
    # One write per `max_batch` chunks across documents (per-document calls cost more than the
    # writes themselves on small files); order does not matter before the commit.
    for k in range(0, len(new_all), max_batch):
        part = new_all[k:k + max_batch]
        col.upsert(ids=[c.chunk_id for c in part], documents=[c.text for c in part],
                   metadatas=[chroma_meta(c, new_gen) for c in part],
                   embeddings=[vectors[c.chunk_id] for c in part])
    for k in range(0, len(keep_all), max_batch):
        part = keep_all[k:k + max_batch]
        col.update(ids=[c.chunk_id for c, _ in part], metadatas=[chroma_meta(c, g) for c, g in part])

    # Documents that disappeared from a scanned folder. Failed files keep their chunks.
    for d in state.values():
        if d.doc_id in kept_docs:
            continue
        if any(d.root == key and d.source.startswith(prefix) for key, prefix in scopes):
            doomed += sorted(d.ids)
            report.removed += 1
    for k in range(0, len(doomed), max_batch):
        part = doomed[k:k + max_batch]
        col.update(ids=part, metadatas=[{"dead": new_gen}] * len(part))

    meta = dict(col.metadata or {})
    final_state = read_state(col, new_gen) if (work or doomed) else state
    corpus_hash = _corpus_hash(final_state)
    # A run killed after its writes but before this commit left the hash behind: commit now.
    changed = bool(work or doomed or rebuild) or corpus_hash != meta.get("corpus_hash")
    generation = committed
    if changed or committed == 0:
        generation = new_gen
        lex = build_from_collection(col, generation)
        target = lexical_dir(settings.data_dir, name, generation, _host(settings))
        lex.save(target)
        meta.update(store.identity(settings))
        meta.update(generation=generation, documents=len(final_state),
                    chunks=sum(len(d.ids) for d in final_state.values()),
                    corpus_hash=corpus_hash, last_ingest=_now())
        meta.pop("hnsw:space", None)
        col.modify(metadata=meta)  # the commit point: readers switch to the new generation
        if rebuild:
            if store.get_collection(client, name) is not None:
                client.delete_collection(name)
            col.modify(name=name)
        _delete_where(col, {"dead": {"$lte": generation}})  # readers of the new one never see these
        prune(settings.data_dir, target)
    report.generation = generation
    report.documents_total = int(meta.get("documents", 0))
    report.chunks_total = int(meta.get("chunks", 0))


def _check_space(settings: Settings, chunks: list[Chunk]) -> None:
    """Refuse before writing when the disk cannot hold the new chunks (embedded store).

    Chroma fails mid-write on a full disk and cannot even be read until space is freed, so the
    only safe moment to stop is before the first write. The estimate is generous: vectors are
    stored in the log, the index and SQLite, text twice (document and full-text index).
    """
    import shutil

    need = sum(384 * 4 * 3 + len(c.text.encode()) * 4 + 1024 for c in chunks) + 256 * 1024
    free = shutil.disk_usage(settings.chroma_dir).free
    if free < need:
        raise PsyqaError(
            f"Not enough disk space under {settings.data_dir}: about {need / 1e6:.1f} MB needed for "
            f"{len(chunks)} new chunks, {free / 1e6:.1f} MB free. Nothing was written; the previous "
            "index is intact. Free some space and run 'psyqa ingest' again.")


def _delete_where(col, where: dict) -> None:
    col.delete(where=where)


def _corpus_hash(state: dict[str, DocState]) -> str:
    text = "".join(f"{k}:{sorted(v.hashes)}:{len(v.ids)}\n" for k, v in sorted(state.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _host(settings: Settings) -> str | None:
    return f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else None


def _max_batch(client) -> int:
    try:
        return max(1, min(5000, int(client.get_max_batch_size())))
    except Exception:  # older clients or servers without the endpoint
        return 1000


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
