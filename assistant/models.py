"""The shared vocabulary: document metadata, chunks, citations and answers (pydantic)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

# "unreviewed": what a document without a `source_type` is indexed as (a file dropped into the
# corpus as it was found, an HTML page, a PDF); its citations are marked so.
SourceType = Literal[
    "trial", "meta-analysis", "review", "guideline", "regulatory", "label", "news", "opinion",
    "summary", "unreviewed",
]
Status = Literal["answered", "no_evidence", "declined", "crisis"]


class DocMeta(BaseModel):
    """Front matter of one corpus document, validated (see ingest/schema.py)."""

    model_config = {"extra": "forbid"}

    title: str
    id: str | None = None
    authors: list[str] = Field(default_factory=list)
    publisher: str | None = None
    published: dt.date | None = None
    url: str | None = None
    doi: str | None = None
    source_type: SourceType | None = None
    substances: list[str] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list)
    jurisdictions: list[str] = Field(default_factory=list)
    as_of: dt.date | None = None
    reviewed: dt.date | None = None
    license: str | None = None
    sources: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)


class Chunk(BaseModel):
    """One embedded passage with its provenance. `text == doc_text[start:end]`."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    section: str = ""
    page: int | None = None
    start: int
    end: int
    text: str
    ordinal: int = 0
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    sentences: list[tuple[int, int]] = Field(
        default_factory=list, description="Sentence offsets in `text`, as the chunker split them")

    def embed_text(self) -> str:
        """What the model sees: title, authors and section give the passage its context."""
        return embed_text(self.title, self.section, self.text, authors_of(self.metadata))


def embed_text(title: str, section: str, text: str, authors: Sequence[str] = ()) -> str:
    """The embedded (and BM25-indexed) string of a passage: "Title · A, B — Section\ntext".

    Authors are in it so that "what does <author> say" finds the author's documents."""
    return f"{embed_head(title, section, authors)}\n{text}"


def embed_head(title: str, section: str, authors: Sequence[str] = ()) -> str:
    """The context line put before a passage's text when it is embedded."""
    head = f"{title} · {byline(authors)}" if authors else title
    return f"{head} — {section}" if section else head


def byline(authors: Sequence[str]) -> str:
    """At most three author names (each at most 60 characters), then "et al."."""
    names = [a[:60] for a in authors[:3]]
    return ", ".join(names) + (" et al." if len(authors) > 3 else "")


def authors_of(meta: Mapping[str, object]) -> list[str]:
    """The `authors` of flat chunk metadata (a JSON list, see ingest/chunking.flat_meta)."""
    raw = meta.get("authors")
    if not raw:
        return []
    try:
        value = json.loads(str(raw))
    except ValueError:
        return [str(raw)]
    return [str(a) for a in value] if isinstance(value, list) else [str(value)]


class Citation(BaseModel):
    """A numbered source of an answer: the passage and where the supporting sentence is in it."""

    n: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    section: str = ""
    page: int | None = None
    url: str | None = None
    passage: str
    highlight: list[tuple[int, int]] = Field(
        default_factory=list, description="Offsets of the supporting sentences in `passage`"
    )
    source_type: str | None = None
    as_of: str | None = None
    authors: list[str] = Field(default_factory=list)


class FigureCheck(BaseModel):
    """A figure quoted from an opinion, news or unreviewed source, looked up in reviewed ones."""

    figure: str
    sentence: str
    citation: int
    held: bool = Field(description="A reviewed source states this figure as its own")


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Answer(BaseModel):
    """What the assistant returns on every path."""

    answer: str
    citations: list[Citation] = Field(default_factory=list)
    caveat: str
    status: Status
    standalone_question: str
    timings_ms: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    figures: list[FigureCheck] = Field(
        default_factory=list, description="The figures of sentences quoted from opinion, news or "
                                          "unreviewed sources, and whether reviewed sources hold them")
    related: list[Citation] = Field(
        default_factory=list, description="no_evidence: the closest passages, offered as related "
                                          "reading; they do not answer the question")
    confidence: float | None = Field(
        None, description="The answerer's confidence that the sources answer the question: the "
                          "answerability (0-1) of its best sentence, which abstention compares "
                          "with min_evidence (for a multi-part question, its least certain part). "
                          "None for fixed answers (safety, empty or over-long questions)")
    carried: list[str] = Field(
        default_factory=list, description="What a follow-up carried from earlier turns (MAPP2, MDMA)"
    )
    filter_topics: list[str] = Field(
        default_factory=list, description="Topics the sidebar filters added to the question"
    )
