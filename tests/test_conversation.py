"""Tests for assistant.conversation: follow-ups become standalone, user words are kept."""

from __future__ import annotations

import pytest

from assistant import conversation
from assistant.conversation import needs_context, rewrite, with_filters
from assistant.models import Turn


def U(text: str) -> Turn:  # noqa: N802 - short helpers keep the histories readable
    return Turn(role="user", content=text)


def A(text: str) -> Turn:  # noqa: N802
    return Turn(role="assistant", content=text)


MDMA_PTSD = [
    U("Does MDMA help PTSD?"),
    A("In the MAPP1 phase 3 trial, MDMA-assisted therapy reduced CAPS-5 scores [1]."),
]
PSILO_AUD = [
    U("Does psilocybin help alcohol use disorder?"),
    A("A 2022 randomized trial found fewer heavy drinking days [1]."),
]


# ------------------------------------------------------------------- carrying the topic

@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What are its side effects?", "What are its side effects? (about MDMA for PTSD)"),
        ("side effects?", "side effects? (about MDMA for PTSD)"),
        ("How long does it last?", "How long does it last? (about MDMA for PTSD)"),
        ("Is that drug approved?", "Is that drug approved? (about MDMA for PTSD)"),
        ("Is this legal?", "Is this legal? (about MDMA for PTSD)"),
        ("What did the trial find?", "What did the trial find? (about MDMA for PTSD)"),
        ("Why?", "Why? (about MDMA for PTSD)"),
        ("Were they effective?", "Were they effective? (about MDMA for PTSD)"),
        ("What are the risks?", "What are the risks? (about MDMA for PTSD)"),
        ("and what about psilocybin?", "and what about psilocybin? (for PTSD)"),
        ("How about ketamine?", "How about ketamine? (for PTSD)"),
        ("Is psilocybin also effective?", "Is psilocybin also effective? (for PTSD)"),
        ("And for depression?", "And for depression? (about MDMA)"),
        ("What about alcohol use disorder?", "What about alcohol use disorder? (about MDMA)"),
        ("Does it work for anxiety?", "Does it work for anxiety? (about MDMA)"),
    ],
)
def test_follow_up_carries_topic(question: str, expected: str) -> None:
    assert rewrite(question, MDMA_PTSD) == expected


def test_follow_up_after_psilocybin_and_aud() -> None:
    assert rewrite("What about its side effects?", PSILO_AUD) == (
        "What about its side effects? (about psilocybin for alcohol use disorder)"
    )


def test_display_names_are_used() -> None:
    history = [U("Is 5-MeO-DMT studied for TRD?"), A("GH001 was tested [1].")]
    assert rewrite("what were its side effects?", history) == (
        "what were its side effects? (about 5-MeO-DMT for treatment-resistant depression)"
    )


def test_several_substances_are_joined() -> None:
    history = [U("Compare esketamine and ketamine for depression"), A("...")]
    assert rewrite("Which of them is faster?", history) == (
        "Which of them is faster? (about esketamine and ketamine for depression)"
    )


def test_aliases_in_history_are_resolved() -> None:
    history = [U("is molly any good for trauma?"), A("...")]
    assert rewrite("what are the risks?", history) == "what are the risks? (about MDMA for PTSD)"


# ------------------------------------------------------------------ new topics, no pollution

@pytest.mark.parametrize(
    "question",
    [
        "Is psilocybin legal in Oregon?",
        "Does ketamine help depression?",
        "What is the evidence for ibogaine in opioid use disorder?",
        "Is it legal to use psilocybin in Oregon?",
        "Is it true that ibogaine is legal in Mexico?",
        "Tell me about the history of psychedelic research in the 1950s and 1960s",
        "What is PTSD?",
        "How does LSD work in the brain?",
    ],
)
def test_self_contained_questions_are_unchanged(question: str) -> None:
    assert rewrite(question, MDMA_PTSD) == question


def test_new_topic_replaces_old_one() -> None:
    history = MDMA_PTSD + [U("Is ketamine legal in Germany?"), A("Ketamine is ... [2].")]
    assert rewrite("What are its side effects?", history) == (
        "What are its side effects? (about ketamine)"
    )


