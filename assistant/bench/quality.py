"""`psyqa eval --split dev|test`: answer quality on eval/quality.jsonl, by kind of question.

Each item is asked through `Assistant.ask` and scored with the shared checks of `report.py`.
Per kind (paraphrase, multi_part, negation, near_scope, follow_up, out_of_scope,
risky_clinical) and overall:

* status accuracy;
* fully correct: the status is right and every must-fact (`facts` and the facts of every part)
  is in the answer; for an item expected `no_evidence`, the status is right;
* fact recall (answerable items): the share of must-facts found (0 with the wrong status);
* false answers: the share of unanswerable items (expected `no_evidence`) that were answered;
* citation validity (the product's gate rule) and the verbatim rate;
* part coverage (items with `parts`): the share of parts whose facts are all in the answer.

The abstention sweep treats an answer as given at threshold t when its status is `answered` and
its `confidence` is at least t, for every confidence observed on an answered item; it reports
the answer rate (answered / items) and the precision (fully correct / answered) at each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from assistant import messages
from assistant.bench import report as rp
from assistant.bench.gold import KINDS, QualityItem
from assistant.models import Answer

GOALS: list[rp.Goal] = [
    rp.Goal(metric="status_accuracy", target=0.92),
    rp.Goal(metric="fully_correct", target=0.85),
    rp.Goal(metric="false_answer_rate", target=0.05, at_most=True),
    rp.Goal(metric="citation_validity", target=1.0),
]
SWEEP_ROWS_SHOWN = 20  # Markdown shows this many thresholds; JSON has every one


class QualityResult(BaseModel):
    id: str
    split: str
    kind: str
    question: str
    follow_up: bool
    expected_status: str
    status: str  # an answer status, or "error"
    status_ok: bool
    fully_correct: bool
    answer: str = ""
    standalone_question: str = ""
    expected_docs: list[str] = Field(default_factory=list)
    retrieved_docs: list[str] = Field(default_factory=list)
    hit: bool | None = None              # None: not an answerable item
    must_facts: list[str] = Field(default_factory=list)
    missing_facts: list[str] = Field(default_factory=list)
    recall: float | None = None          # None: not an answerable item
    parts: int = 0
    parts_covered: int = 0
    false_answer: bool | None = None     # None: an answerable item
    sentences: int = 0
    verbatim: int = 0
    citation_violations: list[rp.CitationViolation] = Field(default_factory=list)
    caveat_ok: bool = False
    confidence: float | None = None
    notes: list[str] = Field(default_factory=list)
    latency_ms: float | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return bool(not self.fully_correct or self.citation_violations or not self.caveat_ok
                    or self.error)


class Rates(BaseModel):
    """The quality figures of a group of results (one kind, or all)."""

    n: int
    answerable: int
    unanswerable: int
    status_accuracy: float | None
    fully_correct: float | None
    fact_recall: float | None
    false_answer_rate: float | None
    citation_validity: float | None
    verbatim_rate: float | None
    sentences: int
    part_coverage: float | None
    items_with_parts: int
    hit_at_5: float | None


class KindStats(Rates):
    kind: str


class SweepPoint(BaseModel):
    threshold: float
    answered: int
    answer_rate: float
    precision: float | None


class QualityReport(BaseModel):
    set: str = "quality"
    split: str | None = None
    kinds: list[str] = Field(default_factory=list)  # the --kind filter, empty for all
    backend: str = "unknown"
    n_items: int
    overall: Rates
    caveat_presence: float | None
    fallbacks: int = 0
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    goals: list[rp.Goal] = Field(default_factory=lambda: list(GOALS))
    by_kind: list[KindStats] = Field(default_factory=list)
    sweep: list[SweepPoint] = Field(default_factory=list)
    status_confusion: dict[str, dict[str, int]] = Field(default_factory=dict)
    citation_violations: list[rp.CitationViolation] = Field(default_factory=list)
    failures: list[QualityResult] = Field(default_factory=list)
    items: list[QualityResult] = Field(default_factory=list)

    # The goal metrics, overall.
    @property
    def status_accuracy(self) -> float | None:
        return self.overall.status_accuracy

    @property
    def fully_correct(self) -> float | None:
        return self.overall.fully_correct

    @property
    def false_answer_rate(self) -> float | None:
        return self.overall.false_answer_rate

    @property
    def citation_validity(self) -> float | None:
        return self.overall.citation_validity

    def missed_goals(self) -> list[str]:
        return rp.missed(self, self.goals, self.n_items)

    @property
    def passed(self) -> bool:
        return not self.missed_goals()


# ------------------------------------------------------------------------------ scoring

def score_item(item: QualityItem, answer: Answer, *, caveat: str,
               retrieved: tuple[list[str], str] | None = None,
               latency_ms: float | None = None) -> QualityResult:
    """Score one answer against its quality item (no assistant needed)."""
    status_ok = answer.status == item.expected_status
    res = QualityResult(
        id=item.id, split=item.split, kind=item.kind, question=item.question,
        follow_up=bool(item.history), expected_status=item.expected_status,
        status=answer.status, status_ok=status_ok, fully_correct=status_ok,
        answer=answer.answer, standalone_question=answer.standalone_question,
        expected_docs=item.expected_docs, must_facts=item.must_facts,
        caveat_ok=bool(caveat) and answer.caveat == caveat, confidence=answer.confidence,
        notes=answer.notes, latency_ms=answer.timings_ms.get("total", latency_ms),
    )
    # Facts count only in an answer with the right status (an abstention quoting nothing
    # scores 0 however its message is worded).
    text = answer.answer if status_ok else ""
    if item.answerable:
        res.missing_facts = rp.missing_facts(item.must_facts, text)
        res.recall = rp.fact_recall(item.must_facts, text) if status_ok else 0.0
        res.fully_correct = status_ok and not res.missing_facts
        if item.expected_docs:
            docs = retrieved[0] if retrieved is not None else rp.cited_docs(answer)
            res.retrieved_docs = docs
            res.hit = any(d in item.expected_docs for d in docs[:rp.HIT_K])
    else:
        res.false_answer = answer.status == "answered"
    if item.parts and item.answerable:
        res.parts = len(item.parts)
        res.parts_covered = sum(not rp.missing_facts(part, text) for part in item.parts)
    if answer.status == "answered":
        res.sentences, res.citation_violations = rp.check_citations(answer, item.id)
        res.verbatim = rp.verbatim_sentences(answer)
    return res


def _error_result(item: QualityItem, error: str, latency_ms: float) -> QualityResult:
    return QualityResult(
        id=item.id, split=item.split, kind=item.kind, question=item.question,
        follow_up=bool(item.history), expected_status=item.expected_status, status="error",
        status_ok=False, fully_correct=False, expected_docs=item.expected_docs,
        must_facts=item.must_facts,
        missing_facts=item.must_facts if item.answerable else [],
        recall=0.0 if item.answerable else None,
        hit=False if item.answerable and item.expected_docs else None,
        parts=len(item.parts) if item.answerable else 0,
        false_answer=None if item.answerable else False,
        latency_ms=latency_ms, error=error,
    )


def score(items: list[QualityItem], assistant: Any, *, caveat: str | None = None,
          split: str | None = None, kinds: list[str] | None = None,
          progress: Callable[[int, int, QualityResult], None] | None = None) -> QualityReport:
    """Ask every quality item and score the answers.

    Args:
        items: The items to run (already filtered by split and kind).
        assistant: Anything with `ask(question, history) -> Answer` (and optionally
            `retrieve(question)`, used for hit@5 as in the gold report).
        caveat: The caveat every answer must carry (default `assistant.messages.CAVEAT`).
        split, kinds: Recorded in the report: what the items were selected by.
        progress: Called after each item with (done, total, result).
    """
    caveat = messages.CAVEAT if caveat is None else caveat
    results: list[QualityResult] = []
    for i, item in enumerate(items, start=1):
        asked = rp.ask(assistant, item.question, item.history)
        if asked.answer is None:
            res = _error_result(item, asked.error or "", asked.wall_ms)
        else:
            try:
                retrieved = (rp.retrieved_docs(assistant, asked.answer)
                             if item.answerable and item.expected_docs else None)
                res = score_item(item, asked.answer, caveat=caveat, retrieved=retrieved,
                                 latency_ms=asked.wall_ms)
            except Exception as exc:  # a failing retrieve() is the item's error too
                res = _error_result(item, f"{type(exc).__name__}: {exc}", asked.wall_ms)
        results.append(res)
        if progress is not None:
            progress(i, len(items), res)
    return build_report(results, backend=rp.backend_name(assistant), split=split,
                        kinds=kinds or [])


def rates(results: list[QualityResult]) -> Rates:
    """The quality figures of a group of results."""
    answerable = [r for r in results if r.recall is not None]
    unanswerable = [r for r in results if r.recall is None]
    sentences = sum(r.sentences for r in results)
    invalid = sum(rp.invalid_sentence_count(r.citation_violations) for r in results)
    with_parts = [r for r in results if r.parts]
    hits = [r.hit for r in answerable if r.hit is not None]
    return Rates(
        n=len(results), answerable=len(answerable), unanswerable=len(unanswerable),
        status_accuracy=rp.rate(r.status_ok for r in results),
        fully_correct=rp.rate(r.fully_correct for r in results),
        fact_recall=rp.mean(r.recall for r in answerable if r.recall is not None),
        false_answer_rate=rp.rate(bool(r.false_answer) for r in unanswerable),
        citation_validity=(1 - invalid / sentences) if sentences else None,
        verbatim_rate=(sum(r.verbatim for r in results) / sentences) if sentences else None,
        sentences=sentences,
        part_coverage=rp.mean(r.parts_covered / r.parts for r in with_parts),
        items_with_parts=len(with_parts),
        hit_at_5=rp.rate(hits),
    )


def sweep(results: list[QualityResult]) -> list[SweepPoint]:
    """Answer rate and precision if only answers with confidence >= t were given, for every
    confidence observed on an answered item (ascending: the first row is what was answered)."""
    answered = [r for r in results if r.status == "answered" and r.confidence is not None]
    points = []
    for t in sorted({r.confidence for r in answered if r.confidence is not None}):
        kept = [r for r in answered if r.confidence is not None and r.confidence >= t]
        points.append(SweepPoint(
            threshold=t, answered=len(kept), answer_rate=len(kept) / len(results),
            precision=rp.rate(r.fully_correct for r in kept)))
    return points


def build_report(results: list[QualityResult], *, backend: str = "unknown",
                 split: str | None = None, kinds: list[str] | None = None) -> QualityReport:
    """Aggregate per-item results into the report."""
    by_kind: dict[str, list[QualityResult]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    order = {k: i for i, k in enumerate(KINDS)}
    kind_stats = [KindStats(kind=k, **rates(rs).model_dump())
                  for k, rs in sorted(by_kind.items(), key=lambda kv: order.get(kv[0], 99))]
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in results:
        confusion[r.expected_status][r.status] += 1
    latencies = [r.latency_ms for r in results if r.latency_ms is not None and not r.error]
    lat_mean, lat_p50, lat_p95 = rp.latency_stats(latencies)
    return QualityReport(
        split=split, kinds=kinds or [], backend=backend, n_items=len(results),
        overall=rates(results),
        caveat_presence=rp.rate(r.caveat_ok for r in results),
        fallbacks=sum(r.status == "answered" and rp.is_fallback(r.notes) for r in results),
        latency_mean_ms=lat_mean, latency_p50_ms=lat_p50, latency_p95_ms=lat_p95,
        by_kind=kind_stats, sweep=sweep(results),
        status_confusion={k: dict(v) for k, v in confusion.items()},
        citation_violations=[v for r in results for v in r.citation_violations],
        failures=[r for r in results if r.failed],
        items=results,
    )


# ---------------------------------------------------------------------------- rendering

def _title(report: QualityReport) -> str:
    what = f"quality set, {report.split or 'all'} split"
    if report.kinds:
        what += ", kinds " + ", ".join(report.kinds)
    return what


def _goal(report: QualityReport, metric: str) -> str:
    g = next((g for g in report.goals if g.metric == metric), None)
    return g.describe() if g else "–"


def _failure_bits(r: QualityResult) -> list[str]:
    bits = []
    if not r.status_ok:
        bits.append(f"status {r.status} (expected {r.expected_status})")
    if r.missing_facts:
        bits.append("missing " + ", ".join(repr(m) for m in r.missing_facts))
    if r.citation_violations:
        bits.append(f"{len(r.citation_violations)} citation violation(s)")
    if not r.caveat_ok and not r.error:
        bits.append("caveat")
    if r.error:
        bits.append(r.error)
    return bits


def format_summary(report: QualityReport) -> str:
    """A short plain-text summary for the terminal."""
    o = report.overall
    lines = [
        f"{_title(report)}: {report.n_items} items ({o.answerable} answerable, "
        f"{o.unanswerable} not); backend {report.backend}",
        f"status accuracy:     {rp.pct(o.status_accuracy)}  (goal {_goal(report, 'status_accuracy')})",
        f"fully correct:       {rp.pct(o.fully_correct)}  (goal {_goal(report, 'fully_correct')})",
        f"fact recall:         {rp.pct(o.fact_recall)}",
        f"false answers:       {rp.pct(o.false_answer_rate)} of unanswerable  "
        f"(goal {_goal(report, 'false_answer_rate')})",
        f"citation validity:   {rp.pct(o.citation_validity)}  ({o.sentences} sentences; goal "
        f"{_goal(report, 'citation_validity')}); verbatim {rp.pct(o.verbatim_rate)}",
    ]
    if o.items_with_parts:
        lines.append(f"part coverage:       {rp.pct(o.part_coverage)}  "
                     f"({o.items_with_parts} multi-part items)")
    lines.append("by kind:             " + ", ".join(
        f"{k.kind} {rp.pct(k.fully_correct)}" for k in report.by_kind) + " fully correct")
    if report.failures:
        lines.append(f"not fully correct ({len(report.failures)}):")
        lines += [f"  {r.id} [{r.kind}]: " + "; ".join(_failure_bits(r)) for r in report.failures]
    missed = report.missed_goals()
    lines.append("goals: all met" if not missed else "goals missed: " + "; ".join(missed))
    return "\n".join(lines)


def _shown_sweep(points: list[SweepPoint]) -> list[SweepPoint]:
    if len(points) <= SWEEP_ROWS_SHOWN:
        return points
    step = (len(points) - 1) / (SWEEP_ROWS_SHOWN - 1)
    return [points[round(i * step)] for i in range(SWEEP_ROWS_SHOWN)]


def format_markdown(report: QualityReport) -> str:
    """The full report as Markdown: goals, per-kind table, abstention sweep, failures."""
    o = report.overall
    missed = report.missed_goals()
    out = [
        "# psyqa evaluation: quality",
        "",
        f"{_title(report)}: {report.n_items} items, backend `{report.backend}`. "
        + ("All goals met." if not missed else "Goals missed: " + "; ".join(missed) + "."),
        "",
        "| metric | value | goal |",
        "|---|---|---|",
        f"| status accuracy | {rp.pct(o.status_accuracy)} | {_goal(report, 'status_accuracy')} |",
        f"| fully correct (status right and every must-fact present) | "
        f"{rp.pct(o.fully_correct)} | {_goal(report, 'fully_correct')} |",
        f"| fact recall (answerable) | {rp.pct(o.fact_recall)} | – |",
        f"| false answers (unanswerable items answered) | {rp.pct(o.false_answer_rate)} | "
        f"{_goal(report, 'false_answer_rate')} |",
        f"| citation validity ({o.sentences} sentences) | {rp.pct(o.citation_validity)} | "
        f"{_goal(report, 'citation_validity')} |",
        f"| verbatim sentences | {rp.pct(o.verbatim_rate)} | – |",
        f"| part coverage ({o.items_with_parts} multi-part items) | {rp.pct(o.part_coverage)} | – |",
        f"| retrieval hit@{rp.HIT_K} (answerable) | {rp.pct(o.hit_at_5)} | – |",
        f"| caveat presence | {rp.pct(report.caveat_presence)} | – |",
    ]
    if report.backend != "extractive":
        out.append(f"| language-model answers replaced by the extractive one | "
                   f"{report.fallbacks} | – |")
    out += [
        f"| latency mean / p50 / p95 | {rp.ms(report.latency_mean_ms)} / "
        f"{rp.ms(report.latency_p50_ms)} / {rp.ms(report.latency_p95_ms)} | – |",
        "",
        "## By kind",
        "",
        "| kind | items | status acc. | fully correct | fact recall | false answers | "
        "citation validity | part coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in report.by_kind:
        out.append(f"| {k.kind} | {k.n} | {rp.pct(k.status_accuracy)} | {rp.pct(k.fully_correct)} | "
                   f"{rp.pct(k.fact_recall)} | {rp.pct(k.false_answer_rate)} | "
                   f"{rp.pct(k.citation_validity)} | {rp.pct(k.part_coverage)} |")
    out += ["", "## Answer rate against precision over the abstention threshold", ""]
    if report.sweep:
        out += ["An answer counts as given when its status is `answered` and its confidence is at "
                "least the threshold; precision is the share of given answers that are fully "
                "correct." + (f" {SWEEP_ROWS_SHOWN} of {len(report.sweep)} thresholds shown; "
                              "the JSON report has all." if len(report.sweep) > SWEEP_ROWS_SHOWN
                              else ""),
                "", "| threshold | answered | answer rate | precision |", "|---|---|---|---|"]
        for p in _shown_sweep(report.sweep):
            out.append(f"| {p.threshold:.3f} | {p.answered} | {rp.pct(p.answer_rate)} | "
                       f"{rp.pct(p.precision)} |")
    else:
        out.append("No answered item carried a confidence.")
    statuses = ["answered", "no_evidence", "declined", "crisis", "error"]
    out += ["", "## Status (rows: expected, columns: returned)", "",
            "| expected | " + " | ".join(statuses) + " |", "|---|" + "---|" * len(statuses)]
    for exp in ("answered", "no_evidence"):
        row = report.status_confusion.get(exp, {})
        out.append(f"| {exp} | " + " | ".join(str(row.get(s, 0)) for s in statuses) + " |")
    out += rp.violations_markdown(report.citation_violations)
    if report.failures:
        out += ["", "## Not fully correct", "",
                "| id | kind | question | problems | confidence | answer |",
                "|---|---|---|---|---|---|"]
        for r in report.failures:
            conf = "–" if r.confidence is None else f"{r.confidence:.3f}"
            out.append(f"| {r.id} | {r.kind} | {rp.md_cell(r.question)} | "
                       f"{rp.md_cell('; '.join(_failure_bits(r)))} | {conf} | "
                       f"{rp.md_cell(rp.excerpt(r.answer, 160))} |")
    return "\n".join(out) + "\n"
