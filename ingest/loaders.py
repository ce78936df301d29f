"""One small loader per format: bytes on disk → normalised text, metadata and sections.

Every loader returns a `LoadedDoc` whose `segments` are contiguous ranges of `text` that share a
section path (and page, for PDFs). The chunker only ever cuts inside one segment, so offsets in
chunks always index into `text`. Each format is turned into `ingest.blocks.Line`s here (and in
ingest/pdf.py); ingest/blocks.py reflows them into whole paragraphs and assembles the text, the
same way for every format. Text and HTML lose the chrome of the pages they were saved from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from assistant.errors import DocumentError
from assistant.models import DocMeta, SourceType
from assistant.text import normalise
from ingest import blocks
from ingest.blocks import BLANK, Line
from ingest.schema import parse_front_matter, split_front_matter

TEXT_EXTS = {".md", ".markdown", ".txt", ".text"}
MARKDOWN_EXTS = {".md", ".markdown"}
HTML_EXTS = {".html", ".htm"}
PDF_EXTS = {".pdf"}
SUPPORTED = TEXT_EXTS | HTML_EXTS | PDF_EXTS
UNREVIEWED = "unreviewed"
REVIEWED_TYPES = ", ".join(t for t in get_args(SourceType) if t != UNREVIEWED)


@dataclass
class Segment:
    start: int
    end: int
    section: str = ""
    page: int | None = None


@dataclass
class LoadedDoc:
    text: str
    meta: DocMeta
    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)
    footnotes: list[tuple[int, str]] = field(default_factory=list)  # (offset in text, number)
    references: list[str] = field(default_factory=list)             # the reference list, entry by entry
    back_matter: list[str] = field(default_factory=list)            # headings of sections not indexed


def load(path: Path, rel: str, data: bytes) -> LoadedDoc:
    """Dispatch on extension. `rel` is the name used in messages; `data` the file's bytes."""
    ext = path.suffix.lower()
    if not data.strip():
        raise DocumentError(rel, "file is empty", "add content or delete the file")
    if ext in PDF_EXTS:
        return load_pdf(rel, data)
    text = decode_text(rel, data)
    if ext in HTML_EXTS:
        return load_html(rel, text)
    return load_markdown(rel, text, path.stem, plain=ext not in MARKDOWN_EXTS)


def decode_text(rel: str, data: bytes) -> str:
    if b"\x00" in data[:65536]:
        raise DocumentError(rel, "contains binary data (NUL bytes) under a text extension",
                            "check it is really a text file, or give it its proper extension")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(rel, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start})", "re-save the file as UTF-8") from None


# ---------------------------------------------------------------- Markdown and plain text

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPH = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
_BULLET = re.compile(r"^\s*(?:[-*+•‣▪◦]|\d{1,3}[.)])\s+")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+")
# Plain-text table rows: two or more gaps of 2+ spaces (or tabs) between cells, a gap not
# following sentence punctuation (two spaces after a full stop are not a cell boundary).
_CELL_GAP = re.compile(r"[^\s.!?:;,](?: {2,}|\t+)(?=\S)")
_MD_ROW = re.compile(r"^\s*\|.*\|\s*$")


def _inline(line: str) -> str:
    line = _LINK.sub(r"\1", line)
    for _ in range(2):  # nested emphasis such as ***x***
        line = _EMPH.sub(r"\2", line)
    return line


