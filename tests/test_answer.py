"""Extractive answers over the real corpus: cited, copied verbatim, highlighted, numbered in order;
the verify gate catches a tampered answer; out-of-scope questions abstain."""

from __future__ import annotations

import difflib
import re

import pytest
from fixtures_assistant import ANSWERABLE, CORPUS, ask

from assistant import messages
from assistant.answer.verify import split_marked, unsupported
from assistant.models import Answer

pytestmark = pytest.mark.slow

SOURCE_TYPES = {"trial", "meta-analysis", "review", "guideline", "regulatory", "label", "news",
                "opinion", "summary"}


def marked(ans: Answer) -> list[tuple[str, list[int]]]:
    return split_marked(ans.answer)


def by_n(ans: Answer) -> dict:
    return {c.n: c for c in ans.citations}


# --------------------------------------------------------------------------- answered questions

@pytest.fixture(params=ANSWERABLE, ids=[q for q, _, _ in ANSWERABLE])
def answered(request, qa):
    question, must_contain, must_cite = request.param
    ans = ask(qa, question)
    assert ans.status == "answered", f"{question!r} -> {ans.status}: {ans.answer}"
    return question, must_contain, must_cite, ans


def test_answer_has_two_to_six_sentences_each_cited(answered):
    _, _, _, ans = answered
    sents = marked(ans)
    assert 2 <= len(sents) <= 6, ans.answer
    for text, nums in sents:
        assert nums, f"sentence without a [n] marker: {text!r}"
        assert text.strip()
    # Nothing outside the marked sentences (no stray unmarked text between them).
    rebuilt = re.sub(r"\s*\[\d+\]", "", ans.answer)
    rebuilt = re.sub(r"(?m)^\s*[-*•]\s+", "", rebuilt)
    assert sorted(rebuilt.split()) == sorted(" ".join(t for t, _ in sents).split())


def test_every_sentence_is_copied_from_the_passage_it_cites(answered):
    """Each sentence is copied whole from its first cited passage. A further citation is another
    source that states the same fact (nearly the same sentence, the same figures): the gate's
    support check must accept it against that passage too."""
    from assistant.answer.verify import support_problems

    _, _, _, ans = answered
    cites = by_n(ans)
    for text, nums in marked(ans):
        for n in nums:
            assert n in cites, f"[{n}] cited but not listed"
        assert text in cites[nums[0]].passage, f"{text!r} is not in passage [{nums[0]}]"
        for n in nums[1:]:
            assert text in cites[n].passage or not support_problems(text, [cites[n]]), (text, n)
    assert unsupported(ans.answer, ans.citations) == []


def test_highlights_slice_exactly_the_cited_sentences(answered):
    """A passage's highlights are the sentences quoted from it, or, for a further citation, its
    own sentence that states the same fact."""
    _, _, _, ans = answered
    first_of: dict[int, set[str]] = {}
    also: dict[int, set[str]] = {}
    for text, nums in marked(ans):
        first_of.setdefault(nums[0], set()).add(text)
        for n in nums[1:]:
            also.setdefault(n, set()).add(text)
    for c in ans.citations:
        assert c.highlight, f"[{c.n}] has no highlight"
        sliced = set()
        for start, end in c.highlight:
            assert 0 <= start < end <= len(c.passage)
            sliced.add(c.passage[start:end])
        quoted = first_of.get(c.n, set())
        assert quoted <= sliced, f"[{c.n}] highlights {sliced} vs quoted {quoted}"
        extra = sliced - quoted
        assert len(extra) <= len(also.get(c.n, set())), f"[{c.n}] highlights more than it supports"


def test_citations_are_numbered_in_order_of_first_use(answered):
    _, _, _, ans = answered
    ns = [c.n for c in ans.citations]
    assert ns == list(range(1, len(ns) + 1))
    first_use: list[int] = []
    for n in (int(x) for x in re.findall(r"\[(\d+)\]", ans.answer)):
        if n not in first_use:
            first_use.append(n)
    assert first_use == ns
    assert len({c.chunk_id for c in ans.citations}) == len(ns), "one passage cited under two numbers"


def test_citations_carry_their_metadata(answered):
    _, _, _, ans = answered
    for c in ans.citations:
        assert c.title.strip() and c.doc_id and c.chunk_id and c.source
        assert isinstance(c.section, str)
        if not c.section:  # only a passage from the lead, before the document's first heading
            assert _before_first_heading(c.doc_id, c.passage), f"[{c.n}] {c.doc_id} has no section"
        assert c.source_type in SOURCE_TYPES
        assert c.passage.strip()
        if c.doc_id.startswith("legal-status"):
            assert c.as_of and re.fullmatch(r"\d{4}-\d{2}-\d{2}", c.as_of), (c.doc_id, c.as_of)


def _before_first_heading(doc_id: str, passage: str) -> bool:
    from ingest.schema import split_front_matter

    _, body, _ = split_front_matter((CORPUS / f"{doc_id}.md").read_text(encoding="utf-8"))
    pos = body.find(passage[:80])
    assert pos >= 0, f"passage not found in {doc_id}"
    return not re.search(r"(?m)^#{2,6} ", body[:pos])  # the H1 is the document title


