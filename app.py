"""psyqa chat app (Streamlit). UI only: answers, retrieval and storage live in assistant/ and ingest/.

Corpus text is always shown as escaped Markdown (assistant.transcript); nothing is rendered as HTML.
A question reruns only the chat fragment (`chat_area`), not the sidebar, the index status or the
earlier messages, so the wait after Enter does not grow with the conversation.
"""

from __future__ import annotations

import logging
import os
import threading

import streamlit as st

from assistant import chat, feedback, messages, session, transcript
from assistant.errors import PsyqaError
from assistant.models import Answer
from assistant.settings import Settings, load_settings

log = logging.getLogger("psyqa.app")
esc = transcript.escape_markdown

# Material icons: Streamlit ships their font, while emoji need one on the reader's machine.
STATUS_ICONS = {"no_evidence": ":material/search_off:", "declined": ":material/info:",
                "crisis": ":material/emergency:"}
# While the first view is on the page (an empty chat), the sidebar's conversation tools are hidden.
# Elements a run has not redrawn yet are not faded: the fade is an animation drawn at every frame
# until the run ends (its cost with ten sessions at once: BENCHMARKS.md, App).
STYLE = ("<style>body:has(.st-key-first_view) .st-key-conversation_tools {display: none}\n"
         '[data-stale="true"] {opacity: 1 !important; transition: none !important}</style>')
# Closes the sidebar on a narrow screen (it covers the answer there) after an example was chosen.
CLOSE_SIDEBAR_JS = """export default function () {
  if (window.innerWidth > 768) return;
  const bar = document.querySelector('[data-testid="stSidebar"][data-collapsed="false"]');
  const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (bar && button) button.click();
}"""


# ------------------------------------------------------------------ heavy objects, built once

def _env_key() -> tuple:
    return chat.env_key(os.environ)


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
            assistant.warm()
        except Exception as exc:  # noqa: BLE001 - e.g. no index yet: the page says so
            log.info("warm-up skipped: %s", exc)

    thread = threading.Thread(target=run, daemon=True, name="psyqa-warm-up")
    thread.start()
    return thread


@st.cache_data(ttl=30, show_spinner=False)
def get_status(env_key: tuple) -> dict:
    from ingest.status import index_status

    return index_status(get_settings(env_key))


@st.cache_resource(show_spinner=False)
def close_sidebar_component():
    return st.components.v2.component("psyqa_close_sidebar", js=CLOSE_SIDEBAR_JS)


def db_path():
    return feedback.db_path(get_settings(_env_key()))


def show_unexpected(exc: BaseException, where: str) -> None:
    log.error("unexpected error while %s", where, exc_info=exc)
    st.error(chat.unexpected(exc, where), icon="🛑")


# ------------------------------------------------------------------ first start: index corpus/

def index_corpus(settings: Settings, key: tuple) -> None:
    from ingest.pipeline import run

    with st.status(f"Indexing {settings.corpus_dir}/ for the first time…", expanded=True) as box:
        bar = st.progress(0.0, text="starting")

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(1.0, done / total) if total else 0.0, text=f"{stage}: {done}/{total}")

        report = run(None, settings, progress=progress, embedder=get_assistant(key).services.embedder)
        for f in report.failed:
            st.warning(esc(f"Not indexed: {f['path']}: {f['error']}"))
        box.update(label=chat.indexed_label(report), state="complete", expanded=False)
    get_status.clear()


def ensure_index(key: tuple) -> dict | None:
    """The index status; indexes corpus/ on a first start. None (with a message shown) on errors."""
    try:
        status = get_status(key)
        problem = chat.index_problem(status, st.session_state.get("auto_index", True))
        if problem:  # a damaged store, or no index: one line naming the path and the fix
            st.error(esc(problem), icon="🛠️" if status.get("damaged") else "📭")
        elif not status["indexed"]:
            index_corpus(get_settings(key), key)
            return get_status(key)
        else:
            return status
    except PsyqaError as exc:
        st.error(esc(str(exc)), icon="⚠️")
    except Exception as exc:  # noqa: BLE001 - the edge: never show a traceback
        show_unexpected(exc, "opening the index")
    get_status.clear()  # the next run looks again
    return None


