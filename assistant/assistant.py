"""`Assistant.ask(question, history) -> Answer`: safety → rewrite → retrieve → answer → verify.

Every path returns an Answer that carries the one fixed caveat. Crisis, sourcing and personal-dose
handling happen here in code, before retrieval, so no passage or model can change them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from assistant import safety
from assistant.answer import extractive
from assistant.answer.verify import unsupported
from assistant.conversation import rewrite
from assistant.errors import PsyqaError
from assistant.models import Answer, Turn
from assistant.retrieve import Filters, Hit, HybridSearch
from assistant.services import Services, build_services
from assistant.settings import Settings
from assistant.text import clean_user_text

EMPTY_QUESTION = ("Please type a question about psychedelic-assisted or related treatments, "
                  "for example: \"What did the MAPP1 trial of MDMA for PTSD find?\"")


def no_evidence_text(nearest: list[str], unknown: list[str]) -> str:
    """The abstention message: what is missing and what the corpus does cover."""
    what = ""
    if unknown:
        what = " (" + ", ".join(f"'{w}'" for w in unknown[:3]) + " does not appear in them)"
    text = f"The curated sources do not cover this question{what}."
    if nearest:
        text += " The nearest topics they do cover: " + "; ".join(nearest) + "."
    return text


class Assistant:
    """Answers questions from the index. Build once (heavy), call from many threads."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.search = HybridSearch(services)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Assistant:
        return cls(build_services(settings or Settings()))

    @property
    def backend(self) -> str:
        return "extractive"

    def retrieve(self, question: str, filters: Filters | None = None) -> list[Hit]:
        return self.search.search(question, self.settings.top_k, filters)

    def ask(self, question: str, history: list[Turn] | list[dict] | None = None,
            filters: Filters | None = None) -> Answer:
        """Answer one question in the context of `history` (earlier turns, oldest first)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        turns = [t if isinstance(t, Turn) else Turn.model_validate(t) for t in (history or [])]
        q = clean_user_text(question or "")

        def done(answer: Answer) -> Answer:
            timings["total"] = (time.perf_counter() - t0) * 1000
            answer.timings_ms = {k: round(v, 2) for k, v in timings.items()}
            return answer

        if not q:
            return done(self._fixed(EMPTY_QUESTION, "no_evidence", q))
        if len(q) > self.settings.max_question_chars:
            return done(self._fixed(
                f"The question is {len(q):,} characters long; the limit is "
                f"{self.settings.max_question_chars:,}. Please shorten it to the question itself.",
                "declined", q[:200]))
        decision = safety.check(q)
        if decision is not None:
            return done(self._fixed(decision.message, decision.status, q))
        standalone = rewrite(q, turns)
        if standalone != q:
            decision = safety.check(standalone)
            if decision is not None:
                return done(self._fixed(decision.message, decision.status, standalone))
        timings["safety"] = (time.perf_counter() - t0) * 1000

        t = time.perf_counter()
        hits = self.retrieve(standalone, filters)
        timings["retrieve"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        vocab = self._vocab()
        draft = extractive.answer(standalone, hits, vocab, self.settings.min_evidence)
        timings["answer"] = (time.perf_counter() - t) * 1000
        if draft.status == "answered":
            bad = unsupported(draft.text, draft.citations)
            if bad:  # cannot happen for extractive answers; the gate exists for every backend
                raise AssertionError(f"unsupported sentences reached the gate: {bad}")
            return done(Answer(answer=draft.text, citations=draft.citations, caveat=safety.CAVEAT,
                               status="answered", standalone_question=standalone))
        return done(Answer(answer=no_evidence_text(draft.nearest_topics, draft.unknown_terms),
                           citations=[], caveat=safety.CAVEAT, status="no_evidence",
                           standalone_question=standalone))

    def ask_stream(self, question: str, history=None, filters: Filters | None = None) -> Iterator[str | Answer]:
        """Yield the answer text in pieces (sentence by sentence), then the final Answer."""
        ans = self.ask(question, history, filters)
        parts = ans.answer.split("\n") if "\n" in ans.answer else _sentence_pieces(ans.answer)
        for i, piece in enumerate(parts):
            yield piece + ("\n" if "\n" in ans.answer and i < len(parts) - 1 else " " if i < len(parts) - 1 else "")
        yield ans

    def _fixed(self, text: str, status: str, standalone: str) -> Answer:
        return Answer(answer=text, citations=[], caveat=safety.CAVEAT, status=status,  # type: ignore[arg-type]
                      standalone_question=standalone)

    def _vocab(self) -> dict | None:
        lex = self.services._lexical
        return getattr(lex.retriever, "vocab_dict", None) if lex is not None else None


def _sentence_pieces(text: str) -> list[str]:
    import re

    pieces = re.split(r"(?<=\])\s+", text)
    return [p for p in pieces if p]


__all__ = ["Assistant", "PsyqaError", "Filters"]
