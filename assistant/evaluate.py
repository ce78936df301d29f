"""`psyqa eval`: run the hand-written gold question set and score the assistant against it.

The gold set (eval/gold.jsonl, described in eval/README.md) holds questions written from the
corpus by hand, each with the status the assistant must return, the documents that hold the
answer and short fact strings a good answer contains. This module loads it, asks every
question through the public `Assistant.ask` interface, and measures:

* retrieval hit@5: for answerable items, whether any expected document is among the documents
  of the top 5 passages that `assistant.retrieve(standalone_question)` returns (the cited
  documents when the assistant has no `retrieve`);
* fact recall: for answerable items, the fraction of fact strings found in the answer text
  (after normalising unicode dashes and minus signs to '-', whitespace and case);
* status accuracy: over all items;
* citation validity: every sentence of every answered answer, with its [n] markers removed,
  must occur verbatim in the passage of each citation it marks (whitespace-normalised);
* caveat presence: every answer carries `assistant.messages.CAVEAT`, non-empty;
* latency: mean, p50 and p95 of `timings_ms["total"]` (wall-clock time when absent).

Nothing here needs a model: `score` takes any object with an `ask(question, history)` method,
so the scoring functions are unit-tested on hand-built answers (tests/test_gold.py).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from assistant.models import Answer, Turn

Status = Literal["answered", "no_evidence", "declined", "crisis"]

# Goals; `psyqa eval` exits non-zero when any is missed.
GOALS: dict[str, float] = {
    "status_accuracy": 0.95,
    "fact_recall": 0.90,
    "citation_validity": 1.0,
    "caveat_presence": 1.0,
}
HIT_K = 5
DEFAULT_GOLD = Path("eval/gold.jsonl")


# ----------------------------------------------------------------------------- gold items

class GoldItem(BaseModel):
    """One hand-written question with what a correct response looks like."""

    model_config = {"extra": "forbid"}

    id: str
    question: str
    history: list[Turn] = Field(default_factory=list)
    expected_status: Status
    expected_docs: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    topic: str

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question is empty")
        return v

    @property
    def answerable(self) -> bool:
        return self.expected_status == "answered"


def load_gold(path: str | Path) -> list[GoldItem]:
    """Read a JSONL gold file (one object a line; blank lines and '#' lines are skipped).

    Raises:
        ValueError: naming the line, when a line is not valid JSON or not a valid item, or
            when two items share an id.
    """
    path = Path(path)
    items: list[GoldItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = GoldItem.model_validate(json.loads(line))
        except Exception as exc:  # json and pydantic errors: report the line either way
            raise ValueError(f"{path}:{lineno}: {exc}") from exc
        if item.id in seen:
            raise ValueError(f"{path}:{lineno}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


# ------------------------------------------------------------------------- normalisation

# Hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar, minus sign,
# small/fullwidth hyphen-minus: all compare as '-'.
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"})
_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def normalize_fact_text(text: str) -> str:
    """The form in which facts are compared: NFKC, dashes/minus to '-', one space, casefold."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES)
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


# --------------------------------------------------------------------- citation validity

