"""The index format: what the stored Chroma collection means. The one owner of these facts.

Ingest writes the collection and the assistant reads it; both (and the benchmarks that build
collections directly) go through this module for every rule of the format:

* identity: the collection metadata records what shaped the vectors (`identity`), and an index
  built with other settings is refused, never mixed (`check_identity`);
* generations: every chunk carries `gen` (the generation whose commit made it visible) and `dead`
  (the generation from which it is gone; `NEVER` while alive). A reader of the committed
  generation G (`generation`) sees exactly the chunks with gen <= G < dead (`visible`,
  `visible_where`), so an answer never mixes a sync in progress with the committed index;
* the commit: writing the new generation number (with the counts and corpus hash) into the
  collection metadata is the single commit point of a sync (`commit`);
* chunk metadata: the flat keys a chunk is stored with (`chunk_meta`), including one boolean flag
  per substance and condition (`substance_key`, `condition_key`) that metadata filters match;
* derived files: where the BM25 index of a generation lives (`bm25_dir`) and the pruning of older
  ones (`prune_bm25`).
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import IndexMismatchError
from assistant.models import Chunk
from assistant.settings import Settings

SCHEMA_VERSION = 1
# Keys of the collection metadata that must match the settings.
IDENTITY_KEYS = ("psyqa_schema", "embedding_model", "max_tokens", "overlap_sentences")
# `dead` of a live chunk: larger than any generation a collection will reach.
NEVER = 10**15


# ----------------------------------------------------------------------------- identity

def identity(settings: Settings) -> dict[str, Any]:
    """The collection metadata that records what shaped the vectors."""
    return {
        "psyqa_schema": SCHEMA_VERSION,
        "embedding_model": settings.embedding_model,
        "max_tokens": settings.max_tokens,
        "overlap_sentences": settings.overlap_sentences,
    }


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


def new_collection_meta(settings: Settings, generation: int = 0) -> dict[str, Any]:
    """Metadata of a collection that has not been committed yet (generation 0: not readable)."""
    return identity(settings) | {"generation": generation, "created": now()}


# ----------------------------------------------------------------------------- generations

def generation(collection) -> int:
    """The committed generation of a collection (0: nothing committed yet)."""
    return int((collection.metadata or {}).get("generation", 0))


def visible(meta: dict, generation: int) -> bool:
    """Whether a chunk (its metadata) belongs to the committed `generation`."""
    return int(meta.get("gen", 0)) <= generation < int(meta.get("dead", NEVER))


def visible_where(generation: int) -> dict:
    """`visible` as a Chroma `where` clause."""
    return {"$and": [{"gen": {"$lte": generation}}, {"dead": {"$gt": generation}}]}


def dead_where(generation: int) -> dict:
    """Chunks that no reader of `generation` or later can see (safe to delete)."""
    return {"dead": {"$lte": generation}}


def commit(collection, settings: Settings, generation: int, *, documents: int, chunks: int,
           corpus_hash: str, last_ingest: str | None = None) -> None:
    """Make `generation` the committed one: the single commit point of a sync.

    Readers switch to the new generation the moment this metadata write lands; everything a
    reader of it needs (its chunks, its BM25 files) must be written before.
    """
    meta = dict(collection.metadata or {})
    meta.update(identity(settings))
    meta.update(generation=generation, documents=documents, chunks=chunks,
                corpus_hash=corpus_hash, last_ingest=last_ingest or now())
    meta.pop("hnsw:space", None)  # fixed at creation; Chroma refuses to modify it
    collection.modify(metadata=meta)


@dataclass(frozen=True)
class IndexInfo:
    generation: int
    documents: int
    chunks: int
    embedding_model: str
    last_ingest: str | None
    corpus_hash: str | None


def info(collection) -> IndexInfo:
    """What the collection metadata says about the committed index."""
    meta = collection.metadata or {}
    return IndexInfo(
        generation=generation(collection),
        documents=int(meta.get("documents", 0)),
        chunks=int(meta.get("chunks", collection.count())),
        embedding_model=str(meta.get("embedding_model", "")),
        last_ingest=meta.get("last_ingest"),
        corpus_hash=meta.get("corpus_hash"),
    )


# ----------------------------------------------------------------------------- chunk metadata

def substance_key(slug: str) -> str:
    """The boolean metadata flag of a chunk whose document is about substance `slug`."""
    return f"sub_{slug}"


def condition_key(slug: str) -> str:
    """The boolean metadata flag of a chunk whose document is about condition `slug`."""
    return f"cond_{slug}"


def topic_flags(substances: list[str], conditions: list[str]) -> dict[str, bool]:
    """One flag per substance and condition: Chroma metadata is flat, so list membership is
    stored as {"sub_mdma": True}, which every Chroma backend can filter on."""
    return {substance_key(s): True for s in substances} | {condition_key(c): True for c in conditions}


def chunk_meta(chunk: Chunk, gen: int) -> dict:
    """The metadata a chunk is stored with, alive and visible from generation `gen`."""
    m = dict(chunk.metadata)
    m.update(gen=gen, dead=NEVER)
    m.update(doc_id=chunk.doc_id, source=chunk.source, title=chunk.title, section=chunk.section,
             start=chunk.start, end=chunk.end, ordinal=chunk.ordinal)
    if chunk.page is not None:
        m["page"] = chunk.page
    return m


# ----------------------------------------------------------------------------- derived files

def bm25_dir(settings: Settings, generation: int) -> Path:
    """Where the BM25 index of `generation` lives (per server in server mode: files are local)."""
    host = f"{settings.chroma_host}_{settings.chroma_port}-" if settings.chroma_host else ""
    return Path(settings.data_dir) / "bm25" / f"{host}{settings.collection}-g{generation}"


def prune_bm25(keep: Path) -> None:
    """Remove the BM25 folders of other generations of the same collection (and server)."""
    parent = keep.parent
    if not parent.exists():
        return
    stem = keep.name.rsplit("-g", 1)[0]
    for d in parent.iterdir():
        if d != keep and d.is_dir() and d.name.rsplit("-g", 1)[0] == stem:
            shutil.rmtree(d, ignore_errors=True)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
