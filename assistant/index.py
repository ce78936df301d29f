"""The index format: what the stored Chroma collection means. The one owner of these facts.

Ingest writes the collection and the assistant reads it; both (and the benchmarks that build
collections directly) go through this module for every rule of the format:

* identity: the collection metadata records what shaped the vectors (`identity`), and an index
  built with other settings is refused, never mixed (`check_identity`);
* generations: every chunk carries `gen` (the generation whose commit made it visible) and `dead`
  (the generation from which it is gone; `NEVER` while alive). A reader of the committed
  generation G (`generation`) sees exactly the chunks with gen <= G < dead (`visible`,
  `visible_where`), so an answer never mixes a sync in progress with the committed index;
* the commit: writing the new generation number (with the counts, corpus hash and the corpus
  folders it was built from, `roots`) into the collection metadata is the single commit point of a
  sync (`commit`);
* consistency: what a committed index must satisfy, checked once per generation by its readers
  (`check`: the counts agree with the metadata, the generation has its chunks, no BM25 files of a
  generation the collection never reached);
* the ingest lease (server mode): the record of an ingest in progress, kept in the collection
  metadata (`LEASE_KEYS`, `lease_of`);
* chunk metadata: the flat keys a chunk is stored with (`chunk_meta`), including one boolean flag
  per substance and condition (`substance_key`, `condition_key`) that metadata filters match, the
  footnote numbers and reference list the loader kept out of the text (`footnotes`, `references`),
  and
  the chunk's sentences with a vector each (`sentence_meta`, read back by `sentences`), so they
  ride with the chunk through every generation, crash and rebuild;
* facets: how many documents carry each substance, condition and source type, counted once per
  generation and stored with the commit (`count_facets`, `facets_of`), so the app offers only
  filter values the index holds without reading the chunks per question;
* derived files: where the BM25 index of a generation lives (`bm25_dir`) and the pruning of older
  ones (`prune_bm25`), where the last ingest run's report is kept (`ingest_report_path`); where a
  `--rebuild` of the embedded store is built and how it is swapped in (`rebuild_dir`, `swap_in`);
  the layout of the data folder before derived and user data were separated (`adopt_old_layout`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterable
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


def born(meta: dict) -> int:
    """The generation from which a chunk (its metadata) is visible."""
    return int(meta.get("gen", 0))


def dies(meta: dict) -> int:
    """The generation from which a chunk is gone (`NEVER` while it is alive)."""
    return int(meta.get("dead", NEVER))


def retiring(meta: dict) -> bool:
    """Whether a chunk has been retired (at some generation, committed or not)."""
    return dies(meta) != NEVER


def alive(gen: int) -> dict:
    """The metadata that makes a chunk visible from `gen` on, for good."""
    return {"gen": gen, "dead": NEVER}


def retired(gen: int) -> dict:
    """The metadata update that retires a chunk from generation `gen` on."""
    return {"dead": gen}


def visible(meta: dict, generation: int) -> bool:
    """Whether a chunk (its metadata) belongs to the committed `generation`."""
    return born(meta) <= generation < dies(meta)


def visible_where(generation: int) -> dict:
    """`visible` as a Chroma `where` clause."""
    return {"$and": [{"gen": {"$lte": generation}}, {"dead": {"$gt": generation}}]}


def dead_where(generation: int) -> dict:
    """Chunks that no reader of `generation` or later can see (safe to delete)."""
    return {"dead": {"$lte": generation}}


def commit(collection, settings: Settings, generation: int, *, documents: int, chunks: int,
           corpus_hash: str, last_ingest: str | None = None,
           facets: dict[str, dict[str, int]] | None = None, roots: list[dict] | None = None,
           extra: dict[str, Any] | None = None) -> None:
    """Make `generation` the committed one: the single commit point of a sync.

    Readers switch to the new generation the moment this metadata write lands; everything a
    reader of it needs (its chunks, its BM25 files) must be written before. `roots` are the corpus
    folders the index holds documents from (`root_entry`); `extra` more metadata (the lease).
    """
    meta = dict(collection.metadata or {})
    meta.update(identity(settings))
    meta.update(generation=generation, documents=documents, chunks=chunks,
                corpus_hash=corpus_hash, last_ingest=last_ingest or now())
    # Metadata values are scalars: the counts travel as one JSON string. Without counts, none
    # from an earlier generation may survive (readers then count them from the chunks).
    meta.pop("facets", None)
    if facets is not None:
        meta["facets"] = json.dumps(facets, sort_keys=True)
    if roots is not None:
        meta["roots"] = json.dumps(roots, sort_keys=True)
    meta.update(extra or {})
    meta.pop("hnsw:space", None)  # fixed at creation; Chroma refuses to modify it
    collection.modify(metadata=meta)


def root_entry(key: str, path: Path) -> dict[str, str]:
    """A corpus folder as the index records it: the key its chunks carry (`root`) and its path."""
    return {"key": key, "path": str(Path(path).resolve())}


def roots_of(collection) -> list[dict[str, str]]:
    """The corpus folders the committed index was built from (empty for an index that predates
    the record: readers then fall back to the `root` keys of its chunks)."""
    raw = (collection.metadata or {}).get("roots")
    try:
        roots = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [r for r in roots if isinstance(r, dict) and "key" in r and "path" in r]


@dataclass(frozen=True)
class IndexInfo:
    generation: int
    documents: int
    chunks: int
    embedding_model: str
    last_ingest: str | None
    corpus_hash: str | None
    facets: dict[str, dict[str, int]] | None = None  # None: committed before facets were counted


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
        facets=_parse_facets(meta.get("facets")),
    )


def _parse_facets(raw) -> dict[str, dict[str, int]] | None:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {f: {str(k): int(v) for k, v in (data.get(f) or {}).items()} for f in FACETS}


# ----------------------------------------------------------------------------- consistency

def invisible_where(generation: int) -> dict:
    """Chunks a reader of `generation` does not see (written after it, or dead at it)."""
    return {"$or": [{"gen": {"$gt": generation}}, {"dead": {"$lte": generation}}]}


def check(collection, settings: Settings) -> str | None:
    """What contradicts itself in a committed index (None: nothing), in a few words naming it.

    * the collection holds fewer chunks than the metadata says the generation has (chunks lost);
    * the committed generation has no chunks, or another number than the metadata says;
    * BM25 files of this collection for a generation it never committed (beyond the one a sync in
      progress may be writing): the store was replaced or rolled back under its derived files.
    Cost: a count and one `where` lookup that finds nothing while no sync is in progress (the
    full count of visible chunks only when there are others). Readers call it once per generation.
    """
    gen = generation(collection)
    if gen == 0:
        return None
    meta = collection.metadata or {}
    name = collection.name
    if meta.get("chunks") is not None:
        want = int(meta["chunks"])
        have = collection.count()
        if have < want:
            return (f"collection '{name}' holds {have} chunks, but its committed generation {gen} "
                    f"should have {want}")
        if have == want and not collection.get(where=invisible_where(gen), limit=1, include=[])["ids"]:
            visible_n = have
        else:
            visible_n = len(collection.get(where=visible_where(gen), include=[])["ids"])
        if visible_n == 0 and want > 0:
            return f"its committed generation {gen} has no chunks (the metadata says {want})"
        if visible_n != want:
            return f"its committed generation {gen} has {visible_n} chunks, the metadata says {want}"
    return _check_bm25_dirs(settings, collection, gen)


def _check_bm25_dirs(settings: Settings, collection, gen: int) -> str | None:
    current = bm25_dir(settings, gen)
    if not current.parent.exists():
        return None
    stem = current.name.rsplit("-g", 1)[0]
    for d in sorted(current.parent.iterdir()):
        head, _, tail = d.name.rpartition("-g")
        if head != stem or not tail.isdigit() or int(tail) <= gen + 1:
            continue  # gen + 1: what a sync in progress (or killed before its commit) writes
        if bm25_collection(d) == str(collection.id):
            return (f"{d} holds BM25 files of generation {tail}, but the collection has committed "
                    f"only generation {gen} (the store was replaced or rolled back under its "
                    "derived files)")
    return None


def bm25_collection(directory: Path) -> str | None:
    """The id of the collection a BM25 folder was built from (None: unknown or unreadable)."""
    try:
        return json.loads((directory / "ids.json").read_text()).get("collection")
    except (OSError, ValueError, AttributeError):
        return None


# ----------------------------------------------------------------------------- the ingest lease

# The record of an ingest in progress, in the collection metadata (server mode): who (host, pid),
# since when, its last heartbeat (seconds since the epoch) and a random token naming this run.
LEASE_KEYS = ("ingest_host", "ingest_pid", "ingest_started", "ingest_heartbeat", "ingest_token")


def lease_of(meta: dict | None) -> dict[str, Any] | None:
    """The ingest lease recorded in collection metadata `meta`, or None."""
    meta = meta or {}
    if not meta.get("ingest_token"):
        return None
    return {k: meta.get(k) for k in LEASE_KEYS}


def without_lease(meta: dict | None) -> dict[str, Any]:
    return {k: v for k, v in (meta or {}).items() if k not in LEASE_KEYS}


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


# What the loader took out of a passage's text (ingest/loaders.py): the footnote numbers removed
# from its sentences, as [[offset in the chunk text, number], ...], and its document's reference
# list, entry by entry. Both JSON lists, on the chunks that have them.
FOOTNOTES = "footnotes"
REFERENCES = "references"


def footnote_meta(marks: list[tuple[int, str]]) -> dict[str, str]:
    return {FOOTNOTES: json.dumps([[int(off), str(n)] for off, n in marks])} if marks else {}


def footnotes(meta: dict) -> list[tuple[int, str]]:
    """(offset in the chunk text, footnote number) of the markers left out of its sentences."""
    try:
        return [(int(off), str(n)) for off, n in json.loads(str(meta.get(FOOTNOTES) or "[]"))]
    except (ValueError, TypeError):
        return []


def reference_meta(entries: list[str]) -> dict[str, str]:
    return {REFERENCES: json.dumps(entries, ensure_ascii=False)} if entries else {}


def references(meta: dict) -> list[str]:
    """The reference list of the chunk's document (empty when it has none)."""
    try:
        return [str(r) for r in json.loads(str(meta.get(REFERENCES) or "[]"))]
    except (ValueError, TypeError):
        return []


