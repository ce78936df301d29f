"""What the chat app (and `psyqa status`) shows, as pure functions: dates, filters, follow-ups, ingest state.

app.py draws widgets; the wording and the decisions behind them live here so they can be tested
without a browser: human dates, the filter options the index holds (with document counts), the
active filters as chips, the note when filters leave no evidence, the caption of what a follow-up
carried, and the state of the last ingest run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

from assistant.lexicon import DISPLAY_NAMES
from assistant.models import Answer
from assistant.transcript import answer_markdown

# The filterable fields (assistant.index.FACETS) and their labels in the app.
FIELDS: dict[str, str] = {"substances": "Substance", "conditions": "Condition",
                          "source_types": "Source type"}


# ----------------------------------------------------------------------------- dates

def now() -> str:
    """The current UTC time as ISO 8601 (seconds), as the app stores it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def human_time(iso: str | None) -> str:
    """An ISO timestamp as people write it: "1 Dec 2026, 23:13 UTC" ("unknown" for none)."""
    if not iso:
        return "unknown"
    try:
        t = dt.datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    t = t.astimezone(dt.timezone.utc)
    return f"{t.day} {t:%b %Y, %H:%M} UTC"


# ----------------------------------------------------------------------------- filters

def value_label(field: str, value: str) -> str:
    """How a filter value is shown: "MDMA", "treatment-resistant depression", "summary"."""
    return DISPLAY_NAMES.get(value, value) if field != "source_types" else value


def options(facets: Mapping[str, Mapping[str, int]], field: str) -> list[str]:
    """The values of `field` that the index holds (at least one document), by label."""
    counts = facets.get(field) or {}
    return sorted((v for v, n in counts.items() if n > 0), key=lambda v: value_label(field, v).lower())


def option_label(facets: Mapping[str, Mapping[str, int]], field: str, value: str) -> str:
    """"ketamine (6)": the value and how many indexed documents carry it."""
    n = (facets.get(field) or {}).get(value, 0)
    return f"{value_label(field, value)} ({n})"


def active(filters: Mapping[str, Sequence[str]]) -> list[tuple[str, str, str]]:
    """Each active filter value as (field, value, chip label "Substance: ketamine")."""
    return [(f, v, f"{FIELDS[f]}: {value_label(f, v)}") for f in FIELDS for v in filters.get(f) or ()]


def summary(filters: Mapping[str, Sequence[str]]) -> str:
    """"Substance: ketamine, esketamine; Source type: review" ("" without filters)."""
    return "; ".join(f"{FIELDS[f]}: {', '.join(value_label(f, v) for v in filters[f])}"
                     for f in FIELDS if filters.get(f))


def no_match_note(filters: Mapping[str, Sequence[str]]) -> str:
    """What to say when the filters, not the corpus, left the question without evidence."""
    n = sum(len(filters.get(f) or ()) for f in FIELDS)
    which = "that filter" if n == 1 else "these filters"
    return f"No passage matches {summary(filters)}; without {which} the sources do cover this."


def export_meta(status: Mapping, filters: Mapping[str, Sequence[str]]) -> dict:
    """What a downloaded conversation records about itself: when, which corpus version, which
    filters were on when it was exported."""
    return {"exported_at": now(), "documents": status.get("documents"),
            "corpus_hash": status.get("corpus_hash"), "filters": dict(filters)}


def markdown_pieces(stream, final: list) -> Iterator[str]:
    """`Assistant.ask_stream` as the app streams it: each text piece as safe Markdown; the final
    Answer is appended to `final`."""
    for part in stream:
        if isinstance(part, Answer):
            final.append(part)
        else:
            yield answer_markdown(part)


class Streamed:
    """An answer streamed into one element: `run` shows the Markdown so far after each piece and
    returns the final Answer; `text` is what was shown."""

    def __init__(self) -> None:
        self.text = ""

    def run(self, stream, show) -> Answer:
        final: list[Answer] = []
        for piece in markdown_pieces(stream, final):
            self.text += piece
            show(self.text)
        return final[-1]


def filter_note(assistant, question: str, history: list, filters, ans: Answer) -> str | None:
    """The note under a filtered no-evidence answer that the sources cover without the filters."""
    if ans.status != "no_evidence" or not excluded_by_filters(assistant, question, history, filters):
        return None
    return no_match_note(filters.model_dump())


