"""Papers as maintainers add them, end to end: ingest into real Chroma with the real model, then
questions through `Assistant.ask` (issue 18).

The made-up ORCHID-2 report (tests/docgen.py) as a two-column PDF (two content-stream orders),
as hard-wrapped text and as HTML, each indexed on its own. On each: every shown sentence is one
whole sentence of the report, no chunk holds a running header, footer or page-number line, no
answer quotes the reference list (no chunk holds it; the chunks carry it as metadata), and the
abstract's figures answer the questions about them.
"""

from __future__ import annotations

import re

import pytest

import docgen
from assistant import index
from assistant.answer.verify import split_marked
from ingest.pipeline import run

pytestmark = pytest.mark.slow

FORMATS = {"pdf": ("paper.pdf", lambda: docgen.paper_pdf()),
           "pdf-rows": ("paper.pdf", lambda: docgen.paper_pdf(order="rows")),
           "txt": ("paper.txt", lambda: docgen.paper_txt().encode()),
           "html": ("paper.html", lambda: docgen.paper_html().encode())}


@pytest.fixture(scope="module", params=list(FORMATS))
def indexed(request, tmp_path_factory, embedder):
    """(format, settings, report, chunks, answers): one index per format, every question asked."""
    from assistant.assistant import Assistant
    from assistant.settings import Settings
    from helpers import open_collection

    name, make = FORMATS[request.param]
    base = tmp_path_factory.mktemp(f"paper-{request.param}")
    (base / "corpus").mkdir()
    (base / "corpus" / name).write_bytes(make())
    settings = Settings(data_dir=base / "data", corpus_dir=base / "corpus")
    report = run([settings.corpus_dir], settings, embedder=embedder)
    got = open_collection(settings).get(include=["documents", "metadatas"])
    chunks = list(zip(got["documents"], got["metadatas"]))
    qa = Assistant.from_settings(settings)
    questions = [q for q, _ in docgen.QUESTIONS] + [docgen.REFERENCE_BAIT]
    answers = {q: qa.ask(q, []) for q in questions}
    return request.param, settings, report, chunks, answers


def shown(answer) -> list[str]:
    """The sentences an answer shows with a citation marker."""
    return [text for text, nums in split_marked(answer.answer) if nums]


def test_ingest_reports_one_unreviewed_document(indexed):
    fmt, _, report, chunks, _ = indexed
    assert report.failed == [] and report.added == 1, report.as_json()
    assert len(report.warnings) == 1 and report.warnings[0].count("unreviewed") == 1, report.warnings
    assert {m["source_type"] for _, m in chunks} == {"unreviewed"}
    assert {m["title"] for _, m in chunks} == {docgen.TITLE}


def test_every_shown_sentence_is_a_whole_sentence_of_the_report(indexed):
    fmt, _, _, _, answers = indexed
    whole = set(docgen.prose_sentences())
    rows = {" | ".join(r) for r in docgen.table_rows()}
    count = 0
    for q, ans in answers.items():
        assert ans.status == "answered", (fmt, q, ans.status)
        for s in shown(ans):
            count += 1
            ok = s in whole or s in rows or (fmt == "txt" and re.split(r"\s{2,}", s) in docgen.table_rows())
            assert ok, f"{fmt}: {q!r} showed a fragment: {s!r}"
            if s in whole:
                assert s[0].isupper() and s[-1] in ".!?", s
    assert count >= len(answers)


def test_abstract_figures_answer_the_questions_about_them(indexed):
    fmt, _, _, _, answers = indexed
    for q, want in docgen.QUESTIONS:
        assert want in answers[q].answer, f"{fmt}: {q!r} -> {answers[q].answer!r}"


def test_no_header_footer_or_page_number_line_in_any_chunk(indexed):
    fmt, _, _, chunks, _ = indexed
    for text, meta in chunks:
        assert docgen.HEADER not in text and "doi:10.5555" not in text, (fmt, text[:80])
        for line in text.split("\n"):
            assert not re.fullmatch(r"\s*(?:page\s*)?\d{1,3}\s*", line, re.I), (fmt, line)
        if fmt.startswith("pdf"):
            assert meta["page"] in (1, 2)


def test_reference_list_is_metadata_never_an_answer(indexed):
    fmt, _, _, chunks, answers = indexed
    refs = docgen.REFERENCES
    for text, meta in chunks:
        assert index.references(meta) == refs
        for ref in refs:
            assert ref[:25] not in text, (fmt, ref)
        for _, paras in docgen.BACK_MATTER:
            assert paras[0][:30] not in text, (fmt, "back matter indexed")
    for q, ans in answers.items():
        for s in shown(ans):
            assert not any(s in r or r[:25] in s for r in refs), (fmt, q, s)


def test_norketamine_sentence_is_whole_not_cut_at_a_line_end(indexed):
    """The fragment of issue 18: 'excluded, and the safety of norketamine during lactation was [1]'."""
    fmt, _, _, _, answers = indexed
    ans = answers["Is norketamine safe during breastfeeding?"]
    assert ("Women who were pregnant or breastfeeding were excluded, and the safety of norketamine "
            "during lactation was not studied.") in shown(ans), (fmt, ans.answer)


def test_status_lists_the_unreviewed_document(indexed):
    from ingest.status import index_status

    fmt, settings, _, _, _ = indexed
    st = index_status(settings)
    assert st["unreviewed"] == [FORMATS[fmt][0]]
