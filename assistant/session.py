"""The chat's state over plain mappings: restore, save and reset a conversation, queue a question, filters.

app.py passes Streamlit's session state and query parameters in (both behave as mutable
mappings), so these steps are tested without a browser. The session keys are:

* `messages`: the chat ({"role": "user", "content"} and {"role": "assistant", "answer", ...});
* `conv_id`: the id the conversation is saved under, also the `c` query parameter once saved;
* `chat_id`: bumped by every new chat, so widget keys of the old one are never reused;
* `f_sub`, `f_cond`, `f_type`: the sidebar filters (`FILTER_KEYS`);
* `pending`: a question chosen by a button, asked on the next run; `full_rerun`: the next run
  must redraw the whole page (a callback changed the sidebar); `close_sidebar`: an example was
  chosen in the sidebar, which covers the answer on a phone.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import MutableMapping
from pathlib import Path

from assistant import saved

log = logging.getLogger("psyqa.app")
FILTER_KEYS = {"substances": "f_sub", "conditions": "f_cond", "source_types": "f_type"}
URL_KEY = "c"


def restore(state: MutableMapping, params: MutableMapping, db: Path) -> str | None:
    """Start a new session with the conversation saved under the URL's id (a reload), once.
    Returns a message for the user when the URL names a conversation that is gone."""
    if "conv_id" in state:
        return None
    cid = params.get(URL_KEY)
    loaded = saved.load(db, cid) if saved.valid_id(cid) else None
    state["messages"], state["conv_id"] = (loaded, cid) if loaded else ([], saved.new_id())
    if cid and not loaded:
        params.pop(URL_KEY, None)
        return "That conversation is no longer saved; this is a new one."
    return None


def save(state: MutableMapping, params: MutableMapping, db: Path) -> bool:
    """Save the conversation and put its id in the URL (so a reload finds it). False when the
    database cannot be written (logged): the chat goes on, only a reload would lose it."""
    try:
        saved.save(db, state["conv_id"], state["messages"])
    except (sqlite3.Error, OSError) as exc:
        log.error("could not save conversation %s to %s: %s", state.get("conv_id"), db, exc)
        return False
    if params.get(URL_KEY) != state["conv_id"]:
        params[URL_KEY] = state["conv_id"]
    return True


def clear_filters(state: MutableMapping) -> None:
    for key in FILTER_KEYS.values():
        state[key] = []


def drop_filter(state: MutableMapping, field: str, value: str) -> None:
    key = FILTER_KEYS[field]
    state[key] = [v for v in state.get(key, []) if v != value]


def reset(state: MutableMapping, params: MutableMapping, db: Path, delete: bool = False) -> None:
    """A new chat: no messages, no filters, a new id (and, with `delete`, the saved copy gone)."""
    if delete and "conv_id" in state:
        saved.delete(db, state["conv_id"])
    state["messages"], state["conv_id"], state["full_rerun"] = [], saved.new_id(), True
    state["chat_id"] = state.get("chat_id", 0) + 1
    clear_filters(state)
    params.pop(URL_KEY, None)


def queue(state: MutableMapping, question: str, *, clear: bool = False,
          close_sidebar: bool = False) -> None:
    """Ask `question` on the next run; `clear` drops the filters first (which changes the
    sidebar, so the next run redraws the whole page)."""
    state["pending"] = question
    state["full_rerun"] = clear or state.get("full_rerun", False)
    state["close_sidebar"] = close_sidebar
    if clear:
        clear_filters(state)


def offered(facets: dict, field: str, documents: int, selected: list[str]) -> bool:
    """Whether the sidebar offers a filter field: not when its one value is carried by every
    document (it would filter nothing), unless a value is selected."""
    values = [v for v, n in (facets.get(field) or {}).items() if n > 0]
    return len(values) > 1 or bool(selected) or (len(values) == 1 and facets[field][values[0]] < documents)
