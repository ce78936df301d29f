"""The answer step answers the question asked (issue 12), through the real Assistant, model and
index: abstention that names what is missing and offers related reading, informal input, the asked
entity, multi-part questions, follow-ups and result questions. The questions are the issue's own
examples and the kinds it names, not items of eval/quality.jsonl."""

from __future__ import annotations

import re

import pytest
from fixtures_assistant import ask

from assistant import messages
from assistant.answer.focus import RESULT

pytestmark = pytest.mark.slow


def U(text: str) -> dict:
    return {"role": "user", "content": text}


def A(text: str) -> dict:
    return {"role": "assistant", "content": text}


def sentences(answer) -> list[str]:
    return [s.strip(" -") for s in re.split(r"(?<=\])\s+|\n", answer.answer) if s.strip(" -")]


# ----------------------------------------------------------------------------- abstention

@pytest.mark.parametrize("question,named", [
    ("What QTc cut-off excluded people from the MAPP2 trial?", ["QTC", "MAPP2"]),
    ("What washout period for SSRIs was used before dosing in MAPP1?", ["washout", "MAPP1"]),
])
def test_an_on_topic_question_the_corpus_cannot_answer_names_what_is_missing(qa, question, named):
    ans = ask(qa, question)
    assert ans.status == "no_evidence" and ans.citations == []
    for word in named:
        assert word.lower() in ans.answer.lower()
    # the closest passages are offered, cited, and labelled as not answering
    assert ans.related and all(c.doc_id and c.passage and c.highlight for c in ans.related)
    assert "do not answer the question" in ans.answer
    assert ans.caveat == messages.CAVEAT


def test_a_follow_up_about_a_substance_the_corpus_has_no_ptsd_trial_of_abstains(qa):
    ans = ask(qa, "has it been tried for PTSD too?",
              [U("What is DMT?"), A("DMT is a short-acting tryptamine psychedelic [1].")])
    assert ans.status == "no_evidence"
    assert "DMT" in ans.answer  # it says what it looked for, not MDMA's trials
    assert ans.citations == []


# ----------------------------------------------------------------------------- informal input

@pytest.mark.parametrize("question,doc", [
    ("My patient on Zoloft wants to join a psilocybin trial, is there an interaction?", "drug-interactions"),
    ("How many people completed the 12-month interviews in the Noller ibogaine cohort?",
     "ibogaine-opioid-use-disorder"),
    ("psilocybn for depresion", None),
    # lay words for what the corpus says in its own terms ("declined to approve", "intravenous")
    ("Why did the FDA reject MDMA-assisted therapy in 2024?", None),
    ("How long can QT prolongation persist after an ibogaine overdose?", "ibogaine-cardiac-risk-and-deaths"),
    # everyday words the corpus never uses, in a question about one of its subjects (the "hang
    # around ... before going home" wording is screened in test_assistant's LOOK_ALIKES)
    ("how long must pts wait around in clinic after a spravato dose", "esketamine-spravato"),
])
def test_brand_names_everyday_words_and_typos_do_not_make_a_question_out_of_scope(qa, question, doc):
    ans = ask(qa, question)
    assert ans.status == "answered", ans.answer
    if doc:
        assert doc in {c.doc_id for c in ans.citations}


# ----------------------------------------------------------------------------- selection

def test_a_question_about_one_trial_is_not_answered_with_another_trials_figures(qa):
    ans = ask(qa, "What share of the MDMA group no longer met PTSD criteria in MAPP2?")
    assert ans.status == "answered"
    assert "71.2%" in ans.answer
    assert "67%" not in ans.answer  # MAPP1's figure


def test_a_follow_up_about_another_place_stays_on_that_place(qa):
    ans = ask(qa, "what about germany?",
              [U("Can psychiatrists prescribe psilocybin in the Czech Republic?"),
               A("From 1 January 2026, Czech psychiatrists may prescribe individually compounded "
                 "synthetic psilocybin for severe, treatment-resistant depression [1].")])
    assert ans.status == "answered"
    assert "11 July 2025" in ans.answer
    for sentence in sentences(ans):
        assert not re.search(r"Czech|Australia|Canada", sentence), sentence


def test_how_effective_is_answered_with_results_not_with_document_structure(qa):
    ans = ask(qa, "How effective is psilocybin for treatment-resistant depression?")
    assert ans.status == "answered"
    assert RESULT.search(ans.answer)
    assert not re.search(r"summari[sz]ed (?:here|separately)|This summary covers", ans.answer)


def test_one_fact_stated_in_several_documents_is_shown_once(qa):
    ans = ask(qa, "Does Spravato raise blood pressure?")
    assert ans.status == "answered"
    said = [s for s in sentences(ans) if re.search(r"raises blood pressure at all recommended doses", s)]
    assert len(said) <= 2  # at most once plainly and once with the figures of its time course
    assert len({c.doc_id for c in ans.citations}) >= 2  # the other sources are cited, not repeated


def test_a_multi_part_question_answers_each_part_or_says_it_is_not_covered(qa):
    ans = ask(qa, "In the Stanford magnesium-ibogaine study, what was the 1-month effect size for "
                  "disability, and was there a comparison group?")
    assert ans.status == "answered"
    assert "d = 2.20" in ans.answer
    assert "no control group" in ans.answer.lower() or any(
        "comparison group" in n for n in ans.notes)