SENTENCE_SPANS = "sent_spans"
SENTENCE_VECTORS = "sent_vecs"
# Sentence vectors are stored as int8 (x 127): cosine ranks are unchanged to the third decimal and
# a sentence costs 512 characters of metadata instead of 2 KB of float32 text.
_QSCALE = 127.0


def spans_value(spans: list[tuple[int, int]]) -> str:
    """How a chunk's sentence offsets are stored (compared by ingest to see if they changed)."""
    return json.dumps([[int(a), int(b)] for a, b in spans])


def sentence_meta(spans: list[tuple[int, int]], vectors) -> dict[str, str]:
    """Chunk metadata holding its sentences' offsets (in the chunk text) and their vectors."""
    import numpy as np

    vecs = np.asarray(vectors, dtype=np.float32).reshape(len(spans), -1)
    q = np.clip(np.rint(vecs * _QSCALE), -127, 127).astype(np.int8)
    return {SENTENCE_SPANS: spans_value(spans),
            SENTENCE_VECTORS: f"{vecs.shape[1]}:" + base64.b64encode(q.tobytes()).decode("ascii")}


def sentences(meta: dict):
    """(sentence offsets in the chunk text, their vectors as a normalised float32 array), or
    None when the chunk was stored without them (an older index, or a benchmark's copy)."""
    import numpy as np

    spans, packed = meta.get(SENTENCE_SPANS), meta.get(SENTENCE_VECTORS)
    if not spans or not packed:
        return None
    try:
        dim, data = str(packed).split(":", 1)
        offsets = [(int(a), int(b)) for a, b in json.loads(str(spans))]
        q = np.frombuffer(base64.b64decode(data), dtype=np.int8).astype(np.float32)
        vecs = q.reshape(len(offsets), int(dim)) / _QSCALE
    except (ValueError, TypeError):
        return None
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return offsets, vecs / np.where(norms > 0, norms, 1.0)


