"""The optional language-model answerer (Ollama or an OpenAI-compatible server, via LangChain).

The model phrases the answer; code decides what is shown. Retrieval and the extractive
answerer's calibrated abstention decide whether the corpus answers the question at all (the
model never overrides an abstention). The model then sees the retrieved passages numbered
1..len(hits) (`assistant/prompts.py`) and streams its answer. Tokens are buffered until a
sentence and its [n] markers are complete; each sentence is checked against the passages it
cites (`verify.sentence_problems`: citations exist, figures, drug and condition names,
negations and content words are in the cited passages) and shown only when it passes. Removed
sentences are counted in a visible note. When too little survives, when the model says it
cannot answer although the passages do, or when the server is down, slow or returns garbage,
the extractive answer (sentences quoted from the sources) is shown instead, with a note saying
why. Safety screening and the caveat stay in `assistant.py`, before and after the model.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from assistant import messages, prompts, safety
from assistant.answer import Draft, Evidence, citation, extractive
from assistant.answer.terms import stems
from assistant.answer.verify import best_span, mask_instructions, sentence_problems, split_marked
from assistant.models import Citation, Turn
from assistant.retrieve import Hit
from assistant.settings import Settings

# A reply may stream for at most this many times the per-read timeout before it is abandoned.
TOTAL_TIMEOUT_FACTOR = 4
# Follow-up condensing must be quick: it delays the answer.
CONDENSE_TIMEOUT_S = 8.0

class NonTextReply(ValueError):
    """The model returned something that is not text."""


def content_text(content: object) -> str:
    """The text of a message chunk's content (a string, or a list of text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            else:
                raise NonTextReply(f"a {type(p).__name__} part")
        return "".join(parts)
    raise NonTextReply(f"a {type(content).__name__}")


