"""The app's pure pieces: wording (assistant.chat), the downloaded file (assistant.transcript) and
saved conversations (assistant.saved). No model, no Streamlit: real SQLite under tmp_path, and the
exported Markdown rendered by a real CommonMark parser (markdown-it-py)."""

from __future__ import annotations

import html
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from assistant import chat, messages, saved, transcript
from assistant.models import Answer, Citation
from assistant.retrieve import Filters

CAVEAT = "Psychedelic treatments carry real risks; this is not medical advice."


PASSAGE = ("MAPP1 randomised 90 adults 1:1. At 18 weeks, 67% versus 32% no longer met criteria. "
           "MDMA-AT, the <therapy>, is not approved.")
SUPPORT = (PASSAGE.index("At 18"), PASSAGE.index("criteria.") + len("criteria."))


def answer(**kw) -> Answer:
    c = Citation(n=1, chunk_id="c1", doc_id="mdma-ptsd", title="MDMA for PTSD: MAPP1 and MAPP2",
                 source="mdma-ptsd.md", section="MAPP1 results", url="https://doi.org/10.1038/x(1)",
                 passage=PASSAGE, highlight=[SUPPORT], source_type="summary")
    base = dict(answer="- At 18 weeks, 67% versus 32% no longer met criteria. [1]", citations=[c],
                caveat=CAVEAT, status="answered", standalone_question="What did MAPP1 find?")
    return Answer(**(base | kw))


CHAT = [
    {"role": "user", "content": "What did MAPP1 find?"},
    {"role": "assistant", "question": "What did MAPP1 find?", "answer": answer(),
     "asked_at": "2026-12-01T23:13:05+00:00", "filters": {"substances": ["mdma"]},
     "corpus_hash": "abc123"},
    {"role": "user", "content": "and the placebo arm?"},
    {"role": "assistant", "question": "and the placebo arm?", "filters": {},
     "answer": answer(status="no_evidence", citations=[], answer="The curated sources do not cover this question.",
                      standalone_question="and the placebo arm? (about MAPP1)", carried=["MAPP1"]),
     "filter_note": "No passage matches Source type: review; without that filter the sources do cover this."},
]
META = {"exported_at": "2026-12-02T08:00:00+00:00", "documents": 30, "corpus_hash": "abc123",
        "filters": {"substances": ["mdma"], "conditions": ["ptsd"]}}


# ----------------------------------------------------------------------------- wording

@pytest.mark.parametrize("iso, shown", [
    ("2026-12-01T23:13:05+00:00", "1 Dec 2026, 23:13 UTC"),
    ("2026-12-01T23:13:05", "1 Dec 2026, 23:13 UTC"),          # naive: taken as UTC
    ("2026-06-01T01:30:00+02:00", "31 May 2026, 23:30 UTC"),   # converted to UTC
    (None, "unknown"), ("not a date", "not a date"),
])
def test_human_time(iso, shown):
    assert chat.human_time(iso) == shown


def test_filter_options_are_the_indexed_values_with_counts():
    facets = {"substances": {"mdma": 14, "ketamine": 9, "lsd": 0}, "source_types": {"summary": 30}}
    assert chat.options(facets, "substances") == ["ketamine", "mdma"]  # by label; none with 0
    assert chat.option_label(facets, "substances", "mdma") == "MDMA (14)"
    assert chat.options(facets, "conditions") == []


def test_chips_summary_and_the_no_match_note():
    filters = {"substances": ["ketamine", "esketamine"], "source_types": ["review"]}
    assert chat.active(filters) == [("substances", "ketamine", "Substance: ketamine"),
                                    ("substances", "esketamine", "Substance: esketamine"),
                                    ("source_types", "review", "Source type: review")]
    assert chat.summary(filters) == "Substance: ketamine, esketamine; Source type: review"
    assert chat.no_match_note({"source_types": ["review"]}) == (
        "No passage matches Source type: review; without that filter the sources do cover this.")
    assert "without these filters" in chat.no_match_note(filters)
    assert chat.summary({}) == ""