_MARKER_RUN = re.compile(r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+")
_LIST_PREFIX = re.compile(r"^(?:[-*\u2022]\s+|\d+[.)]\s+)")


class CitedSentence(BaseModel):
    text: str
    markers: list[int]


class CitationViolation(BaseModel):
    item_id: str = ""
    sentence: str
    n: int | None = None
    reason: Literal["not_in_passage", "unknown_citation", "uncited"]


def _ws(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def split_cited_sentences(answer_text: str) -> list[CitedSentence]:
    """Split an answer into sentences, each with the [n] markers that follow it.

    The answer format puts markers after each sentence ("First. [1] Second. [2][3]"), so a
    sentence is the text between one run of markers and the next. Text after the last
    marker run, if any, is returned with no markers. Leading list bullets are dropped.
    """
    out: list[CitedSentence] = []
    pos = 0
    for m in _MARKER_RUN.finditer(answer_text):
        text = answer_text[pos:m.start()]
        pos = m.end()
        numbers = [int(n) for n in re.findall(r"\d+", m.group())]
        _append_sentence(out, text, numbers)
    _append_sentence(out, answer_text[pos:], [])
    return out


def _append_sentence(out: list[CitedSentence], text: str, markers: list[int]) -> None:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return
    # Lines before the last one (a heading, a preamble) are uncited text of their own.
    for ln in lines[:-1]:
        out.append(CitedSentence(text=_LIST_PREFIX.sub("", ln).strip(), markers=[]))
    last = _LIST_PREFIX.sub("", lines[-1]).strip()
    if last:
        out.append(CitedSentence(text=last, markers=markers))


def check_citations(answer: Answer, item_id: str = "") -> tuple[int, list[CitationViolation]]:
    """Check that each sentence occurs verbatim in every passage it cites.

    Returns:
        (number of sentences checked, violations). A sentence fails when it carries no
        marker ("uncited"), when a marker names no citation ("unknown_citation"), or when its
        text (markers removed, whitespace normalised) is not in the cited passage
        ("not_in_passage"). A sentence counts as valid only with no violation.
    """
    by_n = {c.n: c for c in answer.citations}
    sentences = split_cited_sentences(answer.answer)
    violations: list[CitationViolation] = []
    for s in sentences:
        if not s.markers:
            violations.append(CitationViolation(item_id=item_id, sentence=s.text, reason="uncited"))
            continue
        needle = _ws(s.text)
        for n in dict.fromkeys(s.markers):
            cit = by_n.get(n)
            if cit is None:
                violations.append(CitationViolation(item_id=item_id, sentence=s.text, n=n,
                                                    reason="unknown_citation"))
            elif needle not in _ws(cit.passage):
                violations.append(CitationViolation(item_id=item_id, sentence=s.text, n=n,
                                                    reason="not_in_passage"))
    return len(sentences), violations


def invalid_sentence_count(violations: list[CitationViolation]) -> int:
    return len({v.sentence for v in violations})


# ------------------------------------------------------------------------------ results

class ItemResult(BaseModel):
    id: str
    topic: str
    question: str
    follow_up: bool
    expected_status: str
    status: str
    status_ok: bool
    answer: str = ""
    expected_docs: list[str] = Field(default_factory=list)
    retrieved_docs: list[str] = Field(default_factory=list)
    retrieval_source: Literal["retrieve", "citations", "none"] = "none"
    hit: bool | None = None  # None: not an answerable item
    facts: list[str] = Field(default_factory=list)
    missing_facts: list[str] = Field(default_factory=list)
    recall: float | None = None  # None: not an answerable item
    sentences: int = 0
    citation_violations: list[CitationViolation] = Field(default_factory=list)
    caveat_ok: bool = False
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
    n_items: int
    n_answerable: int
    hit_at_5: float | None
    fact_recall: float | None
    status_accuracy: float
    citation_validity: float | None
    sentences_checked: int
    caveat_presence: float
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


# ------------------------------------------------------------------------------ scoring

def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _retrieved_docs(assistant: Any, answer: Answer) -> tuple[list[str], str]:
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
    docs = [c.doc_id for c in answer.citations]
    return list(dict.fromkeys(docs))[:HIT_K], "citations"


def score_item(item: GoldItem, answer: Answer, *, caveat: str,
               retrieved: tuple[list[str], str] | None = None,
               latency_ms: float | None = None) -> ItemResult:
    """Score one answer against its gold item (no assistant needed)."""
    res = ItemResult(
        id=item.id, topic=item.topic, question=item.question, follow_up=bool(item.history),
        expected_status=item.expected_status, status=answer.status,
        status_ok=answer.status == item.expected_status, answer=answer.answer,
        expected_docs=item.expected_docs, facts=item.facts,
        caveat_ok=bool(caveat) and answer.caveat == caveat,
        latency_ms=answer.timings_ms.get("total", latency_ms),
    )
    if item.answerable:
        docs, source = retrieved if retrieved is not None else (
            list(dict.fromkeys(c.doc_id for c in answer.citations))[:HIT_K], "citations")
        res.retrieved_docs, res.retrieval_source = docs, source
        res.hit = any(d in item.expected_docs for d in docs[:HIT_K])
        res.missing_facts = missing_facts(item.facts, answer.answer)
        res.recall = fact_recall(item.facts, answer.answer)
    if answer.status == "answered":
        res.sentences, res.citation_violations = check_citations(answer, item.id)
    return res


def _error_result(item: GoldItem, exc: BaseException, latency_ms: float) -> ItemResult:
    return ItemResult(
        id=item.id, topic=item.topic, question=item.question, follow_up=bool(item.history),
        expected_status=item.expected_status, status="error", status_ok=False,
        expected_docs=item.expected_docs, facts=item.facts,
        hit=False if item.answerable else None,
        missing_facts=list(item.facts) if item.answerable else [],
        recall=0.0 if item.answerable else None, caveat_ok=False, latency_ms=latency_ms,
        error=f"{type(exc).__name__}: {exc}",
    )


def score(items: list[GoldItem], assistant: Any, *, caveat: str | None = None,
          progress: Callable[[int, int, ItemResult], None] | None = None) -> EvalReport:
    """Ask every gold question and score the answers.

    Args:
        items: The gold items (see `load_gold`).
        assistant: Anything with `ask(question, history) -> Answer`; when it also has
            `retrieve(question)` returning hits with `.chunk.doc_id`, hit@5 uses that,
            otherwise the cited documents.
        caveat: The caveat every answer must carry (default `assistant.messages.CAVEAT`).
        progress: Called after each item with (done, total, result).
    """
    if caveat is None:
        from assistant.messages import CAVEAT

        caveat = CAVEAT
    results: list[ItemResult] = []
    for i, item in enumerate(items, start=1):
        t0 = time.perf_counter()
        try:
            answer = assistant.ask(item.question, list(item.history))
            wall = (time.perf_counter() - t0) * 1000
            retrieved = _retrieved_docs(assistant, answer) if item.answerable else None
            res = score_item(item, answer, caveat=caveat, retrieved=retrieved, latency_ms=wall)
        except Exception as exc:  # one broken item must not hide the rest of the report
            res = _error_result(item, exc, (time.perf_counter() - t0) * 1000)
        results.append(res)
        if progress is not None:
            progress(i, len(items), res)
    return build_report(results)


def build_report(results: list[ItemResult]) -> EvalReport:
    """Aggregate per-item results into the report."""
    answerable = [r for r in results if r.recall is not None]
    hits = [1.0 if r.hit else 0.0 for r in answerable]
    sentences = sum(r.sentences for r in results)
    violations = [v for r in results for v in r.citation_violations]
    invalid = sum(invalid_sentence_count(r.citation_violations) for r in results)
    latencies = [r.latency_ms for r in results if r.latency_ms is not None and not r.error]
    sources = sorted({r.retrieval_source for r in answerable} - {"none"})

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
            hit_at_5=_mean([1.0 if r.hit else 0.0 for r in ans]),
            fact_recall=_mean([r.recall for r in ans if r.recall is not None]),
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
            error=r.error, answer_excerpt=_excerpt(r.answer),
        )
        for r in results if r.failed
    ]
    return EvalReport(
        n_items=len(results),
        n_answerable=len(answerable),
        hit_at_5=_mean(hits),
        fact_recall=_mean([r.recall for r in answerable if r.recall is not None]),
        status_accuracy=(sum(r.status_ok for r in results) / len(results)) if results else 0.0,
        citation_validity=(1 - invalid / sentences) if sentences else None,
        sentences_checked=sentences,
        caveat_presence=(sum(r.caveat_ok for r in results) / len(results)) if results else 0.0,
        latency_mean_ms=_mean(latencies),
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        retrieval_source="+".join(sources) or "none",
        by_topic=topics,
        status_confusion={k: dict(v) for k, v in confusion.items()},
        citation_violations=violations,
        failures=failures,
        items=results,
    )


