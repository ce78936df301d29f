"""What the index holds and how the corpus folder differs from it (`psyqa status` and the app).

Drift is a dry run of ingest: the same discovery and content hashes, compared with the state the
collection holds, without reading a chunk's text or writing anything.
"""

from __future__ import annotations

from assistant import index, store
from assistant.settings import Settings
from ingest.pipeline import IngestReport, discover, doc_hash, read_state


def index_status(settings: Settings) -> dict:
    """documents, chunks, embedding_model, last_ingest, corpus_hash and drift (changed/new/removed)."""
    client = store.open_client(settings)
    col = store.get_collection(client, settings.collection)
    base = {"store": store.where_is(settings), "indexed": False, "documents": 0, "chunks": 0,
            "embedding_model": settings.embedding_model, "last_ingest": None, "corpus_hash": None,
            "drift": {"new": [], "changed": [], "removed": []}}
    if col is None:
        base["drift"]["new"] = [sf.rel for sf in _files(settings)]
        return base
    info = index.info(col)
    base.update(indexed=info.generation > 0, documents=info.documents, chunks=col.count(),
                embedding_model=info.embedding_model, last_ingest=info.last_ingest,
                corpus_hash=info.corpus_hash, generation=info.generation)
    base["drift"] = drift(settings, col)
    return base


def _files(settings: Settings):
    files, _ = discover([settings.corpus_dir], settings, IngestReport())
    return files


def drift(settings: Settings, col) -> dict[str, list[str]]:
    """Files new, changed or removed since the last ingest of the corpus folder."""
    state = read_state(col)
    files = _files(settings)
    by_source = {(d.root, d.source): d for d in state.values()}
    out: dict[str, list[str]] = {"new": [], "changed": [], "removed": []}
    seen = set()
    for sf in files:
        d = by_source.get((sf.root_key, sf.rel))
        if d is None:
            out["new"].append(sf.rel)
            continue
        seen.add((d.root, d.source))
        try:
            h = doc_hash(sf.path.read_bytes(), sf.rel)
        except OSError:
            continue
        if not d.complete(h):
            out["changed"].append(sf.rel)
    root_key = files[0].root_key if files else None
    for key, d in by_source.items():
        if key not in seen and (root_key is None or d.root == root_key):
            out["removed"].append(d.source)
    return out