def test_excluded_by_filters_asks_again_without_them():
    class Asked:
        def __init__(self, status):
            self.status, self.calls = status, []

        def ask(self, q, history, filters):
            self.calls.append(filters)
            return answer(status=self.status)

    yes, no = Asked("answered"), Asked("no_evidence")
    assert chat.excluded_by_filters(yes, "q", [], Filters(source_types=["review"])) is True
    assert yes.calls == [None]
    assert chat.excluded_by_filters(no, "q", [], Filters(source_types=["review"])) is False
    assert chat.excluded_by_filters(yes, "q", [], Filters()) is False  # no filter: nothing to blame


def test_the_caption_says_what_was_carried_and_what_the_filters_added():
    ans = answer(standalone_question="and the placebo group? (about MAPP2 and MDMA for PTSD)",
                 carried=["MAPP2", "MDMA", "PTSD"])
    assert chat.interpretation(ans, "and the placebo group?") == (
        "Interpreted as: and the placebo group? (about MAPP2 and MDMA for PTSD) · carried from "
        "earlier questions: MAPP2, MDMA, PTSD")
    ans = answer(standalone_question="What are the risks? (about ketamine)", filter_topics=["ketamine"])
    assert chat.interpretation(ans, "What are the risks?").endswith("· from the filters: ketamine")
    assert chat.interpretation(answer(), "What did MAPP1 find?") is None  # read as typed


def test_history_turns_skip_errors():
    msgs = CHAT[:2] + [{"role": "user", "content": "x"}, {"role": "assistant", "error": "boom"}]
    assert [t["role"] for t in chat.history_turns(msgs)] == ["user", "assistant", "user"]


def test_had_crisis_only_after_a_crisis_answer():
    from assistant import messages

    def answer(status, text):
        return {"role": "assistant", "answer": Answer(answer=text, caveat=messages.CAVEAT, status=status,
                                                    standalone_question="q")}

    clinical = [{"role": "user", "content": "Was suicidal ideation an adverse event?"},
                answer("answered", "It was reported [1].")]
    assert not chat.had_crisis(clinical)
    assert not chat.had_crisis(clinical + [{"role": "assistant", "error": "boom"}])
    crisis = [{"role": "user", "content": "they'd be better off without me"},
              answer("crisis", messages.CRISIS_RESPONSE)]
    assert chat.had_crisis(crisis) and chat.had_crisis(crisis + clinical)


STATUS = {
    "last_run": {"finished": "2026-12-01T23:13:05+00:00", "stopped": None, "failed": [
        {"path": "lsd.md", "error": "malformed YAML; fix it", "problem": "malformed YAML front matter",
         "fix": "fix the YAML between the two '---' lines", "serving_previous": True, "doc_hash": "h1"},
        {"path": "new.md", "error": "empty", "problem": "has no text", "fix": "add text",
         "serving_previous": False, "doc_hash": "h2"}]},
    "unfixed": ["lsd.md"],
    "drift": {"new": ["new.md", "other.md"], "changed": ["lsd.md"], "removed": []},
}


def test_ingest_state_names_each_failure_and_what_is_served():
    state = chat.ingest_state(STATUS)
    assert state["ran"] == "1 Dec 2026, 23:13 UTC" and not state["stopped"]
    lsd, new = state["failed"]
    assert lsd["serving_previous"] and lsd["unfixed"] and not new["serving_previous"]
    assert state["pending"] == ["new.md", "other.md"]  # lsd.md: ingest again would not help
    assert chat.failure_line(lsd) == (
        "lsd.md: its previous version is still being served. Why: malformed YAML front matter. "
        "Fix: fix the YAML between the two '---' lines, then run `psyqa ingest`.")
    assert "it is not in the index" in chat.failure_line(new)
    lines = chat.ingest_lines(STATUS)
    assert lines[0] == "last ingest run: 1 Dec 2026, 23:13 UTC (2 files failed)" and len(lines) == 3
    assert chat.ingest_state({}) == {"ran": None, "stopped": None, "failed": [], "pending": []}


# ----------------------------------------------------------------------------- the export

_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered(md: str) -> str:
    """The text a Markdown reader shows (tags dropped, entities decoded)."""
    out = re.sub(r"<br\s*/?>\n?", "\n", _MD.render(md))
    return html.unescape(re.sub(r"<[^>]+>", "", out))


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


