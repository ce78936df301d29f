"""What the index holds and how the corpus folders differ from it (`psyqa status` and the app).

Drift is a dry run of ingest: the same discovery and content hashes, compared with the state the
collection holds, without reading a chunk's text or writing anything. It compares the folders the
index was built from (`roots`, recorded at each commit), not only the default corpus folder, so
indexing another folder does not make every document look removed. The last ingest run's report
(`index.ingest_report_path`, written by ingest) says which files failed, why, and whether their
previous version is still served. A damaged index is reported in `damaged` (one line naming the
path and the fix), never raised.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from assistant import index, store
from assistant.errors import IndexDamagedError
from assistant.settings import Settings
from ingest.loaders import UNREVIEWED
from ingest.pipeline import IngestReport, SourceFile, discover, doc_hash, read_state

# Facet counts scanned from the chunks of an index committed before they were stored, kept per
# (store, collection, generation): a generation never changes once committed.
_SCANNED: dict[tuple, dict] = {}
_SCAN_LOCK = threading.Lock()


def index_status(settings: Settings) -> dict:
    """documents, chunks, embedding_model, last_ingest, corpus_hash, facets, roots (the keys its
    chunks carry) and root_folders (their absolute paths), damaged, drift
    (changed/new/removed), the last ingest run and which of its failures are still unfixed, and
    the unreviewed documents (indexed without a source_type)."""
    index.adopt_old_layout(settings)  # before the report is read: it may still be at the old place
    base = {"store": store.where_is(settings), "indexed": False, "documents": 0, "chunks": 0,
            "embedding_model": settings.embedding_model, "last_ingest": None, "corpus_hash": None,
            "facets": {f: {} for f in index.FACETS}, "roots": [], "root_folders": [], "damaged": None,
            "drift": {"new": [], "changed": [], "removed": []},
            "last_run": last_run(settings), "unfixed": [], "unreviewed": []}
    try:
        col = _open_checked(settings)
    except IndexDamagedError as exc:
        base["damaged"] = str(exc)
        return base
    if col is None:
        base["drift"]["new"] = [sf.rel for sf in _files([settings.corpus_dir], settings)]
        return base
    info = index.info(col)
    base.update(indexed=info.generation > 0, documents=info.documents, chunks=col.count(),
                embedding_model=info.embedding_model, last_ingest=info.last_ingest,
                corpus_hash=info.corpus_hash, generation=info.generation)
    if info.generation > 0:
        base["facets"] = info.facets if info.facets is not None else _scanned_facets(settings, col, info.generation)
    state = read_state(col)
    roots = _roots(col, state, settings)
    base["roots"] = [r["key"] for r in roots]
    base["root_folders"] = [r["path"] for r in roots]
    hashes: dict[str, str] = {}
    base["drift"] = drift(settings, col, state, roots, hashes)
    base["unfixed"] = unfixed(base["last_run"], hashes)
    base["unreviewed"] = unreviewed(col, info.generation)
    return base


def _open_checked(settings: Settings):
    """The collection (None: none), checked; IndexDamagedError when it is damaged. A Chroma error
    on the embedded store is tried once more on a fresh view (another process may have just
    rewritten the store under this process's cached one), then explained (its files checked)."""
    for attempt in (1, 2):
        try:
            client = store.open_client(settings)
            col = store.get_collection(client, settings.collection)
            if col is not None and index.generation(col) > 0:
                col = store.verify(client, settings, col)
            return col
        except IndexDamagedError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Chroma error: retried, then explained
            err = store.explain(exc, settings)
            if err is None or settings.chroma_host or attempt == 2:
                raise err or exc from None
            store.forget_embedded_clients()
    return None  # pragma: no cover


def unreviewed(col, generation: int) -> list[str]:
    """Sources of the documents of `generation` indexed without a `source_type`, sorted."""
    got = col.get(where={"source_type": UNREVIEWED}, include=["metadatas"])
    return sorted({str(m.get("source", "")) for m in got["metadatas"]
                   if m and index.visible(m, generation)})


def _scanned_facets(settings: Settings, col, generation: int) -> dict:
    key = (store.where_is(settings), settings.collection, generation)
    with _SCAN_LOCK:
        if key not in _SCANNED:
            _SCANNED[key] = index.scan_facets(col, generation)
        return _SCANNED[key]


def last_run(settings: Settings) -> dict | None:
    """The report of the last `psyqa ingest` on this machine (None when there is none, or it cannot
    be read: the index itself is unaffected)."""
    path = index.ingest_report_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def unfixed(report: dict | None, hashes: dict[str, str]) -> list[str]:
    """Files that failed in the last run and are unchanged since (same content hash now): running
    ingest again cannot help; the file needs the fix the report names. `hashes` maps a corpus
    file (as drift names it) to its content hash now."""
    if not report:
        return []
    return [f["path"] for f in report.get("failed", [])
            if f.get("doc_hash") and hashes.get(f["path"]) == f["doc_hash"]]


def _files(paths: list[Path], settings: Settings) -> list[SourceFile]:
    files, _ = discover(paths, settings, IngestReport())
    return files


def _roots(col, state, settings: Settings) -> list[dict[str, str]]:
    """The corpus folders the index was built from: as recorded, else the chunks' root keys
    (an index committed before roots were recorded), else the default corpus folder."""
    roots = index.roots_of(col)
    if not roots:
        keys = sorted({d.root for d in state.values()})
        roots = [index.root_entry(k, Path(k)) for k in keys]
    return roots or [index.root_entry(str(settings.corpus_dir), settings.corpus_dir)]


def drift(settings: Settings, col, state=None, roots=None,
          hashes: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Files new, changed or removed since the last ingest of the folders the index was built
    from (and, into `hashes`, the content hash of each file read, by the name drift gives it)."""
    state = read_state(col) if state is None else state
    roots = _roots(col, state, settings) if roots is None else roots
    by_source = {(d.root, d.source): d for d in state.values()}
    out: dict[str, list[str]] = {"new": [], "changed": [], "removed": []}
    seen = set()
    several = len(roots) > 1
    for root in roots:
        folder = Path(root["path"])
        if not folder.is_dir():
            continue  # a folder that is gone: its documents are reported removed below
        for sf in _files([folder], settings):
            key = (root["key"], sf.rel)
            name = f"{root['key']}/{sf.rel}" if several else sf.rel
            try:
                h = doc_hash(sf.path.read_bytes(), sf.rel)
            except OSError:
                h = None
            if h is not None and hashes is not None:
                hashes[name] = h
            d = by_source.get(key)
            if d is None:
                out["new"].append(name)
                continue
            seen.add(key)
            if h is not None and not d.complete(h):
                out["changed"].append(name)
    keys = {r["key"] for r in roots}
    for key, d in by_source.items():
        if key not in seen and d.root in keys:
            out["removed"].append(f"{d.root}/{d.source}" if several else d.source)
    return out
