"""The chat's state steps (assistant.session) over plain dicts, as app.py runs them over Streamlit's
session state and query parameters; real SQLite under tmp_path."""

from __future__ import annotations

from assistant import saved, session

CHAT = [{"role": "user", "content": "What did MAPP1 find?"}]


def test_restore_save_reset_and_delete(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    state, params = {}, {}
    assert session.restore(state, params, db) is None
    assert state["messages"] == [] and saved.valid_id(state["conv_id"])
    state["messages"] = list(CHAT)
    assert session.save(state, params, db) and params["c"] == state["conv_id"]
    # a reload: a new session with the same URL
    again = {}
    assert session.restore(again, dict(params), db) is None
    assert again["messages"] == CHAT and again["conv_id"] == state["conv_id"]
    # restoring happens once per session: a later run keeps what the session holds
    again["messages"] = []
    session.restore(again, dict(params), db)
    assert again["messages"] == []
    state["f_sub"] = ["mdma"]
    session.reset(state, params, db, delete=True)
    assert state["messages"] == [] and state["f_sub"] == [] and "c" not in params
    assert state["full_rerun"] and state["chat_id"] == 1
    assert saved.load(db, again["conv_id"]) is None
    gone = {}
    assert "no longer saved" in session.restore(gone, {"c": again["conv_id"]}, db)
    assert gone["messages"] == [] and gone["conv_id"] != again["conv_id"]


def test_a_bad_url_id_is_a_new_chat(tmp_path):
    state, params = {}, {"c": "../../etc/passwd"}
    assert session.restore(state, params, tmp_path / "f.sqlite3") is not None
    assert state["messages"] == [] and "c" not in params


def test_an_unwritable_database_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    state = {"conv_id": saved.new_id(), "messages": CHAT}
    params = {}
    assert session.save(state, params, blocker / "feedback.sqlite3") is False
    assert params == {}


def test_queue_filters_and_what_is_offered():
    state = {"f_sub": ["mdma", "ketamine"], "f_cond": ["ptsd"]}
    session.drop_filter(state, "substances", "mdma")
    assert state["f_sub"] == ["ketamine"]
    session.queue(state, "Is ibogaine dangerous for the heart?", clear=True)
    assert state["pending"].startswith("Is ibogaine") and state["full_rerun"]
    assert state["f_sub"] == state["f_cond"] == state["f_type"] == []
    session.queue(state, "x", close_sidebar=True)
    assert state["close_sidebar"] and state["full_rerun"]  # an earlier request is not lost
    facets = {"substances": {"mdma": 3, "lsd": 1}, "source_types": {"summary": 4}}
    assert session.offered(facets, "substances", 4, [])
    assert not session.offered(facets, "source_types", 4, [])  # every document: filters nothing
    assert session.offered(facets, "source_types", 5, [])  # one document has none
    assert session.offered(facets, "source_types", 4, ["summary"])  # selected: can be removed
    assert not session.offered(facets, "conditions", 4, [])
