"""Formats and bad input, through the real pipeline: real Chroma on disk and the real model.

Every bad file must give ONE message naming the file, the problem and the fix, while every other
file is still indexed; the CLI exits non-zero when any file failed.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import pytest

from helpers import error_lines, make_pdf, open_collection, psyqa, write_doc

from ingest.pipeline import run

pytestmark = pytest.mark.slow

GOOD_BODY = "## Summary\n\nA short, valid document that must be indexed whatever its neighbours do.\n"

MINI = Path(__file__).resolve().parent / "data" / "mini_corpus"  # trial.md, notes.txt, page.html, ...
HTML_PAGE = (MINI / "page.html").read_text()

PDF_PAGES = ["Page one explains ibogaine cardiac risk.\nQT prolongation was reported.",
             "Page two covers screening with an ECG before dosing."]


# ----------------------------------------------------------------------------- formats

@pytest.fixture(scope="module")
def formats(tmp_path_factory, embedder):
    """One mixed-format corpus ingested once; read-only tests share it."""
    from assistant.settings import Settings

    base = tmp_path_factory.mktemp("formats")
    corpus = base / "corpus"
    # The HTML page has its own test (its own run), so an HTML problem cannot hide the others.
    shutil.copytree(MINI, corpus, ignore=shutil.ignore_patterns("*.html"))
    (corpus / "paper.pdf").write_bytes(make_pdf(PDF_PAGES, title="Ibogaine and the heart"))
    (corpus / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    settings = Settings(data_dir=base / "data", corpus_dir=corpus)
    report = run([corpus], settings, embedder=embedder)
    col = open_collection(settings)
    got = col.get(include=["documents", "metadatas"])
    chunks = [(cid, doc, meta) for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])]
    return report, chunks


def of(chunks, doc_id):
    rows = [(d, m) for _, d, m in chunks if m["doc_id"] == doc_id]
    assert rows, f"{doc_id} was not indexed"
    return rows


def test_formats_report(formats):
    report, _ = formats
    assert report.failed == []
    assert report.added == 4
    assert report.chunks_embedded >= 5


def test_markdown_front_matter_and_sections(formats):
    _, chunks = formats
    rows = of(chunks, "trial.md")
    sections = {m["section"] for _, m in rows}
    assert {"Methods", "Results", "Results > Subsection"} <= sections, sections
    assert all(m["title"] == "Psilocybin trial summary" for _, m in rows)
    assert all(m["source_type"] == "trial" and m["sub_psilocybin"] is True for _, m in rows)
    results = [d for d, m in rows if m["section"] == "Results > Subsection"]
    assert any("headache" in d for d in results)
    # The H1 that repeats the title is not a section of its own.
    assert not any(m["section"].startswith("Psilocybin trial summary") for _, m in rows)


def test_text_without_front_matter_title_from_heading_or_file_name(formats):
    report, chunks = formats
    assert {m["title"] for _, m in of(chunks, "notes.txt")} == {"Plain notes heading"}
    assert {m["title"] for _, m in of(chunks, "bare_text-file.txt")} == {"Bare text file"}
    for name in ("notes.txt", "bare_text-file.txt"):
        warned = [w for w in report.warnings if name in w]
        assert len(warned) == 1 and "front matter" in warned[0], report.warnings


def test_html_main_text_only(tmp_path, settings_factory, embedder):
    # Its own small run, so that an HTML problem cannot hide the other formats' results.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "page.html").write_text(HTML_PAGE)
    settings = settings_factory()
    report = run([corpus], settings, embedder=embedder)
    assert report.failed == [] and report.added == 1
    got = open_collection(settings).get(include=["documents", "metadatas"])
    rows = list(zip(got["documents"], got["metadatas"]))
    text = "\n".join(d for d, _ in rows)
    assert "forty minutes" in text and "Blood pressure" in text
    for marker in ("scriptmarker", "stylemarker", "Navmarker", "Headermarker", "Footermarker", "color: red"):
        assert marker not in text, f"{marker} leaked into the index"
    assert {m["title"] for _, m in rows} == {"Ketamine clinic page"}
    assert "Monitoring" in {m["section"] for _, m in rows}


def test_pdf_text_layer_keeps_page_numbers(formats):
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(make_pdf(PDF_PAGES)), strict=True)
    assert "ibogaine cardiac risk" in reader.pages[0].extract_text()
    assert "ECG" in reader.pages[1].extract_text()
    _, chunks = formats
    rows = of(chunks, "paper.pdf")
    by_page = {m["page"]: d for d, m in rows}
    assert set(by_page) == {1, 2}
    assert "QT prolongation" in by_page[1] and "ECG" in by_page[2]
    assert {m["title"] for _, m in rows} == {"Ibogaine and the heart"}


def test_other_extensions_are_skipped(formats):
    report, chunks = formats
    assert sorted(s["path"] for s in report.skipped) == ["figure.png", "table.csv"]
    assert all("unsupported extension" in s["reason"] for s in report.skipped)
    assert not {"figure.png", "table.csv"} & {m["doc_id"] for _, _, m in chunks}


# ----------------------------------------------------------------------------- bad input

_OPENED: list[str] = []
_WATCH: set[str] = set()


def _audit(event, args):  # observes opens; changes nothing
    if event == "open" and _WATCH and args and isinstance(args[0], (str, bytes, os.PathLike)):
        p = os.fsdecode(os.fspath(args[0]))
        if p in _WATCH:
            _OPENED.append(p)


sys.addaudithook(_audit)


def ingest_with(tmp_path, embedder, settings_factory, make_bad) -> tuple:
    """A corpus of good.md plus whatever `make_bad(corpus)` writes; returns (report, doc ids)."""
    corpus = tmp_path / "corpus"
    write_doc(corpus / "good.md", "Good document", GOOD_BODY)
    make_bad(corpus)
    settings = settings_factory()
    report = run([corpus], settings, embedder=embedder)
    col = open_collection(settings)
    ids = {m["doc_id"] for m in col.get(include=["metadatas"])["metadatas"]}
    return report, ids


def assert_one_failure(report, rel: str, *words: str) -> str:
    mine = [f for f in report.failed if f["path"] == rel]
    assert len(mine) == 1, report.failed
    assert len(report.failed) == 1, report.failed
    msg = mine[0]["error"]
    assert "\n" not in msg
    problem, _, fix = msg.partition("; ")
    assert problem and fix, f"no fix in {msg!r}"
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    return msg


def test_empty_file(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory, lambda c: (c / "empty.md").write_text(""))
    assert_one_failure(report, "empty.md", "empty")
    assert ids == {"good.md"} and report.added == 1


def test_binary_bytes_under_md(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory,
                              lambda c: (c / "binary.md").write_bytes(b"# Title\n\x00\x01\x02\xff binary"))
    assert_one_failure(report, "binary.md", "binary", "NUL")
    assert ids == {"good.md"}


def test_invalid_utf8(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory,
                              lambda c: (c / "latin1.md").write_bytes("---\ntitle: Café\n---\n\nCafé crème.\n".encode("latin-1")))
    assert_one_failure(report, "latin1.md", "UTF-8", "re-save")
    assert ids == {"good.md"}


def test_malformed_yaml_front_matter(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory,
                              lambda c: (c / "yaml.md").write_text("---\ntitle: [unclosed\nsubstances: mdma\n---\n\nBody.\n"))
    assert_one_failure(report, "yaml.md", "YAML")
    assert ids == {"good.md"}


def test_missing_title(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory,
                              lambda c: write_doc(c / "untitled.md", None, "Body text.\n", source_type="review"))
    assert_one_failure(report, "untitled.md", "title")
    assert ids == {"good.md"}


def test_50_mb_file_refused_by_size_without_being_read(tmp_path, embedder, settings_factory):
    big = tmp_path / "corpus" / "huge.txt"

    def make(corpus):
        line = b"a " * 511 + b"a\n"  # 1 KiB
        with open(big, "wb") as f:
            block = line * 1024
            for _ in range(50):
                f.write(block)
        _WATCH.add(str(big.resolve()))  # from here on, any open() of it is recorded

    try:
        report, ids = ingest_with(tmp_path, embedder, settings_factory, make)
    finally:
        _WATCH.clear()
    assert big.stat().st_size == 50 * 1024 * 1024
    assert_one_failure(report, "huge.txt", "50.0 MB", "limit", "PSYQA_MAX_FILE_MB")
    assert _OPENED == [], "the oversized file was opened instead of being refused by its size"
    assert ids == {"good.md"}


def test_pdf_without_text_layer(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory,
                              lambda c: (c / "scan.pdf").write_bytes(make_pdf([None])))
    assert_one_failure(report, "scan.pdf", "text layer", "OCR")
    assert ids == {"good.md"}


def test_html_only_script(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory, lambda c: (c / "app.html").write_text(
        "<html><head><script>console.log('x')</script></head><body><script>render()</script></body></html>"))
    assert_one_failure(report, "app.html", "no readable text")
    assert ids == {"good.md"}


def test_id_with_path_traversal_is_refused(tmp_path, embedder, settings_factory):
    report, ids = ingest_with(tmp_path, embedder, settings_factory,
                              lambda c: write_doc(c / "evil.md", "Evil", "Body.\n", id="../../etc/passwd"))
    assert_one_failure(report, "evil.md", "../../etc/passwd", "not allowed")
    assert ids == {"good.md"}


def test_symlink_outside_corpus_is_refused(tmp_path, embedder, settings_factory):
    outside = write_doc(tmp_path / "outside" / "secret.md", "Secret", "Not part of the corpus.\n")

    def make(corpus):
        (corpus / "link.md").symlink_to(outside)

    report, ids = ingest_with(tmp_path, embedder, settings_factory, make)
    assert_one_failure(report, "link.md", "symlink", "outside")
    assert ids == {"good.md"}


def test_symlink_inside_corpus_is_allowed(tmp_path, embedder, settings_factory):
    def make(corpus):
        write_doc(corpus / "sub" / "real.md", "Real", "Inside the corpus.\n")
        (corpus / "alias.md").symlink_to(corpus / "sub" / "real.md")

    report, ids = ingest_with(tmp_path, embedder, settings_factory, make)
    assert report.failed == []
    assert {"good.md", "sub/real.md"} <= ids


def test_duplicate_id_second_file_fails_naming_both(tmp_path, embedder, settings_factory):
    def make(corpus):
        write_doc(corpus / "a-first.md", "First", "First body.\n", id="shared-id")
        write_doc(corpus / "b-second.md", "Second", "Second body.\n", id="shared-id")

    report, ids = ingest_with(tmp_path, embedder, settings_factory, make)
    msg = assert_one_failure(report, "b-second.md", "shared-id", "a-first.md")
    assert msg.startswith("has the same document id"), msg  # the path field names the second file
    assert ids == {"good.md", "shared-id"}


def test_cli_all_bad_inputs_one_line_each_and_nonzero_exit(tmp_path, settings_factory):
    """The whole set at once through `psyqa ingest DIR`: one error line per bad file, exit 1."""
    corpus = tmp_path / "corpus"
    write_doc(corpus / "good.md", "Good document", GOOD_BODY)
    (corpus / "empty.md").write_text("")
    (corpus / "binary.md").write_bytes(b"\x00\x00\x00")
    (corpus / "latin1.md").write_bytes("Caf\u00e9".encode("latin-1"))
    (corpus / "yaml.md").write_text("---\ntitle: : :\n  - x\n---\n\nBody.\n")
    write_doc(corpus / "untitled.md", None, "Body.\n", publisher="Nobody")
    (corpus / "scan.pdf").write_bytes(make_pdf([None]))
    (corpus / "app.html").write_text("<html><body><script>x()</script></body></html>")
    write_doc(corpus / "evil.md", "Evil", "Body.\n", id="../../etc/passwd")
    write_doc(corpus / "z-dup.md", "Dup", "Body.\n", id="good-id")
    write_doc(corpus / "y-orig.md", "Orig", "Body.\n", id="good-id")
    (corpus / "link.md").symlink_to(write_doc(tmp_path / "elsewhere.md", "X", "Y.\n"))
    with open(corpus / "huge.txt", "wb") as f:
        f.write((b"a " * 511 + b"a\n") * (50 * 1024))  # 50 MiB of 'a ' lines
    bad = ["empty.md", "binary.md", "latin1.md", "yaml.md", "untitled.md", "scan.pdf", "app.html",
           "evil.md", "z-dup.md", "link.md", "huge.txt"]
    settings = settings_factory()
    res = psyqa("ingest", corpus, settings=settings)
    assert res.returncode == 1, res.stderr
    for name in bad:
        lines = [ln for ln in error_lines(res.stderr, name) if ln.startswith(f"error: {name}: ")]
        assert len(lines) == 1, f"{name}: {lines}\n{res.stderr}"
        assert "; " in lines[0], f"no fix given: {lines[0]}"
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error:")]) == len(bad), res.stderr
    assert "added 2," in res.stdout and f"failed {len(bad)}" in res.stdout, res.stdout
    col = open_collection(settings)
    assert {m["doc_id"] for m in col.get(include=["metadatas"])["metadatas"]} == {"good.md", "good-id"}