def excluded_by_filters(assistant, question: str, history: list, filters) -> bool:
    """Whether the filters, not the corpus, are why `question` found no evidence: asked again
    without them, it is answered. Called only after a filtered no-evidence answer."""
    if filters is None or filters.empty():
        return False
    return assistant.ask(question, history, None).status == "answered"


# ----------------------------------------------------------------------------- follow-ups

def history_turns(messages: Sequence[Mapping]) -> list[dict]:
    """The chat's messages as the turns `Assistant.ask` reads: questions, and the text of each
    answer (an error shown instead of an answer is not a turn)."""
    turns = []
    for m in messages:
        if m.get("role") == "user":
            turns.append({"role": "user", "content": m.get("content", "")})
        elif m.get("answer") is not None:
            turns.append({"role": "assistant", "content": m["answer"].answer})
    return turns


def had_crisis(messages: Sequence[Mapping]) -> bool:
    """Whether any answer of the chat was the crisis response: from then on the app keeps the
    crisis resources on screen, whatever is asked next, until a new chat."""
    return any(m.get("answer") is not None and m["answer"].status == "crisis" for m in messages)


def interpretation(ans: Answer, typed: str) -> str | None:
    """The caption under an answer whose question was read with more than was typed:
    "Interpreted as: and the placebo group? (about MAPP2 and MDMA for PTSD) · carried from
    earlier questions: MAPP2, MDMA, PTSD" (plain text: the app escapes it)."""
    if not ans.standalone_question or not typed or ans.standalone_question.strip() == typed.strip():
        return None
    text = f"Interpreted as: {ans.standalone_question}"
    if ans.carried:
        text += f" · carried from earlier questions: {', '.join(ans.carried)}"
    if ans.filter_topics:
        text += f" · from the filters: {', '.join(ans.filter_topics)}"
    return text


# ----------------------------------------------------------------------------- ingest state

def ingest_state(status: Mapping) -> dict:
    """The last ingest run as the sidebar and `psyqa status` show it.

    Returns {"ran": "1 Dec 2026, 23:13 UTC" or None, "stopped": error or None, "failed": [{path,
    problem, fix, serving_previous, unfixed}], "pending": files changed since that ingest apart
    from failures nobody fixed yet (running ingest again helps only for these)}."""
    run = status.get("last_run") or {}
    unfixed = set(status.get("unfixed") or ())
    failed = [{"path": f.get("path", ""), "problem": f.get("problem") or f.get("error", ""),
               "fix": f.get("fix") or "", "serving_previous": bool(f.get("serving_previous")),
               "unfixed": f.get("path") in unfixed} for f in run.get("failed") or ()]
    drift = status.get("drift") or {}
    pending = sorted({p for items in drift.values() for p in items} - unfixed)
    return {"ran": human_time(run["finished"]) if run.get("finished") else None,
            "stopped": run.get("stopped"), "failed": failed, "pending": pending}


def ingest_notes(status: Mapping) -> dict:
    """The sidebar's corpus lines (plain text: the app escapes them): size and date, a stopped
    run, the failed files with what is served and the fix, and files waiting for an ingest."""
    state = ingest_state(status)
    n, waiting = len(state["failed"]), len(state["pending"])
    return {
        "corpus": f"Corpus: {status.get('documents', 0)} documents, {status.get('chunks', 0)} chunks\n"
                  f"Last indexed: {human_time(status.get('last_ingest'))}",
        "stopped": (f"The last ingest ({state['ran']}) stopped before it finished: {state['stopped']} "
                    "The index is as it was before.") if state["stopped"] else None,
        "failed_title": f"Last ingest ({state['ran']}): {n} file{'s' * (n != 1)} failed",
        "failed": [failure_line(f) for f in state["failed"]],
        "pending": (f"{waiting} corpus file{'s' * (waiting != 1)} changed since the last indexing: "
                    "run `psyqa ingest`.") if waiting else None,
    }


def unexpected(exc: BaseException, where: str) -> str:
    """The message for an error nobody planned for (the details go to the app's log)."""
    return (f"Something went wrong while {where} ({type(exc).__name__}). The details are in the "
            "terminal log of the app; please report them.")


