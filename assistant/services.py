"""`build_services(settings)`: the heavy objects (model, Chroma client, BM25), built once.

The app caches the result with st.cache_resource, the CLI builds it once per process. Library
code takes services as arguments and never builds them itself.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from assistant import index, store
from assistant.bm25 import BM25Index, build_from_collection
from assistant.embeddings import BundledEmbeddings
from assistant.errors import StoreUnavailableError
from assistant.settings import Settings


@dataclass
class Services:
    settings: Settings
    embedder: BundledEmbeddings
    client: object = None
    _bm25: BM25Index | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _store_key: tuple | None = None          # the embedded database file at connect time

    def collection(self):
        """The live collection, re-read on every call so a new generation is noticed.

        Reconnects when the client was lost (a Chroma server restarted) or the embedded store was
        swapped for a rebuilt one (one stat per call)."""
        try:
            if self.client is not None and self._store_swapped():
                self.reopen()  # `psyqa ingest --rebuild` swapped a rebuilt store in
            if self.client is None:
                self.client = store.open_client(self.settings)
                self._store_key = _store_key(self.settings)
            return store.open_index(self.settings, self.client)
        except StoreUnavailableError:
            self.client = None
            raise
        except Exception as exc:
            if self.settings.chroma_host and _is_connection_error(exc):
                self.client = None
                raise StoreUnavailableError(
                    f"Lost the connection to the Chroma server at {self.settings.chroma_host}:"
                    f"{self.settings.chroma_port}; it will be retried on the next question.") from None
            raise

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
        """Term statistics of the committed index (document frequency per stem, names) for the
        answerer's focus analysis; loads the BM25 index of the current generation if needed."""
        from assistant.answer.focus import CorpusTerms

        lex = self.bm25(self.collection())
        return CorpusTerms(lex.document_frequency(), max(1, len(lex.ids)), lex.names)

    def bm25(self, collection) -> BM25Index:
        """The BM25 index of the collection's committed generation (loaded or rebuilt)."""
        generation = index.generation(collection)
        lex = self._bm25
        if lex is not None and lex.generation == generation:
            return lex
        with self._lock:
            lex = self._bm25
            if lex is not None and lex.generation == generation:
                return lex
            path = index.bm25_dir(self.settings, generation)
            lex = BM25Index.load(path)
            if lex is None or lex.generation != generation:
                # Derived state missing (a crash, or an ingest on another machine): rebuild it.
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
