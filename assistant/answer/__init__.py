"""Answerers: turn retrieved passages into a cited answer (extractive by default).

This package holds the contract every backend keeps: an answerer has a `name`,
`stream(evidence)` that yields text pieces and ends with a `Draft`, and
`condense(question, history)` that may return a standalone question (or None to use the
rule-based rewriter); `citation()` turns a retrieved hit into the numbered `Citation` an answer
carries. `make_answerer(settings)` picks a backend by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from assistant.models import Citation, Turn, authors_of
from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.answer.focus import Focus
    from assistant.retrieve import Hit


@dataclass
class Evidence:
    """What the answerer is given: the (standalone) question, what it asks for, its vector and the
    passages retrieved for it; for a multi-part question also one Evidence per part."""

    question: str
    focus: Focus
    hits: list[Hit]
    min_evidence: float                 # abstain below this answerability (Settings.min_evidence)
    vector: Any = None                  # np.ndarray: the question's embedding (retrieval's query)
    parts: list[Evidence] = field(default_factory=list)
    names: frozenset[str] = frozenset()  # the names the corpus uses (BM25Index.names)


@dataclass
class Draft:
    """What the answerer decided, before the assistant wraps it in an Answer."""

    status: str                         # answered | no_evidence
    text: str
    citations: list[Citation]
    sentences: list[tuple[str, int]]    # (sentence, citation n)
    evidence: float                     # the answerer's confidence (Answer.confidence)
    unknown_terms: list[str]
    nearest_topics: list[str]
    notes: list[str] = field(default_factory=list)
    missing: str = ""                   # no_evidence: what the sources do not hold
    related: list[Citation] = field(default_factory=list)  # no_evidence: the closest passages


def citation(n: int, hit: Hit, highlight: list[tuple[int, int]]) -> Citation:
    """Citation number `n` for a retrieved passage, with the offsets of its supporting sentences."""
    c = hit.chunk
    meta = c.metadata
    url = meta.get("url") or (f"https://doi.org/{meta['doi']}" if meta.get("doi") else None)
    return Citation(n=n, chunk_id=c.chunk_id, doc_id=c.doc_id, title=c.title, source=c.source,
                    section=c.section, page=c.page, url=url, passage=c.text, highlight=highlight,
                    source_type=meta.get("source_type") or "unreviewed", as_of=meta.get("as_of"),
                    authors=authors_of(meta))


class Answerer(Protocol):
    name: str

    def stream(self, evidence: Evidence) -> Iterator[str | Draft]: ...

    def condense(self, question: str, history: list[Turn]) -> str | None: ...


# The backends import the contract above, so they are imported after it.
from assistant.answer import extractive  # noqa: E402


class ExtractiveAnswerer:
    """The offline default: sentences copied from the passages, each cited."""

    name = "extractive"

    def stream(self, evidence: Evidence):
        draft = extractive.answer(evidence)
        if draft.status == "answered":
            yield from extractive.pieces(draft.text)
        yield draft

    def condense(self, question: str, history: list[Turn]) -> str | None:
        return None


def make_answerer(settings: Settings) -> Answerer:
    """The answerer named by `settings.llm.backend`."""
    backend = settings.llm.backend
    if backend == "extractive":
        return ExtractiveAnswerer()
    from assistant.answer.generative import GenerativeAnswerer  # optional dependencies

    return GenerativeAnswerer(settings, fallback=ExtractiveAnswerer())
