"""Hybrid retrieval: dense search in Chroma plus BM25, fused by normalised score.

Both sides see the query expanded by the domain lexicon (molly → MDMA, Spravato → esketamine).
Metadata filters apply to both. Results are spread over documents (at most `max_per_doc` passages
from one document) so an answer can draw on several sources. `PsyqaRetriever` exposes the same
search as a LangChain `BaseRetriever`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import BaseModel, ConfigDict, Field

from assistant import index, lexicon, store
from assistant.errors import PsyqaError
from assistant.models import Chunk, authors_of
from assistant.services import Services

# Fusion: score = cosine + lexical_weight (0.4) * BM25 / max BM25 over the candidates, then one round of
# dense pseudo-relevance feedback over the PRF_DOCS best. Chosen on PubMedQA passages over
# reciprocal-rank fusion (see BENCHMARKS.md, Retrieval), which flattened a strong BM25 first
# place into the dense ranks.
PRF_DOCS = 3
# With user filters the dense search first fetches this many times the candidates unfiltered and
# filters them in Python (see HybridSearch._dense); only a narrower filter pays for Chroma's `where`.
FILTER_OVERFETCH = 4
# A question that names an author of indexed documents ("What does Trautman say about MDMA?")
# asks about their documents: among the candidates, their passages gain this much fused score
# (about the gap between an on-topic passage and the best one), since neither the embedding nor
# BM25 weighs a name the question is about above its topic words.
AUTHOR_BOOST = 0.35


class Filters(BaseModel):
    """Metadata filters; within a field any value matches, across fields all must."""

    substances: list[str] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list)
    source_types: list[str] = Field(default_factory=list)

    def empty(self) -> bool:
        return not (self.substances or self.conditions or self.source_types)

    def where(self, generation: int | None = None) -> dict | None:
        """The Chroma `where` clause; with `generation`, only chunks of that committed generation."""
        groups = list(index.visible_where(generation)["$and"]) if generation is not None else []
        for key, values in ((index.substance_key, self.substances), (index.condition_key, self.conditions)):
            if values:
                ors = [{key(v): True} for v in values]
                groups.append(ors[0] if len(ors) == 1 else {"$or": ors})
        if self.source_types:
            groups.append({"source_type": {"$in": list(self.source_types)}})
        if not groups:
            return None
        return groups[0] if len(groups) == 1 else {"$and": groups}

    def matches(self, meta: dict) -> bool:
        if self.substances and not any(meta.get(index.substance_key(v)) for v in self.substances):
            return False
        if self.conditions and not any(meta.get(index.condition_key(v)) for v in self.conditions):
            return False
        if self.source_types and meta.get("source_type") not in self.source_types:
            return False
        return True


@dataclass
class Hit:
    chunk: Chunk
    dense: float        # cosine similarity of passage and query
    lexical: float      # BM25 score (0 when BM25 did not find it)
    score: float        # fused score
    rank: int = 0


def chunk_from(cid: str, text: str, meta: dict) -> Chunk:
    page = meta.get("page")
    return Chunk(chunk_id=cid, doc_id=str(meta.get("doc_id", "")), source=str(meta.get("source", "")),
                 title=str(meta.get("title", "")), section=str(meta.get("section", "")),
                 page=int(page) if page is not None else None, start=int(meta.get("start", 0)),
                 end=int(meta.get("end", len(text))), text=text, ordinal=int(meta.get("ordinal", 0)),
                 metadata=meta)


class HybridSearch:
    """Dense + BM25 over the live collection."""

    def __init__(self, services: Services, lexical_weight: float | None = None,
                 prf_weight: float | None = None) -> None:
        self.services = services
        s = services.settings
        self.lexical_weight = s.lexical_weight if lexical_weight is None else lexical_weight
        self.prf_weight = s.prf_weight if prf_weight is None else prf_weight

    def search(self, query: str, k: int | None = None, filters: Filters | None = None,
               mode: str = "hybrid", vector=None) -> list[Hit]:
        """Top `k` passages for `query`. `mode` is hybrid, dense or lexical (for benchmarks)."""
        settings = self.services.settings
        try:
            return self._search(query, k, filters, mode, vector)
        except PsyqaError:
            raise
        except Exception as exc:
            if settings.chroma_host or not _stale_store(exc):
                raise store.explain(exc, settings) or exc
        # Another process (psyqa ingest) rewrote the embedded store: reopen it and retry once.
        self.services.reopen()
        try:
            return self._search(query, k, filters, mode, vector)
        except PsyqaError:
            raise
        except Exception as exc:
            # Still failing on a fresh client: the store itself is damaged (one line, the fix).
            raise store.explain(exc, settings) or exc

    def _search(self, query: str, k: int | None, filters: Filters | None, mode: str,
                vector=None) -> list[Hit]:
        s = self.services.settings
        k = k or s.top_k
        cands = self.candidates(query, filters or Filters(), mode, vector)
        if cands is None or not cands.ids:
            return []
        lex_norm = normalise_lexical(cands.lexical, cands.ids)
        sims = cands.similarities(cands.query)
        boost = {**code_boost(query, cands), **author_boost(query, cands)} if mode == "hybrid" else {}
        fused = boosted(fuse(cands.ids, sims, lex_norm, self.lexical_weight, mode), boost)
        if mode == "hybrid" and self.prf_weight > 0 and len(cands.vec_ids) > PRF_DOCS:
            # Dense pseudo-relevance feedback: move the query towards its best fused passages and
            # score the same candidates again (no second store query).
            q2 = prf(cands.query, fused, cands.vectors_of, self.prf_weight)
            fused = boosted(fuse(cands.ids, cands.similarities(q2), lex_norm, self.lexical_weight, mode), boost)
        order = sorted(fused, key=lambda c: (-fused[c], c))
        hits: list[Hit] = []
        for cid in cap_per_doc(order, cands.doc_of, s.max_per_doc, k):
            doc, meta = cands.found[cid]
            hits.append(Hit(chunk_from(cid, doc, meta), sims.get(cid, 0.0), cands.lexical.get(cid, 0.0),
                            fused[cid], len(hits) + 1))
        return hits

    def candidates(self, query: str, filters: Filters, mode: str, vector=None) -> Candidates | None:
        """The store reads: dense and BM25 candidates of one committed generation, with their
        texts, metadata and vectors. None when the collection is empty. `vector`: the embedding
        of the expanded query (`query_text`), when the caller has already computed it."""
        s = self.services.settings
        col = self.services.collection()
        # One committed generation for both sides: a sync in progress is invisible.
        generation = index.generation(col)
        total = int((col.metadata or {}).get("chunks", 0)) or col.count()
        if total == 0:
            return None
        expanded = query_text(query)
        q = np.asarray(vector if vector is not None else self.services.embedder.embed_query(expanded),
                       dtype=np.float32)
        n = min(s.candidates, total)

        cands = Candidates(query=q)
        dense_ids: list[str] = []
        if mode in ("hybrid", "dense"):
            for cid, doc, meta, emb in self._dense(col, q, n, total, filters, generation):
                if meta is None or doc is None:
                    continue  # a record being written by a concurrent ingest
                cands.add(cid, doc, meta, emb)
                dense_ids.append(cid)
        lexical: list[tuple[str, float]] = []
        if mode in ("hybrid", "lexical"):
            lexical = self.services.bm25(col).search(expanded, n * (1 if filters.empty() else FILTER_OVERFETCH))
        missing = [cid for cid, _ in lexical if cid not in cands.found]
        if missing:
            got = col.get(ids=missing, include=["documents", "metadatas", "embeddings"])
            for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"]):
                if meta is None or doc is None:
                    continue  # a record being written by a concurrent ingest
                cands.add(cid, doc, meta, emb)
        # A chunk deleted between the BM25 build and now is simply not found: skip it.
        lexical = [(cid, sc) for cid, sc in lexical
                   if cid in cands.found and index.visible(cands.found[cid][1], generation)
                   and filters.matches(cands.found[cid][1])][:n]
        cands.lexical = dict(lexical)
        cands.ids = list(dict.fromkeys(dense_ids + [cid for cid, _ in lexical]))
        return cands

    def reviewed_statements(self, figure: str, limit: int = 20) -> list[tuple[str, str]]:
        """(title, sentence) of reviewed passages of the committed index that contain `figure`
        verbatim (for figure provenance; a full-text search, no vectors)."""
        from assistant.answer.extractive import REVIEWED_TYPES

        col = self.services.collection()
        generation = index.generation(col)
        got = col.get(where={"source_type": {"$in": sorted(REVIEWED_TYPES)}},
                      where_document={"$contains": figure}, include=["documents", "metadatas"],
                      limit=limit)
        out = []
        for doc, meta in zip(got["documents"], got["metadatas"]):
            if meta is None or doc is None or not index.visible(meta, generation):
                continue
            stored = index.sentences(meta)
            spans = stored[0] if stored else [(0, len(doc))]
            out += [(str(meta.get("title", "")), doc[a:b]) for a, b in spans if figure in doc[a:b]]
        return out

    @staticmethod
    def _dense(col, q: np.ndarray, n: int, total: int, filters: Filters,
               generation: int) -> list[tuple[str, str, dict, list[float]]]:
        """The `n` nearest chunks that a reader of `generation` sees and `filters` allow, as
        (id, text, metadata, vector), nearest first.

        Chroma evaluates a `where` clause before the vector search, and the generation rule
        matches (almost) every chunk: at 100k chunks a filtered query took 807 ms against 15 ms
        unfiltered (BENCHMARKS.md, Latency). So the search runs unfiltered first, over `n` chunks,
        or FILTER_OVERFETCH x `n` with user filters, and keeps the hits that pass in Python. If
        at least `n` pass (or the collection had no more), they are exactly the `n` nearest that
        pass, since any nearer one would have been fetched too. Otherwise (a sync in progress, the
        leftovers of a crashed one, a narrow filter) the query runs again with the `where` clause.
        """
        include = ["documents", "metadatas", "embeddings"]
        fetch = n if filters.empty() else min(total, n * FILTER_OVERFETCH)

        def rows(res) -> list[tuple[str, str, dict, list[float]]]:
            return list(zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["embeddings"][0]))

        got = rows(col.query(query_embeddings=[q.tolist()], n_results=fetch, include=include))
        seen = [r for r in got if r[2] is not None and index.visible(r[2], generation)]
        keep = [r for r in seen if filters.matches(r[2])]
        # Enough passed, or nothing more to find: the store had no more chunks, or every chunk a
        # reader of this generation can see (`total` of them) is among those fetched.
        if len(keep) >= n or len(got) < fetch or len(seen) >= total:
            return keep[:n]
        return rows(col.query(query_embeddings=[q.tolist()], n_results=n, where=filters.where(generation),
                              include=include))


@dataclass
class Candidates:
    """What the store returned for one query: candidate ids (dense order, then BM25-only ones),
    their texts, metadata and vectors, and the BM25 scores of the lexical candidates."""

    query: np.ndarray
    ids: list[str] = field(default_factory=list)
    found: dict[str, tuple[str, dict]] = field(default_factory=dict)
    vectors_of: dict[str, np.ndarray] = field(default_factory=dict)
    lexical: dict[str, float] = field(default_factory=dict)

    def add(self, cid: str, doc: str, meta: dict, emb) -> None:
        self.found[cid] = (doc, meta)
        self.vectors_of[cid] = np.asarray(emb, dtype=np.float32)

    @property
    def vec_ids(self) -> list[str]:
        return [c for c in self.ids if c in self.vectors_of]

    def similarities(self, q: np.ndarray) -> dict[str, float]:
        """Cosine of each candidate with `q` (vectors are normalised)."""
        ids = self.vec_ids
        if not ids:
            return {}
        matrix = np.stack([self.vectors_of[c] for c in ids])
        return dict(zip(ids, (matrix @ q).tolist()))

    def doc_of(self, cid: str) -> str:
        return str(self.found[cid][1].get("doc_id", ""))


def query_text(question: str) -> str:
    """What both sides of the search see: the question with the lexicon's canonical terms."""
    return lexicon.expand_query(question)


