"""The Chroma side of the index: one client factory and the collection, opened or created.

What the collection's contents and metadata mean (identity, generations, the commit) is
`assistant.index`; this module only connects to Chroma, hands the collection out, and checks the
embedded store's files before Chroma reads them (`check_files`): Chroma answers some damaged
stores with a Rust error, and others (a missing segment folder, a truncated segment header) with
silently wrong results, so the files are checked first, once per client.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

from assistant import index
from assistant.errors import IndexDamagedError, IndexEmptyError, PsyqaError, StoreUnavailableError
from assistant.settings import Settings

SQLITE_MAGIC = b"SQLite format 3\x00"
# The files of a persisted HNSW segment (Chroma 1.x, hnswlib's split format).
HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle")
# header.bin: version, offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData, maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction.
HNSW_HEADER = struct.Struct("<IQQQQQQiIQQQdQ")


def open_client(settings: Settings, path: Path | None = None):  # -> chromadb.ClientAPI
    """Embedded PersistentClient under the index folder (or `path`), or HttpClient when a host is set.

    The embedded store's files are checked first: a damaged store raises IndexDamagedError (one
    line, naming the path and the fix) instead of a Chroma error or silently wrong answers."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host and path is None:
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
        index.adopt_old_layout(settings)
        return client
    if path is None:
        index.adopt_old_layout(settings)
        index.finish_interrupted_swap(settings)
        path = settings.chroma_dir
        problem = check_files(path, settings.collection)
        if problem:
            raise damaged(settings, problem)
    path.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:  # noqa: BLE001 - a store Chroma cannot open is a damaged store
        if is_disk_full(exc):
            raise
        raise damaged(settings, f"Chroma cannot open it ({first_line(exc)})") from None


def where_is(settings: Settings) -> str:
    if settings.chroma_host:
        return f"Chroma server {settings.chroma_host}:{settings.chroma_port}"
    return f"embedded Chroma at {settings.chroma_dir}"


def damaged(settings: Settings, problem: str) -> IndexDamagedError:
    """The one-line message for a damaged index: where, what, and the fix."""
    if settings.chroma_host:
        where = (f"The index in the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                 f"(collection '{settings.collection}')")
        aside = "the damaged collection is renamed aside, not deleted"
    else:
        where = f"The index at {settings.chroma_dir}"
        aside = f"the damaged store is moved to {settings.index_dir / 'damaged'}/, not deleted"
    err = IndexDamagedError(f"{where} is damaged: {problem}. Run 'psyqa ingest --rebuild' to "
                            f"rebuild it from the corpus ({aside}).")
    err.what, err.aside = f"{where} is damaged: {problem}", aside
    return err


def get_collection(client, name: str):
    """The collection, or None when it does not exist."""
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name)
    except NotFoundError:
        return None


def create_collection(client, name: str, settings: Settings, generation: int = 0):
    """A new, empty collection (generation 0: not readable until its first commit; a rebuild
    starts from the old index's generation, so its first commit is a newer one)."""
    meta = index.new_collection_meta(settings, generation)
    return client.create_collection(name, metadata=meta, configuration={"hnsw": {"space": "cosine"}})


def open_index(settings: Settings, client=None):
    """The live collection for reading; raises with the fixing command when there is none."""
    client = client or open_client(settings)
    col = get_collection(client, settings.collection)
    if col is None or index.generation(col) == 0:
        raise IndexEmptyError(
            f"No index yet in {where_is(settings)}. Run 'psyqa ingest' (or 'make run') to index "
            f"{settings.corpus_dir}/.")
    index.check_identity(col, settings)
    return col


def verify(client, settings: Settings, col):
    """`col` if the index it holds is consistent (`index.check`), else IndexDamagedError.

    A sync committing meanwhile can make the counts disagree for a moment: the collection is read
    again and checked at its new generation before anything is called damaged."""
    from chromadb.errors import NotFoundError

    for _ in range(3):
        try:
            problem = index.check(col, settings)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if (isinstance(exc, PsyqaError) or not settings.chroma_host or _is_connection_error(exc)
                    or is_disk_full(exc)):
                # Embedded: a Chroma error here may be a view made stale by another process's
                # ingest; the caller reopens, and explains it (files checked) if it persists.
                raise
            if isinstance(exc, NotFoundError):
                raise explain(exc, settings) from None  # deleted meanwhile: gone, not damaged
            problem = f"the server cannot read the collection ({first_line(exc)})"
        if problem is None:
            return col
        again = get_collection(client, settings.collection)
        if again is None or index.generation(again) == index.generation(col):
            break
        col = again
    raise damaged(settings, problem)


