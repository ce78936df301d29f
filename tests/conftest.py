"""Shared fixtures: an isolated data dir per test, Settings factories, the real embedder and a
real `chroma run` server on loopback.

The working directory stays the repository root: ingest names a corpus root relative to the cwd
(`root_key`), and the tests compare indexes built from the same cwd.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import start_chroma_server, stop_process, unique_collection  # noqa: E402

# The session index of corpus/ and its Assistant, defined once for every module that uses them.
pytest_plugins = ["fixtures_assistant"]

from assistant.settings import Settings  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Nothing a test does lands in the repository's data/: PSYQA_DATA_DIR points at a tmp dir."""
    for key in list(os.environ):
        if key.startswith("PSYQA_"):
            monkeypatch.delenv(key, raising=False)
    data = tmp_path / "psyqa-data"
    monkeypatch.setenv("PSYQA_DATA_DIR", str(data))
    yield data


@pytest.fixture
def settings_factory(tmp_path):
    """settings_factory(base=tmp_path, **overrides) -> Settings with data/ and corpus/ under base."""

    def make(base: Path | None = None, **overrides) -> Settings:
        base = Path(base) if base is not None else tmp_path
        values = {"data_dir": base / "data", "corpus_dir": base / "corpus"} | overrides
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def embedder():
    """The real bundled model, loaded once per session and handed to run(embedder=...)."""
    from assistant.embeddings import BundledEmbeddings

    emb = BundledEmbeddings()
    emb.embed_documents(["warm up"])
    return emb


@pytest.fixture(scope="session")
def tokenizer():
    from assistant.embeddings import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` on a free loopback port for the whole session: (host, port)."""
    proc, host, port = start_chroma_server(tmp_path_factory.mktemp("chroma-server"))
    try:
        yield host, port
    finally:
        stop_process(proc)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def backend(request, tmp_path) -> Settings:
    """Settings for the embedded store under tmp_path/data, or for the session's Chroma server
    with a collection name of its own (so tests sharing the server never collide)."""
    base = {"data_dir": tmp_path / "data", "corpus_dir": tmp_path / "corpus"}
    if request.param == "server":
        host, port = request.getfixturevalue("chroma_server")
        return Settings(**base, chroma_host=host, chroma_port=port, collection=unique_collection())
    return Settings(**base)

