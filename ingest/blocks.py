"""The structure every loader hands on: lines → whole paragraphs → stored text and segments.

A format's front end (ingest/loaders.py for Markdown, text and HTML, ingest/pdf.py for PDF)
turns a file into `Line`s: headings, list items, table rows and text lines, with blank lines
between paragraphs. This module does the rest the same way for every format:

- `reflow` joins the lines of a paragraph (a line break inside a paragraph is not a sentence end)
  and repairs words hyphenated across a line break when the joined word is known;
- `drop_chrome` (plain text and HTML) removes what a forum or blog page wraps an article in:
  user names and their badges, site widgets, lines repeated as running headers, a teaser that
  repeats a paragraph; `find_authors` takes author lines out of the text into metadata;
- `assemble` strips footnote markers glued to words and sentence ends (keeping their numbers),
  and builds the stored text with its segments. Back matter (references, acknowledgements,
  funding, conflicts of interest, affiliations) stays in the text but in no segment, so it is
  never chunked as evidence; the reference list is returned as a list of entries.

The stored text is the result, so every offset of a chunk indexes into what was cleaned.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass
class Line:
    """One line of a document before assembly."""

    text: str
    kind: str = "text"          # text | heading | item | row | code | blank
    level: int = 0              # heading level; 1 is the document title
    page: int | None = None
    # Whether this line continues the paragraph of the line before it: None lets `reflow`
    # decide from the text (plain text), PDF geometry decides it for PDFs.
    joins: bool | None = None


BLANK = "blank"

# ---------------------------------------------------------------------------- reflow

_TERMINAL = re.compile(r"[.!?:;][\"'”’)\]]*$")
_HYPHEN_END = re.compile(r"([A-Za-z]+)[-\u00ad\ufffe]$")
_WORD_START = re.compile(r"^([a-z]+)")


def reflow(lines: list[Line], known: Callable[[str], bool] | None = None) -> list[Line]:
    """Join each paragraph's lines into one line; items absorb their continuation lines.

    A text line joins the one before it when the PDF front end says so (`joins`), or, for plain
    text, when the line before it is not a heading, row or blank line and it does not end a
    paragraph: a line that ends a sentence (or ends without punctuation before a capitalised
    line) closes its paragraph when the next line's first word would have fitted on it within
    the document's wrap width, since a wrapper would have put it there.
    """
    width = wrap_width(lines)
    vocab = _DocVocab(lines)
    out: list[Line] = []
    last = ""  # the last physical line of the paragraph being built
    for line in lines:
        prev = out[-1] if out else None
        if line.kind == BLANK and (prev is None or prev.kind == BLANK):
            continue  # at most one blank line in a row (dropped lines leave runs of them)
        if prev is not None and line.kind == "text" and prev.kind in ("text", "item") \
                and _continues(prev.kind, last, line, width):
            prev.text = join_words(prev.text.rstrip(), line.text.strip(), vocab, known)
            last = line.text
            continue
        out.append(Line(line.text.strip() if line.kind == "text" else line.text.rstrip(),
                        line.kind, line.level, line.page, line.joins))
        last = line.text
    return out


def _continues(prev_kind: str, last: str, line: Line, width: int) -> bool:
    if line.joins is not None:
        return line.joins
    if prev_kind == "item":  # an item's continuation is indented in plain text
        return line.text[:1].isspace() or bool(_HYPHEN_END.search(last))
    a = last.strip()
    b = line.text.strip()
    if _HYPHEN_END.search(a) and _WORD_START.match(b):
        return True
    # A wrapper moves a word to the next line only when it does not fit: if the next line's
    # first word would have fitted after this one, the break was made on purpose.
    fits = len(a) + 1 + len(b.split()[0]) <= width
    if fits and (_TERMINAL.search(a) or not b[:1].islower()):
        return False
    return True


def wrap_width(lines: list[Line]) -> int:
    """The width a hard-wrapped text was wrapped at: a high percentile of its line lengths."""
    lengths = sorted(len(ln.text.rstrip()) for ln in lines if ln.kind == "text" and ln.text.strip())
    if not lengths:
        return 80
    return max(20, lengths[int(0.9 * (len(lengths) - 1))])


class _DocVocab:
    """Words and hyphenated compounds of the document itself, outside line breaks."""

    def __init__(self, lines: list[Line]) -> None:
        text = " ".join(ln.text for ln in lines).lower()
        self.words = set(re.findall(r"[a-z]+", text))
        self.hyphenated = set(re.findall(r"[a-z]+-[a-z]+", text))


def join_words(a: str, b: str, vocab: _DocVocab, known: Callable[[str], bool] | None) -> str:
    """`a` and `b` as one paragraph: a word hyphenated across the break loses its hyphen when
    the joined word is known (the document uses it elsewhere, or the vocabulary knows it) and
    the hyphenated compound is not; otherwise the hyphen is kept ("placebo-" "controlled")."""
    m = _HYPHEN_END.search(a)
    w = _WORD_START.match(b)
    if m and w:
        head, tail = m.group(1), w.group(1)
        soft = a.endswith("\u00ad")
        joined, compound = (head + tail).lower(), f"{head}-{tail}".lower()
        if soft or (compound not in vocab.hyphenated
                    and (joined in vocab.words or (known is not None and known(joined)))):
            return a[:-1] + b
        return a[:-1] + "-" + b
    if a.endswith("\ufffe"):
        a = a[:-1] + "-"
    return f"{a} {b}"


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """Whole words of the embedding model's vocabulary (everyday English) and the domain
    lexicon's names: what a hyphenated line break may be repaired into."""
    from assistant import lexicon
    from assistant.embeddings import load_tokenizer

    words = {w for w in load_tokenizer().get_vocab() if w.isalpha() and len(w) > 2}
    for table in (lexicon.SUBSTANCES, lexicon.CONDITIONS):
        for aliases in table.values():
            for alias in aliases:
                words.update(re.findall(r"[a-z]+", alias.lower()))
    return frozenset(words)