def forget_embedded_clients() -> None:
    """Drop Chroma's process-wide cache of embedded systems (one per path), so the next client
    opens the files now at that path (after a rebuilt store was swapped in)."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def explain(exc: BaseException, settings: Settings) -> PsyqaError | None:
    """A Chroma failure at the edge as the one-line error it means, or None when it is not one
    (then the caller re-raises it). The store's files are checked again to name the damage."""
    from chromadb.errors import ChromaError, NotFoundError

    if isinstance(exc, PsyqaError):
        return exc
    if settings.chroma_host and _is_connection_error(exc):
        return StoreUnavailableError(
            f"Lost the connection to the Chroma server at {settings.chroma_host}:"
            f"{settings.chroma_port} ({first_line(exc)}). Start it again, then retry.")
    if isinstance(exc, NotFoundError):
        return IndexEmptyError(
            f"The collection '{settings.collection}' is gone from {where_is(settings)}. Run "
            "'psyqa ingest' to rebuild it from the corpus.")
    chroma = isinstance(exc, ChromaError) or type(exc).__name__ == "PanicException"
    if not chroma or is_disk_full(exc):
        return None
    if settings.chroma_host:
        return damaged(settings, f"the server failed reading it ({first_line(exc)})")
    problem = check_files(settings.chroma_dir, settings.collection)
    return damaged(settings, problem or f"Chroma failed reading it ({first_line(exc)})")


# ----------------------------------------------------------------------------- file checks

def check_files(path: Path, collection: str) -> str | None:
    """What is wrong with the embedded store at `path` (None: nothing found), read without Chroma.

    * chroma.sqlite3: a SQLite header, a size that matches it, tables that can be read;
    * the HNSW segment of `collection`, once Chroma has persisted it (its `max_seq_id` row; a
      small collection lives in the log only and has no files that matter): every file there,
      a whole header, data and norms for as many elements as the header counts, a whole pickle.
    Cheap: a few small reads and two SQLite lookups, no scan of the records."""
    db = path / "chroma.sqlite3"
    if not path.exists():
        return None
    if not db.exists():
        leftovers = [p for p in path.iterdir() if not p.name.startswith(".")]
        return f"{db} is missing (the folder holds {len(leftovers)} other entries)" if leftovers else None
    problem = _check_sqlite_header(db)
    if problem:
        return problem
    journal = db.with_name(db.name + "-journal")
    if journal.exists() and journal.stat().st_size > 0:
        return None  # a hot journal: SQLite rolls it back when Chroma opens the store
    try:
        segment, flushed = _vector_segment(db, collection)
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "no such" in text or "locked" in text or "readonly" in text.replace("-", ""):
            return None  # another Chroma schema, or busy: nothing to say about damage
        return f"{db} cannot be read ({text})"
    except sqlite3.DatabaseError as exc:
        return f"{db} cannot be read ({exc})"
    if segment is None or not flushed:
        return None
    return _check_hnsw(path / segment)


def _check_sqlite_header(db: Path) -> str | None:
    size = db.stat().st_size
    with open(db, "rb") as fh:
        head = fh.read(100)
    if size == 0:
        return f"{db} is empty"
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        return f"{db} is not a readable SQLite database (its header is overwritten)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        return f"{db} has a corrupt header (page size {page})"
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96] and pages > 0
    if size % page or (valid and size < pages * page):
        want = pages * page if valid else (size // page + 1) * page
        return f"{db} is truncated ({size:,} of {want:,} bytes)"
    return None


def _vector_segment(db: Path, collection: str) -> tuple[str | None, bool]:
    """The id of `collection`'s vector segment, and whether Chroma has persisted it to files."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT s.id, m.seq_id FROM collections c JOIN segments s ON s.collection = c.id "
            "LEFT JOIN max_seq_id m ON m.segment_id = s.id WHERE c.name = ? AND s.scope = 'VECTOR'",
            (collection,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None, False
    seq = row[1]
    if isinstance(seq, (bytes, bytearray)):  # older Chroma stored it big-endian
        seq = int.from_bytes(seq, "big")
    return str(row[0]), bool(seq)


def _check_hnsw(seg: Path) -> str | None:
    if not seg.is_dir():
        return f"its vector segment folder {seg} is missing"
    for name in HNSW_FILES:
        if not (seg / name).is_file():
            return f"the segment file {seg / name} is missing"
    header = (seg / "header.bin").read_bytes()
    if len(header) != HNSW_HEADER.size:
        return f"the segment file {seg / 'header.bin'} is truncated ({len(header)} of {HNSW_HEADER.size} bytes)"
    version, _, max_elements, count, per_element = HNSW_HEADER.unpack(header)[:5]
    if version != 1:
        return None  # a format this check does not know: leave it to Chroma
    if count > max_elements or per_element == 0:
        return f"the segment file {seg / 'header.bin'} is corrupt"
    for name, need in (("data_level0.bin", count * per_element), ("length.bin", count * 4)):
        have = (seg / name).stat().st_size
        if have < need:
            return f"the segment file {seg / name} is truncated ({have:,} of {need:,} bytes)"
    pickle = seg / "index_metadata.pickle"
    if pickle.stat().st_size == 0:
        return f"the segment file {pickle} is empty"
    with open(pickle, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b".":  # a pickle ends with its STOP opcode
            return f"the segment file {pickle} is truncated"
    return None


# ----------------------------------------------------------------------------- errors

def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _is_connection_error(exc: BaseException | None) -> bool:
    """A failure to talk to the Chroma server (refused, reset, timed out), anywhere in the chain."""
    import httpx

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (httpx.TransportError, ConnectionError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def is_disk_full(exc: BaseException) -> bool:
    import errno

    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "no space left" in text or "disk is full" in text or "database or disk is full" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