def has_sentences(meta: dict) -> bool:
    return bool(meta.get(SENTENCE_SPANS)) and bool(meta.get(SENTENCE_VECTORS))


# The filterable fields, in the order the app shows them.
FACETS = ("substances", "conditions", "source_types")


def facets_of(meta: dict) -> dict[str, list[str]]:
    """The filterable values of a chunk's document (read from its metadata flags)."""
    out: dict[str, list[str]] = {f: [] for f in FACETS}
    for key, value in meta.items():
        if value is True and key.startswith("sub_"):
            out["substances"].append(key[4:])
        elif value is True and key.startswith("cond_"):
            out["conditions"].append(key[5:])
    if meta.get("source_type"):
        out["source_types"].append(str(meta["source_type"]))
    return out


def count_facets(documents: Iterable[dict[str, list[str]]]) -> dict[str, dict[str, int]]:
    """Per filterable value, the number of documents that carry it (one `facets_of` per document)."""
    counts: dict[str, dict[str, int]] = {f: {} for f in FACETS}
    for doc in documents:
        for f in FACETS:
            for value in set(doc.get(f, ())):
                counts[f][value] = counts[f].get(value, 0) + 1
    return {f: dict(sorted(c.items())) for f, c in counts.items()}


def scan_facets(collection, generation: int, batch: int = 10000) -> dict[str, dict[str, int]]:
    """`count_facets` from the chunks themselves, for an index committed before facets were
    stored: reads every chunk's metadata, so callers keep the result per generation."""
    docs: dict[str, dict[str, list[str]]] = {}
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=batch, offset=offset)
        for m in got["metadatas"]:
            if m is not None and visible(m, generation):
                docs.setdefault(str(m.get("doc_id", "")), facets_of(m))
        offset += len(got["ids"])
        if len(got["ids"]) < batch:
            break
    return count_facets(docs.values())