# ---------------------------------------------------------------------------- page chrome

# Role badges forum and blog software prints under a user name.
BADGES = frozenset("""
super moderator|global moderator|moderator|administrator|admin|staff|staff member|member|
new member|well-known member|senior member|junior member|full member|active member|
registered|registered user|vip|vip member|premium member|gold member|platinum member|
elite member|banned|guest|verified|verified member|contributor|legendary|veteran|
community manager|original poster|op|supporter|donor|site admin|forum admin
""".replace("\n", "").split("|"))
# Widgets and controls of forum and blog pages (whole lines, case-insensitive).
WIDGETS = frozenset("""
online statistics|members online|guests online|total visitors|latest posts|latest threads|
back|top|back to top|reply|quote|like|likes|share|share:|share this|share this page|report|
click to expand...|log in|register|log in or register|sign up|sign in|forum statistics|threads|
messages|members|latest member|similar threads|new posts|what's new|search forums|menu|home|
forums|next|prev|previous|reactions:|print|email|subscribe|advertisement|sponsored|read more|
related articles|related posts|comments|leave a comment|loading...|you must log in or register
to reply here.|joined|posts|reaction score|points|location|thread starter|start date|tags|
report ad|post reply|watch|bookmark|copy link|follow|unfollow|skip to content|toggle navigation
""".replace("\n", "").split("|"))
_NUMBER_ONLY = re.compile(r"^[\d.,:/\s#-]{1,12}$")
_BULLET_TEXT = re.compile(r"^\s*(?:[-*+•·‣▪◦]|\d+[.)])\s+")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", _BULLET_TEXT.sub("", s)).strip().lower()


def _is_short(s: str, words: int = 6) -> bool:
    return len(s.split()) <= words and not _TERMINAL.search(s.strip())


