"""The Chroma side of the index: one client factory, one collection, and its identity.

The collection is the source of truth. Its metadata records what shaped the vectors (model and
chunking) and a generation number that ingest bumps after every successful sync; everything
derived from the collection (the BM25 index, counts) is keyed by that generation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from assistant.errors import IndexEmptyError, IndexMismatchError, StoreUnavailableError
from assistant.settings import Settings

SCHEMA_VERSION = 1
# Keys of the collection metadata that must match the settings.
IDENTITY_KEYS = ("psyqa_schema", "embedding_model", "max_tokens", "overlap_sentences")


def identity(settings: Settings) -> dict[str, Any]:
    return {
        "psyqa_schema": SCHEMA_VERSION,
        "embedding_model": settings.embedding_model,
        "max_tokens": settings.max_tokens,
        "overlap_sentences": settings.overlap_sentences,
    }


def open_client(settings: Settings):  # -> chromadb.ClientAPI
    """Embedded PersistentClient under data_dir, or HttpClient when a host is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        try:
            client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port,
                                         settings=chroma_settings)
            client.heartbeat()
        except Exception as exc:  # connection refused, DNS, TLS: all mean "not reachable"
            raise StoreUnavailableError(
                f"Cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"({type(exc).__name__}). Start it with 'chroma run --host {settings.chroma_host} "
                f"--port {settings.chroma_port} --path <dir>' or unset PSYQA_CHROMA_HOST to use "
                "the embedded store.") from None
        return client
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


def where_is(settings: Settings) -> str:
    if settings.chroma_host:
        return f"Chroma server {settings.chroma_host}:{settings.chroma_port}"
    return f"embedded Chroma at {settings.chroma_dir}"


def get_collection(client, name: str):
    """The collection, or None when it does not exist."""
    try:
        return client.get_collection(name)
    except Exception as exc:  # chromadb raises NotFoundError (1.x) or ValueError (older)
        if "does not exist" in str(exc) or type(exc).__name__ in ("NotFoundError", "InvalidCollectionException"):
            return None
        raise


def create_collection(client, name: str, settings: Settings):
    meta = identity(settings) | {"generation": 0, "created": _now()}
    return client.create_collection(name, metadata=meta, configuration={"hnsw": {"space": "cosine"}})


def check_identity(collection, settings: Settings) -> None:
    """Stop when the index was built with another model or chunking: never mix vectors."""
    meta = collection.metadata or {}
    want = identity(settings)
    diff = [f"{k}: index has {meta.get(k)!r}, settings say {want[k]!r}"
            for k in IDENTITY_KEYS if meta.get(k) != want[k]]
    if diff:
        raise IndexMismatchError(
            "The index was built with other settings (" + "; ".join(diff) + "). "
            "Run 'psyqa ingest --rebuild' to rebuild it with the current settings.")


@dataclass(frozen=True)
class IndexInfo:
    generation: int
    documents: int
    chunks: int
    embedding_model: str
    last_ingest: str | None
    corpus_hash: str | None


def info(collection) -> IndexInfo:
    meta = collection.metadata or {}
    return IndexInfo(
        generation=int(meta.get("generation", 0)),
        documents=int(meta.get("documents", 0)),
        chunks=int(meta.get("chunks", collection.count())),
        embedding_model=str(meta.get("embedding_model", "")),
        last_ingest=meta.get("last_ingest"),
        corpus_hash=meta.get("corpus_hash"),
    )


def open_index(settings: Settings, client=None):
    """The live collection for reading; raises with the fixing command when there is none."""
    client = client or open_client(settings)
    col = get_collection(client, settings.collection)
    if col is None or int((col.metadata or {}).get("generation", 0)) == 0:
        raise IndexEmptyError(
            f"No index yet in {where_is(settings)}. Run 'psyqa ingest' (or 'make run') to index corpus/.")
    check_identity(col, settings)
    return col


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
