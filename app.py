"""psyqa chat app (Streamlit). UI only: answers, retrieval and storage live in assistant/ and ingest/.

Corpus text is always shown as escaped Markdown (assistant.transcript); nothing is rendered as HTML.
"""

from __future__ import annotations

import logging
import os
import threading
import typing

import streamlit as st

from assistant import feedback, messages, transcript
from assistant.errors import PsyqaError
from assistant.lexicon import CONDITIONS, DISPLAY_NAMES, SUBSTANCES
from assistant.models import Answer, SourceType
from assistant.settings import Settings, load_settings

log = logging.getLogger("psyqa.app")
esc = transcript.escape_markdown

STATUS_ICONS = {"no_evidence": "🔎", "declined": "ℹ️", "crisis": "🆘"}


# ------------------------------------------------------------------ heavy objects, built once

def _env_key() -> tuple:
    """The PSYQA_* environment: one Settings/Assistant per distinct configuration."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PSYQA_")))


@st.cache_resource(show_spinner=False)
def get_settings(env_key: tuple) -> Settings:
    return load_settings()


@st.cache_resource(show_spinner="Loading the embedding model and index…")
def get_assistant(env_key: tuple):
    from assistant.assistant import Assistant

    return Assistant.from_settings(get_settings(env_key))


@st.cache_resource(show_spinner=False)
def warm_up(env_key: tuple) -> threading.Thread:
    """Load the model and BM25 in the background, once, after the first page is drawn, so the
    first question does not pay for them (encodes and BM25 loads are serialised by locks)."""
    assistant = get_assistant(env_key)

    def run() -> None:
        try:
            assistant.retrieve("warm up")
        except Exception as exc:  # noqa: BLE001 - e.g. no index yet: the page says so
            log.info("warm-up skipped: %s", exc)

    thread = threading.Thread(target=run, daemon=True, name="psyqa-warm-up")
    thread.start()
    return thread


@st.cache_data(ttl=30, show_spinner=False)
def get_status(env_key: tuple) -> dict:
    from ingest.status import index_status

    return index_status(get_settings(env_key))


def show_unexpected(exc: BaseException, where: str) -> None:
    log.error("unexpected error while %s", where, exc_info=exc)
    st.error(f"Something went wrong while {where} ({type(exc).__name__}). The details are in the "
             "terminal log of the app; please report them.", icon="🛑")


# ------------------------------------------------------------------ first start: index corpus/

def index_corpus(settings: Settings, key: tuple) -> None:
    from ingest.pipeline import run

    with st.status(f"Indexing {settings.corpus_dir}/ for the first time…", expanded=True) as box:
        bar = st.progress(0.0, text="starting")

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(1.0, done / total) if total else 0.0, text=f"{stage}: {done}/{total}")

        report = run(None, settings, progress=progress, embedder=get_assistant(key).services.embedder)
        for f in report.failed:
            st.warning(f"Not indexed: {f['path']}: {f['error']}")
        box.update(label=f"Indexed {report.documents_total} documents ({report.chunks_total} chunks) "
                   f"in {report.seconds:.0f} s", state="complete", expanded=False)
    get_status.clear()


def ensure_index(key: tuple) -> dict | None:
    """The index status; indexes corpus/ on a first start. None (with a message shown) on errors."""
    try:
        status = get_status(key)
        if not status["indexed"]:
            if not st.session_state.get("auto_index", True):
                st.error(f"No index yet ({status['store']}). Run `psyqa ingest` in the project "
                         "folder (or `make run`), then reload this page.", icon="📭")
                return None
            index_corpus(get_settings(key), key)
            status = get_status(key)
        return status
    except PsyqaError as exc:
        get_status.clear()
        st.error(esc(str(exc)), icon="⚠️")
    except Exception as exc:  # noqa: BLE001 - the edge: never show a traceback
        get_status.clear()
        show_unexpected(exc, "opening the index")
    return None


# ------------------------------------------------------------------ rendering

def render_sources(ans: Answer) -> None:
    for heading, cites in (("Sources", ans.citations), (messages.RELATED_HEADING, ans.related)):
        if not cites:
            continue
        st.markdown(f"**{esc(heading)}**")
        for c in cites:
            with st.expander(esc(transcript.source_label(c.model_dump()))):
                badges = []
                if c.source_type:
                    badges.append(f":blue-badge[{esc(c.source_type)}]")
                if c.as_of:
                    badges.append(f":orange-badge[as of {esc(c.as_of)}]")
                if badges:
                    st.markdown(" ".join(badges))
                st.markdown(transcript.highlight_markdown(c.passage, c.highlight))
                st.caption(esc(c.source) + (f" · page {c.page}" if c.page else ""))
                if c.url:
                    st.markdown(transcript.link_markdown(c.url))
    for note in ans.notes:
        st.caption(f"ℹ️ {esc(note)}")


def render_feedback(i: int, msg: dict) -> None:
    ans: Answer = msg["answer"]
    key = f"{st.session_state.chat_id}-{i}"
    if msg.get("feedback"):
        st.caption(f"Thanks, your feedback was saved ({msg['feedback']}).")
        return
    with st.expander("Rate this answer"):
        comment = st.text_input("Comment (optional)", key=f"comment-{key}", max_chars=feedback.MAX_COMMENT)
        wrong = st.checkbox("The evidence is wrong", key=f"wrong-{key}")
        left, right, _ = st.columns([1, 1, 4])
        rating = 1 if left.button("👍 Helpful", key=f"up-{key}") else -1 if right.button(
            "👎 Not helpful", key=f"down-{key}") else 0
    if rating:
        try:
            feedback.save(feedback.db_path(get_settings(_env_key())), question=msg.get("question", ""),
                          answer=ans.answer, chunk_ids=[c.chunk_id for c in ans.citations],
                          corpus_hash=msg.get("corpus_hash"), rating=rating, comment=comment,
                          evidence_wrong=wrong, status=ans.status)
            msg["feedback"] = "helpful" if rating > 0 else "not helpful"
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_unexpected(exc, "saving feedback")


def render_answer(i: int, msg: dict, slot=None) -> None:
    """An assistant message. `slot` holds the streamed text when the answer was just asked."""
    if "error" in msg:
        st.error(esc(msg["error"]), icon="⚠️")
        return
    ans: Answer = msg["answer"]
    body = slot if slot is not None else st.empty()
    text = transcript.answer_markdown(ans.answer)
    if ans.status == "crisis":
        body.error(text, icon=STATUS_ICONS["crisis"])
    elif ans.status == "no_evidence":
        body.warning(text, icon=STATUS_ICONS["no_evidence"])
    elif ans.status == "declined":
        body.info(text, icon=STATUS_ICONS["declined"])
    else:
        body.markdown(text)
    typed = msg.get("question", "")
    if ans.standalone_question and typed and ans.standalone_question.strip() != typed.strip():
        st.caption(f"Interpreted as: {esc(ans.standalone_question)}")
    render_sources(ans)
    st.caption(f"⚠️ {esc(ans.caveat)}")
    render_feedback(i, msg)


def history_turns() -> list[dict]:
    turns = []
    for m in st.session_state.messages:
        if m["role"] == "user":
            turns.append({"role": "user", "content": m["content"]})
        elif "answer" in m:
            turns.append({"role": "assistant", "content": m["answer"].answer})
    return turns


def ask(question: str, filters, status: dict) -> None:
    """Show the question, stream the answer, then its sources, caveat and feedback controls."""
    history = history_turns()
    with st.chat_message("user"):
        st.markdown(esc(question))
    st.session_state.messages.append({"role": "user", "content": question})
    msg: dict = {"role": "assistant", "question": question, "corpus_hash": status.get("corpus_hash")}
    with st.chat_message("assistant"):
        slot = st.empty()
        final: list[Answer] = []

        def pieces():
            for part in get_assistant(_env_key()).ask_stream(question, history, filters):
                if isinstance(part, Answer):
                    final.append(part)
                else:
                    yield transcript.answer_markdown(part)

        try:
            with slot.container():
                st.write_stream(pieces())
            msg["answer"] = final[-1]
        except PsyqaError as exc:
            msg["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - the edge: never show a traceback
            log.error("unexpected error while answering", exc_info=exc)
            msg["error"] = (f"Something went wrong while answering ({type(exc).__name__}). The "
                            "details are in the terminal log of the app; please report them.")
        st.session_state.messages.append(msg)
        slot.empty()
        render_answer(len(st.session_state.messages) - 1, msg, slot)


# ------------------------------------------------------------------ page

def sidebar(status: dict | None):
    from assistant.retrieve import Filters

    sb = st.sidebar
    sb.header("psyqa")
    if status:
        sb.markdown(f"**Corpus:** {status['documents']} documents, {status['chunks']} chunks  \n"
                    f"**Last indexed:** {esc(str(status.get('last_ingest') or 'unknown'))}")
        if any(status.get("drift", {}).values()):
            sb.caption("The corpus folder changed since the last indexing: run `psyqa ingest`.")
    subs = sb.multiselect("Substance", list(SUBSTANCES), format_func=DISPLAY_NAMES.get, key="f_sub")
    conds = sb.multiselect("Condition", list(CONDITIONS), format_func=DISPLAY_NAMES.get, key="f_cond")
    types = sb.multiselect("Source type", list(typing.get_args(SourceType)), key="f_type")
    sb.subheader("Example questions")
    clicked = None
    for n, q in enumerate(messages.EXAMPLES):
        if sb.button(q, key=f"example-{n}", use_container_width=True):
            clicked = q
    if sb.button("New chat", icon=":material/add_comment:", key="new_chat"):
        st.session_state.messages = []
        st.session_state.chat_id += 1
        st.rerun()
    # Filled at the end of the run: the chat input is drawn before the assistant is imported,
    # and the download includes the newest answer.
    backend, download = sb.empty(), sb.empty()
    sb.warning(messages.PRIVACY, icon="🔒")
    return Filters(substances=subs, conditions=conds, source_types=types), clicked, (backend, download)


def main() -> None:
    st.set_page_config(page_title="psyqa", page_icon="📚", layout="centered")
    st.session_state.setdefault("messages", [])
    st.session_state.setdefault("chat_id", 0)
    st.info(messages.BANNER, icon="ℹ️")
    key = _env_key()
    status = ensure_index(key)
    filters, clicked, (backend, download) = sidebar(status)
    if status is not None:
        chat(status, filters, clicked)
        try:
            backend.caption(f"Answer backend: {get_assistant(key).backend}")
        except Exception as exc:  # noqa: BLE001
            log.error("backend unavailable", exc_info=exc)
    download.download_button("Download conversation (Markdown)", key="download",
                             data=transcript.to_markdown(st.session_state.messages),
                             file_name="psyqa-conversation.md", mime="text/markdown",
                             disabled=not st.session_state.messages, icon=":material/download:")
    if status is not None:
        warm_up(key)


def chat(status: dict, filters, clicked: str | None) -> None:
    for i, msg in enumerate(st.session_state.messages):
        with st.chat_message(msg["role"]):
            if msg["role"] == "user":
                st.markdown(esc(msg["content"]))
            else:
                render_answer(i, msg)
    typed = st.chat_input("Ask about psychedelic-assisted or related treatments…", key="chat")
    question = typed or clicked
    if question:
        ask(question, filters, status)


try:
    main()
except Exception as _exc:  # noqa: BLE001 - last resort: a message, never a traceback
    if type(_exc).__name__ in ("RerunException", "StopException"):
        raise
    show_unexpected(_exc, "drawing the page")