def test_new_condition_topic_replaces_old_substance() -> None:
    history = MDMA_PTSD + [U("What treatments exist for alcohol use disorder?"), A("...")]
    assert rewrite("What are the risks?", history) == (
        "What are the risks? (for alcohol use disorder)"
    )


def test_follow_up_chain_keeps_condition() -> None:
    history = MDMA_PTSD + [U("and what about psilocybin?"), A("Psilocybin ... [2].")]
    assert rewrite("What are its side effects?", history) == (
        "What are its side effects? (about psilocybin for PTSD)"
    )


def test_most_recent_user_turn_wins() -> None:
    history = PSILO_AUD + MDMA_PTSD
    assert rewrite("side effects?", history) == "side effects? (about MDMA for PTSD)"


def test_assistant_turns_used_only_when_user_turns_name_nothing() -> None:
    history = [
        U("hi, what can you help with?"),
        A("I can answer questions about esketamine, psilocybin, MDMA and more."),
    ]
    assert rewrite("how is it given?", history) == (
        "how is it given? (about esketamine and psilocybin)"
    )
    # User turns name something: the assistant's mentions are ignored.
    history2 = [U("Does MDMA help PTSD?"), A("Unlike ketamine or psilocybin, MDMA ...")]
    assert rewrite("how is it given?", history2) == "how is it given? (about MDMA for PTSD)"


def test_nothing_to_carry_returns_question() -> None:
    history = [U("hello"), A("Hello! Ask me about the evidence.")]
    assert rewrite("What are the side effects?", history) == "What are the side effects?"


def test_question_naming_both_is_unchanged() -> None:
    assert rewrite("And what about psilocybin for depression?", MDMA_PTSD) == (
        "And what about psilocybin for depression?"
    )


# ----------------------------------------------------------------------------- edge cases

@pytest.mark.parametrize(
    "question", ["What are its side effects?", "side effects?", "and psilocybin?", "", "   "]
)
def test_empty_history_returns_question_unchanged(question: str) -> None:
    assert rewrite(question, []) == question


def test_surrounding_whitespace_is_stripped_when_rewriting() -> None:
    assert rewrite("  What are its side effects?  \n", MDMA_PTSD) == (
        "What are its side effects? (about MDMA for PTSD)"
    )


def test_history_as_dicts_is_accepted() -> None:
    history = [{"role": "user", "content": "Does MDMA help PTSD?"}]
    result = rewrite("side effects?", history)  # type: ignore[arg-type]
    assert result == "side effects? (about MDMA for PTSD)"


def test_unicode_question_is_kept_verbatim() -> None:
    question = "Ｗｈａｔ ａｂｏｕｔ ｉｔｓ ｒｉｓｋｓ？"
    result = rewrite(question, MDMA_PTSD)
    assert result.startswith(question)
    assert result.endswith("(about MDMA for PTSD)")


# ---------------------------------------------------------------------------- needs_context

@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What are its side effects?", True),
        ("side effects?", True),
        ("what about psilocybin?", True),
        ("and for depression?", True),
        ("How about in Oregon?", True),
        ("Is that drug legal?", True),
        ("How long does it last?", True),
        ("Do they work?", True),
        ("Why?", True),
        ("Is psilocybin also effective?", True),
        ("What is MDMA?", False),
        ("Does psilocybin help depression?", False),
        ("Is it legal to use psilocybin in Oregon?", False),
        ("It is known that ketamine acts fast; how fast is esketamine?", False),
        ("Tell me about the history of psychedelic research in the 1950s and 1960s", False),
        ("", False),
    ],
)
def test_needs_context(question: str, expected: bool) -> None:
    assert needs_context(question) is expected


def test_module_and_functions_are_documented() -> None:
    assert conversation.__doc__ and "\n" not in conversation.__doc__.strip()
    for fn in (rewrite, needs_context):
        assert fn.__doc__ and "Args:" in fn.__doc__ and "Returns:" in fn.__doc__


# ------------------------------------------------------------------------ property: no loss

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra
    given = None