def drop_chrome(lines: list[Line]) -> tuple[list[Line], int]:
    """Forum and blog page chrome left out; returns the kept lines and how many were dropped.

    Dropped: role badges and the user name just above one; widget and control lines; lines
    that are only a number; short lines repeated as running headers (after a form feed, or
    three times or more); a paragraph that a later paragraph repeats (a teaser); and the run
    of short lines after the last real paragraph (sidebars, statistics, links).
    """
    keep = [True] * len(lines)
    texts = [ln.text.strip() for ln in lines]
    norms = [_norm(t) for t in texts]
    nonblank = [i for i, t in enumerate(texts) if t]
    # Table rows and code are content whatever they look like; headings are kept by the
    # line rules below (a "2024" heading is not a page number) but not after the last paragraph.
    prose = {i for i in nonblank if lines[i].kind in ("text", "item")}

    for k, i in enumerate(nonblank):
        n = norms[i]
        if i not in prose:
            continue
        if n in BADGES:
            keep[i] = False
            if k > 0:
                j = nonblank[k - 1]
                if len(texts[j].split()) <= 3 and len(texts[j]) <= 40 and not _TERMINAL.search(texts[j]):
                    keep[j] = False  # the user name above the badge
        elif n in WIDGETS or _NUMBER_ONLY.match(texts[i]):
            keep[i] = False

    # Running headers: a short line that follows a page break (form feed) more than once, or
    # stands alone between blank lines three times or more.
    def alone(i: int) -> bool:
        return (i == 0 or not texts[i - 1]) and (i + 1 == len(lines) or not texts[i + 1])

    after_ff = Counter(norms[i] for i in nonblank if lines[i].text.startswith("\f"))
    counts = Counter(norms[i] for i in nonblank if _is_short(texts[i], 12) and alone(i))
    for i in nonblank:
        n = norms[i]
        if i in prose and _is_short(texts[i], 12) and (after_ff[n] >= 2 or (counts[n] >= 3 and alone(i))):
            keep[i] = False

    # One-line paragraphs (blank or dropped lines around them) repeated later: a teaser.
    def gone(j: int) -> bool:
        return j < 0 or j >= len(lines) or not texts[j] or not keep[j]

    alone = [i for i in prose if keep[i] and len(texts[i].split()) >= 8 and gone(i - 1) and gone(i + 1)]
    last_seen = {norms[i]: i for i in alone}
    for i in alone:
        if last_seen[norms[i]] != i:
            keep[i] = False

    substantive = [i for i in nonblank if keep[i] and (lines[i].kind in ("row", "code")
                                                       or not _is_short(texts[i]))]
    if substantive:
        for i in nonblank:
            if i > substantive[-1]:
                keep[i] = False

    kept = [ln for ln, k in zip(lines, keep) if k]
    return kept, sum(1 for i in nonblank if not keep[i])


# ---------------------------------------------------------------------------- authors

# Degrees and board certifications that follow a name in a byline.
CREDENTIALS = frozenset("""
md do phd mph mba ms msc ma ba bs bsc rn np pa pa-c pharmd psyd lcsw lmft lpc abpn abpm facp
frcp frcpc mbbs mbchb dphil mrcpsych frcpsych faafp dabam fasam edd jd llm cadc crnp aprn dnp
bcps mha mhs drph scd dsc rph dpt cns franzcp fapa dfapa faan fnp mswm msw lmhc ncc bcba
""".split())
_PART = r"(?:[A-Z][^\W\d_]*(?:['’\-][A-Z]?[^\W\d_]+)*|[A-Z]\.)"
_LAST = r"[A-Z](?:[^\W\d_]+|['’][A-Z][^\W\d_]+)(?:['’\-][A-Z]?[^\W\d_]+)*"
_NAME = rf"{_PART}(?:\s+(?:{_PART}|van|von|de|da|del|der|le|la))*\s+{_LAST}"
_NAME_RE = re.compile(rf"^{_NAME}$")
_BY = re.compile(r"^(?:by|written by|author|authors|posted by)\s*:?\s+(.+)$", re.I)