def normalise_lexical(scores: dict[str, float], cands: list[str]) -> dict[str, float]:
    """BM25 scores scaled to the best candidate's (1.0), 0 for candidates BM25 did not find."""
    top = max(scores.values(), default=0.0) or 1.0
    return {c: scores.get(c, 0.0) / top for c in cands}


def fuse(cands: list[str], dense: dict[str, float], lexical_norm: dict[str, float],
         lexical_weight: float, mode: str = "hybrid") -> dict[str, float]:
    """The fused score of each candidate: cosine + weight x normalised BM25 (hybrid), or one side
    alone (dense, lexical)."""
    if mode == "dense":
        return dict(dense)
    if mode == "lexical":
        return {c: lexical_norm[c] for c in cands}
    return {c: dense.get(c, 0.0) + lexical_weight * lexical_norm[c] for c in cands}


def author_boost(query: str, cands: Candidates) -> dict[str, float]:
    """AUTHOR_BOOST for each candidate whose document's authors include a surname the query
    names: typed with a capital, or not an everyday English word (so "green" alone does not
    pick Dr Green's paper)."""
    named = {w.lower(): w[:1].isupper() for w in re.findall(r"[^\W\d_][\w'’\-]{2,}", query)}
    if not named:
        return {}
    out: dict[str, float] = {}
    for cid in cands.ids:
        for name in authors_of(cands.found[cid][1]):
            last = name.split()[-1].lower() if name.split() else ""
            if last in named and (named[last] or last not in _everyday_words()):
                out[cid] = AUTHOR_BOOST
                break
    return out


