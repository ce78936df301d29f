"""The last gate before anything is shown: every sentence must be supported by the passage it cites.

A sentence copied from its passage (the extractive answerer) is supported by definition. A
sentence written by a language model is not a substring of its passage, so it is checked
instead: every number it cites must be a passage the model was given, and its figures, drug and
condition names, negations and most of its content words must be found in the passages it
cites. `support_problems` is that check; `unsupported` applies it (after the verbatim test) to a
whole answer and is what `Assistant.ask_stream` calls for every backend, so the gate and the
generative answerer use one and the same rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from assistant import lexicon
from assistant.answer.terms import stems
from assistant.models import Citation
from assistant.text import DASHES, sentence_spans

_MARKER = re.compile(r"\s*\[(\d+)\]")
_BULLET = re.compile(r"^\s*[-*•]\s+")

# At least this share of a generated sentence's content words must occur in its cited passages.
MIN_CONTENT_OVERLAP = 0.5
# A passage sentence sharing this share of a generated sentence's words is "about the same thing".
RELATED = 0.5
# Passage sentences within this much of the best overlap count as "the one it paraphrases".
NEAR_BEST = 0.1


def split_marked(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, cited numbers) for each marked sentence of an answer. The claims
    heading (`messages.CLAIMS_HEADING`) is a label, not a sentence: it is skipped."""
    from assistant.messages import CLAIMS_HEADING

    out: list[tuple[str, list[int]]] = []
    for line in answer.split("\n"):
        line = _BULLET.sub("", line).strip()
        if not line or line == CLAIMS_HEADING:
            continue
        # A sentence ends with its markers: "text [1] next text [2][3]".
        pos = 0
        for m in re.finditer(r"((?:\s*\[\d+\])+)", line):
            text = line[pos:m.start()].strip()
            nums = [int(x) for x in re.findall(r"\d+", m.group(1))]
            if text:
                out.append((text, nums))
            pos = m.end()
        rest = line[pos:].strip()
        if rest:
            out.append((rest, []))
    return out


# ----------------------------------------------------------------------------- figures

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# Number words that stand for a figure ("three deaths"). "one" is left out: it is mostly a
# pronoun ("one of the trials").
_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split()) if w != "_"}
_WORDS.update({w: str(10 * i) for i, w in enumerate(
    "thirty forty fifty sixty seventy eighty ninety".split(), start=3)})
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.I)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(DASHES)
    return text.replace("\u2019", "'").replace("\u2018", "'")


def numbers(text: str) -> set[str]:
    """The figures of a text, normalised: digit groups, decimals and percentages as plain numbers
    ("1,234" → "1234", "0.50" → "0.5", "67%" → "67", "10–20" → "10", "20"), number words as
    digits ("three" → "3")."""
    t = _fold(text)
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t)       # thousands separators
    out = set()
    for m in _NUMBER.finditer(t):
        v = m.group()
        if "." in v:
            whole, frac = v.split(".")
            frac = frac.rstrip("0")
            v = f"{int(whole)}.{frac}" if frac else str(int(whole))
        else:
            v = str(int(v))
        out.add(v)
    out.update(_WORDS[w.lower()] for w in _NUMBER_WORD.findall(t))
    return out


# ----------------------------------------------------------------------------- negations

_NEG = re.compile(
    r"\b(?:not|no|never|without|none|nor|neither|cannot|nobody|nothing|nowhere|lacks?|lacked|"
    r"absence|fail(?:s|ed)?\s+to)\b|n't\b", re.I)
_SCOPE_END = re.compile(r"[,;:.!?()\[\]]|\b(?:but|and|or|while|whereas|although)\b", re.I)


def negated(text: str) -> bool:
    return bool(_NEG.search(_fold(text)))


def negation_scopes(text: str) -> list[set[str]]:
    """For each negation in `text`, the first content word it governs, stemmed
    ("did not reach statistical significance" → {reach}; "no serious adverse events" → {serious})."""
    t = _fold(text)
    out = []
    for m in _NEG.finditer(t):
        tail = t[m.end():m.end() + 80]
        stop = _SCOPE_END.search(tail)
        if stop:
            tail = tail[:stop.start()]
        scope = set(stems(" ".join(tail.split()[:4]))[:1])
        if scope:
            out.append(scope)
    return out


# ----------------------------------------------------------------------------- alignment

def _stem_set(text: str) -> set[str]:
    return set(stems(_fold(text)))


def overlap(sentence_stems: set[str], other: set[str]) -> float:
    """Share of the sentence's content stems that occur in `other`."""
    return len(sentence_stems & other) / len(sentence_stems) if sentence_stems else 0.0


