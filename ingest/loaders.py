"""One small loader per format: bytes on disk → normalised text, metadata and sections.

Every loader returns a `LoadedDoc` whose `segments` are contiguous ranges of `text` that share a
section path (and page, for PDFs). The chunker only ever cuts inside one segment, so offsets in
chunks always index into `text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import DocumentError
from assistant.models import DocMeta
from assistant.text import normalise
from ingest.schema import parse_front_matter, split_front_matter

TEXT_EXTS = {".md", ".markdown", ".txt", ".text"}
HTML_EXTS = {".html", ".htm"}
PDF_EXTS = {".pdf"}
SUPPORTED = TEXT_EXTS | HTML_EXTS | PDF_EXTS


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
    return load_markdown(rel, text, path.stem)


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
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def _inline(line: str) -> str:
    line = _LINK.sub(r"\1", line)
    for _ in range(2):  # nested emphasis such as ***x***
        line = _EMPH.sub(r"\2", line)
    return line


def load_markdown(rel: str, raw: str, stem: str) -> LoadedDoc:
    """Markdown or plain text, with optional YAML front matter."""
    fm, body, _ = split_front_matter(raw.replace("\r\n", "\n"))
    warnings: list[str] = []
    meta_dict = None
    if fm is not None:
        meta = parse_front_matter(fm, rel)
        meta_dict = meta
    lines = normalise(body).split("\n")
    out: list[str] = []
    pos = 0
    segments: list[Segment] = []
    stack: list[tuple[int, str]] = []
    first_heading: str | None = None
    seg_start: int | None = None

    def section_path() -> str:
        names = [t for lvl, t in stack]
        if names and meta_dict is not None and names[0] == meta_dict.title:
            names = names[1:]
        elif names and len(stack) and stack[0][0] == 1 and meta_dict is None:
            names = names[1:]  # the H1 becomes the title
        return " > ".join(names)

    def close(at: int) -> None:
        nonlocal seg_start
        if seg_start is not None and at > seg_start:
            segments.append(Segment(seg_start, at, section_path()))
        seg_start = None

    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        heading = None
        if line.strip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence:
            m = _HEADING.match(line)
            if m:
                heading = (len(m.group(1)), _inline(m.group(2)).strip())
            elif (i + 1 < len(lines) and line.strip() and _SETEXT.match(lines[i + 1])
                  and not _BULLET.match(line)):
                heading = (1 if lines[i + 1].startswith("=") else 2, _inline(line).strip())
                i += 1
        if heading and heading[1]:
            close(pos)
            lvl, name = heading
            while stack and stack[-1][0] >= lvl:
                stack.pop()
            stack.append((lvl, name))
            if first_heading is None:
                first_heading = name
            text_line = name
        else:
            text_line = line if in_fence else _inline(_BULLET.sub("- ", line) if _BULLET.match(line) else line)
            if text_line.strip() and seg_start is None:
                seg_start = pos
        out.append(text_line)
        pos += len(text_line) + 1
        i += 1
    text = "\n".join(out)
    close(len(text))
    segments = [_trim(text, s) for s in segments]
    segments = [s for s in segments if s.end > s.start]
    if meta_dict is None:
        title = first_heading or stem.replace("_", " ").replace("-", " ").strip().capitalize()
        warnings.append(f"{rel}: no front matter; title taken from "
                        f"{'its first heading' if first_heading else 'the file name'} "
                        f"('{title}'); add front matter with at least 'title:'")
        meta_dict = DocMeta(title=title)
    if not segments:
        raise DocumentError(rel, "has no body text", "add text below the front matter or delete the file")
    return LoadedDoc(text, meta_dict, segments, warnings)


def _trim(text: str, s: Segment) -> Segment:
    a, b = s.start, s.end
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return Segment(a, b, s.section, s.page)


# ---------------------------------------------------------------- HTML

_DROP = "script, style, noscript, nav, header, footer, aside, form, iframe, svg, template, button, select, object, embed"
_BLOCKS = {"p", "li", "td", "th", "pre", "blockquote", "dd", "dt", "figcaption", "caption"}
_HEADS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


def load_html(rel: str, raw: str) -> LoadedDoc:
    """Main text only: scripts, styles and navigation are removed, nothing is executed."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    tree = HTMLParser(raw)
    page_title = ""
    if tree.css_first("title") is not None:
        page_title = normalise(tree.css_first("title").text(strip=True))
    for node in tree.css(_DROP):
        node.decompose()
    for node in tree.css('[role="navigation"], [aria-hidden="true"], [hidden]'):
        node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    if root is None:
        raise DocumentError(rel, "HTML has no body", "save the page with its <body>")
    parts: list[tuple[str, int | None]] = []  # (text, heading level or None)
    for node in root.traverse(include_text=False):
        tag = node.tag
        if tag in _HEADS:
            t = " ".join(node.text(separator=" ").split())
            if t:
                parts.append((t, _HEADS[tag]))
        elif tag in _BLOCKS:
            # Only leaf blocks: a <li> holding <p>s is read through its <p>s.
            if any(c.tag in _BLOCKS for c in node.iter(include_text=False)):
                continue
            t = " ".join(node.text(separator=" ").split())
            if t:
                parts.append((("- " + t) if tag == "li" else t, None))
    if not parts:  # pages made of bare text or <div>s only
        t = normalise(root.text(separator="\n"))
        parts = [(p.strip(), None) for p in t.split("\n") if p.strip()]
    if not parts:
        raise DocumentError(rel, "HTML page has no readable text (only scripts, styles or navigation)",
                            "save the article text itself, or remove the file")
    md_lines = []
    for t, lvl in parts:
        md_lines.append(("#" * lvl + " " + t) if lvl else t)
        md_lines.append("")
    first_h1 = next((t for t, lvl in parts if lvl == 1), None)
    title = page_title or first_h1 or Path(rel).stem
    doc = load_markdown(rel, "\n".join(md_lines), Path(rel).stem)
    doc.meta = DocMeta(title=title)
    doc.warnings = []
    return doc


# ---------------------------------------------------------------- PDF

def load_pdf(rel: str, data: bytes) -> LoadedDoc:
    """Text per page; each page is a segment that keeps its page number."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [normalise(p.extract_text() or "") for p in reader.pages]
        info = reader.metadata
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise DocumentError(rel, f"cannot be read as a PDF ({exc})",
                            "re-export the PDF or convert it to text") from None
    texts, segments, pos = [], [], 0
    for no, page in enumerate(pages, start=1):
        if not page.strip():
            continue
        segments.append(Segment(pos, pos + len(page), "", no))
        texts.append(page)
        pos += len(page) + 2
    if not segments:
        raise DocumentError(rel, "PDF has no text layer (scanned images only)",
                            "run OCR on it (for example ocrmypdf) or add a text version")
    title = (info.title if info is not None and info.title else "") or Path(rel).stem
    return LoadedDoc("\n\n".join(texts), DocMeta(title=str(title).strip()), segments)
