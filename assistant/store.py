"""The Chroma side of the index: one client factory and the collection, opened or created.

What the collection's contents and metadata mean (identity, generations, the commit) is
`assistant.index`; this module only connects to Chroma and hands the collection out.
"""

from __future__ import annotations

from pathlib import Path

from assistant import index
from assistant.errors import IndexEmptyError, StoreUnavailableError
from assistant.settings import Settings


def open_client(settings: Settings, path: Path | None = None):  # -> chromadb.ClientAPI
    """Embedded PersistentClient under the index folder (or `path`), or HttpClient when a host is set."""
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
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def where_is(settings: Settings) -> str:
    if settings.chroma_host:
        return f"Chroma server {settings.chroma_host}:{settings.chroma_port}"
    return f"embedded Chroma at {settings.chroma_dir}"


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


def forget_embedded_clients() -> None:
    """Drop Chroma's process-wide cache of embedded systems (one per path), so the next client
    opens the files now at that path (after a rebuilt store was swapped in)."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def open_index(settings: Settings, client=None):
    """The live collection for reading; raises with the fixing command when there is none."""
    client = client or open_client(settings)
    col = get_collection(client, settings.collection)
    if col is None or index.generation(col) == 0:
        raise IndexEmptyError(
            f"No index yet in {where_is(settings)}. Run 'psyqa ingest' (or 'make run') to index corpus/.")
    index.check_identity(col, settings)
    return col