@pytest.mark.parametrize("text", [
    "What did the MAPP1 trial find?", "MDMA-AT, 1:1 and 50% at p < 0.05 (n=90)",
    "<script>alert(1)</script>", "# not a heading", "1. not a list", "- not a bullet", "> no quote",
    "[x](javascript:alert(1)) and [1]", "*a* _b_ `c` ~~d~~ | e", "$5 and $10", "AT&amp;T", "===",
])
def test_md_text_renders_as_typed_and_escapes_little(text):
    md = transcript.md_text(text)
    assert squash(rendered(md)) == squash(text)


def test_md_text_leaves_ordinary_punctuation_alone():
    text = "Did MAPP1 find?  MDMA-AT, 1:1, 67% (n=90); see F12."
    assert transcript.md_text(text) == text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=list("ab1 #>-+*_`[]()<>&;!:.|~$=\\\n"), max_size=40)
       | st.lists(st.sampled_from(["&amp;", "<b>", "[1]", "1. ", "- ", "```", "x", "\n", "# ",
                                   "> ", "*", "_", "~~", "|", "$", "a:b", "[1]: http://x"]),
                  max_size=12).map("".join))
def test_md_text_renders_as_typed_for_any_text(text):
    assert squash(rendered(transcript.md_text(text))) == squash(text)


def test_markdown_export_has_date_version_filters_passages_and_caveats():
    md = transcript.to_markdown(CHAT, META)
    assert "Exported 2 Dec 2026, 08:00 UTC · corpus: 30 documents, version abc123 · filters now: " \
           "Substance: MDMA; Condition: PTSD" in md
    assert "## Question 1\n\nWhat did MAPP1 find?\n" in md  # no backslash before "?"
    assert "_asked 1 Dec 2026, 23:13 UTC, filters: Substance: MDMA, corpus version abc123_" in md
    assert "- At 18 weeks, 67% versus 32% no longer met criteria. [1]" in md
    assert "**[1] MDMA for PTSD: MAPP1 and MAPP2 — MAPP1 results** · summary · mdma-ptsd.md · " \
           "<https://doi.org/10.1038/x%281%29>" in md
    assert "> MAPP1 randomised 90 adults 1:1. **At 18 weeks, 67% versus 32% no longer met criteria.**" in md
    assert "\\<therapy>" in md  # the one character Markdown needs escaped here
    assert md.count(f"**Caveat:** {CAVEAT}") == 2
    assert "### Answer (not covered by the sources)" in md
    assert "_Interpreted as:_ and the placebo arm? (about MAPP1)" in md
    assert "_No passage matches Source type: review; without that filter the sources do cover this._" in md
    shown = rendered(md)
    assert "<therapy>" in shown and "MDMA-AT, the" in shown


def test_json_export_round_trips_every_answer():
    data = json.loads(transcript.to_json(CHAT, META))
    assert data["psyqa_conversation"] == 1 and data["documents"] == 30
    back = saved.from_records(data["messages"])
    assert back[1]["answer"] == CHAT[1]["answer"] and back[3]["filter_note"] == CHAT[3]["filter_note"]
    assert data["messages"][1]["answer"]["citations"][0]["passage"].startswith("MAPP1 randomised")


# ----------------------------------------------------------------------------- saved conversations

