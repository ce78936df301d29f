"""Measure text extraction and sentence splitting: psyqa's own code against the libraries that fit.

Usage (the libraries compared are not dependencies of psyqa; install them to compare):

    .venv/bin/pip install pdfminer.six pdfplumber pysbd
    .venv/bin/python scripts/bench_extraction.py [--markdown] [--show-disagreements]

PDF: the made-up trial report of tests/docgen.py as a two-column PDF, once with its content
stream in reading order ("flow") and once sorted top to bottom across both columns ("rows"), is
extracted by each candidate; every candidate's text then goes through the same loader
(`ingest.loaders`: reflow, headings, back matter), except psyqa's own layout (pypdfium2 words),
which is the PDF loader itself, and pdfplumber's words fed to the same layout code. Scored
against the report's known sentences: whole sentences found, fragments, running header, footer
and page-number lines, reference entries and table rows in the indexed text, the hyphenated
word repaired, and time relative to psyqa's loader on the same file.

Sentences: psyqa's `assistant.text.sentence_spans` against pysbd on the report's prose (ground
truth: `docgen.split_plain`) and on the corpus (agreement; with --show-disagreements the
sentences on which they differ, to read).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import docgen  # noqa: E402

from assistant.text import sentence_spans  # noqa: E402
from ingest.loaders import load, load_markdown  # noqa: E402


# ----------------------------------------------------------------------------- PDF candidates

def text_pypdf(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n\n".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages)


def text_pypdf_layout(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n\n".join(p.extract_text(extraction_mode="layout") or "" for p in PdfReader(io.BytesIO(data)).pages)


def text_pypdfium2(data: bytes) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    return "\n\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))


def text_pdfminer(data: bytes) -> str:
    from pdfminer.high_level import extract_text
    from pdfminer.layout import LAParams

    return extract_text(io.BytesIO(data), laparams=LAParams())


def text_pdfplumber(data: bytes) -> str:
    import pdfplumber

    with pdfplumber.open(io.BytesIO(data)) as pdf:
        return "\n\n".join(p.extract_text() or "" for p in pdf.pages)


def doc_pdfplumber_layout(data: bytes):
    """pdfplumber's words (pdfminer underneath) through psyqa's layout code."""
    import pdfplumber

    from ingest import blocks
    from ingest.loaders import _finish, _known
    from ingest.pdf import Word, layout_lines
    from assistant.models import DocMeta

    pages, sizes = [], []
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        for p in pdf.pages:
            words = p.extract_words(extra_attrs=["size", "fontname"], use_text_flow=False)
            pages.append([Word(w["text"], w["x0"], w["x1"], w["bottom"], w["size"],
                               bool(re.search("bold", w["fontname"], re.I))) for w in words])
            sizes.append((p.width, p.height))
    lines, dropped = layout_lines(pages, sizes)
    at = next((k for k, ln in enumerate(lines) if ln.kind == "heading" and ln.level == 1), None)
    lines, authors = blocks.find_authors(lines, at)
    asm = blocks.assemble(blocks.reflow(lines, _known), None, drop_title_heading=True)
    return _finish("paper.pdf", asm, DocMeta(title=docgen.TITLE), authors, dropped, [], "")


def via_text_loader(text: str):
    return load_markdown("paper.txt", text, "paper", plain=True)


def as_before(text: str):
    """What psyqa did before issue 18: pypdf's text as it is, every line break a sentence end,
    every page one segment."""
    from types import SimpleNamespace

    from ingest.loaders import Segment

    return SimpleNamespace(text=text, segments=[Segment(0, len(text))])


CANDIDATES = {
    "pypdf, no reflow (psyqa before)": lambda d: as_before(text_pypdf(d)),
    "pypdf + psyqa reflow": lambda d: via_text_loader(text_pypdf(d)),
    "pypdf layout mode": lambda d: via_text_loader(text_pypdf_layout(d)),
    "pypdfium2 text": lambda d: via_text_loader(text_pypdfium2(d)),
    "pdfminer.six": lambda d: via_text_loader(text_pdfminer(d)),
    "pdfplumber text": lambda d: via_text_loader(text_pdfplumber(d)),
    "pdfplumber words + psyqa layout": doc_pdfplumber_layout,
    "pypdfium2 words + psyqa layout (psyqa)": lambda d: load(Path("paper.pdf"), "paper.pdf", d),
}


def score(doc) -> dict[str, object]:
    indexed = "\n".join(doc.text[s.start:s.end] for s in doc.segments)
    got = [doc.text[a:b] for s in doc.segments for a, b in sentence_spans(doc.text, s.start, s.end)]
    back = {x for _, ps in docgen.BACK_MATTER for p in ps for x in docgen.split_plain(p)}
    want = [x for x in docgen.prose_sentences() if x not in back]
    rows = {" | ".join(r) for r in docgen.table_rows()}
    row_lines = [ln for ln in indexed.split("\n")
                 if ln in rows or re.split(r"\s{2,}", ln.strip()) in docgen.table_rows()]
    whole = sum(1 for x in want if x in got)
    fragments = sum(1 for x in got if x not in want and x not in rows and x not in row_lines)
    chrome = sum(1 for ln in indexed.split("\n")
                 if docgen.HEADER in ln or "doi:" in ln or re.fullmatch(r"\s*\d{1,3}\s*", ln))
    refs = sum(1 for r in docgen.REFERENCES if r[:25] in indexed)
    return {"whole": f"{whole}/{len(want)}", "fragments": fragments, "chrome": chrome,
            "refs": f"{refs}/{len(docgen.REFERENCES)}", "rows": f"{len(row_lines)}/{len(rows)}",
            "hyphen": "yes" if "Unlike psilocybin," in indexed else "no"}


def bench_pdf(repeat: int = 5) -> list[dict]:
    out = []
    for order in ("flow", "rows"):
        data = docgen.paper_pdf(order=order)
        base = None
        for name, fn in reversed(list(CANDIDATES.items())):  # psyqa's own first: the time base
            try:
                doc = fn(data)
            except ImportError as exc:
                out.append({"order": order, "candidate": name, "error": f"not installed ({exc.name})"})
                continue
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn(data)
            t = (time.perf_counter() - t0) / repeat
            base = base or t
            out.append({"order": order, "candidate": name, **score(doc), "time": round(t / base, 2)})
    return out


# ----------------------------------------------------------------------------- sentences

def spans_psyqa(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def spans_pysbd(text: str) -> list[str]:
    import pysbd

    seg = _PYSBD.setdefault("seg", pysbd.Segmenter(language="en", clean=False, char_span=False))
    out = []
    for line in text.split("\n"):  # both keep line breaks as boundaries (rows, items, headings)
        out += [s.strip() for s in seg.segment(line) if s.strip()]
    return out


_PYSBD: dict = {}


def bench_sentences(show: bool) -> list[dict]:
    paras = [docgen.ABSTRACT] + [p for _, ps in docgen.BODY for p in ps if isinstance(p, str)]
    truth = [docgen.split_plain(p) for p in paras]
    corpus = []
    for path in sorted((REPO / "corpus").glob("*.md")):
        if path.name != "README.md":
            doc = load(path, path.name, path.read_bytes())
            corpus += [doc.text[s.start:s.end] for s in doc.segments]
    seed = REPO / "tests" / "data" / "forum_opinion_article.txt"
    fixture = load(seed, seed.name, seed.read_bytes())
    fixture_truth = [x for s in fixture.segments for line in fixture.text[s.start:s.end].split("\n")
                     for x in docgen.split_plain(line.removeprefix("- ")) if x]
    rows = []
    for name, fn in (("psyqa sentence_spans", spans_psyqa), ("pysbd 0.3", spans_pysbd)):
        try:
            fn("A test. Another one.")
        except ImportError as exc:
            rows.append({"splitter": name, "error": f"not installed ({exc.name})"})
            continue
        exact = sum(1 for p, t in zip(paras, truth) if fn(p) == t)
        fx = [x.removeprefix("- ") for s in fixture.segments for x in fn(fixture.text[s.start:s.end])]
        t0 = time.perf_counter()
        got = [fn(t) for t in corpus]
        elapsed = time.perf_counter() - t0
        rows.append({"splitter": name, "report paragraphs split exactly": f"{exact}/{len(paras)}",
                     "forum fixture sentences": f"{sum(1 for x in fixture_truth if x in fx)}/{len(fixture_truth)}",
                     "corpus sentences": sum(len(g) for g in got), "_got": got, "seconds": elapsed})
    ok = [r for r in rows if "_got" in r]
    if len(ok) == 2:
        a, b = ok[0]["_got"], ok[1]["_got"]
        same = sum(1 for x, y in zip(a, b) for s in x if s in y)
        total = sum(len(x) for x in a)
        ok[0]["corpus agreement"] = ok[1]["corpus agreement"] = f"{same}/{total}"
        base = ok[0]["seconds"] or 1e-9
        for r in ok:
            r["time"] = round(r["seconds"] / base, 1)
        if show:
            for x, y in zip(a, b):
                for s in x:
                    if s not in y:
                        print("psyqa only:", s[:160])
                for s in y:
                    if s not in x:
                        print("pysbd only:", s[:160])
    for r in rows:
        r.pop("_got", None)
        r.pop("seconds", None)
    return rows


def bench_share(repeat: int) -> dict:
    """psyqa's PDF loader against embedding the chunks it yields (the floor of any ingest)."""
    from assistant.embeddings import BundledEmbeddings, load_tokenizer
    from assistant.settings import Settings
    from ingest.chunking import ChunkParams, chunk_document, hf_counter

    data = docgen.paper_pdf()
    emb = BundledEmbeddings()
    emb.embed_documents(["warm up"])
    t0 = time.perf_counter()
    for _ in range(repeat):
        doc = load(Path("paper.pdf"), "paper.pdf", data)
    t_load = (time.perf_counter() - t0) / repeat
    chunks = chunk_document(doc, "paper", "paper.pdf", ChunkParams.from_settings(Settings()),
                            hf_counter(load_tokenizer()))
    t0 = time.perf_counter()
    for _ in range(repeat):
        emb.embed_documents([c.embed_text() for c in chunks])
    t_embed = (time.perf_counter() - t0) / repeat
    return {"pages": 2, "chunks": len(chunks), "load / embed": round(t_load / t_embed, 2)}


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--show-disagreements", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(table(bench_pdf(args.repeat)))
    print()
    print(table(bench_sentences(args.show_disagreements)))
    print()
    print(table([bench_share(args.repeat)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