def test_a_part_the_sources_do_not_cover_is_named_under_the_answer(qa):
    ans = ask(qa, "How many adults were in MAPP2, and what washout period for lithium did it use?")
    assert ans.status == "answered"
    assert "104" in ans.answer
    assert any(n.startswith("Not answered by the sources") and "washout" in n for n in ans.notes)


def test_an_everyday_word_without_a_corpus_subject_is_still_out_of_scope(qa):
    ans = ask(qa, "What is the capital of Australia?")  # "capital" is the whole question
    assert ans.status == "no_evidence" and ans.citations == []


def test_a_question_about_another_substance_does_not_inherit_the_previous_trial(qa):
    # "its trials" reads as a follow-up, but esketamine is not MAPP2's drug (found in a fresh-clone
    # trial: the answer was MAPP1's SSRI history)
    ans = ask(qa, "Did esketamine reduce suicidal ideation in its trials?",
              [U("What did the MAPP2 trial find?"),
               A("In the confirmatory MAPP2 trial (2023), 71.2% of the MDMA group versus 47.6% of "
                 "the placebo group no longer met PTSD criteria. [1]")])
    assert ans.status == "answered"
    assert "MAPP" not in ans.answer and "suicidal ideation" in ans.answer, ans.answer


# ----------------------------------------------------------------------------- framing, conditions, results

def test_framing_words_the_corpus_never_uses_do_not_make_a_question_out_of_scope(qa):
    ans = ask(qa, "for my lecture slides: what was the FDA advisory committee vote on whether MDMA is effective?")
    assert ans.status == "answered"
    assert "9–2" in ans.answer and "does not appear" not in ans.answer
    ans = ask(qa, "in a nutshell, how many sites did MAPP2 run at")
    assert ans.status == "answered" and "13 sites" in ans.answer


def test_a_question_about_a_condition_is_not_answered_from_another_setting(qa):
    ans = ask(qa, "Has ketamine been trialled for alcohol use disorder?")
    assert ans.status == "no_evidence" and ans.citations == []
    assert "alcohol use disorder" in ans.answer.lower() and "ketamine" in ans.answer.lower()


def test_a_question_about_results_is_not_answered_by_a_sentence_that_reports_none(qa):
    # the corpus says only that the MM120 phase 3 trials began
    ans = ask(qa, "What results has the Panorama phase 3 trial of MM120 reported?")
    assert ans.status == "no_evidence"
    assert "report no results" in ans.answer and "Panorama" in ans.answer


# ----------------------------------------------------------------------------- trials by name

def test_a_results_question_about_a_trial_leads_with_that_trials_result(qa):
    ans = ask(qa, "What did MAPP2 find?")
    assert ans.status == "answered"
    first = sentences(ans)[0]
    assert "MAPP2" in first and "71.2%" in first  # not its demographics


def test_a_follow_up_naming_another_trial_asks_the_previous_question_of_it(qa):
    ans = ask(qa, "and in MAPP2?", [U("how did the MDMA arm do in MAPP1?"),
                                    A("At the MAPP1 primary endpoint 67% of the MDMA group versus 32% of "
                                      "the placebo group no longer met PTSD criteria [1].")])
    assert ans.status == "answered"
    first = sentences(ans)[0]
    assert "71.2%" in first and "67%" not in first


def test_a_carried_word_the_corpus_never_uses_does_not_sink_a_follow_up(qa):
    ans = ask(qa, "how many deaths were reported from that",
              [U("which antidepressant is deadly with MDMA"),
               A("MDMA combined with the MAO-A inhibitor moclobemide has caused fatal serotonin toxicity [1].")])
    assert ans.status == "answered" and "Finland" in ans.answer


def test_how_many_people_did_something_is_answered_by_the_share_who_did(qa):
    ans = ask(qa, "how many participants in the MDMA phase 3 trials correctly guessed their allocation?")
    assert ans.status == "answered" and "90%" in ans.answer and "75%" in ans.answer


def test_a_follow_up_about_a_place_the_corpus_never_names_says_so(qa):
    # "california" is an everyday English word, but here it is the whole question.
    ans = ask(qa, "and in california?",
              [U("what are the rules for psilocybin in oregon"),
               A("As of 2026-11-27, Oregon psilocybin clients must be 21 or older and need no "
                 "prescription, referral or diagnosis [1].")])
    assert ans.status == "no_evidence"
    assert "california" in ans.answer.lower()
    assert "Oregon psilocybin clients" not in ans.answer


@pytest.mark.parametrize("question", [
    "did the ayahuasca trd trial hold up at 6 months",
    "What was the response rate at day 2 in the Palhano-Fontes 2019 ayahuasca trial?",
])
def test_a_question_at_a_time_point_the_sources_do_not_report_abstains(qa, question):
    ans = ask(qa, question)
    assert ans.status == "no_evidence"
    assert "64%" not in ans.answer  # the day-7 figure is not an answer at another time point


def test_a_question_at_a_time_point_the_sources_report_is_answered_with_it(qa):
    ans = ask(qa, "psilocybin smoking pilot, how many were abstinent at 12 months")
    assert ans.status == "answered"
    assert "67%" in ans.answer


def test_a_missing_compound_name_is_quoted_whole(qa):
    ans = ask(qa, "does st john's wort interact with psilocybin")
    assert ans.status == "no_evidence"
    assert "'st john's wort'" in ans.answer.lower()


def test_the_missing_time_point_is_named_even_when_it_is_the_only_specific_word(qa):
    ans = ask(qa, "did the ayahuasca depression trial hold up at 3 months")
    assert ans.status == "no_evidence"
    assert "at 3 months" in ans.answer
