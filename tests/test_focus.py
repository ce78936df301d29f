"""What a question asks for (assistant/answer/focus.py), without the model: multi-part splits,
names, places, follow-up context and result questions."""

from __future__ import annotations

import pytest

from assistant import lexicon
from assistant.answer import focus
from assistant.answer.focus import CorpusTerms, analyse, split_parts


@pytest.mark.parametrize("question,parts", [
    # "at which" starts a question of its own
    ("How many adults were in Bogenschutz 2022, and at which weeks were the medication sessions held?",
     ["How many adults were in Bogenschutz 2022?", "at which weeks were the medication sessions held?"]),
    # existential "was there" does not lean on the clause before; the shared setting is kept
    ("In the Stanford magnesium-ibogaine study, what was the 1-month effect size for disability, "
     "and was there a comparison group?",
     ["In the Stanford magnesium-ibogaine study, what was the 1-month effect size for disability?",
      "In the Stanford magnesium-ibogaine study, was there a comparison group?"]),
    # "it" is the question's subject, which each part inherits
    ("How many adults were in MAPP2, and what washout period did it use?",
     ["How many adults were in MAPP2?", "what washout period did it use?"]),
    ("In the Carbonaro survey: how many people responded, and what share sought medical help?",
     ["In the Carbonaro survey: how many people responded?",
      "In the Carbonaro survey: what share sought medical help?"]),
])
def test_multi_part_questions_are_split(question, parts):
    assert split_parts(question) == parts


@pytest.mark.parametrize("question", [
    "What dose was used in MAPP1, and is that addictive?",     # leans on the first part
    "Is there a washout period before MDMA?",                  # one question with "there"
    "What about kratom and ibogaine?",                          # a topic, not two questions
])
def test_one_question_is_one_part(question):
    assert split_parts(question) == [question]


def test_places_are_known_from_iso_3166_not_from_a_hand_list():
    assert all(lexicon.is_place(p) for p in ("Germany", "Czech Republic", "Oregon", "Queensland",
                                             "New Mexico", "Ontario"))
    assert not any(lexicon.is_place(w) for w in ("Hopkins", "Carbonaro", "Goodwin", "psilocybin",
                                                 "trial", "Stanford"))
    # another place, in any form; the asked one (in any form) does not count
    assert lexicon.mentions_place("the czech criminal-code amendment", {"germany"})
    assert lexicon.mentions_place("canadian special access", {"germany"})
    assert not lexicon.mentions_place("the german programme in mannheim", {"germany"})
    assert not lexicon.mentions_place("a mexican ibogaine clinic", {"mexico"})


# The index's view of the corpus, reduced to the names these tests need.
CORPUS = CorpusTerms(df={}, chunks=100, names=frozenset({"day-7", "palhano-fontes", "gh001-trd-201",
                                                         "comp005", "germany", "czech"}))


def test_a_hyphenated_phrase_of_plain_words_is_not_a_name():
    assert analyse("What was the day-7 effect size in the ayahuasca trial?", CORPUS).names == []
    assert analyse("What did Palhano-Fontes report at day 7?", CORPUS).names == ["palhano-fontes"]
    assert "gh001-trd-201" in analyse("Did GH001-TRD-201 meet its endpoint?", CORPUS).names


def test_a_follow_up_keeps_its_substance_until_it_names_its_own():
    # "has it been tried for PTSD?" after a DMT turn is still about DMT...
    assert analyse("has it been tried for PTSD too? (about DMT)", None).substances == ["dmt"]
    # ...a follow-up naming its own substance, place or trial drops what was carried
    assert analyse("what about ketamine? (about MDMA)", None).substances == ["ketamine"]
    assert analyse("what about COMP005? (about MDMA)", CORPUS).substances == []
    assert analyse("what about germany? (about psilocybin, Czech Republic)", CORPUS).names == ["germany"]
    # names carried by the rewrite never gate
    assert analyse("and the side effects? (about psilocybin, Czech Republic)", CORPUS).names == []


@pytest.mark.parametrize("question,outcome", [
    ("How effective is psilocybin for treatment-resistant depression?", True),
    ("ok and what did COMP005 show?", True),
    ("Does ketamine work for depression?", True),
    ("Are GH Research's phase 2b GH001 results peer reviewed?", False),  # a status question
    ("What dose of MDMA was given in MAPP1?", False),                    # a figure question
])
def test_result_questions_prefer_result_sentences(question, outcome):
    assert analyse(question, None).outcome is outcome


def test_the_number_of_a_phase_is_not_a_figure_the_answer_must_state():
    focus = analyse("Did the MDMA phase 3 trials show benefit lasting past the 18-week endpoint?", None)
    assert focus.figures == ["18"]


# ----------------------------------------------------------------------------- informal wording

def test_a_word_the_corpus_never_uses_is_framing_only_when_the_question_barely_needs_it(embedder):
    from assistant.answer.focus import framing_words

    q = "for my lecture slides: what was the FDA advisory committee vote on MDMA for PTSD"
    framing = framing_words(q, {"lecture", "slides"}, embedder.encode)
    assert set(framing) == {"lecture", "slides"} and all(0 <= r < 0.2 for r in framing.values())
    # the topic the corpus lacks carries the question: it stays a missing topic
    assert framing_words("can kratom help with opioid withdrawal", {"kratom"}, embedder.encode) == {}
    assert framing_words("Is zuranolone approved for postpartum depression?", {"zuranolone"},
                         embedder.encode) == {}