# ------------------------------------------------------------------ conversation state

def persist() -> None:
    if not session.save(st.session_state, st.query_params, db_path()):  # the answer is shown anyway
        st.toast("This conversation could not be saved: a reload will lose it.", icon="⚠️")


# ------------------------------------------------------------------ rendering

def render_sources(ans: Answer) -> None:
    for heading, cites in (("Sources", ans.citations), (messages.RELATED_HEADING, ans.related)):
        if cites:
            st.markdown(f"**{esc(heading)}**")
        for c in cites:
            with st.expander(esc(transcript.source_label(c.model_dump()))):
                st.markdown(transcript.source_markdown(c))  # one element: badges, passage, file, link
    for note in ans.notes:
        st.caption(f"ℹ️ {esc(note)}")


@st.fragment
def render_feedback(i: int, msg: dict) -> None:
    """Rating one answer reruns only this fragment; the thanks replace the controls at once. Until
    "Rate this answer" is clicked the answer carries that one button, not the form (fewer
    elements to draw per answer: BENCHMARKS.md, App)."""
    ss = st.session_state
    key = f"{ss.chat_id}-{i}"
    slot = st.empty()
    if msg.get("feedback"):
        slot.caption(chat.thanks(msg))
        return
    if not ss.get(f"rate-open-{key}"):
        slot.button("Rate this answer", key=f"rate-{key}", type="tertiary", icon=":material/rate_review:",
                    on_click=ss.__setitem__, args=(f"rate-open-{key}", True))
        return
    with slot.container():
        comment = st.text_input("Comment (optional)", key=f"comment-{key}", max_chars=feedback.MAX_COMMENT)
        wrong = st.checkbox("The evidence is wrong", key=f"wrong-{key}")
        with st.container(horizontal=True, gap="small"):
            up = st.button("Helpful", key=f"up-{key}", icon=":material/thumb_up:", width="content")
            down = st.button("Not helpful", key=f"down-{key}", icon=":material/thumb_down:",
                             width="content")
    rating = 1 if up else -1 if down else 0
    if rating:
        try:
            line = chat.rate(db_path(), msg, rating, comment, wrong)
            persist()
            slot.caption(line)
        except Exception as exc:  # noqa: BLE001
            show_unexpected(exc, "saving feedback")


def render_answer(i: int, msg: dict, slot=None, streamed: str | None = None) -> None:
    """An assistant message. `slot` holds the streamed text (`streamed`) when the answer was just
    asked: it is replaced only when the final answer is drawn otherwise (a crisis, no evidence,
    declined box, or an error), so an answer's text reaches the page once."""
    if "error" in msg:
        if slot is not None:
            slot.empty()
        st.error(esc(msg["error"]), icon="⚠️")
        return
    ans: Answer = msg["answer"]
    body = slot if slot is not None else st
    text = transcript.answer_markdown(ans.answer)
    show = {"crisis": body.error, "no_evidence": body.warning, "declined": body.info}.get(ans.status)
    if show:
        show(text, icon=STATUS_ICONS[ans.status])
    elif slot is None or streamed != text:
        body.markdown(text)
    if msg.get("filter_note"):
        st.markdown(f"**{esc(msg['filter_note'])}**")
        st.button("Ask without filters", key=f"unfilter-{st.session_state.chat_id}-{i}",
                  icon=":material/filter_alt_off:", on_click=session.queue, args=(st.session_state, msg["question"]),
                  kwargs={"clear": True})
    caption = chat.interpretation(ans, msg.get("question", ""))
    if caption:
        st.caption(esc(caption))
    render_sources(ans)
    st.caption(f"⚠️ {esc(ans.caveat)}")
    render_feedback(i, msg)