if given is not None:
    _WORDS = [
        "it", "its", "they", "that", "what", "about", "and", "for", "side", "effects", "?",
        "MDMA", "molly", "psilocybin", "Spravato", "ketamine", "PTSD", "depression", "TRD",
        "how", "about", "this", "drug", "legal", "in", "Oregon", "also", "\u200b", "ｉｔ",
    ]
    _text = st.one_of(
        st.text(max_size=120),
        st.lists(st.sampled_from(_WORDS), max_size=12).map(" ".join),
    )
    _turn = st.builds(Turn, role=st.sampled_from(["user", "assistant"]), content=_text)

    @settings(max_examples=300, deadline=None)
    @given(question=_text, history=st.lists(_turn, max_size=6))
    def test_original_words_are_never_dropped(question: str, history: list[Turn]) -> None:
        result = rewrite(question, history)
        assert question.strip() in result
        if not history:
            assert result == question

    @settings(max_examples=200, deadline=None)
    @given(question=_text)
    def test_needs_context_never_raises(question: str) -> None:
        assert needs_context(question) in (True, False)


# ------------------------------------------------------------------ sidebar filters

@pytest.mark.parametrize("question, subs, conds, expected", [
    ("What are the main risks of treatment?", ["ketamine", "esketamine"], [],
     "What are the main risks of treatment? (about ketamine and esketamine)"),
    ("What did the trials find?", ["mdma"], ["ptsd"], "What did the trials find? (about MDMA for PTSD)"),
    ("Does it help?", [], ["depression"], "Does it help? (for depression)"),
    # a question that names its own substance keeps it; only the missing condition is added
    ("Is psilocybin legal?", ["mdma"], ["ptsd"], "Is psilocybin legal? (for PTSD)"),
    ("What did MAPP1 find for PTSD with MDMA?", ["mdma"], ["ptsd"], "What did MAPP1 find for PTSD with MDMA?"),
    ("What are the risks?", [], [], "What are the risks?"),
])
def test_filters_name_the_topic_of_a_question_without_one(question, subs, conds, expected) -> None:
    got = with_filters(question, subs, conds)
    assert got == expected
    assert question.strip() in got  # the user's words are never changed


# ------------------------------------------------------------------ named things

from assistant.conversation import find_names, standalone  # noqa: E402

MAPP2 = [U("What did the MAPP2 trial find?"),
         A("MAPP2 (Mitchell et al., 2023) tested MDMA-assisted therapy for PTSD [1].")]


@pytest.mark.parametrize("text, ids, names", [
    ("What did the MAPP2 trial find?", ("MAPP2",), ()),
    ("Tell me about COMP005 and the FDA in May 2024", ("COMP005", "FDA"), ()),
    ("What about 5-HT2A and NCT03537014?", ("5-HT2A", "NCT03537014"), ()),
    ("Is psilocybin legal in New Mexico and Colorado?", (), ("New Mexico", "Colorado")),
    ("What did the Stanford ibogaine study in veterans with TBI find?", (), ("Stanford", "veterans")),
    ("What did Bogenschutz 2022 find for AUD?", (), ("Bogenschutz",)),
    # substances and conditions are the lexicon's (MDMA, PTSD, Spravato, GH001), not names;
    # a capitalised first word is not a name
    ("Does MDMA help PTSD? Spravato and GH001 too.", (), ()),
    ("Oregon allows it?", (), ()),
])
def test_names_are_found_by_their_shape(text, ids, names) -> None:
    found = find_names(text)
    assert (found.ids, found.names) == (ids, names)


def test_names_the_corpus_does_not_use_are_dropped() -> None:
    known = {"MAPP2", "Oregon"}.__contains__
    assert find_names("Is MAPP3 like MAPP2 in Oregon and Narnia?", known).ids == ("MAPP2",)
    assert find_names("Is MAPP3 like MAPP2 in Oregon and Narnia?", known).names == ("Oregon",)


def test_a_follow_up_carries_the_trial_it_is_about() -> None:
    got = standalone("and the placebo group?", MAPP2)
    assert got.text == "and the placebo group? (about MAPP2 and MDMA for PTSD)"
    assert got.carried == ("MAPP2", "MDMA", "PTSD") and got.from_filters == ()
    assert rewrite("What were its side effects?", MAPP2) == (
        "What were its side effects? (about MAPP2 and MDMA for PTSD)")


def test_a_question_naming_its_own_trial_or_substance_drops_the_old_trial() -> None:
    assert rewrite("and MAPP1?", MAPP2) == "and MAPP1? (about MDMA for PTSD)"
    assert rewrite("what about psilocybin?", MAPP2) == "what about psilocybin? (for PTSD)"


