"""The BM25 side of the index, derived from the Chroma collection and keyed by its generation.

Ingest builds it after a sync; a reader that finds no BM25 files for the collection's current
generation (a crash between the two, another machine's ingest in server mode) rebuilds it from
the collection. So it can never serve chunks the collection does not hold. Its files name the
collection they were built from, so files of a collection that was deleted and created again (a
new id, generations counted from 1 again) are never taken for the new one's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from assistant import index
from assistant.models import authors_of, embed_text

_STEMMER_LOCK = threading.Lock()


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")
# Where a capital letter says nothing about the word: a sentence, line, list item, heading or
# title part ("Title — Section > Sub") starts there.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;—>(\"“]\s*|\n\s*(?:[-*•]\s+)?)$")


def names_of(texts: list[str]) -> list[str]:
    """Words the corpus writes as names: capitalised wherever they occur other than at the start
    of a sentence (Oregon, Stanford, Noller, Spravato), or made of letters and digits (MAPP2,
    COMP005, GH001). Lowercased. A question that names one asks about that thing specifically."""
    from collections import Counter

    upper: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for text in texts:
        for m in _WORD.finditer(text):
            w = m.group()
            key = w.lower()
            if any(ch.isdigit() for ch in w) and any(ch.isalpha() for ch in w) and len(w) >= 3:
                upper[key] += 1
                continue
            if w[0].isupper():
                if not _SENTENCE_START.search(text[max(0, m.start() - 3):m.start()]):
                    upper[key] += 1
            else:
                lower[key] += 1
    return sorted(k for k, n in upper.items() if len(k) >= 3 and n >= 4 * lower[k])


# A name is about one substance when that substance is named in at least this share of the
# substance mentions of the sentences that use the name, and at least `_SUBJECT_MIN` times.
_SUBJECT_SHARE = 0.75
_SUBJECT_MIN = 3


def name_subjects(texts: list[str], names: list[str]) -> dict[str, str]:
    """Name -> the one substance (a lexicon slug) the corpus writes about in the sentences that
    use it: Bogenschutz and Oregon psilocybin, Noller and Texas ibogaine, MAPP2 MDMA. Names used
    across substances (FDA, DEA, Trautman, Australia) have none. A question naming one whose
    substance is not the conversation's is about that name, not a follow-up to the earlier topic."""
    from collections import Counter

    from assistant.lexicon import find_substances
    from assistant.text import sentence_spans

    wanted = set(names)
    counts: dict[str, Counter[str]] = {}
    for text in texts:
        for s, e in sentence_spans(text):
            sentence = text[s:e]
            here = {m.group().lower() for m in _WORD.finditer(sentence)} & wanted
            if here:
                subs = find_substances(sentence)
                for name in here:
                    counts.setdefault(name, Counter()).update(subs)
    out: dict[str, str] = {}
    for name, c in sorted(counts.items()):
        if c:
            top, n = c.most_common(1)[0]
            if n >= _SUBJECT_MIN and n >= _SUBJECT_SHARE * sum(c.values()):
                out[name] = top
    return out


