"""PDF pages → lines in reading order, without running headers and footers.

Text and the position, size and font of every character come from PDFium (pypdfium2). From
them, per page: words, then lines (words on one baseline, split where a gap is much wider than
a space, so table cells and the two columns of a page stay apart), then reading order: a page
with a gutter (a vertical strip in its middle that no line crosses) is read in bands, each
full-width line on its own and, between them, the left column before the right one. Lines that
repeat at the top or bottom of most pages, page numbers, DOIs and journal lines are dropped.
Headings are lines in a larger or bold font; table rows are lines of several cells, joined with
" | "; superscript digits become footnote marks. Whether a line continues the paragraph of the
line before it is decided from the geometry (vertical gap, indent, a short last line) and handed
to `ingest.blocks.reflow` on each `Line`.

Measured against pypdf, pdfminer.six and pdfplumber in BENCHMARKS.md (Ingest: text extraction).
"""

from __future__ import annotations

import ctypes
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field

from assistant.errors import DocumentError
from ingest.blocks import Line

# Fractions of the page height at the top and bottom where running headers and footers live.
BAND = 0.09
# A gap wider than this many times the font size splits a line into cells or columns.
CELL_GAP = 1.5
_PAGE_NO = re.compile(r"^(?:page\s*)?[-–]?\s*\d{1,4}\s*[-–]?(?:\s*(?:of|/)\s*\d{1,4})?$", re.I)
_DOI = re.compile(r"(?:\bdoi\b\s*:?|doi\.org/|\b10\.\d{4,9}/)\S*", re.I)
_JOURNAL = re.compile(r"(?:\bvol(?:ume)?\.?\s*\d|\bissue\s*\d|©|\bcopyright\b|\bissn\b|"
                      r"\bpp?\.\s*\d+\s*[-–]\s*\d+|https?://|www\.)", re.I)
_LABEL = re.compile(r"^(?:\d{1,3}[.)]|\[\d{1,3}\]|[•·▪‣◦\-–])\s")
_BULLETS = str.maketrans({"\uf0b7": "•", "\uf0a7": "▪", "\uf06c": "•", "\u2219": "•"})
_BOLD = re.compile(r"bold|black|heavy|semibold|demi", re.I)


@dataclass
class Word:
    text: str
    x0: float
    x1: float
    base: float          # baseline, measured from the top of the page
    size: float          # em height from the font's ascent and descent
    bold: bool


@dataclass
class Seg:
    """Words on one baseline with no wide gap between them."""

    words: list[Word]

    @property
    def x0(self) -> float:
        return self.words[0].x0

    @property
    def x1(self) -> float:
        return self.words[-1].x1

    @property
    def base(self) -> float:
        return statistics.median(w.base for w in self.words)

    @property
    def size(self) -> float:
        return statistics.median(w.size for w in self.words)

    @property
    def bold(self) -> bool:
        return all(w.bold for w in self.words)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass
class PLine:
    """A line in reading order: one segment, or the cells of a table row."""

    cells: list[Seg]
    column: int                 # 0 left, 1 right, -1 full width or single column
    page: int
    col_left: float = 0.0
    col_right: float = 0.0
    kind: str = "text"
    joins: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " | ".join(c.text for c in self.cells)

    @property
    def x0(self) -> float:
        return self.cells[0].x0

    @property
    def x1(self) -> float:
        return self.cells[-1].x1

    @property
    def base(self) -> float:
        return self.cells[0].base

    @property
    def size(self) -> float:
        return self.cells[0].size

    @property
    def bold(self) -> bool:
        return all(c.bold for c in self.cells)


@dataclass
class PdfText:
    lines: list[Line]
    title: str
    authors: list[str]
    dropped: int          # header, footer and page-number lines left out
    pages: int