_TRIAL_CODE = re.compile(r"(?<![\w-])[a-z]{2,}-?\d{1,}[a-z\d]*(?![\w])")


def code_boost(query: str, cands: Candidates) -> dict[str, float]:
    """AUTHOR_BOOST for each candidate that names a trial code the query names (MAPP2, COMP005,
    GH001): "and in MAPP2?" is about the passages that say MAPP2, which a question's other words
    ("how did the MDMA arm do") would otherwise outrank with MAPP1's."""
    codes = set(_TRIAL_CODE.findall(lexicon.normalize(query)))
    if not codes:
        return {}
    pats = [re.compile(rf"(?<![\w-]){re.escape(c)}(?![\w])") for c in codes]
    return {cid: AUTHOR_BOOST for cid in cands.ids
            if any(p.search(lexicon.normalize(cands.found[cid][0])) for p in pats)}


def boosted(fused: dict[str, float], boost: dict[str, float]) -> dict[str, float]:
    return {c: v + boost.get(c, 0.0) for c, v in fused.items()} if boost else fused


@lru_cache(maxsize=1)
def _everyday_words() -> frozenset[str]:
    """Whole words of the embedding model's word-piece vocabulary."""
    from assistant.embeddings import load_tokenizer

    return frozenset(w for w in load_tokenizer().get_vocab() if w.isalpha())