def failure_line(f: Mapping) -> str:
    """One failed file: what readers get now, why it failed and the fix."""
    served = ("its previous version is still being served" if f["serving_previous"]
              else "it is not in the index")
    text = f"{f['path']}: {served}. Why: {f['problem']}."
    if f.get("fix"):
        text += f" Fix: {f['fix']}, then run `psyqa ingest`."
    return text


def ingest_lines(status: Mapping) -> list[str]:
    """`ingest_state` as plain lines (the CLI's `psyqa status`)."""
    state = ingest_state(status)
    lines = []
    if state["ran"]:
        n = len(state["failed"])
        outcome = (f"stopped: {state['stopped']}" if state["stopped"]
                   else f"{n} file{'s' if n != 1 else ''} failed" if n else "every file indexed")
        lines.append(f"last ingest run: {state['ran']} ({outcome})")
    lines += ["  " + failure_line(f) for f in state["failed"]]
    return lines


# ------------------------------------------------------------------ a turn of the chat

def new_turn(question: str, status: Mapping, filters: Mapping[str, Sequence[str]]) -> dict:
    """The record of an assistant turn before it is answered (what the export and feedback read)."""
    return {"role": "assistant", "question": question, "corpus_hash": status.get("corpus_hash"),
            "asked_at": now(), "filters": dict(filters)}


def answer_turn(msg: dict, produce, note) -> None:
    """Fill `msg` with `produce()`'s Answer and `note(answer)`'s filter note, or with the error to
    show instead: a PsyqaError's own message, a one-line note (and a log entry) for anything else."""
    import logging

    from assistant.errors import PsyqaError

    try:
        msg["answer"] = produce()
        msg["filter_note"] = note(msg["answer"])
    except PsyqaError as exc:
        msg["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - the edge: never show a traceback
        logging.getLogger("psyqa.app").error("unexpected error while answering", exc_info=exc)
        msg["error"] = unexpected(exc, "answering")


def index_problem(status: Mapping, auto_index: bool) -> str | None:
    """What stops the chat from opening an index (a damaged store, none and no auto-indexing), or
    None: the chat opens, indexing corpus/ first when there is no index yet."""
    if status.get("damaged"):
        return status["damaged"]
    if not status["indexed"] and not auto_index:
        return (f"No index yet ({status['store']}). Run `psyqa ingest` in the project folder (or "
                "`make run`), then reload this page.")
    return None


def env_key(environ: Mapping[str, str]) -> tuple:
    """The PSYQA_* settings of an environment: the app builds one Assistant per distinct key."""
    return tuple(sorted((k, v) for k, v in environ.items() if k.startswith("PSYQA_")))


def indexed_label(report) -> str:
    """What a first-start index run did, in one line (an ingest report)."""
    return (f"Indexed {report.documents_total} documents ({report.chunks_total} chunks) "
            f"in {report.seconds:.0f} s")


def rate(db, msg: dict, rating: int, comment: str, evidence_wrong: bool) -> str:
    """Save a rating of the answer in `msg` (1 helpful, -1 not) and record it on the turn;
    returns the thanks line."""
    from assistant import feedback

    feedback.save_for(db, msg["answer"], msg.get("question", ""), msg.get("corpus_hash"),
                      rating=rating, comment=comment, evidence_wrong=evidence_wrong)
    msg["feedback"] = "helpful" if rating > 0 else "not helpful"
    return thanks(msg)


def thanks(msg: Mapping) -> str:
    return f"Thanks, your feedback was saved ({msg['feedback']})."


# Turns the chat fragment draws before a full run folds them into the history (its runs stay short).
LIVE_TURNS = 3


def full_run_due(messages: Sequence[Mapping], live_from: int) -> bool:
    """After a question, whether the page needs a full run: to fold the turns the chat fragment
    drew into the history (so its runs stay short), or because the first crisis answer of the chat
    came, whose resources the sidebar keeps (a full run draws the sidebar)."""
    return (len(messages) - live_from >= 2 * LIVE_TURNS
            or (had_crisis(messages) and not had_crisis(messages[:live_from])))

