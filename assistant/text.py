"""Text utilities shared by ingest and the answerer: normalisation and sentence spans."""

from __future__ import annotations

import re
import unicodedata

# Hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar, minus sign,
# small/fullwidth hyphen-minus: all compare as '-' (so "9–2" matches "9-2", "−23.7" matches "-23.7").
DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"})

# Abbreviations after which a full stop does not end a sentence.
_ABBREV = {
    "e.g", "i.e", "vs", "al", "dr", "mr", "mrs", "ms", "prof", "no", "fig", "approx", "etc",
    "cf", "ca", "st", "jr", "sr", "vol", "pp", "inc", "ltd", "co", "u.s", "u.k", "min", "max",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mg",
    "ref", "refs", "resp", "est", "sen", "rep", "gov", "gen", "col", "lt", "sgt", "capt", "rev",
    "hon", "dept", "univ", "figs", "eq", "nos", "vols", "eds",
}
_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+|$)")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")
_LONE_STOP = re.compile(r"\.[\"'”’)\]]*")


def normalise(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\t", "    ").replace("\u00a0", " ")
    text = re.sub(r"[ ]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets in text[start:end], trimmed of surrounding whitespace.

    Line breaks end a sentence too (list items, table rows, headings), so a span never crosses
    a newline. Full stops after common abbreviations and inside numbers do not end a sentence.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        ls, le = start + line.start(), start + line.end()
        seg_start = ls
        for m in _END.finditer(text, ls, le):
            stop = m.end()
            # A lone full stop, perhaps inside a closing bracket or quote ("et al.) found"):
            # not an end after an abbreviation or an initial, or before a lowercase word.
            if _LONE_STOP.fullmatch(m.group()):
                word = _WORD_BEFORE.search(text, ls, m.start())
                if word and (word.group(1).lower().rstrip(".") in _ABBREV or len(word.group(1)) == 1):
                    continue
                nxt = text[stop:stop + 3].lstrip()
                if nxt[:1].islower():  # "...approx. 5 mg. and" style: not a real end
                    continue
            _add(text, seg_start, stop, spans)
            seg_start = stop
        _add(text, seg_start, le, spans)
    return spans


def _add(text: str, s: int, e: int, out: list[tuple[int, int]]) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        out.append((s, e))


_CTRL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean_user_text(text: str) -> str:
    """NFKC, control and zero-width characters removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _CTRL.sub("", text)
    return re.sub(r"\s+", " ", text).strip()