def _excerpt(text: str, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------- rendering

def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def format_summary(report: EvalReport) -> str:
    """A short plain-text summary for the terminal."""
    lines = [
        f"gold items: {report.n_items} ({report.n_answerable} answerable)",
        f"retrieval hit@{HIT_K}:     {_pct(report.hit_at_5)}  (from {report.retrieval_source})",
        f"fact recall:         {_pct(report.fact_recall)}  (goal {_pct(GOALS['fact_recall'])})",
        f"status accuracy:     {_pct(report.status_accuracy)}  "
        f"(goal {_pct(GOALS['status_accuracy'])})",
        f"citation validity:   {_pct(report.citation_validity)}  "
        f"({report.sentences_checked} sentences; goal 100%)",
        f"caveat presence:     {_pct(report.caveat_presence)}  (goal 100%)",
        f"latency:             mean {_ms(report.latency_mean_ms)}, p50 "
        f"{_ms(report.latency_p50_ms)}, p95 {_ms(report.latency_p95_ms)}",
    ]
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


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(report: EvalReport) -> str:
    """The full report as Markdown: metrics, per-topic table, status confusion, failures."""
    missed = report.missed_goals()
    out = [
        "# psyqa evaluation",
        "",
        f"{report.n_items} gold items, {report.n_answerable} answerable. "
        + ("All goals met." if not missed else "Goals missed: " + "; ".join(missed) + "."),
        "",
        "| metric | value | goal |",
        "|---|---|---|",
        f"| retrieval hit@{HIT_K} (answerable; from {report.retrieval_source}) | "
        f"{_pct(report.hit_at_5)} | – |",
        f"| fact recall (answerable) | {_pct(report.fact_recall)} | "
        f"≥ {_pct(GOALS['fact_recall'])} |",
        f"| status accuracy (all) | {_pct(report.status_accuracy)} | "
        f"≥ {_pct(GOALS['status_accuracy'])} |",
        f"| citation validity ({report.sentences_checked} sentences) | "
        f"{_pct(report.citation_validity)} | 100% |",
        f"| caveat presence (all) | {_pct(report.caveat_presence)} | 100% |",
        f"| latency mean / p50 / p95 | {_ms(report.latency_mean_ms)} / "
        f"{_ms(report.latency_p50_ms)} / {_ms(report.latency_p95_ms)} | – |",
        "",
        "## By topic",
        "",
        "| topic | items | status acc. | answerable | hit@5 | fact recall |",
        "|---|---|---|---|---|---|",
    ]
    for t in report.by_topic:
        out.append(f"| {t.topic} | {t.n} | {_pct(t.status_accuracy)} | {t.answerable} | "
                   f"{_pct(t.hit_at_5)} | {_pct(t.fact_recall)} |")
    statuses = ["answered", "no_evidence", "declined", "crisis", "error"]
    out += ["", "## Status (rows: expected, columns: returned)", "",
            "| expected | " + " | ".join(statuses) + " |",
            "|---|" + "---|" * len(statuses)]
    for exp in statuses[:-1]:
        row = report.status_confusion.get(exp, {})
        out.append(f"| {exp} | " + " | ".join(str(row.get(s, 0)) for s in statuses) + " |")
    if report.citation_violations:
        out += ["", "## Citation violations", "", "| item | marker | reason | sentence |",
                "|---|---|---|---|"]
        for v in report.citation_violations:
            marker = "" if v.n is None else f"[{v.n}]"
            out.append(f"| {v.item_id} | {marker} | {v.reason} | {_md_cell(_excerpt(v.sentence, 160))} |")
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
            answer = _excerpt(f.answer_excerpt, 160) + (" — " + "; ".join(extra) if extra else "")
            out.append(
                f"| {f.id} | {_md_cell(f.question)} | {f.expected_status} | {f.status} | "
                f"{_md_cell(', '.join(f.missing_facts))} | {_md_cell(retrieval)} | "
                f"{_md_cell(answer)} |"
            )
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    """Add `psyqa eval` to the psyqa command line."""
    p = subparsers.add_parser("eval", help="score the assistant on the gold question set")
    p.add_argument("--gold", type=Path, default=DEFAULT_GOLD,
                   help="gold JSONL file (default: eval/gold.jsonl)")
    p.add_argument("--topic", action="append", default=None,
                   help="only items of this topic (repeatable)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    p.set_defaults(func=cmd_eval)


def _resolve_gold(path: Path) -> Path:
    if path.exists() or path.is_absolute():
        return path
    fallback = Path(__file__).resolve().parents[1] / path
    return fallback if fallback.exists() else path


def cmd_eval(args, settings=None) -> int:
    """Run the gold set; 0 when every goal is met, 1 otherwise."""
    from assistant.assistant import Assistant
    from assistant.settings import Settings

    items = load_gold(_resolve_gold(args.gold))
    if getattr(args, "topic", None):
        items = [i for i in items if i.topic in set(args.topic)]
    assistant = Assistant.from_settings(settings if settings is not None else Settings())

    def progress(done: int, total: int, res: ItemResult) -> None:
        mark = "." if not res.failed else "F"
        print(mark, end="\n" if done == total or done % 50 == 0 else "", file=sys.stderr,
              flush=True)

    report = score(items, assistant, progress=None if args.json else progress)
    if args.json:
        print(report.model_dump_json(indent=2))
    elif args.markdown:
        print(format_markdown(report))
    else:
        print(format_summary(report))
    return 0 if report.passed else 1