def read_pdf(rel: str, data: bytes) -> PdfText:
    """The lines of a PDF in reading order; raises DocumentError naming `rel`."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        msg = str(exc)
        if "password" in msg.lower():
            raise DocumentError(rel, "is a password-protected PDF",
                                "save an unprotected copy (print to PDF) and add that") from None
        raise DocumentError(rel, f"cannot be read as a PDF ({msg})",
                            "re-export the PDF or convert it to text") from None
    try:
        meta = pdf.get_metadata_dict(skip_empty=True)
        words: list[list[Word]] = []
        sizes: list[tuple[float, float]] = []
        for i in range(len(pdf)):
            page = pdf[i]
            width, height = page.get_size()
            words.append(_words(page, height))
            sizes.append((width, height))
            page.close()
    except pdfium.PdfiumError as exc:  # a damaged page or text layer
        raise DocumentError(rel, f"cannot be read as a PDF ({exc})",
                            "re-export the PDF or convert it to text") from None
    finally:
        pdf.close()
    lines, dropped = layout_lines(words, sizes)
    return PdfText(lines, _meta_title(meta.get("Title", "")), _meta_authors(meta.get("Author", "")),
                   dropped, len(words))


def layout_lines(words: list[list[Word]], sizes: list[tuple[float, float]]) -> tuple[list[Line], int]:
    """Pages of positioned words (and page sizes) → Lines in reading order, and how many
    running header, footer and page-number lines were dropped."""
    pages, dropped = _drop_running([_segments(w) for w in words], sizes)
    body = _body_size(pages)
    plines: list[PLine] = []
    for no, (segs, (width, _)) in enumerate(zip(pages, sizes), start=1):
        plines += _reading_order(segs, width, no)
    return _classify(plines, body), dropped


# ---------------------------------------------------------------------------- characters → words

def _words(page, height: float) -> list[Word]:
    import pypdfium2.raw as raw

    tp = page.get_textpage()
    try:
        n = raw.FPDFText_CountChars(tp.raw)
        words: list[Word] = []
        cur: list[tuple[str, float, float, float, float, bool]] = []  # ch, x0, x1, base, size, bold
        ox, oy = ctypes.c_double(), ctypes.c_double()
        rect = raw.FS_RECTF()
        buf = ctypes.create_string_buffer(128)
        flags = ctypes.c_int()
        fonts: dict[str, bool] = {}

        def flush() -> None:
            if not cur:
                return
            sizes = [c[4] for c in cur]
            main = max(sizes)
            text = []
            k = 0
            while k < len(cur):  # superscript digits (smaller and raised) are footnote marks
                ch, _, _, base, size, _ = cur[k]
                if ch.isdigit() and size < 0.8 * main and base < cur[0][3] - 0.15 * main and k > 0:
                    j = k
                    while j < len(cur) and (cur[j][0].isdigit() or cur[j][0] in ",–-") and cur[j][4] < 0.8 * main:
                        j += 1
                    text.append("\ue000" + "".join(c[0] for c in cur[k:j]) + "\ue001")
                    k = j
                    continue
                text.append(ch)
                k += 1
            s = "".join(text).translate(_BULLETS)
            full = [c for c in cur if c[4] >= 0.8 * main] or cur
            words.append(Word(s, cur[0][1], cur[-1][2], statistics.median(c[3] for c in full),
                              main, all(c[5] for c in full)))
            cur.clear()

        for i in range(n):
            code = raw.FPDFText_GetUnicode(tp.raw, i)
            ch = chr(code) if code else ""
            if raw.FPDFText_IsHyphen(tp.raw, i) == 1:
                ch = "-"  # a hyphen at a line end; ingest.blocks.join_words decides whether it stays
            elif not ch or ch.isspace() or ch < " " or raw.FPDFText_IsGenerated(tp.raw, i) == 1:
                flush()
                continue
            if abs(raw.FPDFText_GetCharAngle(tp.raw, i)) > 0.05:
                continue  # rotated text: margin stamps and watermarks
            raw.FPDFText_GetLooseCharBox(tp.raw, i, rect)
            raw.FPDFText_GetCharOrigin(tp.raw, i, ox, oy)
            size = max(rect.top - rect.bottom, 1.0)
            base = height - oy.value
            if cur:
                p = cur[-1]
                gap = rect.left - p[2]
                new_line = abs(base - p[3]) > 0.5 * max(size, p[4]) and not (
                    ch.isdigit() and size < 0.8 * p[4])
                if new_line or gap > 0.3 * max(size, p[4]) or gap < -0.5 * size:
                    flush()
            if cur and cur[-1][4] == size:
                bold = cur[-1][5]  # a word is in one font: ask PDFium once per word and size
            else:
                got = raw.FPDFText_GetFontInfo(tp.raw, i, buf, len(buf), flags)
                name = buf.raw[:max(0, got - 1)].decode("utf-8", "replace") if got else ""
                bold = fonts.get(name)
                if bold is None:
                    bold = fonts[name] = bool(_BOLD.search(name)) or raw.FPDFText_GetFontWeight(tp.raw, i) >= 600
            cur.append((ch, rect.left, rect.right, base, size, bold))
        flush()
        return words
    finally:
        tp.close()


def _segments(words: list[Word]) -> list[Seg]:
    """Words grouped by baseline, each group split at gaps wider than CELL_GAP x the size."""
    words = sorted(words, key=lambda w: (w.base, w.x0))
    groups: list[list[Word]] = []
    for w in words:
        if groups and abs(groups[-1][0].base - w.base) <= 0.35 * max(w.size, groups[-1][0].size):
            groups[-1].append(w)
        else:
            groups.append([w])
    segs: list[Seg] = []
    for g in groups:
        g.sort(key=lambda w: w.x0)
        cur = [g[0]]
        for w in g[1:]:
            if w.x0 - cur[-1].x1 > CELL_GAP * max(w.size, cur[-1].size):
                segs.append(Seg(cur))
                cur = [w]
            else:
                cur.append(w)
        segs.append(Seg(cur))
    return segs


# ---------------------------------------------------------------------------- headers and footers

def _key(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", text.lower())).strip()


def _drop_running(pages: list[list[Seg]], sizes: list[tuple[float, float]]) -> tuple[list[list[Seg]], int]:
    """Drop segments in the top and bottom bands that repeat on most pages (digits aside), and
    page numbers, DOIs and journal lines there."""
    def in_band(s: Seg, height: float) -> bool:
        return s.base < BAND * height + s.size or s.base > (1 - BAND) * height

    seen: Counter[str] = Counter()
    for segs, (_, h) in zip(pages, sizes):
        seen.update({_key(s.text) for s in segs if in_band(s, h)})
    n = len(pages)
    need = max(2, (n + 1) // 2)
    out, dropped = [], 0
    for segs, (_, h) in zip(pages, sizes):
        keep = []
        for s in segs:
            t = s.text.strip()
            if in_band(s, h) and ((n > 1 and seen[_key(t)] >= need) or _PAGE_NO.match(t)
                                  or _DOI.search(t) or _JOURNAL.search(t)):
                dropped += 1
                continue
            keep.append(s)
        out.append(keep)
    return out, dropped


def _body_size(pages: list[list[Seg]]) -> float:
    weights: Counter[float] = Counter()
    for segs in pages:
        for s in segs:
            for w in s.words:
                weights[round(w.size, 1)] += len(w.text)
    return weights.most_common(1)[0][0] if weights else 10.0


# ---------------------------------------------------------------------------- reading order

def _gutter(segs: list[Seg], width: float) -> float | None:
    """x of the strip between two columns, or None for a single-column page."""
    if len(segs) < 8:
        return None
    best: tuple[int, int, float] | None = None  # (crossings, -min side, x)
    for x in range(int(0.35 * width), int(0.65 * width) + 1, 2):
        left = sum(1 for s in segs if s.x1 <= x)
        right = sum(1 for s in segs if s.x0 >= x)
        cross = len(segs) - left - right
        cand = (cross, -min(left, right), float(x))
        if best is None or cand < best:
            best = cand
    assert best is not None
    cross, neg_side, x = best
    side = -neg_side
    if side < 4 or cross > 0.5 * side:
        return None
    # The middle of the empty strip around x.
    lo = max((s.x1 for s in segs if s.x1 <= x), default=x)
    hi = min((s.x0 for s in segs if s.x0 >= x), default=x)
    return (lo + hi) / 2


def _reading_order(segs: list[Seg], width: float, page: int) -> list[PLine]:
    if not segs:
        return []
    gutter = _gutter(segs, width)
    # Baseline groups, top to bottom.
    groups: list[list[Seg]] = []
    for s in sorted(segs, key=lambda s: (s.base, s.x0)):
        if groups and abs(groups[-1][0].base - s.base) <= 0.35 * max(s.size, groups[-1][0].size):
            groups[-1].append(s)
        else:
            groups.append([s])
    if gutter is None:
        left_edge = min(s.x0 for s in segs)
        right_edge = max(s.x1 for s in segs)
        return [PLine(sorted(g, key=lambda s: s.x0), -1, page, left_edge, right_edge) for g in groups]
    out: list[PLine] = []
    band: list[list[Seg]] = []

    def flush_band() -> None:
        for col in (0, 1):
            cells = [[s for s in g if (s.x1 <= gutter) == (col == 0)] for g in band]
            cells = [sorted(c, key=lambda s: s.x0) for c in cells if c]
            if not cells:
                continue
            left = min(c[0].x0 for c in cells)
            right = max(c[-1].x1 for c in cells)
            out.extend(PLine(c, col, page, left, right) for c in cells)
        band.clear()

    for g in groups:
        if any(s.x0 < gutter < s.x1 for s in g):
            flush_band()
            g = sorted(g, key=lambda s: s.x0)
            out.append(PLine(g, -1, page, min(s.x0 for s in segs), max(s.x1 for s in segs)))
        else:
            band.append(g)
    flush_band()
    return out


# ---------------------------------------------------------------------------- lines → Lines

_TERMINAL = re.compile(r"[.!?:][\"'”’)\]]*$")


def _classify(plines: list[PLine], body: float) -> list[Line]:
    """Kinds (heading, item, row, text), heading levels and paragraph joins from geometry."""
    heading_sizes: set[float] = set()
    for pl in plines:
        if _is_heading(pl, body):
            heading_sizes.add(round(pl.size, 0))
    ranked = sorted(heading_sizes, reverse=True)
    # The largest heading is the title (level 1) only when it is on page 1 alone; otherwise
    # the document has no title heading and its largest headings are sections.
    top = [pl for pl in plines if ranked and _is_heading(pl, body) and round(pl.size, 0) == ranked[0]]
    first = 1 if top and all(pl.page == 1 for pl in top) and len(top) <= 3 else 2
    levels = {s: i + first for i, s in enumerate(ranked)}
    # Typical line spacing per font size, from consecutive lines of one column.
    gaps: dict[float, list[float]] = {}
    for a, b in zip(plines, plines[1:]):
        if a.page == b.page and a.column == b.column and 0 < b.base - a.base < 3 * a.size:
            gaps.setdefault(round(a.size, 0), []).append(b.base - a.base)
    leading = {k: statistics.median(v) for k, v in gaps.items()}

    out: list[Line] = []
    prev: PLine | None = None
    item_text_x: float | None = None
    for pl in plines:
        text = pl.text
        if len(pl.cells) > 1 and not _LABEL.match(pl.cells[0].text + " "):
            kind = "row"
        elif _is_heading(pl, body):
            kind = "heading"
        elif _LABEL.match(text):
            kind = "item"
        else:
            kind = "text"
        if kind == "heading" and prev is not None and prev.kind == "heading" and prev.page == pl.page \
                and round(prev.size) == round(pl.size) and prev.bold == pl.bold \
                and 0 < pl.base - prev.base < 1.8 * pl.size:
            out[-1].text += " " + text  # a heading wrapped over two lines
            prev = pl
            continue
        joins = None
        if kind == "text" and prev is not None and prev.kind in ("text", "item"):
            joins = _joins(prev, pl, leading, item_text_x)
        if kind == "item":
            first = pl.cells[0].words
            item_text_x = first[1].x0 if len(first) > 1 else pl.x0
        elif kind != "text" or not joins:
            item_text_x = None
        pl.kind = kind
        out.append(Line(text, kind, levels.get(round(pl.size, 0), 2) if kind == "heading" else 0,
                        pl.page, joins))
        prev = pl
    return out


def _is_heading(pl: PLine, body: float) -> bool:
    text = pl.text
    if len(pl.cells) > 1 or not re.search(r"[A-Za-z]", text) or len(text.split()) > 15:
        return False
    if re.search(r"[.,;]$", text) or _LABEL.match(text) and not pl.bold:
        return False
    return pl.size >= 1.12 * body or (pl.bold and pl.size >= 0.95 * body)


def _joins(prev: PLine, pl: PLine, leading: dict[float, float], item_text_x: float | None) -> bool:
    """Whether `pl` continues the paragraph `prev` belongs to."""
    ends = bool(_TERMINAL.search(prev.text))
    same_col = prev.page == pl.page and prev.column == pl.column and pl.base > prev.base
    if not same_col:  # a column or page break: continue an unfinished sentence
        return not ends or prev.text.endswith("-")
    if abs(pl.size - prev.size) > 0.15 * prev.size or pl.bold != prev.bold:
        return False
    lead = leading.get(round(prev.size, 0), 1.2 * prev.size)
    if pl.base - prev.base > 1.3 * lead:
        return False  # paragraph spacing
    if item_text_x is not None:
        return pl.x0 >= item_text_x - 1  # an item's continuation under its text
    if pl.x0 - prev.x0 > 0.8 * pl.size:
        return False  # a first-line indent
    width = pl.col_right - pl.col_left
    if ends and prev.x1 < pl.col_right - 0.25 * width:
        return False  # a short last line
    return True


# ---------------------------------------------------------------------------- metadata

_GARBAGE_TITLE = re.compile(r"^(?:microsoft\s+\w+\s*-|untitled|document\d*$|.*\.(?:docx?|pdf|tex|indd|rtf)$)", re.I)


def _meta_title(title: str) -> str:
    t = " ".join(str(title).split())
    return "" if not t or _GARBAGE_TITLE.match(t) or len(t) < 4 else t


def _meta_authors(author: str) -> list[str]:
    parts = [p.strip() for p in re.split(r";|\band\b|&|,(?=\s*[A-Z][a-z]+\s+[A-Z])", str(author)) if p.strip()]
    return [p for p in parts if len(p) <= 80 and re.search(r"[A-Za-z]", p)]
