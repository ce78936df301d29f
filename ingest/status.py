"""What the index holds and how the corpus folder differs from it (`psyqa status` and the app).

Drift is a dry run of ingest: the same discovery and content hashes, compared with the state the
collection holds, without reading a chunk's text or writing anything. The last ingest run's report
(`index.ingest_report_path`, written by ingest) says which files failed, why, and whether their
previous version is still served.
"""

from __future__ import annotations

import json
import threading

from assistant import index, store
from assistant.settings import Settings
from ingest.loaders import UNREVIEWED
from ingest.pipeline import IngestReport, discover, doc_hash, read_state

# Facet counts scanned from the chunks of an index committed before they were stored, kept per
# (store, collection, generation): a generation never changes once committed.
_SCANNED: dict[tuple, dict] = {}
_SCAN_LOCK = threading.Lock()


def index_status(settings: Settings) -> dict:
    """documents, chunks, embedding_model, last_ingest, corpus_hash, facets, drift
    (changed/new/removed), the last ingest run and which of its failures are still unfixed, and
    the unreviewed documents (indexed without a source_type)."""
    client = store.open_client(settings)
    col = store.get_collection(client, settings.collection)
    base = {"store": store.where_is(settings), "indexed": False, "documents": 0, "chunks": 0,
            "embedding_model": settings.embedding_model, "last_ingest": None, "corpus_hash": None,
            "facets": {f: {} for f in index.FACETS},
            "drift": {"new": [], "changed": [], "removed": []},
            "last_run": last_run(settings), "unfixed": [], "unreviewed": []}
    if col is None:
        base["drift"]["new"] = [sf.rel for sf in _files(settings)]
        return base
    info = index.info(col)
    base.update(indexed=info.generation > 0, documents=info.documents, chunks=col.count(),
                embedding_model=info.embedding_model, last_ingest=info.last_ingest,
                corpus_hash=info.corpus_hash, generation=info.generation)
    if info.generation > 0:
        base["facets"] = info.facets if info.facets is not None else _scanned_facets(settings, col, info.generation)
    hashes: dict[str, str] = {}
    base["drift"] = drift(settings, col, hashes)
    base["unfixed"] = unfixed(base["last_run"], hashes)
    base["unreviewed"] = unreviewed(col, info.generation)
    return base


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
    file (relative path) to its content hash now."""
    if not report:
        return []
    return [f["path"] for f in report.get("failed", [])
            if f.get("doc_hash") and hashes.get(f["path"]) == f["doc_hash"]]


def _files(settings: Settings):
    files, _ = discover([settings.corpus_dir], settings, IngestReport())
    return files


def drift(settings: Settings, col, hashes: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Files new, changed or removed since the last ingest of the corpus folder (and, into
    `hashes`, the content hash of each file read)."""
    state = read_state(col)
    files = _files(settings)
    by_source = {(d.root, d.source): d for d in state.values()}
    out: dict[str, list[str]] = {"new": [], "changed": [], "removed": []}
    seen = set()
    for sf in files:
        d = by_source.get((sf.root_key, sf.rel))
        try:
            h = doc_hash(sf.path.read_bytes(), sf.rel)
        except OSError:
            h = None
        if h is not None and hashes is not None:
            hashes[sf.rel] = h
        if d is None:
            out["new"].append(sf.rel)
            continue
        seen.add((d.root, d.source))
        if h is not None and not d.complete(h):
            out["changed"].append(sf.rel)
    root_key = files[0].root_key if files else None
    for key, d in by_source.items():
        if key not in seen and (root_key is None or d.root == root_key):
            out["removed"].append(d.source)
    return out