def parse_byline(line: str, plain_list: bool = False) -> list[str] | None:
    """The author names of a byline, or None when `line` is not one.

    Accepted: "By A and B", "Author: A", "A, MD, MPH" (a name followed by degrees), and, with
    `plain_list` (just under a title), a list of two or more names ("A, B, C").
    """
    s = re.sub(r"[*†‡§¹²³⁴⁵⁶⁷⁸⁹⁰\d]+(?=,|\s|$)", "", line.strip()).strip(" ,;")
    if not s or len(s) > 200 or _TERMINAL.search(s) and not s.endswith("."):
        return None
    m = _BY.match(s)
    by = m is not None
    if by:
        s = m.group(1)
    parts = [p.strip() for p in re.split(r",|;|\band\b|&", s) if p.strip()]
    names: list[str] = []
    creds = 0
    for p in parts:
        if p.lower().replace(".", "") in CREDENTIALS:
            creds += 1
            continue
        if not _NAME_RE.match(p) or len(p.split()) > 5:
            return None
        names.append(p)
    if not names:
        return None
    if by or creds or (plain_list and len(names) >= 2):
        return names
    return None


# Lines under a paper's title that are not its text: affiliations, correspondence, dates.
_FRONT_LINE = re.compile(
    r"^(?:[\d*†‡§¹²³⁴⁵⁶⁷⁸⁹⁰,\s]*(?:Department|Division|School|Faculty|Institute|Centre|Center|"
    r"University|Hospital|College|Laboratory|Clinic)\b[^.!?]*,[^.!?]*"
    r"|(?:Correspondence|Corresponding author|E-?mail|Received|Accepted|Published online)\s*:.*)$")


def find_authors(lines: list[Line], title_index: int | None) -> tuple[list[Line], list[str]]:
    """Take author lines near the top of a document out of it, and the affiliation and
    correspondence lines that go with them; return (lines, authors)."""
    authors: list[str] = []
    keep: list[Line] = []
    seen = 0
    for i, ln in enumerate(lines):
        t = ln.text.strip()
        if not t or ln.kind in ("heading", "row", "code"):
            keep.append(ln)
            continue
        seen += 1
        if seen <= 15 and len(t) <= 300 and _FRONT_LINE.match(t):
            continue
        near_title = title_index is not None and 0 < i - title_index <= 3
        names = parse_byline(t, plain_list=near_title) if seen <= 30 else None
        if names is None:
            keep.append(ln)
            continue
        for n in names:
            if n not in authors:
                authors.append(n)
    return keep, authors


# ---------------------------------------------------------------------------- titles

def title_line(lines: list[Line]) -> int | None:
    """Index of the line that titles a plain-text document: its first heading, else its
    first line when that is short and does not read as a sentence."""
    for i, ln in enumerate(lines):
        if ln.kind == "heading":
            return i
        t = ln.text.strip()
        if not t:
            continue
        if ln.kind == "text" and len(t.split()) <= 20 and len(t) <= 200 and not re.search(r"[.,;:]$", t):
            return i
        return None
    return None


# ---------------------------------------------------------------------------- footnotes

