"""Answerers: turn retrieved passages into a cited answer (extractive by default).

An answerer has a `name`, `stream(question, hits, vocab, min_dense)` that yields text pieces and
ends with an `extractive.Draft`, and `condense(question, history)` that may return a standalone
question (or None to use the rule-based rewriter). `make_answerer(settings)` picks one by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from assistant.answer import extractive
from assistant.models import Turn
from assistant.settings import Settings


class Answerer(Protocol):
    name: str

    def stream(self, question: str, hits: list, vocab: dict | None,
               min_dense: float) -> Iterator[str | extractive.Draft]: ...

    def condense(self, question: str, history: list[Turn]) -> str | None: ...


class ExtractiveAnswerer:
    """The offline default: sentences copied from the passages, each cited."""

    name = "extractive"

    def stream(self, question, hits, vocab, min_dense):
        draft = extractive.answer(question, hits, vocab, min_dense)
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