def markdown_lines(body: str, plain: bool) -> list[Line]:
    """Classify the lines of Markdown (or plain text, with `plain`): headings (ATX and setext;
    in plain text also a short line on its own between paragraphs), list items, table rows,
    fenced code, text and blank lines. Inline markup is removed; bullets become "- "."""
    # A form feed (a page break in exported text) starts a line and stays on it until
    # blocks.drop_chrome has looked for running headers after page breaks.
    raw = re.sub(r"\n?\f+", "\n\f", normalise(body)).split("\n")
    out: list[Line] = []
    i = 0
    in_fence = False
    while i < len(raw):
        line = raw[i]
        stripped = line.strip().lstrip("\f")
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(Line(line, "code"))
        elif in_fence:
            out.append(Line(line, "code"))
        elif not stripped:
            out.append(Line("", BLANK))
        elif (m := _HEADING.match(stripped)) and _inline(m.group(2)).strip():
            out.append(Line(_inline(m.group(2)).strip(), "heading", len(m.group(1))))
        elif (i + 1 < len(raw) and _SETEXT.match(raw[i + 1]) and not _BULLET.match(line)
              and _inline(stripped).strip()):
            out.append(Line(_inline(stripped).strip(), "heading", 1 if raw[i + 1].startswith("=") else 2))
            i += 1
        elif _MD_ROW.match(line) or (plain and len(_CELL_GAP.findall(stripped)) >= 2):
            out.append(Line(_inline(line.rstrip()) if not plain else line.rstrip(), "row"))
        elif _BULLET.match(line) and not (plain and _NUMBERED.match(line) and out and out[-1].kind == "text"
                                          and not re.search(r"[.!?:;]$", out[-1].text)):
            out.append(Line(_inline(_BULLET.sub("- ", line, count=1).strip()), "item"))
        else:
            out.append(Line(line if plain else _inline(line), "text"))
        i += 1
    return out


def _plain_headings(lines: list[Line]) -> None:
    """A short line with no end punctuation after a blank line is a section heading in plain
    text when a blank line, a list or a table follows it, or a paragraph whose lines are much
    longer (the first line of a hard-wrapped paragraph is as long as the others)."""
    width = blocks.wrap_width(lines)
    for k, ln in enumerate(lines):
        if ln.kind != "text":
            continue
        t = ln.text.strip()
        before = lines[k - 1].kind if k else BLANK
        after = lines[k + 1].kind if k + 1 < len(lines) else BLANK
        if (before == BLANK and 0 < len(t.split()) <= 10 and len(t) <= 80
                and not re.search(r"[.!?;:,]$", t) and t[:1].isupper() and not t.startswith("\f")
                and (after in (BLANK, "item", "row") or (after == "text" and len(t) < 0.6 * width))):
            ln.kind, ln.level = "heading", 2


def load_markdown(rel: str, raw: str, stem: str, plain: bool = False) -> LoadedDoc:
    """Markdown or plain text (`plain`), with optional YAML front matter."""
    fm, body, _ = split_front_matter(raw.replace("\r\n", "\n"))
    meta = parse_front_matter(fm, rel) if fm is not None else None
    lines = markdown_lines(body, plain)
    dropped = 0
    if plain:
        lines, dropped = blocks.drop_chrome(lines)
    for ln in lines:
        ln.text = ln.text.replace("\f", "")
    title_at = blocks.title_line(lines) if meta is None else None
    found = "the file name"
    if title_at is not None:
        found = "its first heading" if lines[title_at].kind == "heading" else "its first line"
        lines[title_at].kind, lines[title_at].level = "heading", 1
    authors: list[str] = []
    if plain or meta is None:
        lines, authors = blocks.find_authors(lines, title_at)
    if plain:
        _plain_headings(lines)
    lines = blocks.reflow(lines, _known)
    asm = blocks.assemble(lines, meta.title if meta is not None else None, drop_title_heading=meta is None)
    notes: list[str] = []
    if meta is None:
        title = (lines[title_at].text.strip() if title_at is not None else
                 stem.replace("_", " ").replace("-", " ").strip().capitalize())
        notes.append(f"no front matter; title taken from {found} ('{title}')")
        meta = DocMeta(title=title)
    return _finish(rel, asm, meta, authors, dropped, notes,
                   "add front matter with at least 'title:' and 'source_type:'" if fm is None else
                   f"add 'source_type:' to its front matter (one of {REVIEWED_TYPES})")