# A footnote number glued to a sentence end ("therapy.1 The", "(TRD).2"), to a word before its
# punctuation ("therapy1."), in superscript digits, in brackets ("[12]"), or marked by the HTML
# front end (\ue000n\ue001 around a <sup>).
_FN_AFTER_END = re.compile(r"(?<=[A-Za-z%)\]’”\"'])([.!?])(\d{1,3}(?:[,–-]\d{1,3})*)(?=\s+[A-Z“\"‘(]|\s*$)")
_FN_BEFORE_PUNCT = re.compile(r"\b[a-z]{4,}(\d{1,2})(?=[.,;:](?:\s|$))")
_FN_SUPER = re.compile(r"(?<=\S)[¹²³⁴⁵⁶⁷⁸⁹⁰]+(?:[,–-][¹²³⁴⁵⁶⁷⁸⁹⁰]+)*")
_FN_BRACKET = re.compile(r"\s?\[(\d{1,3}(?:\s*[,–-]\s*\d{1,3})*)\]")
_FN_HTML = re.compile(r"\s?\ue000([^\ue001]*)\ue001")
_SUPER_DIGITS = str.maketrans("¹²³⁴⁵⁶⁷⁸⁹⁰", "1234567890")
# A year glued to the word before it ("A2017 study"): a missing space, put back.
_GLUED_YEAR = re.compile(r"\b(A|An|In|By|On|Since|From|The|Until|Before|After)((?:19|20)\d\d)\b")


def strip_footnotes(text: str) -> tuple[str, list[tuple[int, str]]]:
    """`text` without footnote markers, and (offset in the result, footnote number) pairs."""
    text = _GLUED_YEAR.sub(r"\1 \2", text)
    marks: list[tuple[int, int, str, str]] = []  # (start, end, replacement, label)
    for m in _FN_HTML.finditer(text):
        label = m.group(1).strip()
        marks.append((m.start(), m.end(), "", label))
    for m in _FN_AFTER_END.finditer(text):
        marks.append((m.start(2), m.end(2), "", m.group(2)))
    for m in _FN_BEFORE_PUNCT.finditer(text):
        marks.append((m.start(1), m.end(1), "", m.group(1)))
    for m in _FN_SUPER.finditer(text):
        marks.append((m.start(), m.end(), "", m.group().translate(_SUPER_DIGITS)))
    for m in _FN_BRACKET.finditer(text):
        marks.append((m.start(), m.end(), "", re.sub(r"\s+", "", m.group(1))))
    if not marks:
        return text, []
    marks.sort()
    out: list[str] = []
    notes: list[tuple[int, str]] = []
    pos = 0
    length = 0
    for s, e, rep, label in marks:
        if s < pos:
            continue  # overlapping patterns: the first wins
        out.append(text[pos:s])
        length += s - pos
        out.append(rep)
        length += len(rep)
        if label:
            notes.append((length, label))
        pos = e
    out.append(text[pos:])
    return "".join(out), notes


# ---------------------------------------------------------------------------- back matter

_REFERENCE_HEADS = frozenset("""references|reference list|bibliography|works cited|literature cited|
cited literature|footnotes|endnotes""".replace("\n", "").split("|"))
# Headings that open a reference list only when what follows reads like one ("## Notes" may be
# prose): most of its lines give a year.
_MAYBE_REFERENCES = frozenset({"notes", "sources", "literature", "citations", "further reading"})
_CITES_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_OTHER_BACK = frozenset("""acknowledgements|acknowledgments|acknowledgement|acknowledgment|funding|
funding sources|funding statement|financial support|sources of funding|role of the funding source|
conflicts of interest|conflict of interest|conflict of interest statement|competing interests|
declaration of interests|declaration of competing interest|declarations of interest|disclosures|
disclosure|financial disclosures|disclosure statement|author contributions|contributors|
contributions|affiliations|author affiliations|author information|about the authors|
about the author|data availability|data availability statement|data sharing|data sharing statement|
supplementary material|supplementary materials|supporting information|abbreviations|
ethics approval|ethics statement|correspondence""".replace("\n", "").split("|"))