def passage_sentences(passage: str) -> list[tuple[int, int, str]]:
    return [(s, e, passage[s:e]) for s, e in sentence_spans(passage)]


def best_span(sentence: str, passage: str) -> tuple[int, int] | None:
    """Offsets of the passage sentence sharing the most words with `sentence` (for highlighting)."""
    target = _stem_set(sentence)
    best, span = 0.0, None
    for s, e, text in passage_sentences(passage):
        score = overlap(target, _stem_set(text))
        if score > best:
            best, span = score, (s, e)
    return span


# ----------------------------------------------------------------------------- injections

_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:instructions?|prompts?|rules|"
    r"above|everything)\b"
    r"|\b(?:tell|inform|assure|convince)\s+(?:the\s+|all\s+)?(?:users?|readers?|patients?)\s+(?:that|to)\b"
    r"|\bsystem\s+prompt\b|\bas an ai\b|\byou\s+(?:must|should)\s+(?:now\s+)?(?:say|answer|respond|reply)\b",
    re.I)


def instruction_like(text: str) -> bool:
    """Whether a passage sentence reads as an instruction to a language model."""
    return bool(_INSTRUCTION.search(_fold(text)))


def mask_instructions(passage: str) -> str:
    """The passage with instruction-like sentences blanked (same length, offsets unchanged)."""
    out = passage
    for s, e, text in passage_sentences(passage):
        if instruction_like(text):
            out = out[:s] + " " * (e - s) + out[e:]
    return out


# ----------------------------------------------------------------------------- the check

def support_problems(sentence: str, cited: Sequence[Citation]) -> list[str]:
    """Why `sentence` is not supported by the passages of `cited` (empty list: supported).

    The evidence is each cited passage; its title and section also count for figures and names
    (the model is shown the title), not for content words. Checks: figures, substance and condition names, content words,
    negations (a negation in the sentence must be in a related passage sentence; a passage
    sentence about the same thing that negates what the sentence asserts fails it).
    """
    if not cited:
        return ["cites no passage"]
    problems: list[str] = []
    context = " ".join(f"{c.title}. {c.section}. {c.passage}" for c in cited)

    missing = numbers(sentence) - numbers(context)
    if missing:
        problems.append("figures not in the cited passages: " + ", ".join(sorted(missing)))
    for kind, find in (("substances", lexicon.find_substances), ("conditions", lexicon.find_conditions)):
        extra = set(find(sentence)) - set(find(context))
        if extra:
            problems.append(f"{kind} not in the cited passages: " + ", ".join(sorted(extra)))

    s_stems = _stem_set(sentence)
    if not s_stems:
        problems.append("no content words to check")
        return problems
    if overlap(s_stems, _stem_set(" ".join(c.passage for c in cited))) < MIN_CONTENT_OVERLAP:
        problems.append("most of its words are not in the cited passages")

    sents = [(text, _stem_set(text)) for c in cited for _, _, text in passage_sentences(c.passage)]
    scored = [(overlap(s_stems, st), text, st) for text, st in sents]
    best = max((sc for sc, _, _ in scored), default=0.0)
    if negated(sentence):
        # The passage sentences closest to it must carry a negation too.
        closest = [text for sc, text, _ in scored if sc > 0 and sc >= best - NEAR_BEST]
        if not any(negated(text) for text in closest):
            problems.append("negation not in the cited passages")
    else:
        related = [text for sc, text, _ in scored if sc > 0 and sc >= min(RELATED, best)]
        for text in related:
            if any(scope <= s_stems for scope in negation_scopes(text)):
                problems.append(f"drops a negation of the cited passage: {text!r}")
                break
    return problems


def sentence_problems(text: str, nums: Sequence[int], by_n: dict[int, Citation]) -> list[str]:
    """The gate's rule for one sentence: valid citations, then verbatim or supported."""
    if not nums:
        return ["cites no passage"]
    unknown = [n for n in nums if n not in by_n]
    if unknown:
        return ["cites passages that do not exist: " + ", ".join(f"[{n}]" for n in unknown)]
    if any(text in by_n[n].passage for n in nums):
        return []  # copied from the passage (the extractive answerer): supported by definition
    return support_problems(text, [by_n[n] for n in dict.fromkeys(nums)])


def unsupported(answer: str, citations: list[Citation]) -> list[str]:
    """Sentences that cite nothing, cite an unknown number, or are not supported by a cited
    passage (neither copied from it nor passing `support_problems`)."""
    by_n = {c.n: c for c in citations}
    return [text for text, nums in split_marked(answer) if sentence_problems(text, nums, by_n)]
