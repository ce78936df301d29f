"""`build_services(settings)`: the heavy objects (model, Chroma client, BM25), built once.

The app caches the result with st.cache_resource, the CLI builds it once per process. Library
code takes services as arguments and never builds them itself.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from assistant import index, store
from assistant.bm25 import BM25Index, build_from_collection
from assistant.embeddings import BundledEmbeddings
from assistant.errors import IndexEmptyError, StoreUnavailableError
from assistant.settings import Settings

log = logging.getLogger("psyqa.services")


@dataclass
class Services:
    settings: Settings
    embedder: BundledEmbeddings
    client: object = None
    _bm25: BM25Index | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _store_key: tuple | None = None          # the embedded database file at connect time
    _verified: tuple | None = None           # (collection id, generation) last checked
    _seen: tuple | None = None               # (collection name, generation) last served

    def collection(self):
        """The live collection, re-read on every call so a new generation is noticed.

        Checked once per generation (`store.verify`: counts against metadata, BM25 folders), and
        the embedded store's files once per client (`store.open_client`); a damaged index raises
        IndexDamagedError. Reconnects when the client was lost (a Chroma server restarted) or the
        embedded store was swapped for a rebuilt one (one stat per call)."""
        try:
            if self.client is not None and self._store_swapped():
                self.reopen()  # `psyqa ingest --rebuild` swapped a rebuilt store in
            if self.client is None:
                self.client = store.open_client(self.settings)
                self._store_key = _store_key(self.settings)
            col = store.open_index(self.settings, self.client)
        except StoreUnavailableError:
            self.client = None
            raise
        except IndexEmptyError:
            if self._seen is None:
                raise
            name, gen = self._seen
            raise IndexEmptyError(
                f"The collection '{name}' is gone from {store.where_is(self.settings)} (this process "
                f"was reading its generation {gen}). Run 'psyqa ingest' to rebuild it from the "
                "corpus.") from None
        except Exception as exc:
            if self.settings.chroma_host and _is_connection_error(exc):
                self.client = None
                raise StoreUnavailableError(
                    f"Lost the connection to the Chroma server at {self.settings.chroma_host}:"
                    f"{self.settings.chroma_port}; it will be retried on the next question.") from None
            raise
        key = (str(col.id), index.generation(col))
        if key != self._verified:
            col = store.verify(self.client, self.settings, col)
            self._verified = (str(col.id), index.generation(col))
            self._seen = (col.name, index.generation(col))
        return col

    def _store_swapped(self) -> bool:
        """Whether the embedded store's database file is another one than at connect time."""
        return not self.settings.chroma_host and _store_key(self.settings) != self._store_key

    def reopen(self) -> None:
        """Drop the client so the next call opens the store afresh.

        The embedded store belongs to one process: when `psyqa ingest` (another process) has
        rewritten it, this process's cached view fails ("Error finding id"). Chroma keeps one
        system per path in a process-wide cache, which has to be cleared as well.
        """
        with self._lock:
            self.client = None
            if not self.settings.chroma_host:
                from chromadb.api.client import SharedSystemClient

                SharedSystemClient.clear_system_cache()

    def corpus_terms(self):
        """Term statistics of the committed index (document frequency per stem, names and the
        substance a name is about) for the answerer's focus analysis; loads the BM25 index of the
        current generation if needed."""
        from assistant.answer.focus import CorpusTerms

        lex = self.bm25(self.collection())
        return CorpusTerms(lex.document_frequency(), max(1, len(lex.ids)), lex.names, lex.subjects)

    def bm25(self, collection) -> BM25Index:
        """The BM25 index of the collection's committed generation (loaded or rebuilt)."""
        generation, cid = index.generation(collection), str(collection.id)

        def current(lex: BM25Index | None) -> bool:
            return lex is not None and lex.generation == generation and lex.collection in (None, cid)

        lex = self._bm25
        if current(lex) and lex.collection == cid:
            return lex
        with self._lock:
            lex = self._bm25
            if current(lex) and lex.collection == cid:
                return lex
            path = index.bm25_dir(self.settings, generation)
            lex = BM25Index.load(path)
            if not current(lex):
                # Derived state missing (deleted, a crash, an ingest on another machine) or built
                # from another collection of the same name: rebuild it from the collection.
                (log.info if self.settings.chroma_host else log.warning)(
                    "the BM25 files of generation %s were %s (%s); rebuilt them from the collection",
                    generation, "missing" if lex is None else "of another build", path)
                lex = build_from_collection(collection, generation)
                try:
                    lex.save(path)
                    index.prune_bm25(path)
                except OSError:
                    pass  # read-only data dir: keep it in memory
            self._bm25 = lex
            return lex


def _store_key(settings: Settings) -> tuple | None:
    try:
        st = os.stat(settings.chroma_dir / "chroma.sqlite3")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_connection_error(exc: Exception) -> bool:
    """A failure to talk to the Chroma server (refused, reset, timed out), not a Chroma error."""
    import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError))


def build_services(settings: Settings) -> Services:
    """Create the embedder (weights load lazily on first use) and the store client."""
    return Services(settings=settings, embedder=BundledEmbeddings(settings.embedding_model,
                                                                  settings.embed_batch_size))