class BM25Index:
    """bm25s over the same chunk ids as the collection (title and section included), with the
    corpus's term statistics the answerer uses (document frequency per stem, names)."""

    def __init__(self, retriever, ids: list[str], generation: int, names: list[str] | None = None,
                 collection: str | None = None, subjects: dict[str, str] | None = None) -> None:
        self.retriever = retriever
        self.ids = ids
        self.generation = generation
        self.names = frozenset(names or ())
        self.subjects = dict(subjects or {})  # `name_subjects`
        self.collection = collection  # the id of the collection it was built from
        self._stem = _stemmer()
        self._lock = threading.Lock()  # bm25s and PyStemmer objects are not thread-safe
        self._df: dict[str, int] | None = None

    @staticmethod
    def build(ids: list[str], texts: list[str], generation: int, collection: str | None = None) -> BM25Index:
        import bm25s

        retriever = bm25s.BM25(k1=1.2, b=0.75)
        if texts:
            tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
            retriever.index(tokens, show_progress=False)
        names = names_of(texts)
        return BM25Index(retriever, list(ids), generation, names, collection, name_subjects(texts, names))

    def document_frequency(self) -> dict[str, int]:
        """Stem -> number of chunks that contain it (the same stems as `answer.terms.stems`)."""
        if self._df is None:
            vocab = getattr(self.retriever, "vocab_dict", None) or {}
            scores = getattr(self.retriever, "scores", None) or {}
            indptr = scores.get("indptr") if isinstance(scores, dict) else None
            df: dict[str, int] = {}
            if indptr is not None and vocab:
                counts = [int(b) - int(a) for a, b in zip(indptr[:-1], indptr[1:])]
                for term, i in vocab.items():
                    if 0 <= int(i) < len(counts) and term:
                        df[str(term)] = counts[int(i)]
            self._df = df
        return self._df

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """(chunk id, score) for the best `k` chunks with a non-zero score."""
        import bm25s

        if not self.ids:
            return []
        with self._lock:
            tokens = bm25s.tokenize([query], stopwords="en", stemmer=self._stem,
                                    show_progress=False, return_ids=True)
            if not tokens.ids or not tokens.ids[0]:
                return []
            k = min(k, len(self.ids))
            docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        out = []
        for i, s in zip(docs[0], scores[0]):
            if s > 0:
                out.append((self.ids[int(i)], float(s)))
        return out

    def knows(self, text: str) -> bool:
        """Whether every word of `text` (tokenised and stemmed as the index is) occurs in it."""
        import bm25s

        vocab = getattr(self.retriever, "vocab_dict", None) or {}
        with self._lock:
            tokens = bm25s.tokenize([text], stopwords="en", stemmer=self._stem, show_progress=False,
                                    return_ids=False)
        words = tokens[0] if tokens else []
        return bool(words) and all(w in vocab for w in words)

    def save(self, directory: Path) -> None:
        """Write atomically: a temp dir renamed into place, so a reader never sees half a file."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=directory.parent))
        try:
            if self.ids:
                self.retriever.save(str(tmp))
            (tmp / "ids.json").write_text(json.dumps({"generation": self.generation, "ids": self.ids,
                                                      "names": sorted(self.names),
                                                      "subjects": self.subjects,
                                                      "collection": self.collection}))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def load(directory: Path) -> BM25Index | None:
        import bm25s

        meta = directory / "ids.json"
        if not meta.exists():
            return None
        try:
            data = json.loads(meta.read_text())
            ids = data["ids"]
            names = data["names"]  # files written before names or subjects were kept: rebuilt by the caller
            subjects = data["subjects"]
            retriever = bm25s.BM25.load(str(directory)) if ids else bm25s.BM25()
        except (OSError, ValueError, KeyError):
            return None
        return BM25Index(retriever, ids, int(data["generation"]), names, data.get("collection"), subjects)


def read_all(collection, batch: int = 5000):
    """All (ids, documents, metadatas) of a collection, read in pages."""
    ids: list[str] = []
    docs: list[str] = []
    metas: list[dict] = []
    offset = 0
    while True:
        got = collection.get(include=["documents", "metadatas"], limit=batch, offset=offset)
        if not got["ids"]:
            break
        ids += got["ids"]
        docs += got["documents"]
        metas += got["metadatas"]
        offset += len(got["ids"])
        if len(got["ids"]) < batch:
            break
    return ids, docs, metas


def build_from_collection(collection, generation: int) -> BM25Index:
    """BM25 over exactly the chunks a reader of `generation` sees."""
    ids, docs, metas = read_all(collection)
    keep = [i for i, m in enumerate(metas) if index.visible(m, generation)]
    texts = [embed_text(str(metas[i].get("title", "")), str(metas[i].get("section", "")), docs[i],
                        authors_of(metas[i])) for i in keep]
    return BM25Index.build([ids[i] for i in keep], texts, generation, str(collection.id))


__all__ = ["BM25Index", "build_from_collection", "read_all"]
