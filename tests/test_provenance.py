"""Figure provenance (assistant/answer/provenance.py): fast, no model, no index.

An opinion's figure is looked up in reviewed sentences; it is held only when a reviewed source
states it about the same thing, not when a fact check quotes it, attributes it to the author,
negates it, or the same number measures something else.
"""

from __future__ import annotations

from assistant import messages
from assistant.answer import provenance
from assistant.models import Citation

CLAIM = "In a 2021 study, a single dose led to a 71% reduction in depressive symptoms in TRD."


def cite(n: int, title: str, passage: str, source_type: str, authors: list[str] | None = None) -> Citation:
    return Citation(n=n, chunk_id=f"c{n}", doc_id=f"d{n}", title=title, source=f"{n}.md",
                    passage=passage, source_type=source_type, authors=authors or [])


def test_figures_of_a_sentence():
    assert provenance.figures(CLAIM) == ["2021", "71%"]
    assert provenance.figures("after just 3 sessions, 67% no longer met criteria") == ["3 sessions", "67%"]
    assert provenance.figures("Phase 3 of MAPP2 ran at 13 sites") == ["13"]


def test_a_figure_is_held_only_when_a_reviewed_source_states_it_about_the_same_thing():
    same_number_other_measure = [("Davis", "In Davis 2021, 71% of participants had a response.")]
    assert not provenance.held("71%", CLAIM, same_number_other_measure, [])
    stated = [("Review", "One trial reported a 71% reduction in depressive symptoms at week 6.")]
    assert provenance.held("71%", CLAIM, stated, [])
    quoted = [("Fact check", 'The "71%" reduction was a response rate.')]
    assert not provenance.held("71%", CLAIM, quoted, [])
    attributed = [("Fact check", "Trautman's article says a 71% reduction in symptoms followed.")]
    assert not provenance.held("71%", CLAIM, attributed, ["trautman"])
    negated = [("Fact check", "It is not a 71% reduction in symptoms.")]
    assert not provenance.held("71%", CLAIM, negated, [])
    assert provenance.held("2021", CLAIM, [("Davis", "Davis et al. published in 2021.")], [])


def test_check_marks_unheld_figures_and_disagreements():
    evidence = cite(1, "MAPP1 summary", "At 18 weeks 67% of the MDMA group versus 32% of the placebo "
                    "group no longer met PTSD criteria in MAPP1.", "summary")
    claim = cite(2, "An opinion piece", "In MAPP1, 88% of the MDMA group no longer met PTSD criteria "
                 "after 3 sessions.", "opinion", authors=["Jane Doe, MD"])
    sentences = [(evidence.passage, [1]), (claim.passage, [2])]

    def lookup(number: str) -> list[tuple[str, str]]:
        return [("MAPP1 summary", evidence.passage)] if number in evidence.passage else []

    checks, notes = provenance.check(sentences, [evidence, claim], {"opinion", "news", "unreviewed"},
                                     lookup)
    by_figure = {c.figure: c for c in checks}
    assert set(by_figure) == {"88%", "3 sessions"} and all(c.citation == 2 for c in checks)
    assert not by_figure["88%"].held
    assert messages.figure_not_found("88%", "An opinion piece") in notes
    assert any(n.startswith("The sources disagree") and "88%" in n and "67%" in n for n in notes)


def test_reviewed_sentences_are_not_checked():
    evidence = cite(1, "Summary", "In MAPP1 67% no longer met criteria.", "summary")
    checks, notes = provenance.check([(evidence.passage, [1])], [evidence], {"opinion"},
                                     lambda f: [])
    assert checks == [] and notes == []
