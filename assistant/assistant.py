"""`Assistant.ask(question, history) -> Answer`: safety → rewrite → retrieve → answer → verify.

Every path returns an Answer that carries the one fixed caveat. Crisis, sourcing and personal-dose
handling happen here in code, before retrieval, so no passage or model can change them.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from assistant import messages, safety
from assistant import safety_semantic as semantic
from assistant.answer import Answerer, Draft, Evidence, ExtractiveAnswerer, make_answerer
from assistant.answer.focus import analyse, carry, has_subject
from assistant.answer import provenance
from assistant.answer.extractive import REVIEWED_TYPES
from assistant.answer.verify import split_marked, unsupported
from assistant.conversation import Standalone, needs_context, standalone, with_filters
from assistant.errors import PsyqaError
from assistant.lexicon import DISPLAY_NAMES
from assistant.models import Answer, Turn
from assistant.retrieve import Filters, Hit, HybridSearch, query_text
from assistant.services import Services, build_services
from assistant.settings import Settings
from assistant.text import clean_user_text

# Source types whose sentences are claims, not evidence (see extractive.reviewed).
CLAIM_TYPES = frozenset({"opinion", "news", "unreviewed"})
assert not CLAIM_TYPES & REVIEWED_TYPES


def _swap_names(previous: str, names: list[str], own) -> str | None:
    """The previous question about the one thing a follow-up names instead ("and in MAPP2?"
    after "how did the MDMA arm do in MAPP1?" searches "how did the MDMA arm do in MAPP2?"): a
    follow-up that names a trial or author and asks nothing of its own asks the same again."""
    new = [n for n in own.names if n not in names]
    old = [n for n in names if n not in own.names]
    if len(new) != 1 or len(old) != 1 or sum(own.terms.values()) >= 0.5:
        return None
    text = re.sub(rf"(?<![\w-]){re.escape(old[0])}(?![\w-])", new[0], previous, flags=re.I)
    return text if text != previous else None


class Assistant:
    """Answers questions from the index. Build once (heavy), call from many threads."""

    def __init__(self, services: Services, answerer: Answerer | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.search = HybridSearch(services)
        self.answerer = answerer or make_answerer(services.settings)
        self.safety = semantic.SafetyScreen(services.embedder.encode,
                                            cache_dir=services.settings.index_dir / "safety",
                                            model=services.settings.embedding_model)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Assistant:
        return cls(build_services(settings or Settings()))

    @property
    def backend(self) -> str:
        return self.answerer.name

    def retrieve(self, question: str, filters: Filters | None = None) -> list[Hit]:
        return self.search.search(question, self.settings.top_k, filters)

    def warm(self) -> None:
        """Load what the first question would otherwise wait for: the safety classifier and its
        bank's vectors, the model, the store and BM25. Then freeze what is loaded for good out of
        the garbage collector's sight: a full collection no longer walks its ~575k objects
        (0.3-0.6 s of CPU each in a long-running app, BENCHMARKS.md, App). Raises what opening
        the index raises (no index yet); the freeze happens either way."""
        import gc

        try:
            self.safety.warm()
            self.retrieve("warm up")
        finally:
            gc.collect()
            gc.freeze()

    def ask(self, question: str, history: list[Turn] | list[dict] | None = None,
            filters: Filters | None = None) -> Answer:
        """Answer one question in the context of `history` (earlier turns, oldest first)."""
        for item in self.ask_stream(question, history, filters):
            if isinstance(item, Answer):
                return item
        raise AssertionError("ask_stream ended without an Answer")  # pragma: no cover

    def ask_stream(self, question: str, history: list[Turn] | list[dict] | None = None,
                   filters: Filters | None = None) -> Iterator[str | Answer]:
        """Yield the answer text in pieces as it is ready (each piece already verified), then the
        final Answer. The pieces concatenated equal `Answer.answer`."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        turns = [t if isinstance(t, Turn) else Turn.model_validate(t) for t in (history or [])]
        q = clean_user_text(question or "")

        interp = Standalone(q)

        def done(answer: Answer) -> Answer:
            timings["total"] = (time.perf_counter() - t0) * 1000
            answer.timings_ms = {k: round(v, 2) for k, v in timings.items()}
            answer.carried, answer.filter_topics = list(interp.carried), list(interp.from_filters)
            return answer

        fixed = self._screen(q)
        if fixed is not None:
            yield fixed.answer
            yield done(fixed)
            return
        # Safety first, in code, before retrieval and before any model sees the message: the
        # pattern layer on the message, the follow-up and its rule-based rewrite (no model), then
        # the semantic layer on the vectors of the message, its sentences and the previous user
        # turn joined to it, encoded in one batch with the retrieval queries.
        users = [t.content for t in turns if t.role == "user"]
        subs = filters.substances if filters is not None else []
        conds = filters.conditions if filters is not None else []
        interp = standalone(q, turns, substances=subs, conditions=conds, known=self._known,
                            subjects=self._name_subjects() if turns else None)
        plan = self.safety.plan(q, users, interp.text, semantic.after_crisis(turns))
        decision = plan.decision
        # A follow-up re-asks the previous question about something else; so does a question that
        # names no subject at all ("how many deaths were there?"), unless it names a corpus name
        # of another topic ("... in the bogenschutz alcohol trial").
        previous = users[-1] if users and not interp.own_subject \
            and (needs_context(q) or not has_subject(q)) else None
        queries = None
        if decision is None:
            try:
                queries = self.queries(interp.text, previous)
            except PsyqaError:  # no index: the screen still decides; retrieval reports the error
                queries = None
            texts, at = _one_batch(plan.texts, queries.texts if queries is not None else [])
            t = time.perf_counter()
            vectors = self.services.embedder.encode(texts) if texts else []
            timings["encode"] = (time.perf_counter() - t) * 1000
            decision = self.safety.decide(plan, vectors)
            if queries is not None:
                queries.vectors = [vectors[i] for i in at]
        if decision is None and turns and not (subs or conds) \
                and not isinstance(self.answerer, ExtractiveAnswerer):
            # A language model rewrites the follow-up; it never sees a turn the screen stopped,
            # nor the fixed reply to it, and its rewrite goes through the pattern layer again.
            # A topic filter outranks what earlier turns would carry, which only the rule-based
            # rewrite can drop, so with one set the rules decide.
            condensed = self.answerer.condense(q, self._screened_history(turns))
            if condensed:
                condensed = with_filters(condensed, subs, conds)
                decision = safety.check(condensed)
                if condensed != interp.text:
                    interp, queries = Standalone(condensed), None
        standalone_text = interp.text
        if decision is not None:
            ans = self._fixed(decision.message, decision.status, standalone_text)
            yield ans.answer
            yield done(ans)
            return
        timings["safety"] = (time.perf_counter() - t0) * 1000
        # Right after a crisis message, a question that is not a crisis itself is answered, with
        # the crisis resources kept in view.
        notes = [messages.AFTER_CRISIS_NOTE] if plan.follows_crisis else []

        t = time.perf_counter()
        evidence = self.gather(standalone_text, filters, previous, queries)
        timings["retrieve"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        draft = None
        first = True
        for item in self.answerer.stream(evidence):
            if isinstance(item, Draft):
                draft = item
            else:
                if first:
                    timings["first_text"] = (time.perf_counter() - t0) * 1000
                    first = False
                yield item
        assert draft is not None, "an answerer must end with a Draft"
        timings["answer"] = (time.perf_counter() - t) * 1000
        if draft.status == "answered":
            bad = unsupported(draft.text, draft.citations)
            if bad:  # the last gate, for every backend: nothing unsupported is ever returned
                raise AssertionError(f"unsupported sentences reached the gate: {bad}")
            checks, figure_notes = provenance.check(
                [(t, nums) for t, nums in split_marked(draft.text)], draft.citations,
                CLAIM_TYPES, self.search.reviewed_statements)
            yield done(Answer(answer=draft.text, citations=draft.citations, caveat=messages.CAVEAT,
                              status="answered", standalone_question=standalone_text,
                              notes=notes + draft.notes + figure_notes, figures=checks,
                              confidence=draft.evidence))
            return
        text = messages.no_evidence_text(draft.missing, len(draft.related), draft.nearest_topics)
        if first:
            yield text
        yield done(Answer(answer=text, citations=[], caveat=messages.CAVEAT, status="no_evidence",
                          standalone_question=standalone_text, notes=notes + draft.notes, related=draft.related,
                          confidence=draft.evidence))

    def queries(self, question: str, previous: str | None = None) -> Queries:
        """The texts `gather` encodes for `question` (no model): its search text and, for a
        multi-part question, each part's."""
        corpus = self._corpus_terms()
        focus = analyse(question, corpus, self._encode_queries)
        search_text = question
        if previous:
            # The previous question's framing words would carry at next to no weight: it is read
            # without the model.
            before = analyse(previous, corpus)
            own = copy.deepcopy(focus)  # the follow-up's own focus, before `carry` adds to it
            focus = carry(focus, before, corpus.subjects if corpus else None)
            inherited = [before.words[t] for t in before.terms if t in focus.terms and t not in own.terms]
            inherited += [n for n in focus.names if n not in own.names]
            inherited += [m for m in focus.medicines if m not in own.medicines]
            if inherited:
                search_text = f"{question} {' '.join(inherited)}"
            swapped = _swap_names(previous, before.names, own)
            if swapped:
                search_text = swapped
        # A part that names nothing of its own is searched with the question's subject.
        subject = " ".join([n for n in focus.names] + [DISPLAY_NAMES.get(x, x) for x in focus.substances])
        part_texts = [p.text if (p.names != focus.names or not subject) and p.substances != focus.substances
                      else f"{p.text} {subject}" for p in focus.parts] if focus.multi else []
        texts = [query_text(search_text)] + [query_text(t) for t in part_texts]
        return Queries(question, focus, search_text, part_texts, texts,
                       corpus.names if corpus else frozenset())

    def gather(self, question: str, filters: Filters | None = None,
               previous: str | None = None, queries: Queries | None = None) -> Evidence:
        """What the answerer needs for `question`: its focus, its embedding (computed once, for
        retrieval and for ranking sentences) and the passages retrieved for it; a multi-part
        question also gets each part's own embedding and passages. `previous`: the user's
        previous question, when this one is a follow-up ("and in MAPP2?") that asks it again.
        `queries`: `self.queries(question, previous)`, with its vectors when the caller encoded
        them already (the assistant does, in one batch with what the safety screen needs)."""
        q = queries or self.queries(question, previous)
        vectors = q.vectors if q.vectors is not None else list(self.services.embedder.encode(q.texts))
        focus = q.focus
        hits = self.search.search(q.search_text, self.settings.top_k, filters, vector=vectors[0])
        parts = []
        if focus.multi:
            for part, text, vec in zip(focus.parts, q.part_texts, vectors[1:]):
                part_hits = self.search.search(text, self.settings.top_k, filters, vector=vec)
                parts.append(Evidence(part.text, part, part_hits, self.settings.min_evidence, vec))
        return Evidence(question, focus, hits, self.settings.min_evidence, vectors[0], parts,
                        q.names)

    def _encode_queries(self, texts: list[str]):
        """Vectors of question variants, encoded as the search encodes questions."""
        return self.services.embedder.encode([query_text(t) for t in texts])

    def _known(self, word: str) -> bool:
        """Whether `word` occurs in the indexed passages (the loaded BM25 vocabulary; before
        the first search every word counts as known)."""
        lex = self.services._bm25
        return lex.knows(word) if lex is not None else True

    def _name_subjects(self):
        """The substance each corpus name is about (`bm25.name_subjects`); empty without an index."""
        try:
            terms = self._corpus_terms()
        except PsyqaError:
            return {}
        return terms.subjects if terms is not None else {}

    def _corpus_terms(self):
        try:
            return self.services.corpus_terms()
        except PsyqaError:
            raise
        except Exception:  # noqa: BLE001 - term statistics refine the answer; retrieval reports store errors
            return None

    def _screen(self, q: str) -> Answer | None:
        """Empty and over-long questions get a fixed answer before anything else.

        An over-long message is still read by the pattern layer first: a crisis in it gets the
        crisis text, not a request to shorten it.
        """
        if not q:
            return self._fixed(messages.EMPTY_QUESTION, "no_evidence", q)
        if len(q) > self.settings.max_question_chars:
            decision = safety.check(q)
            if decision is not None and decision.kind == "crisis":
                return self._fixed(decision.message, decision.status, q[:200])
            return self._fixed(messages.question_too_long(len(q), self.settings.max_question_chars),
                               "declined", q[:200])
        return None

    def _screened_history(self, turns: list[Turn]) -> list[Turn]:
        """`turns` without the user turns the screen stops (each judged with the turn before it)
        and the assistant's replies to them: what may be shown to a language model."""
        keep: list[Turn] = []
        previous: list[str] = []
        skip_reply = False
        for turn in turns:
            if turn.role == "user":
                skip_reply = self.safety.check(turn.content, previous) is not None
                previous.append(turn.content)
                if not skip_reply:
                    keep.append(turn)
            elif not skip_reply and turn.content not in safety.FIXED_TEXTS:
                keep.append(turn)
        return keep

    def _fixed(self, text: str, status: str, standalone: str) -> Answer:
        return Answer(answer=text, citations=[], caveat=messages.CAVEAT, status=status,  # type: ignore[arg-type]
                      standalone_question=standalone)


@dataclass
class Queries:
    """What `Assistant.gather` searches with: the focus of the question, its search text, the
    texts of its parts, the texts to encode (in that order) and, once encoded, their vectors."""

    question: str
    focus: object
    search_text: str
    part_texts: list[str]
    texts: list[str]
    names: frozenset
    vectors: list | None = None


def _one_batch(screen: list[str], queries: list[str]) -> tuple[list[str], list[int]]:
    """One encode batch for the screen's texts and the queries: the screen's first, then each
    query not already among them (the model is uncased, so a first question's message and its
    query are one text). Returns the batch and where each query's vector is in it."""
    batch = list(screen)
    at = []
    for text in queries:
        same = next((i for i, t in enumerate(batch) if semantic.same_vector(t, text)), None)
        if same is None:
            batch.append(text)
            same = len(batch) - 1
        at.append(same)
    return batch, at


__all__ = ["Assistant", "PsyqaError", "Filters"]
