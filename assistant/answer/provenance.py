"""Figure provenance: an opinion's figure is never shown as a finding.

For every figure in a sentence an answer quotes from an opinion, news or unreviewed source, the
reviewed documents of the index are searched for it (`lookup`). A figure is *held* when a reviewed
passage states it itself: not inside quotation marks and not in a sentence that reports what the
opinion's author says (a fact check quotes the wrong figure it corrects). A figure no reviewed
source holds is marked in the answer's notes; when a reviewed sentence of the same answer gives
other figures for the same trial or outcome, the notes say the sources disagree. Deterministic:
plain text search and set comparisons, no model.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from assistant import lexicon, messages
from assistant.answer.terms import stems
from assistant.models import Citation, FigureCheck

# A figure as a clinician reads it: a number with its unit or its percent sign, or a year.
_FIGURE = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s?%|\s?(?:mg|µg|mcg|g|kg|ml|points?|sessions?|"
    r"weeks?|months?|days?|hours?|years?|patients|participants|people|adults|deaths)\b)?")
_QUOTED = re.compile(r"[\"“”'‘’]([^\"“”]{0,40})[\"“”'‘’]")

# lookup(figure) -> the reviewed sentences (document title, sentence) that contain it.
Lookup = Callable[[str], list[tuple[str, str]]]


def figures(sentence: str) -> list[str]:
    """The figures of a sentence worth checking (single digits without a unit are not)."""
    out = []
    for m in _FIGURE.finditer(sentence):
        f = m.group().strip()
        if len(f) == 1:
            continue
        out.append(f)
    return list(dict.fromkeys(out))


def held(figure: str, claim: str, statements: list[tuple[str, str]], attributed_to: list[str]) -> bool:
    """Whether one of the reviewed sentences states `figure` as its own finding about the same
    thing: the number, not quoted, not attributed to the opinion's author, not negated ("not a
    71% reduction"), with a word of what the claim measures next to it ("71% reduction" is not
    held by "71% of participants had a response")."""
    number = re.match(r"[\d.,]+", figure).group()  # type: ignore[union-attr]
    # A year names when, not what: any reviewed mention of it will do.
    measured = set() if re.fullmatch(r"(?:19|20)\d\d", figure) else _window(claim, number)
    for _, sentence in statements:
        norm = lexicon.normalize(sentence)
        if any(name and name in norm for name in attributed_to):
            continue  # "Trautman's article states ... 71%": reporting the claim, not holding it
        bare = _QUOTED.sub(" ", sentence)
        for m in re.finditer(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", bare):
            if re.search(r"\b(?:not|no|never|rather than|instead of)\s+(?:\w+\s+){0,2}$", bare[:m.start()]):
                continue
            if not measured or measured & _window(bare, number, m.start()):
                return True
    return False


def _window(text: str, number: str, at: int | None = None) -> set[str]:
    """Content stems of the three words after a figure (or before it, at a sentence end)."""
    m = re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text[at or 0:])
    if not m:
        return set()
    start, end = (at or 0) + m.start(), (at or 0) + m.end()
    after = re.sub(r"^\s?%", "", text[end:])
    words = stems(" ".join(after.split()[:3])) or stems(" ".join(text[:start].split()[-3:]))
    return set(words)


def check(sentences: list[tuple[str, list[int]]], citations: list[Citation], claim_types: set[str],
          lookup: Lookup) -> tuple[list[FigureCheck], list[str]]:
    """Checks of the figures of the sentences quoted from opinion, news or unreviewed sources, and
    the notes to show: figures found nowhere reviewed, and disagreements within the answer."""
    by_n = {c.n: c for c in citations}
    checks: list[FigureCheck] = []
    notes: list[str] = []
    evidence = [(t, ns) for t, ns in sentences if by_n[ns[0]].source_type not in claim_types]
    for text, ns in sentences:
        c = by_n[ns[0]]
        if c.source_type not in claim_types:
            continue
        attributed = _attribution(c)
        for f in figures(text):
            ok = held(f, text, lookup(re.match(r"[\d.,]+", f).group()), attributed)
            checks.append(FigureCheck(figure=f, sentence=text, citation=c.n, held=ok))
            if not ok:
                notes.append(messages.figure_not_found(f, c.title))
        mine = {x for x in figures(text) if "%" in x}
        for etext, ens in evidence:
            theirs = {x for x in figures(etext) if "%" in x}
            if mine and theirs and not (mine & theirs) and _same_subject(text, etext):
                notes.append(messages.figures_disagree(c.title, sorted(mine), by_n[ens[0]].title,
                                                       sorted(theirs)))
                break
    return checks, list(dict.fromkeys(notes))


def _attribution(c: Citation) -> list[str]:
    """Words that mark a reviewed sentence as reporting this source: its authors' surnames, and
    the names in its title that are not ordinary words ("Trautman" of a file named after him)."""
    from assistant.answer.focus import specificity

    out = []
    for a in c.authors:
        parts = [p for p in re.findall(r"[A-Za-z][A-Za-z'-]+", a) if p[0].isupper()]
        if parts:
            out.append(lexicon.normalize(parts[-1] if len(parts) < 3 else parts[1]))
    for w in re.findall(r"[A-Za-z][A-Za-z'-]{3,}", c.title):
        if specificity(w.lower()) >= 0.9:
            out.append(lexicon.normalize(w))
    return [w for w in dict.fromkeys(out) if len(w) > 2]


def _same_subject(a: str, b: str) -> bool:
    """Two sentences about the same trial or outcome: a shared name or code, or at least two
    shared content words beyond the substance."""
    sa, sb = set(stems(a)), set(stems(b))
    codes = {w for w in sa & sb if any(ch.isdigit() for ch in w) and any(ch.isalpha() for ch in w)}
    subs = set(stems(" ".join(lexicon.find_substances(a) + lexicon.find_conditions(a))))
    return bool(codes) or len((sa & sb) - subs) >= 3