def back_matter_kind(heading: str, section: list[str] | None = None) -> str | None:
    """"references" or "other" when a heading opens back matter, else None. Only the names of
    back-matter sections count ("Conflicts of interest", not "Conflicts of interest in trials");
    an ambiguous one ("Notes", "Sources") needs its `section` lines to read like references."""
    h = re.sub(r"^(?:\d+(?:\.\d+)*\.?|[ivxlc]+\.)\s+", "", heading.strip().lower()).strip(" :.")
    h = h.replace("’", "'")
    if h in _REFERENCE_HEADS:
        return "references"
    if h in _MAYBE_REFERENCES:
        entries = [t for t in (section or []) if t.strip()]
        cites = sum(1 for t in entries if _CITES_YEAR.search(t))
        return "references" if entries and cites >= 0.6 * len(entries) else None
    if h in _OTHER_BACK or h.startswith("acknowledg"):
        return "other"
    return None


def _section_lines(lines: list[Line], k: int) -> list[str]:
    """The text lines under the heading lines[k], up to the next heading of its level or higher."""
    out = []
    for ln in lines[k + 1:]:
        if ln.kind == "heading" and ln.level <= lines[k].level:
            break
        out.append(ln.text)
    return out


# ---------------------------------------------------------------------------- assembly

@dataclass
class Assembled:
    text: str
    segments: list[tuple[int, int, str, int | None]]   # (start, end, section path, page)
    footnotes: list[tuple[int, str]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    back_matter: list[str] = field(default_factory=list)  # headings of sections left out
    first_heading: str | None = None


_ITEM_LABEL = re.compile(r"^\s*(?:[-*+•·‣▪◦]|\[?\d{1,3}[.)\]])\s+")


def assemble(lines: list[Line], title: str | None, drop_title_heading: bool) -> Assembled:
    """The stored text of `lines` (one per line, headings included) and its segments: runs of
    non-heading lines that share a section path and page. Back-matter sections are in the text
    but in no segment. The level-1 heading that repeats the title is not a section name."""
    out: list[str] = []
    pos = 0
    segments: list[tuple[int, int, str, int | None]] = []
    stack: list[tuple[int, str]] = []
    footnotes: list[tuple[int, str]] = []
    references: list[str] = []
    back: list[str] = []
    first_heading: str | None = None
    seg_start: int | None = None
    seg_page: int | None = None
    back_kind: str | None = None
    back_level = 0

    def section_path() -> str:
        names = [t for _, t in stack]
        if names and ((title is not None and names[0] == title)
                      or (drop_title_heading and stack[0][0] == 1)):
            names = names[1:]
        return " > ".join(names)

    def close(at: int) -> None:
        nonlocal seg_start
        if seg_start is not None and at > seg_start:
            segments.append((seg_start, at, section_path(), seg_page))
        seg_start = None

    for k, ln in enumerate(lines):
        if ln.kind == "heading" and ln.text.strip():
            close(pos)
            name = ln.text.strip()
            kind = back_matter_kind(name, _section_lines(lines, k))
            if kind is not None:
                back_kind, back_level = kind, ln.level
                back.append(name)
            elif back_kind is not None and ln.level <= back_level:
                back_kind = None
            while stack and stack[-1][0] >= ln.level:
                stack.pop()
            stack.append((ln.level, name))
            if first_heading is None:
                first_heading = name
            text_line = name
        elif back_kind is not None:
            close(pos)
            text_line = ln.text
            entry = _ITEM_LABEL.sub("", text_line).strip()
            if back_kind == "references" and entry:
                references.append(entry)
        else:
            text_line, notes = (ln.text, []) if ln.kind == "code" else strip_footnotes(ln.text)
            footnotes.extend((pos + off, label) for off, label in notes)
            if text_line.strip():
                if seg_start is not None and ln.page != seg_page:
                    close(pos)
                if seg_start is None:
                    seg_start, seg_page = pos, ln.page
        out.append(text_line)
        pos += len(text_line) + 1
    text = "\n".join(out)
    close(len(text))
    trimmed = []
    for s, e, sec, page in segments:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            trimmed.append((s, e, sec, page))
    return Assembled(text, trimmed, footnotes, references, back, first_heading)