def test_framing_words_are_not_reported_missing_and_weigh_as_everyday_words(embedder):
    corpus = CorpusTerms(df={"fda": 20, "advisori": 5, "committe": 5, "vote": 3, "mdma": 40}, chunks=100,
                         names=frozenset())
    q = "for my lecture slides: what was the FDA advisory committee vote on MDMA"
    plain = analyse(q, corpus)
    framed = analyse(q, corpus, embedder.encode)
    assert "slides" in plain.unknown and "slides" not in framed.unknown
    assert framed.terms["slide"] < plain.terms["slide"]


def test_shortened_and_mistyped_words_resolve_to_what_they_stand_for():
    from assistant.answer.focus import _completion, _function_typo

    corpus = CorpusTerms(df={"psilocybin": 50, "psilocin": 10, "cigarett": 2}, chunks=100, names=frozenset())
    assert _completion("psilo", corpus) == "psilocybin"  # the most frequent completion
    assert _completion("cig", corpus) == "cigarett"
    assert _completion("ps", corpus) is None            # too short to say
    assert _function_typo("wats") and _function_typo("whats")
    assert not _function_typo("kratom") and not _function_typo("salvia")
    focus = analyse("does psilo help heavy drinkers, wats the heavy drinking days numbers", corpus)
    assert focus.substances == ["psilocybin"] and "wats" not in focus.unknown


def test_a_figure_typed_against_its_unit_and_a_shortened_phase_are_read():
    assert analyse("did the 10mg dose do anything vs 1mg", None).figures == ["10", "1"]
    assert "phase 2b" in lexicon.resolve_terms("toad venom drug ph2b results")
    assert "phase 3" in lexicon.resolve_terms("the ph 3 trials")


@pytest.mark.parametrize("question,kind", [
    ("how much did ptsd scores drop on mdma vs placebo in the first ph3 trial", "effect"),
    ("ok now the 5-meo ph2b, how much did madrs change vs placebo", "effect"),
    ("How much psilocybin was given in COMP005?", "dose"),
])
def test_how_much_a_score_moved_is_an_effect_not_a_dose(question, kind):
    assert analyse(question, None).kind == kind


@pytest.mark.parametrize("question", [
    "What were the primary results of the Panorama trial?",
    "What does the clinical trial evidence show for mescaline in depression?",
    "results of the Hopkins smoking pilot",
])
def test_questions_about_results_are_result_questions(question):
    assert analyse(question, None).outcome


def test_the_conditions_the_user_names_are_part_of_the_focus():
    assert analyse("any AUD trials w ketamine", None).conditions == ["alcohol-use-disorder"]
    # a condition carried by a follow-up's rewrite does not gate
    assert analyse("and the side effects? (about MDMA for PTSD)", None).conditions == []


@pytest.mark.parametrize("question,counted", [
    ("In the lithium report analysis, how many needed medical attention?", "peopl"),  # by the verb
    ("how many died in the review", "peopl"),
    ("how many licensed service centers are there in Oregon", "center"),  # a participle, then the noun
    ("How many participants were randomised in MAPP1?", "particip"),
    # the noun before a verb the list of auxiliaries lacks is what is counted, not the verb
    ("how many smokers quit in the johnson psilocybin pilot at 6 months", "smoker"),
    ("how many patients relapsed after ibogaine", "patient"),
])
def test_how_many_counts_people_when_a_verb_follows(question, counted):
    assert analyse(question, None).counted == counted


@pytest.mark.parametrize("question, points", [
    ("did the ayahuasca trd trial hold up at 6 months", [("6", "month")]),
    ("response rate at day 2 in Palhano-Fontes 2019?", [("2", "day")]),
    ("what % were abstinent at wk 32", [("32", "week")]),
    ("did it hold up at 12 wks", [("12", "week")]),
    ("How long does the blood-pressure rise last, 4 hours?", []),
    ("What did the 2021 trial find?", []),
])
def test_time_points_a_question_asks_at(question, points):
    assert focus.timepoints(question) == points


def test_a_sentence_states_a_time_point_in_any_common_form():
    assert focus.states_timepoint("Over the 32-week double-blind follow-up", ("32", "week"))
    assert focus.states_timepoint("At 6 months, 12 of 15 (80%) were abstinent.", ("6", "month"))
    assert focus.states_timepoint("were in remission (MADRS ≤10) at day 7.", ("7", "day"))
    assert not focus.states_timepoint("day-7 response was 64%", ("2", "day"))
    assert not focus.states_timepoint("at 6 weeks", ("6", "month"))
    assert not focus.states_timepoint("on day 7.5", ("7", "day"))


def test_a_follow_up_switching_to_a_place_the_corpus_never_names_is_about_that_place():
    corpus = CorpusTerms(df={"oregon": 3, "rule": 4, "side": 6, "legal": 5}, chunks=100,
                         names=frozenset({"oregon"}))
    before = focus.analyse("what are the Oregon psilocybin rules", corpus)
    after = focus.carry(focus.analyse("and in california? (about psilocybin, Oregon)", corpus), before)
    assert "california" in after.unknown and after.required == {"california"}
    # A follow-up that switches to what the corpus does cover keeps the usual gates.
    kept = focus.carry(focus.analyse("what about its side effects?", corpus), before)
    assert not kept.required and not kept.unknown