def chunk_meta(chunk: Chunk, gen: int, sentence_vectors=None) -> dict:
    """The metadata a chunk is stored with, alive and visible from generation `gen` (with its
    sentences' vectors when given)."""
    m = dict(chunk.metadata)
    m.update(alive(gen))
    m.update(doc_id=chunk.doc_id, source=chunk.source, title=chunk.title, section=chunk.section,
             start=chunk.start, end=chunk.end, ordinal=chunk.ordinal)
    if chunk.page is not None:
        m["page"] = chunk.page
    if sentence_vectors is not None and chunk.sentences:
        m.update(sentence_meta(chunk.sentences, sentence_vectors))
    return m


# ----------------------------------------------------------------------------- derived files

def bm25_dir(settings: Settings, generation: int) -> Path:
    """Where the BM25 index of `generation` lives (per server in server mode: files are local)."""
    host = f"{settings.chroma_host}_{settings.chroma_port}-" if settings.chroma_host else ""
    return Path(settings.index_dir) / "bm25" / f"{host}{settings.collection}-g{generation}"


def bm25_generations(settings: Settings) -> list[int]:
    """The generations this collection (and server) has BM25 folders for."""
    probe = bm25_dir(settings, 0)
    if not probe.parent.exists():
        return []
    stem = probe.name.rsplit("-g", 1)[0]
    out = []
    for d in probe.parent.iterdir():
        head, _, tail = d.name.rpartition("-g")
        if head == stem and tail.isdigit():
            out.append(int(tail))
    return sorted(out)


def prune_bm25(keep: Path) -> None:
    """Remove the BM25 folders of other generations of the same collection (and server)."""
    parent = keep.parent
    if not parent.exists():
        return
    stem = keep.name.rsplit("-g", 1)[0]
    for d in parent.iterdir():
        if d != keep and d.is_dir() and d.name.rsplit("-g", 1)[0] == stem:
            shutil.rmtree(d, ignore_errors=True)