def render_message(i: int, msg: dict) -> None:
    with st.chat_message(msg["role"]):
        if msg["role"] == "user":
            st.markdown(esc(msg["content"]))
        else:
            render_answer(i, msg)


def ask(question: str, filters: dict, status: dict) -> None:
    """Show the question, stream the answer, then its sources, caveat and feedback controls."""
    from assistant.retrieve import Filters

    turns = st.session_state.messages
    history = chat.history_turns(turns)
    with st.chat_message("user"):
        st.markdown(esc(question))
    turns.append({"role": "user", "content": question})
    msg = chat.new_turn(question, status, filters)
    with st.chat_message("assistant"):
        slot = st.empty()
        shown = chat.Streamed()  # one element, replaced as the text grows
        qa, wanted = get_assistant(_env_key()), Filters(**filters)
        chat.answer_turn(msg, lambda: shown.run(qa.ask_stream(question, history, wanted), slot.markdown),
                         lambda ans: chat.filter_note(qa, question, history, wanted, ans))
        turns.append(msg)
        render_answer(len(turns) - 1, msg, slot, shown.text)
    persist()


# ------------------------------------------------------------------ page

def corpus_state(sb, status: dict) -> None:
    """Corpus size, when it was indexed, and what the last ingest run left to fix."""
    notes = chat.ingest_notes(status)
    sb.markdown(esc(notes["corpus"]))
    if notes["stopped"]:
        sb.error(esc(notes["stopped"]), icon="⚠️")
    if notes["failed"]:
        box = sb.expander(notes["failed_title"], icon=":material/warning:", expanded=True)
        for line in notes["failed"]:
            box.markdown(esc(line))
    if notes["pending"]:
        sb.caption(esc(notes["pending"]))


def sidebar(status: dict):
    """The sidebar's full-run part; returns the active filters {field: [values]} and the slot of
    the backend caption."""
    ss = st.session_state
    sb = st.sidebar
    sb.header("psyqa")
    corpus_state(sb, status)
    facets, filters = status.get("facets") or {}, {}
    for field, key in session.FILTER_KEYS.items():
        opts = chat.options(facets, field)
        ss[key] = [v for v in ss.get(key, []) if v in opts]  # values the index no longer holds
        if session.offered(facets, field, status["documents"], ss[key]):
            filters[field] = sb.multiselect(chat.FIELDS[field], opts, key=key,
                                            format_func=lambda v, f=field: chat.option_label(facets, f, v))
    sb.button("New chat", icon=":material/add_comment:", key="new_chat", on_click=session.reset,
              args=(ss, st.query_params, db_path()))
    return filters, sb.empty()


def sidebar_tools(sb, status: dict, filters: dict) -> None:
    """Delete, download, examples, privacy. Hidden (CSS) while the first view is on the page, so
    the first question needs no full run to show them: the downloads read the chat when clicked."""
    msgs = st.session_state.messages  # the list the chat appends to (a new chat is a full run)
    meta = lambda: chat.export_meta(status, filters)  # noqa: E731 - read when a download is clicked
    with sb.container(key="conversation_tools"):
        st.button("Delete this conversation", icon=":material/delete:", key="delete_chat",
                  on_click=session.reset, args=(st.session_state, st.query_params, db_path(), True),
                  help="Removes it from this server's database and starts a new chat.")
        st.caption("Download this conversation")
        with st.container(horizontal=True, gap="small"):
            st.download_button("Markdown", key="download", on_click="ignore", icon=":material/download:",
                               data=lambda: transcript.to_markdown(msgs, meta()),
                               file_name="psyqa-conversation.md", mime="text/markdown")
            st.download_button("JSON", key="download_json", on_click="ignore", icon=":material/data_object:",
                               data=lambda: transcript.to_json(msgs, meta()),
                               file_name="psyqa-conversation.json", mime="application/json")
        st.subheader("Example questions")
        examples("example", close_sidebar=True)