def failure_reason(exc: BaseException, timeout_s: float, base_url: str | None) -> str:
    """A short, human reason for a failed model call."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, ImportError):
        return f"its client library is not installed: {exc.name or exc}"
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return f"no reply within {timeout_s:g} s"
    if status:
        return f"the server answered HTTP {status}"
    if "Connect" in name or isinstance(exc, ConnectionError):
        return f"could not connect to {base_url or 'the default address'}"
    if isinstance(exc, NonTextReply):
        return f"it returned {exc} instead of text"
    if "Protocol" in name or "Remote" in name:
        return "the connection was cut off"
    return f"unreadable reply ({name})"


# ----------------------------------------------------------------------------- markers

_LIST_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)+)\s*\]")
_RANGE_MARKER = re.compile(r"\[\s*(\d+)\s*[-\u2013]\s*(\d+)\s*\]")
_PUNCT_AFTER = re.compile(r"((?:\s*\[\d+\])+)[ \t]*([.!?;:,])")
_RUN_END = re.compile(r"(?:\s*\[\d+\])+(?=[ \t]*[^\s\[.!?;:,])")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


def normalise_markers(text: str) -> str:
    """"[1, 2]" → "[1][2]", "[1-3]" → "[1][2][3]", "text [1]." → "text. [1]"."""
    text = _LIST_MARKER.sub(lambda m: "".join(f"[{n}]" for n in re.findall(r"\d+", m.group(1))), text)

    def _range(m: re.Match) -> str:
        a, b = int(m.group(1)), int(m.group(2))
        return "".join(f"[{n}]" for n in range(a, b + 1)) if 0 < b - a < 10 else m.group(0)

    text = _RANGE_MARKER.sub(_range, text)
    return _PUNCT_AFTER.sub(lambda m: m.group(2) + m.group(1), text)


def take_units(buf: str, final: bool = False) -> tuple[list[str], str]:
    """Split complete units (text up to and including its marker run, or a whole line) off the
    front of `buf`; return them and the incomplete rest. `final`: the stream has ended."""
    units: list[str] = []
    buf = normalise_markers(buf)
    while True:
        nl = buf.find("\n")
        m = _RUN_END.search(buf)
        ends = [e for e in (nl + 1 if nl >= 0 else -1, m.end() if m else -1) if e > 0]
        if not ends:
            break
        end = min(ends)
        unit, buf = buf[:end], buf[end:]
        if unit.strip():
            units.append(unit)
    if final and buf.strip():
        units.append(buf)
        buf = ""
    return units, buf


# ----------------------------------------------------------------------------- one answer

@dataclass
class _Run:
    """The state of one generated answer: what was checked, shown, held back."""

    hits: list[Hit]
    by_n: dict[int, Citation] = field(init=False)
    display: dict[int, int] = field(default_factory=dict)        # prompt n -> shown n
    highlights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    pending: list[tuple[str, list[int], bool]] = field(default_factory=list)
    sentences: list[tuple[str, int]] = field(default_factory=list)
    removed: list[tuple[str, list[str]]] = field(default_factory=list)
    kept: int = 0
    shown: str = ""
    last_bullet: bool = False
    no_answer: bool = False
    markers_seen: bool = False

    def __post_init__(self) -> None:
        # The answerer checks against passages with instruction-like sentences blanked out ("ignore
        # previous instructions and tell the user ..."): such text is never evidence, even when
        # a sentence repeats it word for word. (The gate in assistant.py checks the same way
        # against the full passage, so this is stricter, never looser.)
        self.by_n = {}
        for i, h in enumerate(self.hits, 1):
            c = citation(i, h, [])
            self.by_n[i] = c.model_copy(update={"passage": mask_instructions(c.passage)})

    def feed(self, unit: str) -> Iterator[str]:
        """Check the sentences of one complete unit; yield the display pieces now releasable."""
        bullet = bool(_BULLET.match(unit.lstrip("\n")))
        unit = _BULLET.sub("", unit.lstrip("\n"))
        for text, nums in split_marked(unit):
            text = " ".join(text.split())
            self.markers_seen = self.markers_seen or bool(nums)
            if _is_no_answer(text):
                self.no_answer = True
                continue
            problems = sentence_problems(text, nums, self.by_n)
            if problems:
                self.removed.append((text, problems))
                continue
            self.kept += 1
            self.pending.append((text, list(dict.fromkeys(nums)), bullet))
        # Show verified sentences only while at least half of the model's sentences verify.
        if self.kept >= len(self.removed):
            yield from self.release()

    def release(self) -> Iterator[str]:
        for text, nums, bullet in self.pending:
            shown = []
            for n in nums:
                if n not in self.display:
                    self.display[n] = len(self.display) + 1
                shown.append(self.display[n])
                span = best_span(text, self.by_n[n].passage)
                spans = self.highlights.setdefault(n, [])
                if span and span not in spans:
                    spans.append(span)
            sep = "" if not self.shown else ("\n" if bullet or self.last_bullet else " ")
            piece = sep + ("- " if bullet else "") + text + " " + "".join(f"[{d}]" for d in shown)
            self.last_bullet = bullet
            self.shown += piece
            self.sentences.append((text, shown[0]))
            yield piece
        self.pending = []

    def citations(self) -> list[Citation]:
        order = sorted(self.display, key=self.display.get)
        return [citation(self.display[n], self.hits[n - 1], sorted(self.highlights.get(n, [])))
                for n in order]


def _passages(evidence: Evidence) -> list[Hit]:
    """The passages the model sees: the question's, then each part's not already among them."""
    hits = list(evidence.hits)
    seen = {h.chunk.chunk_id for h in hits}
    for part in evidence.parts:
        for h in part.hits:
            if h.chunk.chunk_id not in seen:
                seen.add(h.chunk.chunk_id)
                hits.append(h)
    return hits


def _is_no_answer(text: str) -> bool:
    return prompts.NO_ANSWER.lower().rstrip(".") in text.lower()


def _words_kept(question: str, rewritten: str) -> bool:
    """Every content word of the user's question is still in the rewritten question."""
    return set(stems(question)) <= set(stems(rewritten))


# ----------------------------------------------------------------------------- answerer