def prf(query: np.ndarray, fused: dict[str, float], vectors: dict[str, np.ndarray],
        weight: float, docs: int = PRF_DOCS) -> np.ndarray:
    """Dense pseudo-relevance feedback: the query moved towards the mean vector of its `docs`
    best fused candidates, re-normalised."""
    best = sorted(fused, key=lambda c: -fused[c])[:docs]
    q2 = query + weight * np.mean([vectors[c] for c in best if c in vectors], axis=0)
    return q2 / (np.linalg.norm(q2) or 1.0)


def cap_per_doc(order: list[str], doc_of, max_per_doc: int, k: int) -> list[str]:
    """The first `k` ids of `order` with at most `max_per_doc` from any one document."""
    out: list[str] = []
    per_doc: dict[str, int] = {}
    for cid in order:
        doc = doc_of(cid)
        if per_doc.get(doc, 0) >= max_per_doc:
            continue
        per_doc[doc] = per_doc.get(doc, 0) + 1
        out.append(cid)
        if len(out) >= k:
            break
    return out


def _stale_store(exc: Exception) -> bool:
    """Chroma's embedded store seen through an out-of-date view of its files."""
    from chromadb.errors import InternalError, NotFoundError

    return isinstance(exc, (InternalError, NotFoundError)) or "Error finding id" in str(exc)


class PsyqaRetriever(BaseRetriever):
    """LangChain face of the hybrid search: `retriever.invoke("question")` → Documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    search: HybridSearch
    k: int = 6
    filters: Filters = Field(default_factory=Filters)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        out = []
        for h in self.search.search(query, self.k, self.filters):
            meta = {k: v for k, v in h.chunk.metadata.items()
                    if k not in (index.SENTENCE_SPANS, index.SENTENCE_VECTORS)}
            meta.update(chunk_id=h.chunk.chunk_id, dense=h.dense, lexical=h.lexical, score=h.score)
            out.append(Document(page_content=h.chunk.text, metadata=meta, id=h.chunk.chunk_id))
        return out