def filter_chips(filters: dict) -> None:
    """Active filters above the chat input, each removable with one click."""
    items = chat.active(filters)
    if not items:
        return
    with st.bottom, st.container(horizontal=True, gap="small", key="filter_chips"):
        for field, value, label in items:
            st.button(label, key=f"chip-{field}-{value}", icon=":material/close:", icon_position="right",
                      on_click=session.drop_filter, args=(st.session_state, field, value),
                      help="Remove this filter")
        if len(items) > 1:
            st.button("Clear filters", key="chip-clear", type="tertiary", on_click=session.clear_filters,
                      args=(st.session_state,))


def examples(prefix: str, **queue_options) -> None:
    """The example questions as buttons that ask them, then the privacy line."""
    for n, q in enumerate(messages.EXAMPLES):
        st.button(q, key=f"{prefix}-{n}", width="stretch", on_click=session.queue,
                  args=(st.session_state, q), kwargs=queue_options)
    st.warning(messages.PRIVACY, icon="🔒")


def first_view() -> None:
    """An empty chat: the examples and the privacy line in the main column (on a phone the
    sidebar is closed)."""
    with st.container(key="first_view"):
        st.markdown("**Try one of these questions**")
        examples("start")


@st.fragment
def chat_area(history, status: dict, filters: dict) -> None:
    """The new question and its answer, the turns asked since the last full run, the first view,
    and the sidebar's conversation tools. Turns are written into `history` (the container the
    full run fills with the earlier ones), so folding them into it moves nothing on the page."""
    ss = st.session_state
    if ss.get("full_rerun"):  # a callback changed what the whole page shows (filters, history)
        st.rerun()
    with st.bottom:  # pinned below the chat (inside a fragment it would be drawn in place)
        typed = st.chat_input("Ask about a treatment or trial…", key="chat")
    question = typed or ss.pop("pending", None)
    with history:
        st.empty()  # Streamlit lets a fragment write into a container it wrote to in the full run
        for i in range(ss.live_from, len(ss.messages)):
            render_message(i, ss.messages[i])
        if question:
            ask(question, filters, status)
    if not ss.messages:
        first_view()
    if ss.pop("close_sidebar", False):
        close_sidebar_component()(key=f"close-sidebar-{len(ss.messages)}")
    if question and chat.full_run_due(ss.messages, ss.live_from):
        st.rerun()


def main() -> None:
    st.set_page_config(page_title="psyqa", page_icon="📚", layout="centered")
    ss = st.session_state
    ss.setdefault("chat_id", 0)
    # The banner and every turn live in one container, so the chat fragment (and its id) stays at
    # the same place in the page: a question typed during a full run is answered, not lost.
    history = st.container()
    history.info(messages.BANNER, icon="ℹ️")
    key = _env_key()
    crisis = st.sidebar.empty()  # first in the sidebar, filled at the end of the run
    status = ensure_index(key)
    if status is None:
        return
    note = session.restore(ss, st.query_params, db_path())
    if note:
        st.toast(note, icon=":material/delete:")
    ss.live_from, ss.full_rerun = len(ss.messages), False
    filters, backend = sidebar(status)
    sidebar_tools(st.sidebar, status, filters)
    st.html(STYLE)
    filter_chips(filters)
    with history:
        for i, msg in enumerate(ss.messages):
            render_message(i, msg)
    chat_area(history, status, filters)
    if chat.had_crisis(ss.messages):  # the crisis resources stay in the sidebar for this chat
        crisis.error(transcript.answer_markdown(messages.CRISIS_RESPONSE), icon=STATUS_ICONS["crisis"])
    try:
        backend.caption(f"Answer backend: {get_assistant(key).backend}")
    except Exception as exc:  # noqa: BLE001
        log.error("backend unavailable", exc_info=exc)
    warm_up(key)


try:
    main()
except Exception as _exc:  # noqa: BLE001 - last resort: a message, never a traceback
    if type(_exc).__name__ in ("RerunException", "StopException"):
        raise
    show_unexpected(_exc, "drawing the page")