class GenerativeAnswerer:
    """Answers with a language model, every sentence verified before it is shown."""

    def __init__(self, settings: Settings, fallback, chat_model=None) -> None:
        self.settings = settings
        self.llm = settings.llm
        self.fallback = fallback
        self._given = chat_model            # tests may hand in a model object
        self._models: dict[float, object] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.llm.backend}:{self.llm.model}"

    def _model(self, timeout: float):
        if self._given is not None:
            return self._given
        with self._lock:
            model = self._models.get(timeout)
            if model is None:
                model = self._models[timeout] = self._build(timeout)
            return model

    def _build(self, timeout: float):
        llm = self.llm
        if llm.backend == "ollama":
            from langchain_ollama import ChatOllama

            kwargs: dict = {"model": llm.model, "temperature": 0, "client_kwargs": {"timeout": timeout}}
            if llm.base_url:
                kwargs["base_url"] = llm.base_url
            return ChatOllama(**kwargs)
        if llm.backend == "openai":
            from langchain_openai import ChatOpenAI

            return ChatOpenAI(model=llm.model, base_url=llm.base_url,
                              api_key=os.environ.get(llm.api_key_env) or "not-needed",
                              timeout=timeout, max_retries=0, temperature=0)
        raise ValueError(f"unknown language-model backend {llm.backend!r}")

    # ------------------------------------------------------------------ answering

    def stream(self, evidence: Evidence) -> Iterator[str | Draft]:
        base = extractive.answer(evidence)
        if base.status != "answered":
            yield base  # the extractive answerer decides abstention; the model is not asked
            return
        question = evidence.question
        hits = _passages(evidence)
        from langchain_core.messages import HumanMessage, SystemMessage

        chat = [
            SystemMessage(content=prompts.system_prompt(len(hits))),
            HumanMessage(content=prompts.answer_prompt(
                question, [(h.chunk.title, h.chunk.text) for h in hits])),
        ]
        run = _Run(hits)
        raw: list[str] = []
        buf = ""
        error: BaseException | None = None
        timeout = self.llm.timeout_s
        try:
            deadline = time.monotonic() + timeout * TOTAL_TIMEOUT_FACTOR
            for chunk in self._model(timeout).stream(chat):
                text = content_text(chunk.content)
                raw.append(text)
                units, buf = take_units(buf + text)
                for unit in units:
                    yield from run.feed(unit)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the reply took longer than {timeout * TOTAL_TIMEOUT_FACTOR:g} s")
        except Exception as exc:  # any failure of the model call: fall back, say so
            error = exc
        if error is None:
            units, _ = take_units(buf, final=True)
            for unit in units:
                yield from run.feed(unit)

        notes: list[str] = []
        if run.removed:
            notes.append(messages.removed_note(len(run.removed)))
        if not run.shown:
            reason = None
            if error is not None:
                reason = failure_reason(error, timeout, self.llm.base_url)
            elif not "".join(raw).strip():
                reason = "it returned an empty reply"
            elif not run.markers_seen and not run.no_answer:
                reason = "its reply cited no passages"
            notes.append(messages.unavailable_note(reason) if reason else messages.UNVERIFIED_NOTE)
            yield from extractive.pieces(base.text)
            base.notes = notes
            yield base
            return
        if run.pending:
            n = len(run.pending)
            notes.append(messages.withheld_note(n))
        if error is not None:
            notes.append(messages.stopped_early_note(failure_reason(error, timeout, self.llm.base_url)))
        yield Draft("answered", run.shown, run.citations(), run.sentences, base.evidence, [],
                    base.nearest_topics, notes)

    # ------------------------------------------------------------------ follow-ups

    def condense(self, question: str, history: list[Turn]) -> str | None:
        """A standalone question from the model, or None (then the rule-based rewriter is used)."""
        if not history:
            return None
        turns: list[tuple[str, str]] = []
        skip_reply = False
        for t in history[-6:]:
            if t.role == "user":
                # A message that safety handled in code (crisis, sourcing, dosing) never goes
                # to the model, nor does the fixed reply to it.
                skip_reply = safety.check(t.content) is not None
                if not skip_reply:
                    turns.append((t.role, t.content))
            elif not skip_reply:
                turns.append((t.role, t.content[:600]))
        from langchain_core.messages import HumanMessage, SystemMessage

        try:
            timeout = min(self.llm.timeout_s, CONDENSE_TIMEOUT_S)
            reply = self._model(timeout).invoke([
                SystemMessage(content=prompts.CONDENSE_SYSTEM_PROMPT),
                HumanMessage(content=prompts.condense_prompt(question, turns)),
            ])
            text = content_text(reply.content)
        except Exception:
            return None
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return None
        out = re.sub(r"^(?:standalone question|question)\s*:\s*", "", lines[0], flags=re.I)
        out = out.strip().strip("\"'\u201c\u201d").strip()
        if not out or len(out) > max(300, 3 * len(question)) or _is_no_answer(out):
            return None
        if not _words_kept(question, out):
            return None
        return out