def ingest_report_path(settings: Settings) -> Path:
    """Where the report of the last ingest run against this collection (and server) is kept: derived
    data under the index folder (removed with it by `psyqa clean`), local to the machine that ran
    it."""
    host = f"{settings.chroma_host}_{settings.chroma_port}-" if settings.chroma_host else ""
    return Path(settings.index_dir) / "reports" / f"{host}{settings.collection}-last-ingest.json"


# A --rebuild of the embedded store is built in a folder of its own next to the live one, so the
# live store is never written while it is built (a kill or a full disk leaves it serving), then
# swapped in: the marker file says the build is complete (and whether the store it replaces is
# damaged: that one is moved to damaged/<time>/, kept; a healthy one is deleted).
COMPLETE_MARKER = ".psyqa-complete"


def rebuild_dir(settings: Settings) -> Path:
    return Path(settings.index_dir) / "chroma.rebuild"


def damaged_dir(settings: Settings) -> Path:
    return Path(settings.index_dir) / "damaged"


def mark_complete(settings: Settings, damaged: str | None) -> None:
    (rebuild_dir(settings) / COMPLETE_MARKER).write_text(json.dumps({"damaged": damaged, "at": now()}))


def swap_in(settings: Settings) -> Path | None:
    """Make the completed rebuild the live store. Returns where a damaged store was moved to.

    Each step is one rename, and the marker stays until the last one, so a kill between steps is
    finished by the next open (`finish_interrupted_swap`)."""
    new, live = rebuild_dir(settings), Path(settings.chroma_dir)
    marker = json.loads((new / COMPLETE_MARKER).read_text())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = old = None
    if live.exists():
        if marker.get("damaged"):
            kept = damaged_dir(settings) / f"chroma-{stamp}"
            kept.parent.mkdir(parents=True, exist_ok=True)
            (kept.parent / f"chroma-{stamp}.txt").write_text(
                f"{marker['damaged']}. Moved here by 'psyqa ingest' at {now()}, which rebuilt the "
                "index from the corpus. Delete this copy when you no longer need it.\n")
            os.rename(live, kept)
        else:
            old = Path(settings.index_dir) / f".chroma.old-{stamp}"
            os.rename(live, old)
    _rename_into_place(new, live)
    (live / COMPLETE_MARKER).unlink(missing_ok=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return kept


def _rename_into_place(new: Path, live: Path) -> None:
    for _ in range(5):
        try:
            os.rename(new, live)
            return
        except FileNotFoundError:
            if live.exists() and not new.exists():
                return  # another process finished the swap
            raise
        except OSError:
            if not live.exists():
                raise
            # A reader opened the live path in the gap and Chroma created an empty store there.
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            os.rename(live, live.parent / f".chroma.empty-{stamp}")
    os.rename(new, live)


def finish_interrupted_swap(settings: Settings, *, writer: bool = False) -> None:
    """Finish a rebuild's swap that a kill interrupted. A reader only does the last rename (when
    there is no live store at all); the writer (an ingest holding the lock) does the whole swap,
    and removes what a killed rebuild or swap left behind."""
    new, live = rebuild_dir(settings), Path(settings.chroma_dir)
    complete = (new / COMPLETE_MARKER).exists()
    if complete and not live.exists():
        try:
            _rename_into_place(new, live)
            (live / COMPLETE_MARKER).unlink(missing_ok=True)
        except OSError:
            pass
        return
    if not writer:
        return
    if complete:
        swap_in(settings)
    elif new.exists():
        shutil.rmtree(new, ignore_errors=True)  # a rebuild killed before it was complete
    for d in Path(settings.index_dir).glob(".chroma.*"):
        shutil.rmtree(d, ignore_errors=True)


def adopt_old_layout(settings: Settings) -> None:
    """Move the derived data of the old layout (data/chroma, data/bm25, data/reports) into data/index/.

    One rename each, only when the new place is still empty; user data is moved by its owner
    (`assistant.feedback.db_path`)."""
    data, idx = Path(settings.data_dir), Path(settings.index_dir)
    for name in ("chroma", "bm25", "reports"):
        old, new = data / name, idx / name
        if old.is_dir() and not new.exists():
            idx.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(old, new)
            except OSError:
                if not new.exists():
                    raise


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