def _finish(rel: str, asm: blocks.Assembled, meta: DocMeta, authors: list[str], dropped: int,
            notes: list[str], fix: str) -> LoadedDoc:
    """The LoadedDoc of an assembled text, with one warning line that says everything guessed."""
    if authors and not meta.authors:
        meta = meta.model_copy(update={"authors": authors})
        notes.append(f"authors taken from its byline ({', '.join(authors)})")
    if dropped:
        notes.append(f"{dropped} line{'s' if dropped != 1 else ''} of page chrome left out "
                     "(user names, badges, site widgets, running headers and footers)")
    if asm.back_matter:
        notes.append(f"not indexed as evidence: {', '.join(asm.back_matter)}")
    if meta.source_type is None:
        meta = meta.model_copy(update={"source_type": UNREVIEWED})
        notes.append("no 'source_type', so it is indexed as unreviewed and its citations say so")
    segments = [Segment(s, e, sec, page) for s, e, sec, page in asm.segments]
    if not segments and asm.back_matter:
        raise DocumentError(rel, f"has no text outside its back matter ({', '.join(asm.back_matter)})",
                            "add the document's own text or delete the file")
    if not segments:
        raise DocumentError(rel, "has no body text", "add text below the front matter or delete the file")
    warnings = []
    if notes:
        warnings.append(f"{rel}: " + "; ".join(notes) + f"; {fix}")
    return LoadedDoc(asm.text, meta, segments, warnings, asm.footnotes, asm.references, asm.back_matter)


def _known(word: str) -> bool:
    return word in blocks.known_words()


# ---------------------------------------------------------------- HTML

_DROP = ("script, style, noscript, nav, header, footer, aside, form, iframe, svg, template, button, "
         "select, object, embed")
# Forum and blog chrome by class: user cards, badges, signatures, share and reaction bars.
_CHROME = ('[role="navigation"], [aria-hidden="true"], [hidden], .message-userDetails, '
           ".message-userExtras, .message-signature, .message-footer, .message-actionBar, "
           ".userTitle, .userBanner, .reactionsBar, .bbCodeBlock-expandLink, .share, .sharing, "
           ".social-share, .breadcrumb, .breadcrumbs, .pagination, .comments, #comments, .sidebar, "
           ".related-posts, .advert, .cookie-banner, .newsletter-signup")
_BLOCKS = {"p", "li", "pre", "blockquote", "dd", "dt", "figcaption", "caption", "h1", "h2", "h3",
           "h4", "h5", "h6", "div", "section", "article", "main", "ul", "ol", "dl", "table", "tr",
           "td", "th", "tbody", "thead", "tfoot", "figure", "body", "header", "footer", "aside"}
_HEADS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_FOOTNOTE_SUP = re.compile(r"^\s*\[?\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\]?\s*$")


def _text(node) -> str:
    return " ".join(node.text(separator="").split())


def _html_lines(root) -> list[Line]:
    """Headings, paragraphs, list items and table rows of the main text, in document order."""
    out: list[Line] = []

    def has_block(node) -> bool:
        return any(c.tag in _BLOCKS for c in node.iter(include_text=False))

    def walk(node) -> None:
        for child in node.iter(include_text=False):
            tag = child.tag
            if tag in _HEADS:
                t = _text(child)
                if t:
                    out.append(Line(t, "heading", _HEADS[tag]))
                    out.append(Line("", BLANK))
            elif tag == "table" and not any(c.css_first("p, div, table, ul, ol") for c in child.css("td, th")):
                for tr in child.css("tr"):
                    cells = [_text(c) for c in tr.css("th, td")]
                    if any(cells):
                        out.append(Line(" | ".join(c for c in cells if c), "row"))
                out.append(Line("", BLANK))
            elif tag in ("ul", "ol", "dl"):
                walk(child)
                out.append(Line("", BLANK))
            elif tag == "li" and not has_block(child):
                t = _text(child)
                if t:
                    out.append(Line("- " + t, "item"))
            elif tag in _BLOCKS and has_block(child):
                # Text directly inside a container (a <div> with bare text and blocks) is kept too.
                bare = " ".join(" ".join(n.text_content.split()) for n in child.iter(include_text=True)
                                if n.tag == "-text" and n.text_content and n.text_content.strip())
                if bare and len(bare.split()) > 3:
                    out.append(Line(bare, "text"))
                    out.append(Line("", BLANK))
                walk(child)
            elif tag in _BLOCKS:
                t = _text(child)
                if t:
                    out.append(Line(t, "code" if tag == "pre" else "text"))
                    out.append(Line("", BLANK))

    walk(root)
    return out


