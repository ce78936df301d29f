"""What files turn into before anything is embedded: whole paragraphs, no page chrome, no back
matter in any segment, footnote numbers out of the sentences, tables as rows, titles and authors.

Fast: the loaders and the tokenizer's vocabulary only (no model weights, no store). The same
made-up trial report (tests/docgen.py) is loaded as a two-column PDF (in two content-stream
orders), as hard-wrapped text and as HTML; its prose sentences are known, so "whole sentence"
is checked exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import docgen
from assistant import index
from assistant.errors import DocumentError
from assistant.settings import Settings
from assistant.text import sentence_spans
from ingest import blocks
from ingest.blocks import Line
from ingest.chunking import ChunkParams, chunk_document, hf_counter
from ingest.loaders import load

DATA = Path(__file__).resolve().parent / "data"
FORMATS = ["pdf", "pdf-rows", "txt", "html"]


def build(fmt: str) -> tuple[str, bytes]:
    if fmt == "pdf":
        return "paper.pdf", docgen.paper_pdf()
    if fmt == "pdf-rows":
        return "paper.pdf", docgen.paper_pdf(order="rows")
    if fmt == "txt":
        return "paper.txt", docgen.paper_txt().encode()
    return "paper.html", docgen.paper_html().encode()


@pytest.fixture(scope="module", params=FORMATS)
def paper(request):
    name, data = build(request.param)
    return request.param, load(Path(name), name, data)


def segment_sentences(doc) -> list[str]:
    return [doc.text[s:e] for seg in doc.segments for s, e in sentence_spans(doc.text, seg.start, seg.end)]


def test_every_prose_sentence_is_one_whole_sentence(paper):
    fmt, doc = paper
    got = segment_sentences(doc)
    rows = {" | ".join(r) for r in docgen.table_rows()}
    back = {s for _, ps in docgen.BACK_MATTER for p in ps for s in docgen.split_plain(p)}
    want = [s for s in docgen.prose_sentences() if s not in back]
    missing = [s for s in want if s not in got]
    assert not missing, f"{fmt}: sentences not found whole: {missing[:3]}"
    for s in got:
        if fmt == "txt" and re.search(r"\S {2,}\S", s):
            continue  # a plain-text table row keeps its spacing
        assert s in want or s in rows, f"{fmt}: a fragment or stray line: {s!r}"


def test_no_running_header_footer_or_page_number_in_any_segment(paper):
    fmt, doc = paper
    for seg in doc.segments:
        body = doc.text[seg.start:seg.end]
        assert docgen.HEADER not in body and "doi:" not in body and "Page 1" not in body, fmt
        assert not any(re.fullmatch(r"\s*\d{1,3}\s*", ln) for ln in body.split("\n")), fmt


def test_back_matter_is_in_no_segment_and_references_are_metadata(paper):
    fmt, doc = paper
    assert doc.back_matter == ["Acknowledgements", "Funding", "Conflicts of interest", "References"], fmt
    assert doc.references == docgen.REFERENCES, fmt
    indexed = "\n".join(doc.text[s.start:s.end] for s in doc.segments)
    for ref in docgen.REFERENCES:
        assert ref[:25] not in indexed
    for _, paras in docgen.BACK_MATTER:
        assert paras[0][:30] not in indexed
    assert {s.section for s in doc.segments} == {"Abstract"} | {name for name, _ in docgen.BODY}


def test_hyphenation_across_lines_is_repaired_and_real_hyphens_kept(paper):
    fmt, doc = paper
    assert "Unlike psilocybin, which" in doc.text, fmt
    assert "psilo-" not in doc.text and "psilo cybin" not in doc.text
    for compound in ("placebo-controlled", "twice-weekly", "short-term", "treatment-resistant"):
        assert compound in doc.text, (fmt, compound)


def test_table_rows_stay_rows(paper):
    fmt, doc = paper
    lines = doc.text.split("\n")
    for row in docgen.table_rows():
        if fmt == "txt":
            assert any(re.split(r"\s{2,}", ln.strip()) == row for ln in lines), row
        else:
            assert " | ".join(row) in lines, (fmt, row)


def test_title_authors_and_unreviewed(paper):
    fmt, doc = paper
    assert doc.meta.title == docgen.TITLE
    assert doc.meta.authors == docgen.AUTHORS
    assert doc.meta.source_type == "unreviewed"
    assert len(doc.warnings) == 1 and doc.warnings[0].count("unreviewed") == 1, doc.warnings
    indexed = "\n".join(doc.text[s.start:s.end] for s in doc.segments)
    for line in ("Ada Marlow, Ben Quint", docgen.AFFILIATION, docgen.CORRESPONDENCE):
        assert line not in indexed, (fmt, line)


def test_pdf_pages_and_reading_order_do_not_depend_on_the_content_stream():
    name, flow = build("pdf")
    a = load(Path(name), name, flow)
    b = load(Path(name), name, docgen.paper_pdf(order="rows"))
    assert a.text == b.text
    assert [(s.section, s.page) for s in a.segments] == [(s.section, s.page) for s in b.segments]
    pages = {s.section: s.page for s in a.segments}
    assert pages["Abstract"] == 1 and pages["Limitations"] == 2
    # The paragraph that runs from the foot of one column to the top of the next is one.
    assert "with a review of benefit and side effects at the end of the course." in a.text


def test_chunks_never_cover_back_matter_and_carry_the_references(paper, tokenizer):
    fmt, doc = paper
    chunks = chunk_document(doc, "paper", "paper", ChunkParams.from_settings(Settings()), hf_counter(tokenizer))
    assert chunks
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
        assert index.references(c.metadata) == docgen.REFERENCES
        assert "Imag Psychiatry" not in c.text and "consulting fees" not in c.text
        assert json.loads(str(c.metadata["authors"])) == docgen.AUTHORS


# ----------------------------------------------------------------------------- reflow rules

def lines_of(*texts: str, kind: str = "text") -> list[Line]:
    return [Line(t, kind if t else "blank") for t in texts]


def test_reflow_joins_a_paragraph_but_keeps_boundaries():
    lines = [Line("Methods", "heading", 2),
             *lines_of("The trial enrolled adults with depression who had", "not responded to two drugs.",
                       "", "A second paragraph starts after a blank line"),
             Line("- a list item stays its own line", "item"),
             Line("Cell a | Cell b", "row"),
             *lines_of("and text after a row is a new paragraph.")]
    out = blocks.reflow(lines)
    assert [ln.text for ln in out] == [
        "Methods", "The trial enrolled adults with depression who had not responded to two drugs.",
        "", "A second paragraph starts after a blank line", "- a list item stays its own line",
        "Cell a | Cell b", "and text after a row is a new paragraph."]


def test_short_last_line_ends_its_paragraph():
    wrapped = ["This paragraph is wrapped at about sixty characters so that",
               "its lines are long until the last one.",
               "A new paragraph starts here without any blank line between",
               "them, as plain notes often do."]
    out = blocks.reflow(lines_of(*wrapped))
    assert [ln.text for ln in out] == [wrapped[0] + " " + wrapped[1], wrapped[2] + " " + wrapped[3]]


@pytest.mark.parametrize("a, b, joined", [
    ("given before psilo-", "cybin sessions", "given before psilocybin sessions"),  # lexicon word
    ("the treat-", "ment was given", "the treatment was given"),                   # everyday word
    ("a placebo-", "controlled trial", "a placebo-controlled trial"),              # compound kept
    ("the MDMA-", "assisted arm", "the MDMA-assisted arm"),                        # capitalised head
    ("a zorb-", "lax trial", "a zorb-lax trial"),                                  # unknown: kept
])
def test_hyphen_at_a_line_break(a, b, joined):
    out = blocks.reflow(lines_of(a + " " * 40, b), known=lambda w: w in blocks.known_words())
    assert out[0].text == joined


def test_hyphenated_compound_used_elsewhere_keeps_its_hyphen():
    text = ["Follow-up visits were weekly, and every participant came to a follow-",
            "up visit at week six."]
    out = blocks.reflow(lines_of(*text), known=lambda w: True)
    assert "a follow-up visit" in out[0].text


# ----------------------------------------------------------------------------- footnotes, bylines

@pytest.mark.parametrize("raw, clean, labels", [
    ("after 3 sessions of MDMA-assisted therapy.1 The drug acts", "after 3 sessions of MDMA-assisted therapy. The drug acts", ["1"]),
    ("treatment-resistant depression (TRD).2 Psilocybin promotes", "treatment-resistant depression (TRD). Psilocybin promotes", ["2"]),
    ("reductions in opioid cravings and withdrawal symptoms.3", "reductions in opioid cravings and withdrawal symptoms.", ["3"]),
    ("A2017 study in a journal", "A 2017 study in a journal", []),
    ("as shown before [4, 5]. Next", "as shown before. Next", ["4,5"]),
    ("superscript marks¹² stay out", "superscript marks stay out", ["12"]),
    ("from the HTML front end.\ue0007\ue001 Next", "from the HTML front end. Next", ["7"]),
    # Not footnotes: decimals, names with digits, a sentence end before a lowercase word.
    ("fell by 14.2 points in MAPP1. CAPS-5 and 5-HT2A too.", "fell by 14.2 points in MAPP1. CAPS-5 and 5-HT2A too.", []),
    ("given approx.5 mg twice", "given approx.5 mg twice", []),
])
def test_footnote_markers(raw, clean, labels):
    text, notes = blocks.strip_footnotes(raw)
    assert text == clean
    assert [n for _, n in notes] == labels
    for off, _ in notes:
        assert text[off - 1] in ".)sh" or text[off - 1].isalpha()


@pytest.mark.parametrize("line, plain_list, names", [
    ("Lucas Trautman, MD, MPH, ABPN, ABPM", False, ["Lucas Trautman"]),
    ("By Mary-Jane O’Neil and J. Smith", False, ["Mary-Jane O’Neil", "J. Smith"]),
    ("Author: Dana Whitlock, DO", False, ["Dana Whitlock"]),
    ("Ada Marlow1, Ben Quint2, Carla Ferreira*", True, ["Ada Marlow", "Ben Quint", "Carla Ferreira"]),
    ("Ada Marlow, Ben Quint", False, None),        # a bare name list only just under a title
    ("Key Takeaways", True, None),
    ("By contrast, the trial enrolled adults.", False, None),
    ("Screening and Contraindications", True, None),
])
def test_bylines(line, plain_list, names):
    assert blocks.parse_byline(line, plain_list) == names


@pytest.mark.parametrize("heading, kind", [
    ("References", "references"), ("7. References", "references"), ("Bibliography", "references"),
    ("Acknowledgements", "other"), ("Acknowledgments", "other"), ("Funding", "other"),
    ("Conflicts of Interest", "other"), ("Competing interests", "other"), ("Disclosures", "other"),
    ("Author affiliations", "other"), ("Results", None), ("Funding of psychedelic research", None),
    ("Conflicts of interest in psychedelic research", None), ("Limitations", None),
    ("Who funds the trials", None), ("Notes", None), ("Sources", None),
])
def test_back_matter_headings(heading, kind):
    assert blocks.back_matter_kind(heading) == kind


def test_ambiguous_headings_are_back_matter_only_over_a_reference_list():
    prose = ["Sessions were held in the clinic.", "", "Each lasted about six hours."]
    refs = ["1. Smith C. Ketamine dosing. J Imag. 2021;9:101.", "2. Lee E. Dissociation. 2022;3:44."]
    for heading in ("Notes", "Sources"):
        assert blocks.back_matter_kind(heading, prose) is None
        assert blocks.back_matter_kind(heading, refs) == "references"


# ----------------------------------------------------------------------------- forum chrome

def test_tables_and_headings_are_never_chrome():
    lines = [*lines_of("Doses by year", ""), Line("2024", "heading", 2),
             *lines_of("The trial ran at six clinics over two years.", "")]
    lines += [Line("Women  57%  60%", "row"), Line("Men  43%  40%", "row")]
    kept, dropped = blocks.drop_chrome(lines)
    assert [ln.text for ln in kept if ln.text][-3:] == ["The trial ran at six clinics over two years.",
                                                        "Women  57%  60%", "Men  43%  40%"]
    assert "2024" in [ln.text for ln in kept] and dropped == 0


def test_affiliation_and_correspondence_lines_leave_the_text():
    lines = lines_of("A trial of ketamine", "Ada Marlow, Ben Quint",
                     "1 Department of Psychiatry, Imaginary University, Springfield",
                     "Correspondence: ada.marlow@example.org", "",
                     "University clinics screened every patient before the first dose.")
    kept, authors = blocks.find_authors(lines, 0)
    assert authors == ["Ada Marlow", "Ben Quint"]
    assert [ln.text for ln in kept if ln.text] == [
        "A trial of ketamine", "University clinics screened every patient before the first dose."]


def test_forum_chrome_is_dropped_and_counted():
    lines = lines_of("Article title", "", "someuser", "", "Super Moderator",
                     "* A teaser that repeats the first paragraph of the article body word for word.",
                     "", "A teaser that repeats the first paragraph of the article body word for word.",
                     "", "The article goes on with a second paragraph that ends properly.", "",
                     "Members online", "2", "Guests online", "1,915", "Latest posts", "Back", "Top")
    kept, dropped = blocks.drop_chrome(lines)
    texts = [ln.text for ln in kept if ln.text]
    assert texts == ["Article title",
                     "A teaser that repeats the first paragraph of the article body word for word.",
                     "The article goes on with a second paragraph that ends properly."]
    assert dropped == 10


def test_running_header_after_page_breaks_is_dropped():
    lines = lines_of("Notes on screening", "", "First page text that runs on and on.",
                     "\fClinic Handbook 2026", "Second page text.", "\fClinic Handbook 2026",
                     "Third page text.")
    kept, dropped = blocks.drop_chrome(lines)
    assert "Clinic Handbook 2026" not in [ln.text.strip() for ln in kept] and dropped == 2


# ----------------------------------------------------------------------------- files shaped like the seed

def test_forum_fixture_loads_clean():
    path = DATA / "forum_opinion_article.txt"
    doc = load(path, path.name, path.read_bytes())
    assert doc.meta.title == "Psychedelic Medicine Is Ready for the Clinic"
    assert doc.meta.authors == ["Dana Whitlock"] and doc.meta.source_type == "unreviewed"
    indexed = [doc.text[s.start:s.end] for s in doc.segments]
    lines = {ln.strip() for t in indexed for ln in t.split("\n")}
    for chrome in ("nightowl_rx", "Well-known member", "Share", "Share:", "Dana Whitlock, DO, MPH",
                   "Forum statistics", "Threads", "12,408", "Related Threads",
                   "Microdosing Schedule Tracker", "Back", "Top"):
        assert chrome not in lines, chrome
    body = "\n".join(indexed)
    assert body.count("Clinicians who wait for perfect evidence") == 1  # the teaser is gone
    assert "A 2019 survey" in body and "A2019" not in body
    assert not re.search(r"[A-Za-z)][.!?]\d", body), "a footnote number is glued to a sentence end"
    # The footnote numbers are kept, next to the sentence ends they followed.
    assert [n for _, n in doc.footnotes] == ["1", "2", "3"]
    assert all(doc.text[off - 1] == "." for off, _ in doc.footnotes)
    assert "after only two sessions." in doc.text[doc.footnotes[0][0] - 30:doc.footnotes[0][0]]
    assert len(doc.warnings) == 1 and "unreviewed" in doc.warnings[0] and "Dana Whitlock" in doc.warnings[0]


def test_markdown_corpus_files_are_unchanged_by_reflow():
    """Every corpus document loads to exactly its lines: nothing in it is hard-wrapped."""
    corpus = Path(__file__).resolve().parents[1] / "corpus"
    for path in sorted(corpus.glob("*.md")):
        if path.name == "README.md":
            continue
        doc = load(path, path.name, path.read_bytes())
        assert doc.meta.source_type == "summary" and not doc.warnings and not doc.footnotes, path.name
        assert not doc.back_matter, path.name


def test_unreadable_pdf_names_the_file_and_the_fix():
    with pytest.raises(DocumentError) as err:
        load(Path("broken.pdf"), "broken.pdf", b"%PDF-1.4\nthis is not a pdf\n%%EOF\n")
    assert "broken.pdf" in str(err.value) and "re-export" in str(err.value)


# ----------------------------------------------------------------------------- property

_WORDS = ("ketamine psilocybin trial dose patients depression week placebo treatment-resistant "
          "response safety clinic blood pressure follow-up remission session adults").split()


@settings(max_examples=40, deadline=None)
@given(sentences=st.lists(st.lists(st.sampled_from(_WORDS), min_size=3, max_size=14), min_size=1, max_size=8),
       width=st.integers(min_value=30, max_value=100))
def test_hard_wrapping_is_undone_exactly(sentences, width):
    """Any paragraph hard-wrapped at any width loads back as that paragraph, word for word."""
    import textwrap

    para = " ".join(" ".join(ws).capitalize() + "." for ws in sentences)
    raw = "---\ntitle: Notes\nsource_type: summary\n---\n\n" + textwrap.fill(para, width) + "\n"
    doc = load(Path("notes.txt"), "notes.txt", raw.encode())
    assert [doc.text[s.start:s.end] for s in doc.segments] == [para]


def test_password_protected_pdf_names_the_file_and_the_fix():
    import io

    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, encrypt="secret")
    c.drawString(72, 720, "A locked page about ketamine.")
    c.showPage()
    c.save()
    with pytest.raises(DocumentError) as err:
        load(Path("locked.pdf"), "locked.pdf", buf.getvalue())
    assert "locked.pdf" in str(err.value) and "password" in str(err.value)
