"""Scoring answers against labelled items, and the gold-set report of `psyqa eval`.

The checks every labelled set shares live here: fact matching, citation validity by the
product's own gate (`verify.sentence_problems`: a sentence is valid when it is copied from, or a
verified paraphrase of, the passages it cites), the verbatim rate beside it, the caveat, asking
the assistant and latency. The gold regression set (eval/gold.jsonl) is scored here too:

* retrieval hit@5: for answerable items, whether any expected document is among the documents
  of the top 5 passages that `assistant.retrieve(standalone_question)` returns (the cited
  documents when the assistant has no `retrieve`);
* fact recall: for answerable items, the fraction of fact strings found in the answer text;
* status accuracy, caveat presence: over all items;
* citation validity and the verbatim rate: over every sentence of every answered answer;
* latency: mean, p50 and p95 of `timings_ms["total"]` (wall-clock time when absent).

`quality.py` and `screening.py` score the quality and safety sets with the same checks. Nothing
here needs a model: the scorers take any object with an `ask(question, history)` method, so they
are unit-tested on hand-built answers (tests/test_gold.py, tests/test_eval_report.py).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from assistant import messages
from assistant.answer.verify import sentence_problems, split_marked
from assistant.bench import percentile
from assistant.bench.gold import GoldItem
from assistant.models import Answer, Citation
from assistant.text import DASHES

# Goals; `psyqa eval` exits non-zero when any is missed.
GOALS: dict[str, float] = {
    "status_accuracy": 0.95,
    "fact_recall": 0.90,
    "citation_validity": 1.0,
    "caveat_presence": 1.0,
}
HIT_K = 5


# ------------------------------------------------------------------------------ facts

_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def normalize_fact_text(text: str) -> str:
    """The form in which facts are compared: NFKC, dashes/minus to '-', one space, casefold."""
    text = unicodedata.normalize("NFKC", text).translate(DASHES)
    return re.sub(r"\s+", " ", text).strip().casefold()


def strip_markers(text: str) -> str:
    """Remove [n] (and [n, m]) citation markers."""
    return _MARKER.sub("", text)


def fact_found(fact: str, text: str) -> bool:
    """True when `fact` occurs in `text` after normalisation (markers in `text` ignored)."""
    return normalize_fact_text(fact) in normalize_fact_text(strip_markers(text))


def missing_facts(facts: Iterable[str], text: str) -> list[str]:
    return [f for f in facts if not fact_found(f, text)]


def fact_recall(facts: list[str], text: str) -> float:
    """Fraction of facts found in text (1.0 when there are no facts)."""
    if not facts:
        return 1.0
    return 1 - len(missing_facts(facts, text)) / len(facts)


# -------------------------------------------------------------------------- citations

class CitationViolation(BaseModel):
    item_id: str = ""
    sentence: str
    n: int | None = None  # the marker concerned; None when the sentence cites several together
    reason: Literal["unsupported", "unknown_citation", "uncited"]
    problems: list[str] = Field(default_factory=list)  # verify.sentence_problems' reasons


def check_citations(answer: Answer, item_id: str = "") -> tuple[int, list[CitationViolation]]:
    """Check every sentence of an answer with the rule of the product's last gate.

    The answer is split at its [n] marker runs and line breaks (`verify.split_marked`); each
    sentence must cite passages that exist and be copied from, or a verified paraphrase of, the
    passages it cites (`verify.sentence_problems`).

    Returns:
        (number of sentences checked, violations). A sentence fails when it carries no marker
        ("uncited"), when a marker names no citation ("unknown_citation", one per marker), or
        when its cited passages do not support it ("unsupported", with the checker's reasons).
    """
    by_n = {c.n: c for c in answer.citations}
    sentences = split_marked(answer.answer)
    violations: list[CitationViolation] = []
    for text, nums in sentences:
        problems = sentence_problems(text, nums, by_n)
        if not problems:
            continue
        cited = list(dict.fromkeys(nums))
        unknown = [n for n in cited if n not in by_n]
        if not cited:
            violations.append(CitationViolation(item_id=item_id, sentence=text, reason="uncited",
                                                problems=problems))
        elif unknown:
            violations += [CitationViolation(item_id=item_id, sentence=text, n=n,
                                             reason="unknown_citation", problems=problems)
                           for n in unknown]
        else:
            violations.append(CitationViolation(
                item_id=item_id, sentence=text, n=cited[0] if len(cited) == 1 else None,
                reason="unsupported", problems=problems))
    return len(sentences), violations


def _ws(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def verbatim_sentences(answer: Answer) -> int:
    """How many sentences occur verbatim (whitespace-normalised) in every passage they cite.

    The extractive answerer only copies, so for it this equals the sentence count; a language
    model paraphrases, and its verified paraphrases are valid citations but not verbatim.
    """
    by_n: dict[int, Citation] = {c.n: c for c in answer.citations}
    count = 0
    for text, nums in split_marked(answer.answer):
        needle = _ws(text)
        if nums and all(n in by_n and needle in _ws(by_n[n].passage) for n in dict.fromkeys(nums)):
            count += 1
    return count


def invalid_sentence_count(violations: list[CitationViolation]) -> int:
    return len({v.sentence for v in violations})


def is_fallback(notes: Iterable[str]) -> bool:
    """Whether a language-model answer was replaced by the extractive one (its notes say so)."""
    return any(n == messages.UNVERIFIED_NOTE or n.startswith(messages.UNAVAILABLE_START)
               for n in notes)


# ---------------------------------------------------------------------- asking, timing

@dataclass
class Asked:
    """One call of `assistant.ask`: the answer or the error, and the wall-clock time."""

    answer: Answer | None
    error: str | None
    wall_ms: float


def ask(assistant: Any, question: str, history: list) -> Asked:
    """Ask one question; an exception becomes the item's error instead of ending the run."""
    t0 = time.perf_counter()
    try:
        answer = assistant.ask(question, list(history))
    except Exception as exc:  # one broken item must not hide the rest of the report
        return Asked(None, f"{type(exc).__name__}: {exc}", (time.perf_counter() - t0) * 1000)
    return Asked(answer, None, (time.perf_counter() - t0) * 1000)


def backend_name(assistant: Any) -> str:
    return str(getattr(assistant, "backend", None) or "unknown")


def retrieved_docs(assistant: Any, answer: Answer) -> tuple[list[str], str]:
    """Doc ids of the top passages, in rank order without repeats, and where they came from."""
    retrieve = getattr(assistant, "retrieve", None)
    if callable(retrieve):
        try:
            hits = retrieve(answer.standalone_question)
        except TypeError:
            hits = None  # a different signature: fall back to the citations
        if hits is not None:
            docs = []
            for hit in list(hits)[:HIT_K]:
                chunk = getattr(hit, "chunk", hit)
                doc_id = getattr(chunk, "doc_id", None)
                if doc_id is not None:
                    docs.append(doc_id)
            return list(dict.fromkeys(docs)), "retrieve"
    return cited_docs(answer), "citations"


def cited_docs(answer: Answer) -> list[str]:
    return list(dict.fromkeys(c.doc_id for c in answer.citations))[:HIT_K]


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def rate(flags: Iterable[bool]) -> float | None:
    """Share of true flags (None when there are none to count)."""
    return mean(1.0 if f else 0.0 for f in flags)


def latency_stats(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean, p50 and p95 (`assistant.bench.percentile`, as every benchmark reports them)."""
    if not values:
        return None, None, None
    return mean(values), percentile(values, 50), percentile(values, 95)


# ------------------------------------------------------------------------------ goals

class Goal(BaseModel):
    """A target for one metric of a report: value >= target, or value <= target (`at_most`)."""

    metric: str
    target: float
    at_most: bool = False

    def met(self, value: float | None) -> bool | None:
        """True or False; None when the run had nothing to measure it on."""
        if value is None:
            return None
        return value <= self.target if self.at_most else value >= self.target

    def describe(self) -> str:
        return ("≤ " if self.at_most else "≥ ") + pct(self.target)


def missed(report: BaseModel, goals: list[Goal], n_items: int) -> list[str]:
    """Goals of `report` not met, as 'metric value < goal'. A goal with nothing to measure in
    this run (no unanswerable item, say) is not missed; an empty run misses everything."""
    if not n_items:
        return ["no items were run"]
    out = []
    for g in goals:
        value = getattr(report, g.metric)
        if g.met(value) is False:
            out.append(f"{g.metric} {value:.3f} {'>' if g.at_most else '<'} {g.target}")
    return out


# -------------------------------------------------------------------------- rendering

def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def excerpt(text: str, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_mark(failed: bool, done: int, total: int) -> None:
    """One character per item on stderr ('.' or 'F'), 50 to a line."""
    import sys

    print("F" if failed else ".", end="\n" if done == total or done % 50 == 0 else "",
          file=sys.stderr, flush=True)


def violations_markdown(violations: list[CitationViolation]) -> list[str]:
    if not violations:
        return []
    out = ["", "## Citation violations", "", "| item | marker | reason | sentence |",
           "|---|---|---|---|"]
    for v in violations:
        marker = "" if v.n is None else f"[{v.n}]"
        why = v.reason + (": " + "; ".join(v.problems) if v.reason == "unsupported" else "")
        out.append(f"| {v.item_id} | {marker} | {md_cell(why)} | "
                   f"{md_cell(excerpt(v.sentence, 160))} |")
    return out


# ---------------------------------------------------------------------- the gold set

class ItemResult(BaseModel):
    id: str
    topic: str
    question: str
    follow_up: bool
    expected_status: str
    status: str  # an answer status, or "error"
    status_ok: bool
    answer: str = ""
    standalone_question: str = ""
    expected_docs: list[str] = Field(default_factory=list)
    retrieved_docs: list[str] = Field(default_factory=list)
    retrieval_source: Literal["retrieve", "citations", "none"] = "none"
    hit: bool | None = None  # None: not an answerable item
    facts: list[str] = Field(default_factory=list)
    missing_facts: list[str] = Field(default_factory=list)
    recall: float | None = None  # None: not an answerable item
    sentences: int = 0
    verbatim: int = 0
    citation_violations: list[CitationViolation] = Field(default_factory=list)
    caveat_ok: bool = False
    confidence: float | None = None
    notes: list[str] = Field(default_factory=list)
    latency_ms: float | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return bool(
            not self.status_ok or self.missing_facts or self.hit is False
            or self.citation_violations or not self.caveat_ok or self.error
        )


class TopicStats(BaseModel):
    topic: str
    n: int
    status_accuracy: float
    answerable: int
    hit_at_5: float | None
    fact_recall: float | None


class Failure(BaseModel):
    id: str
    topic: str
    question: str
    expected_status: str
    status: str
    missing_facts: list[str]
    hit: bool | None
    expected_docs: list[str]
    retrieved_docs: list[str]
    citation_violations: int
    caveat_ok: bool
    error: str | None = None
    answer_excerpt: str = ""


class EvalReport(BaseModel):
    backend: str = "unknown"
    n_items: int
    n_answerable: int
    hit_at_5: float | None
    fact_recall: float | None
    status_accuracy: float
    citation_validity: float | None
    verbatim_rate: float | None = None
    sentences_checked: int
    caveat_presence: float
    fallbacks: int = 0  # answered answers where the language model's answer was replaced
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    retrieval_source: str
    goals: dict[str, float] = Field(default_factory=lambda: dict(GOALS))
    by_topic: list[TopicStats] = Field(default_factory=list)
    status_confusion: dict[str, dict[str, int]] = Field(default_factory=dict)
    citation_violations: list[CitationViolation] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    items: list[ItemResult] = Field(default_factory=list)

    def missed_goals(self) -> list[str]:
        """Names of the goals not met, as 'metric value < goal'."""
        missed = []
        for name, goal in self.goals.items():
            value = getattr(self, name)
            # A metric with nothing to measure (e.g. no answered items) cannot meet its goal.
            if value is None or value < goal:
                shown = "n/a" if value is None else f"{value:.3f}"
                missed.append(f"{name} {shown} < {goal}")
        return missed

    @property
    def passed(self) -> bool:
        return not self.missed_goals()


def score_item(item: GoldItem, answer: Answer, *, caveat: str,
               retrieved: tuple[list[str], str] | None = None,
               latency_ms: float | None = None) -> ItemResult:
    """Score one answer against its gold item (no assistant needed)."""
    res = ItemResult(
        id=item.id, topic=item.topic, question=item.question, follow_up=bool(item.history),
        expected_status=item.expected_status, status=answer.status,
        status_ok=answer.status == item.expected_status, answer=answer.answer,
        standalone_question=answer.standalone_question,
        expected_docs=item.expected_docs, facts=item.facts,
        caveat_ok=bool(caveat) and answer.caveat == caveat, confidence=answer.confidence,
        notes=answer.notes, latency_ms=answer.timings_ms.get("total", latency_ms),
    )
    if item.answerable:
        docs, source = retrieved if retrieved is not None else (cited_docs(answer), "citations")
        res.retrieved_docs, res.retrieval_source = docs, source
        res.hit = any(d in item.expected_docs for d in docs[:HIT_K])
        res.missing_facts = missing_facts(item.facts, answer.answer)
        res.recall = fact_recall(item.facts, answer.answer)
    if answer.status == "answered":
        res.sentences, res.citation_violations = check_citations(answer, item.id)
        res.verbatim = verbatim_sentences(answer)
    return res


def _error_result(item: GoldItem, error: str, latency_ms: float) -> ItemResult:
    return ItemResult(
        id=item.id, topic=item.topic, question=item.question, follow_up=bool(item.history),
        expected_status=item.expected_status, status="error", status_ok=False,
        expected_docs=item.expected_docs, facts=item.facts,
        hit=False if item.answerable else None,
        missing_facts=list(item.facts) if item.answerable else [],
        recall=0.0 if item.answerable else None, caveat_ok=False, latency_ms=latency_ms,
        error=error,
    )


def score(items: list[GoldItem], assistant: Any, *, caveat: str | None = None,
          progress: Callable[[int, int, ItemResult], None] | None = None) -> EvalReport:
    """Ask every gold question and score the answers.

    Args:
        items: The gold items (see `gold.load_gold`).
        assistant: Anything with `ask(question, history) -> Answer`; when it also has
            `retrieve(question)` returning hits with `.chunk.doc_id`, hit@5 uses that,
            otherwise the cited documents.
        caveat: The caveat every answer must carry (default `assistant.messages.CAVEAT`).
        progress: Called after each item with (done, total, result).
    """
    caveat = messages.CAVEAT if caveat is None else caveat
    results: list[ItemResult] = []
    for i, item in enumerate(items, start=1):
        asked = ask(assistant, item.question, item.history)
        if asked.answer is None:
            res = _error_result(item, asked.error or "", asked.wall_ms)
        else:
            try:
                retrieved = retrieved_docs(assistant, asked.answer) if item.answerable else None
                res = score_item(item, asked.answer, caveat=caveat, retrieved=retrieved,
                                 latency_ms=asked.wall_ms)
            except Exception as exc:  # a failing retrieve() is the item's error too
                res = _error_result(item, f"{type(exc).__name__}: {exc}", asked.wall_ms)
        results.append(res)
        if progress is not None:
            progress(i, len(items), res)
    return build_report(results, backend=backend_name(assistant))


def build_report(results: list[ItemResult], backend: str = "unknown") -> EvalReport:
    """Aggregate per-item results into the report."""
    answerable = [r for r in results if r.recall is not None]
    sentences = sum(r.sentences for r in results)
    invalid = sum(invalid_sentence_count(r.citation_violations) for r in results)
    verbatim = sum(r.verbatim for r in results)
    latencies = [r.latency_ms for r in results if r.latency_ms is not None and not r.error]
    sources = sorted({r.retrieval_source for r in answerable} - {"none"})
    lat_mean, lat_p50, lat_p95 = latency_stats(latencies)

    by_topic: dict[str, list[ItemResult]] = defaultdict(list)
    for r in results:
        by_topic[r.topic].append(r)
    topics = []
    for topic, rs in sorted(by_topic.items()):
        ans = [r for r in rs if r.recall is not None]
        topics.append(TopicStats(
            topic=topic, n=len(rs),
            status_accuracy=sum(r.status_ok for r in rs) / len(rs),
            answerable=len(ans),
            hit_at_5=rate(bool(r.hit) for r in ans),
            fact_recall=mean(r.recall for r in ans if r.recall is not None),
        ))

    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in results:
        confusion[r.expected_status][r.status] += 1

    failures = [
        Failure(
            id=r.id, topic=r.topic, question=r.question, expected_status=r.expected_status,
            status=r.status, missing_facts=r.missing_facts, hit=r.hit,
            expected_docs=r.expected_docs, retrieved_docs=r.retrieved_docs,
            citation_violations=len(r.citation_violations), caveat_ok=r.caveat_ok,
            error=r.error, answer_excerpt=excerpt(r.answer),
        )
        for r in results if r.failed
    ]
    return EvalReport(
        backend=backend,
        n_items=len(results),
        n_answerable=len(answerable),
        hit_at_5=rate(bool(r.hit) for r in answerable),
        fact_recall=mean(r.recall for r in answerable if r.recall is not None),
        status_accuracy=(sum(r.status_ok for r in results) / len(results)) if results else 0.0,
        citation_validity=(1 - invalid / sentences) if sentences else None,
        verbatim_rate=(verbatim / sentences) if sentences else None,
        sentences_checked=sentences,
        caveat_presence=(sum(r.caveat_ok for r in results) / len(results)) if results else 0.0,
        fallbacks=sum(r.status == "answered" and is_fallback(r.notes) for r in results),
        latency_mean_ms=lat_mean,
        latency_p50_ms=lat_p50,
        latency_p95_ms=lat_p95,
        retrieval_source="+".join(sources) or "none",
        by_topic=topics,
        status_confusion={k: dict(v) for k, v in confusion.items()},
        citation_violations=[v for r in results for v in r.citation_violations],
        failures=failures,
        items=results,
    )


def format_summary(report: EvalReport) -> str:
    """A short plain-text summary for the terminal."""
    lines = [
        f"gold items: {report.n_items} ({report.n_answerable} answerable); "
        f"backend {report.backend}",
        f"retrieval hit@{HIT_K}:     {pct(report.hit_at_5)}  (from {report.retrieval_source})",
        f"fact recall:         {pct(report.fact_recall)}  (goal {pct(GOALS['fact_recall'])})",
        f"status accuracy:     {pct(report.status_accuracy)}  "
        f"(goal {pct(GOALS['status_accuracy'])})",
        f"citation validity:   {pct(report.citation_validity)}  "
        f"({report.sentences_checked} sentences; goal 100%)",
        f"verbatim sentences:  {pct(report.verbatim_rate)}",
        f"caveat presence:     {pct(report.caveat_presence)}  (goal 100%)",
        f"latency:             mean {ms(report.latency_mean_ms)}, p50 "
        f"{ms(report.latency_p50_ms)}, p95 {ms(report.latency_p95_ms)}",
    ]
    if report.backend != "extractive":
        lines.insert(-1, f"LLM fallbacks:       {report.fallbacks} answered items showed the "
                         "extractive answer instead")
    if report.failures:
        lines.append(f"failures ({len(report.failures)}):")
        for f in report.failures:
            bits = []
            if f.status != f.expected_status:
                bits.append(f"status {f.status} (expected {f.expected_status})")
            if f.missing_facts:
                bits.append("missing " + ", ".join(repr(m) for m in f.missing_facts))
            if f.hit is False:
                bits.append("retrieval miss")
            if f.citation_violations:
                bits.append(f"{f.citation_violations} citation violation(s)")
            if not f.caveat_ok:
                bits.append("caveat")
            if f.error:
                bits.append(f.error)
            lines.append(f"  {f.id}: " + "; ".join(bits))
    missed = report.missed_goals()
    lines.append("goals: all met" if not missed else "goals missed: " + "; ".join(missed))
    return "\n".join(lines)


def format_markdown(report: EvalReport) -> str:
    """The full report as Markdown: metrics, per-topic table, status confusion, failures."""
    missed = report.missed_goals()
    out = [
        "# psyqa evaluation",
        "",
        f"{report.n_items} gold items, {report.n_answerable} answerable; backend "
        f"`{report.backend}`. "
        + ("All goals met." if not missed else "Goals missed: " + "; ".join(missed) + "."),
        "",
        "| metric | value | goal |",
        "|---|---|---|",
        f"| retrieval hit@{HIT_K} (answerable; from {report.retrieval_source}) | "
        f"{pct(report.hit_at_5)} | – |",
        f"| fact recall (answerable) | {pct(report.fact_recall)} | "
        f"≥ {pct(GOALS['fact_recall'])} |",
        f"| status accuracy (all) | {pct(report.status_accuracy)} | "
        f"≥ {pct(GOALS['status_accuracy'])} |",
        f"| citation validity ({report.sentences_checked} sentences) | "
        f"{pct(report.citation_validity)} | 100% |",
        f"| verbatim sentences (copied from every passage they cite) | "
        f"{pct(report.verbatim_rate)} | – |",
        f"| caveat presence (all) | {pct(report.caveat_presence)} | 100% |",
    ]
    if report.backend != "extractive":
        out.append(f"| language-model answers replaced by the extractive one | "
                   f"{report.fallbacks} | – |")
    out += [
        f"| latency mean / p50 / p95 | {ms(report.latency_mean_ms)} / "
        f"{ms(report.latency_p50_ms)} / {ms(report.latency_p95_ms)} | – |",
        "",
        "## By topic",
        "",
        "| topic | items | status acc. | answerable | hit@5 | fact recall |",
        "|---|---|---|---|---|---|",
    ]
    for t in report.by_topic:
        out.append(f"| {t.topic} | {t.n} | {pct(t.status_accuracy)} | {t.answerable} | "
                   f"{pct(t.hit_at_5)} | {pct(t.fact_recall)} |")
    statuses = ["answered", "no_evidence", "declined", "crisis", "error"]
    out += ["", "## Status (rows: expected, columns: returned)", "",
            "| expected | " + " | ".join(statuses) + " |",
            "|---|" + "---|" * len(statuses)]
    for exp in statuses[:-1]:
        row = report.status_confusion.get(exp, {})
        out.append(f"| {exp} | " + " | ".join(str(row.get(s, 0)) for s in statuses) + " |")
    out += violations_markdown(report.citation_violations)
    if report.failures:
        out += ["", "## Failures", "",
                "| id | question | expected | got | missing facts | retrieval | answer |",
                "|---|---|---|---|---|---|---|"]
        for f in report.failures:
            retrieval = "n/a" if f.hit is None else ("hit" if f.hit else
                                                     "miss: " + ", ".join(f.retrieved_docs))
            extra = []
            if f.citation_violations:
                extra.append(f"{f.citation_violations} citation violation(s)")
            if not f.caveat_ok:
                extra.append("caveat wrong")
            if f.error:
                extra.append(f.error)
            answer = excerpt(f.answer_excerpt, 160) + (" — " + "; ".join(extra) if extra else "")
            out.append(
                f"| {f.id} | {md_cell(f.question)} | {f.expected_status} | {f.status} | "
                f"{md_cell(', '.join(f.missing_facts))} | {md_cell(retrieval)} | "
                f"{md_cell(answer)} |"
            )
    return "\n".join(out) + "\n"