def load_html(rel: str, raw: str) -> LoadedDoc:
    """Main text only: scripts, styles, navigation and page chrome are removed, nothing is
    executed. Tables stay rows; <sup> footnote numbers are kept out of the sentences."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    tree = HTMLParser(raw)
    page_title = ""
    if tree.css_first("title") is not None:
        page_title = normalise(tree.css_first("title").text(strip=True))
    og = tree.css_first('meta[property="og:title"]')
    og_title = " ".join((og.attributes.get("content") or "").split()) if og is not None else ""
    authors: list[str] = []
    for sel in ('meta[name="citation_author"]', 'meta[name="author"]', 'meta[name="dc.creator"]',
                'meta[property="article:author"]'):
        for m in tree.css(sel):
            a = " ".join((m.attributes.get("content") or "").split())
            if a and "://" not in a and a not in authors:
                authors.append(a)
    for node in tree.css(_DROP):
        node.decompose()
    for node in tree.css(_CHROME):
        node.decompose()
    for node in tree.css("br"):
        node.replace_with(" ")
    for node in tree.css("sup"):
        t = node.text()
        if _FOOTNOTE_SUP.match(t) or node.css_first('a[href^="#"]') is not None:
            node.replace_with("\ue000" + t.strip().strip("[]") + "\ue001")
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    if root is None:
        raise DocumentError(rel, "HTML has no body", "save the page with its <body>")
    lines = _html_lines(root)
    if not any(ln.text.strip() for ln in lines):  # pages made of bare text only
        t = normalise(root.text(separator="\n"))
        lines = [Line(p.strip(), "text") for p in t.split("\n") if p.strip()]
    if not any(ln.text.strip() for ln in lines):
        raise DocumentError(rel, "HTML page has no readable text (only scripts, styles or navigation)",
                            "save the article text itself, or remove the file")
    lines = [Line(normalise(ln.text), ln.kind, ln.level) for ln in lines]
    lines, dropped = blocks.drop_chrome(lines)
    first_h1 = next((ln.text for ln in lines if ln.kind == "heading" and ln.level == 1), None)
    # A page <title> usually carries the site's name too: the article's own heading wins when
    # the <title> contains it.
    title = (og_title or (first_h1 if first_h1 and (not page_title or first_h1 in page_title) else "")
             or page_title or first_h1)
    title_at = None
    if not title:
        title_at = blocks.title_line(lines)
        if title_at is not None:
            lines[title_at].kind, lines[title_at].level = "heading", 1
            title = lines[title_at].text
    title_at = title_at if title_at is not None else next(
        (k for k, ln in enumerate(lines) if ln.kind == "heading" and ln.level == 1), None)
    lines, found = blocks.find_authors(lines, title_at)
    lines = blocks.reflow(lines, _known)
    asm = blocks.assemble(lines, None, drop_title_heading=True)
    meta = DocMeta(title=title or Path(rel).stem, authors=authors)
    return _finish(rel, asm, meta, found, dropped, [],
                   "save it as Markdown or text with front matter that sets 'source_type' to review it")


# ---------------------------------------------------------------- PDF

def load_pdf(rel: str, data: bytes) -> LoadedDoc:
    """Text in reading order, whole paragraphs; each segment keeps the page it starts on."""
    from ingest.pdf import read_pdf

    pdf = read_pdf(rel, data)
    lines = pdf.lines
    if not any(ln.text.strip() for ln in lines):
        raise DocumentError(rel, "PDF has no text layer (scanned images only)",
                            "run OCR on it (for example ocrmypdf) or add a text version")
    title_at = next((k for k, ln in enumerate(lines) if ln.kind == "heading" and ln.level == 1), None)
    lines, found = blocks.find_authors(lines, title_at)
    lines = blocks.reflow(lines, _known)
    asm = blocks.assemble(lines, None, drop_title_heading=True)
    heading_title = lines[title_at].text if title_at is not None else ""
    title = pdf.title or heading_title or Path(rel).stem
    meta = DocMeta(title=title, authors=pdf.authors)
    return _finish(rel, asm, meta, found, pdf.dropped, [],
                   "save it as Markdown or text with front matter that sets 'source_type' to review it")