def test_a_new_question_forgets_the_old_trial() -> None:
    history = MAPP2 + [U("Is ketamine legal in Germany?"), A("...")]
    assert "MAPP2" not in rewrite("What are its side effects?", history)


def test_places_travel_into_continuations_and_there() -> None:
    oregon = [U("Is psilocybin legal in Oregon?"), A("Oregon Measure 109 ... [1]")]
    assert rewrite("and MDMA?", oregon) == "and MDMA? (about Oregon)"
    assert rewrite("Is ketamine legal there?", oregon) == "Is ketamine legal there? (about Oregon)"
    # a side-effect question is not about the place
    assert rewrite("What are its side effects?", oregon) == "What are its side effects? (about psilocybin)"
    # "is there" is not a place
    assert rewrite("Is there evidence for ketamine in depression?", oregon) == (
        "Is there evidence for ketamine in depression?")


def test_a_filter_outranks_the_topic_carried_from_history() -> None:
    history = [U("Does psilocybin help depression?"), A("Psilocybin ... [1]")]
    got = standalone("What are the main risks?", history, substances=["ketamine", "esketamine"])
    assert "psilocybin" not in got.text
    assert got.text == "What are the main risks? (about ketamine and esketamine for depression)"
    assert got.carried == ("depression",) and got.from_filters == ("ketamine", "esketamine")
    # and the trial names of a substance outside the filter are not carried either
    got = standalone("and the placebo group?", MAPP2, substances=["ketamine"])
    assert "MAPP2" not in got.text and "MDMA" not in got.text
    # a condition filter replaces the carried condition, keeps the carried substance
    got = standalone("What are its side effects?", MDMA_PTSD, conditions=["depression"])
    assert got.text == "What are its side effects? (about MDMA for depression)"


def test_filters_alone_name_their_topics() -> None:
    got = standalone("What are the main risks?", [], substances=["ketamine"])
    assert got.text == "What are the main risks? (about ketamine)" and got.from_filters == ("ketamine",)
    assert standalone("Is psilocybin legal?", [], substances=["mdma"]).text == "Is psilocybin legal?"


if given is not None:
    @settings(max_examples=300, deadline=None)
    @given(question=_text, history=st.lists(_turn, max_size=6),
           subs=st.lists(st.sampled_from(["mdma", "ketamine", "psilocybin"]), max_size=2),
           conds=st.lists(st.sampled_from(["ptsd", "depression"]), max_size=1))
    def test_standalone_keeps_the_users_words(question, history, subs, conds) -> None:
        got = standalone(question, history, substances=subs, conditions=conds)
        assert question.strip() in got.text
        if subs:  # a substance filter: no substance is carried from history
            from assistant.lexicon import DISPLAY_NAMES, SUBSTANCES

            assert not set(got.carried) & {DISPLAY_NAMES[s] for s in SUBSTANCES}


SUBJECTS = {"bogenschutz": "psilocybin", "noller": "ibogaine", "oregon": "psilocybin", "right": "ibogaine",
            "spravato": "esketamine"}
SPRAVATO = [U("Is Spravato approved for depression?"), A("The FDA approved Spravato (esketamine) ... [1]")]


@pytest.mark.parametrize("question", [
    "what was the dropout rate in the bogenschutz alcohol trial",   # lower case, not an English word
    "what were the main results of the Noller study",
    "what are the side effects reported in Oregon",                  # typed as a name
])
def test_a_name_about_another_substance_makes_the_question_its_own(question) -> None:
    got = standalone(question, SPRAVATO, subjects=SUBJECTS)
    assert got.text == question and got.carried == ()
    assert got.own_subject
    # without the corpus's subjects the old reading stays
    assert standalone(question, SPRAVATO).carried


@pytest.mark.parametrize("question", [
    "and in the Noller cohort?",            # a continuation asks the previous question again
    "what about in oregon",
    "is it approved there?",
    "what is the right dose",               # an everyday word in lower case is no name
    "what did spravato trials find for relapse",  # a name of the conversation's own substance
])
def test_continuations_everyday_words_and_same_topic_names_still_carry(question) -> None:
    got = standalone(question, SPRAVATO, subjects=SUBJECTS)
    assert got.own_subject == ()
    assert got.carried == standalone(question, SPRAVATO).carried