def test_answer_states_the_fact_and_cites_the_right_document(answered):
    question, must_contain, must_cite, ans = answered
    assert must_contain.lower() in ans.answer.lower(), ans.answer
    assert must_cite in {c.doc_id for c in ans.citations}, [c.doc_id for c in ans.citations]


def _similar(a: str, b: str) -> float:
    wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    jaccard = len(wa & wb) / max(1, len(wa | wb))
    return max(jaccard, difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio())


def test_no_near_duplicate_sentences(answered):
    _, _, _, ans = answered
    sents = [t for t, _ in marked(ans)]
    for i in range(len(sents)):
        for j in range(i + 1, len(sents)):
            assert _similar(sents[i], sents[j]) < 0.8, (sents[i], sents[j])


def test_legal_answers_carry_as_of(qa):
    ans = ask(qa, "What is the legal status of psilocybin in Australia?")
    legal = [c for c in ans.citations if c.doc_id.startswith("legal-status")]
    assert legal, [c.doc_id for c in ans.citations]
    assert all(c.as_of for c in legal)


# ----------------------------------------------------------------------------- the verify gate

@pytest.fixture
def real(qa):
    ans = ask(qa, "What did the MAPP1 trial of MDMA for PTSD find?")
    assert ans.status == "answered"
    assert unsupported(ans.answer, ans.citations) == []
    return ans


def _replace_sentence(ans: Answer, old: str, new: str) -> str:
    assert old in ans.answer
    return ans.answer.replace(old, new, 1)


def test_gate_catches_a_changed_number(real):
    text, nums = next((t, n) for t, n in marked(real) if re.search(r"\d", re.sub(r"MAPP\d", "", t)))
    context = " ".join(by_n(real)[n].passage for n in nums)
    for m in re.finditer(r"\d+", text):
        if text[max(0, m.start() - 4):m.start()] == "MAPP":
            continue
        new_number = str(int(m.group()) * 10 + 7)
        assert new_number not in context
        edited = text[:m.start()] + new_number + text[m.end():]
        break
    bad = unsupported(_replace_sentence(real, text, edited), real.citations)
    assert edited in bad


def test_gate_catches_an_edited_sentence(real):
    text, nums = marked(real)[0]
    edits = [
        text.replace("MDMA", "ketamine") if "MDMA" in text else "Ketamine " + text,
        "It is not true that " + text[0].lower() + text[1:],
        "Psilocybin cured every participant of migraine within a single afternoon.",
        text + " Everyone also recovered from alcoholism",
    ]
    for edited in edits:
        assert edited not in by_n(real)[nums[0]].passage
        bad = unsupported(_replace_sentence(real, text, edited), real.citations)
        assert bad == [edited], (edited, bad)


def test_gate_catches_a_citation_to_a_missing_source(real):
    text, nums = marked(real)[-1]
    missing = len(real.citations) + 1
    tampered = re.sub(rf"{re.escape(text)}((?:\s*\[\d+\])+)", f"{text} [{missing}]", real.answer, count=1)
    assert f"[{missing}]" in tampered
    assert unsupported(tampered, real.citations) == [text]
    # Dropping the cited passage from the list has the same effect.
    assert text in unsupported(real.answer, [c for c in real.citations if c.n not in nums])


def test_gate_catches_an_unmarked_sentence(real):
    extra = "MAPP1 randomised 90 adults with severe PTSD."
    assert unsupported(real.answer + " " + extra, real.citations) == [extra]


# ------------------------------------------------------------------------------- abstention

OUT_OF_SCOPE = [
    "What is the capital of France?",
    "Does cannabis help with insomnia?",
    "Is kratom effective for opioid withdrawal?",
    "What is the best preventive treatment for migraine headaches?",
]


@pytest.mark.parametrize("question", OUT_OF_SCOPE)
def test_out_of_scope_questions_abstain_and_name_nearest_topics(qa, question):
    ans = ask(qa, question)
    assert ans.status == "no_evidence", ans.answer
    assert "do not cover" in ans.answer
    assert ans.citations == []
    assert ans.caveat == messages.CAVEAT
    # The nearest topics are titles of real corpus documents.
    m = re.search(r"nearest topics they do cover: (.+)\.$", ans.answer)
    assert m, ans.answer
    titles = {h.chunk.title for h in qa.retrieve(question)}
    named = [t for t in titles if t in m.group(1)]
    assert named, (m.group(1), titles)


ODD_BUT_IN_SCOPE = [
    # (question, a word the answer must contain)
    ("mdma ptsd results??", "MAPP"),
    ("so like... do shrooms actually do anything for depressed ppl", "psilocybin"),
    ("SPRAVATO - WHEN WAS IT APPROVED", "2019"),
    ("ibogaine heart problems", "QT"),
    ("Do magic mushrooms help with depression?", "psilocybin"),
    ("What did the FDA decide about MDMA-assisted therapy in 2024?", "FDA"),
]


@pytest.mark.parametrize("question,word", ODD_BUT_IN_SCOPE, ids=[q for q, _ in ODD_BUT_IN_SCOPE])
def test_in_scope_questions_phrased_oddly_are_answered(qa, question, word):
    ans = ask(qa, question)
    assert ans.status == "answered", ans.answer
    assert word.lower() in ans.answer.lower(), ans.answer
    assert ans.citations and unsupported(ans.answer, ans.citations) == []