def test_saved_conversations_round_trip_list_and_delete(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    a, b = saved.new_id(), saved.new_id()
    assert a != b and saved.valid_id(a) and len(a) >= 22
    saved.save(db, a, CHAT)
    saved.save(db, b, CHAT[:2])
    saved.save(db, a, CHAT[:2])  # replaced, not duplicated
    assert saved.load(db, a) == CHAT[:2]
    assert sorted(c["id"] for c in saved.listing(db)) == sorted([a, b])
    assert {c["questions"] for c in saved.listing(db)} == {1}
    assert saved.delete(db, a) == 1 and saved.load(db, a) is None
    assert saved.load(db, b) is not None
    assert saved.delete(db) == 1 and saved.listing(db) == []


@pytest.mark.parametrize("bad", ["", "short", "../../etc/passwd", "x" * 65, "a b c d e f g h i j k l m", None, 5])
def test_a_bad_id_is_never_a_conversation(tmp_path, bad):
    db = tmp_path / "feedback.sqlite3"
    assert saved.load(db, bad) is None
    if isinstance(bad, str):
        with pytest.raises(ValueError):
            saved.save(db, bad, CHAT)


def test_a_record_that_no_longer_validates_is_dropped():
    records = saved.to_records(CHAT)
    records[1]["answer"]["status"] = "nonsense"
    back = saved.from_records(records + [{"role": "system"}, "junk"])
    assert [m["role"] for m in back] == ["user", "user", "assistant"]


def test_saved_conversations_live_in_the_feedback_database(tmp_path):
    """One file holds the user's data (feedback and conversations), found by feedback.db_path."""
    from assistant import feedback
    from assistant.settings import Settings

    s = Settings(data_dir=tmp_path / "data")
    cid = saved.new_id()
    saved.save(feedback.db_path(s), cid, CHAT)
    feedback.save(feedback.db_path(s), question="q", answer="a", chunk_ids=[], corpus_hash=None, rating=1)
    assert saved.load(feedback.db_path(s), cid) and feedback.rows(feedback.db_path(s))


def test_a_turn_is_filled_with_the_answer_or_the_error_to_show():
    from assistant import chat
    from assistant.errors import PsyqaError

    msg = chat.new_turn("q?", {"corpus_hash": "h"}, {"substances": ["mdma"]})
    assert msg["role"] == "assistant" and msg["corpus_hash"] == "h" and msg["filters"] == {"substances": ["mdma"]}
    chat.answer_turn(msg, lambda: "the answer", lambda ans: f"note on {ans}")
    assert msg["answer"] == "the answer" and msg["filter_note"] == "note on the answer"

    def fails(exc):
        def produce():
            raise exc
        return produce

    bad = chat.new_turn("q?", {}, {})
    chat.answer_turn(bad, fails(PsyqaError("No index yet.")), lambda a: None)
    assert bad["error"] == "No index yet." and "answer" not in bad
    odd = chat.new_turn("q?", {}, {})
    chat.answer_turn(odd, fails(RuntimeError("boom")), lambda a: None)
    assert odd["error"] == chat.unexpected(RuntimeError("boom"), "answering")


def test_what_stops_the_chat_from_opening_an_index():
    from assistant import chat

    assert chat.index_problem({"damaged": "x is damaged; run y", "indexed": True}, True) == "x is damaged; run y"
    assert "psyqa ingest" in chat.index_problem({"indexed": False, "store": "data/index"}, False)
    assert chat.index_problem({"indexed": False, "store": "data/index"}, True) is None  # indexes corpus/
    assert chat.index_problem({"indexed": True}, False) is None


def test_the_app_builds_one_assistant_per_psyqa_environment():
    assert chat.env_key({"PSYQA_TOP_K": "5", "HOME": "/root", "PSYQA_DATA_DIR": "/d"}) == (
        ("PSYQA_DATA_DIR", "/d"), ("PSYQA_TOP_K", "5"))


def test_a_full_run_is_due_to_fold_turns_or_for_the_first_crisis_answer():
    crisis = {"role": "assistant", "answer": answer(answer=messages.CRISIS_RESPONSE, citations=[],
                                                    status="crisis")}
    plain = {"role": "user", "content": "q"}
    assert not chat.full_run_due([plain] * 2, 0)
    assert chat.full_run_due([plain] * (2 * chat.LIVE_TURNS), 0)
    assert chat.full_run_due([plain, crisis], 1)        # the chat's first crisis answer
    assert not chat.full_run_due([plain, crisis, plain], 2)  # already in the sidebar


def test_a_streamed_answer_is_shown_as_it_grows_and_returned_whole():
    ans = answer()
    shown: list[str] = []
    streamed = chat.Streamed()
    assert streamed.run(iter(["At 18 weeks, 67% ", "versus 32%. [1]", ans]), shown.append) is ans
    assert shown[-1] == streamed.text and len(shown) >= 2 and shown[0] != shown[-1]
