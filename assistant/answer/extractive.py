"""The default, offline answerer: picks sentences of the retrieved passages, each cited.

Nothing is generated: every sentence of an answer is a sentence of the passage it cites, copied
whole, so a clinician can check it against the highlighted source. When the evidence is weak the
answerer abstains and names the nearest topics the corpus does cover.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache

from assistant import lexicon
from assistant.answer import Draft, citation
from assistant.answer.terms import focus_words, stems, weighted_terms
from assistant.answer.verify import instruction_like
from assistant.retrieve import Hit
from assistant.text import sentence_spans

# Abstention thresholds, calibrated on eval/gold.jsonl (see eval/README.md): in-scope questions
# have a best passage similarity well above MIN_DENSE; unrelated ones fall below it.
MIN_DENSE = 0.35
MIN_OVERLAP = 0.15
RELATED_MARGIN = 0.2     # passages much less similar than the best one are not used
MAX_SENTENCES = 5
MIN_WORDS = 5
_NUMERIC_Q = re.compile(r"\b(how many|how much|what (?:percent|percentage|proportion|share|dose|doses|"
                        r"rate|number)|how (?:long|often|large|big)|when|what year|what date|dose|doses|"
                        r"percent|percentage|rate|figure|figures|odds|effect size)\b", re.I)
# A figure, not a digit inside a name such as MAPP1, CAPS-5 or 5-HT2A.
_FIGURE = re.compile(r"(?<![A-Za-z0-9\-])\d+(?:[.,]\d+)?(?![A-Za-z0-9])(?:\s*(?:%|mg|µg|g\b|kg|mmHg))?")
_PRONOUN_START = re.compile(r"^(it|this|that|these|those|they|he|she|its|their|such)\b", re.I)
_BULLET = re.compile(r"^[-*•]\s+")


@dataclass
class Sentence:
    hit: Hit
    start: int          # offsets in the passage (hit.chunk.text)
    end: int
    text: str
    stems: frozenset[str]
    score: float = 0.0
    overlap: float = 0.0


def _sentences(hit: Hit) -> list[Sentence]:
    text = hit.chunk.text
    out = []
    for s, e in sentence_spans(text):
        m = _BULLET.match(text[s:e])
        if m:
            s += m.end()
        sent = text[s:e]
        if len(sent.split()) < MIN_WORDS:
            continue
        if instruction_like(sent):
            continue  # a passage that addresses the assistant is not evidence (prompt injection)
        out.append(Sentence(hit, s, e, sent, frozenset(stems(sent))))
    return out


# Clinical topics that are ordinary English words (so `common` would let them pass) but that
# make a question out of scope when the corpus never mentions them.
CLINICAL_TERMS = frozenset("""
schizophrenia schizophrenic autism autistic adhd ocd anorexia bulimia dementia alzheimer alzheimers
parkinson parkinsons epilepsy seizures cancer pain fibromyalgia migraine migraines insomnia sleep
cannabis marijuana cbd thc cocaine methamphetamine meth heroin caffeine kratom kava salvia nitrous
gabapentin pregabalin benzodiazepines xanax valium adderall ritalin ssri prozac zoloft tinnitus
obesity diabetes covid pregnancy pregnant children child adolescents teenagers dogs cats
""".split())


def unknown_terms(question: str, vocab: dict | None, common: frozenset[str] | dict | None = None) -> list[str]:
    """Topic words of the question that appear nowhere in the corpus.

    Typos, word forms and the lexicon's alias words are forgiven. When `common` (the embedding
    model's word-piece vocabulary: everyday English) is given, an unknown everyday word such as
    "decide" does not make a question out of scope unless it names a clinical topic.
    """
    if not vocab:
        return []
    if common is None:
        common = _common_words()
    out = []
    for word, stem in focus_words(question):
        if stem in vocab or word in vocab or len(word) < 4:
            continue
        if common is not None and word in common and word not in CLINICAL_TERMS:
            continue
        if lexicon.find_substances(word) or lexicon.find_conditions(word) or word in _alias_words():
            continue
        if len(word) >= 6 and any(v.startswith(word[:5]) for v in _vocab_list(vocab)):
            continue  # another form of a word the corpus knows (Mexican / Mexico)
        if difflib.get_close_matches(stem, _vocab_list(vocab), n=1, cutoff=0.85):
            continue  # a typo of a word the corpus knows
        out.append(word)
    return out


_VOCAB_CACHE: dict[int, list[str]] = {}


@lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    """Whole words of the embedding model's word-piece vocabulary: a proxy for everyday English."""
    from assistant.embeddings import load_tokenizer

    return frozenset(w for w in load_tokenizer().get_vocab() if w.isalpha())


@lru_cache(maxsize=1)
def _alias_words() -> frozenset[str]:
    """Single words of the lexicon's aliases ("magic" of magic mushrooms, "venom" of toad venom)."""
    out: set[str] = set()
    for table in (lexicon.SUBSTANCES, lexicon.CONDITIONS):
        for aliases in table.values():
            for alias in aliases:
                out.update(re.findall(r"[a-z0-9]+", alias.lower()))
    return frozenset(out)


def _vocab_list(vocab: dict) -> list[str]:
    key = id(vocab)
    if key not in _VOCAB_CACHE:
        _VOCAB_CACHE.clear()
        _VOCAB_CACHE[key] = [str(w) for w in vocab]
    return _VOCAB_CACHE[key]


def answer(question: str, hits: list[Hit], vocab: dict | None = None,
           min_dense: float = MIN_DENSE, common: frozenset[str] | dict | None = None) -> Draft:
    """Select, de-duplicate and cite sentences; or abstain."""
    nearest = _nearest_topics(hits)
    if not hits:
        return Draft("no_evidence", "", [], [], 0.0, [], nearest)
    best = max(h.dense for h in hits)
    unknown = unknown_terms(question, vocab, common)
    terms = weighted_terms(question)
    for t, w in weighted_terms(lexicon.expand_query(question)[len(question):]).items():
        terms[t] = max(terms.get(t, 0.0), w)  # canonical names for aliases, clinical wording
    total = sum(terms.values()) or 1.0
    numeric = bool(_NUMERIC_Q.search(question))

    related = [h for h in hits if h.dense >= best - RELATED_MARGIN]
    cands: list[Sentence] = []
    for h in related:
        for s in _sentences(h):
            s.overlap = sum(w for t, w in terms.items() if t in s.stems) / total
            passage = (h.dense - (best - RELATED_MARGIN)) / RELATED_MARGIN  # 0..1 within band
            s.score = 0.75 * s.overlap + 0.25 * passage
            if numeric and _FIGURE.search(s.text):
                s.score += 0.1
            if _PRONOUN_START.match(s.text):
                s.score -= 0.05
            cands.append(s)
    cands.sort(key=lambda s: (-s.score, s.hit.rank, s.start))
    top_overlap = max((s.overlap for s in cands), default=0.0)
    if best < min_dense or top_overlap < MIN_OVERLAP or unknown:
        return Draft("no_evidence", "", [], [], best, unknown, nearest)

    chosen: list[Sentence] = []
    per_passage: dict[str, int] = {}
    floor = cands[0].score * 0.6
    for s in cands:
        if len(chosen) >= MAX_SENTENCES:
            break
        if s.score < floor and len(chosen) >= 2:
            break
        if s.overlap <= 0.0:
            continue
        if per_passage.get(s.hit.chunk.chunk_id, 0) >= 2:
            continue
        if any(_near_duplicate(s, c) for c in chosen):
            continue
        chosen.append(s)
        per_passage[s.hit.chunk.chunk_id] = per_passage.get(s.hit.chunk.chunk_id, 0) + 1

    # Number the passages in order of first use; keep each passage's sentences in reading order
    # right after the first one chosen from it, so the answer reads like its sources.
    numbers: dict[str, int] = {}
    ordered: list[Sentence] = []
    for s in chosen:
        cid = s.hit.chunk.chunk_id
        if cid in numbers:
            continue
        numbers[cid] = len(numbers) + 1
        ordered.extend(sorted((c for c in chosen if c.hit.chunk.chunk_id == cid), key=lambda c: c.start))
    highlights: dict[str, list[tuple[int, int]]] = {}
    for s in ordered:
        highlights.setdefault(s.hit.chunk.chunk_id, []).append((s.start, s.end))
    citations = [citation(numbers[cid], next(s.hit for s in ordered if s.hit.chunk.chunk_id == cid),
                          highlights[cid]) for cid in numbers]
    pairs = [(s.text, numbers[s.hit.chunk.chunk_id]) for s in ordered]
    return Draft("answered", compose(pairs), citations, pairs, best, [], nearest)


def compose(pairs: list[tuple[str, int]]) -> str:
    """Sentences with their [n] markers: a paragraph for up to three, bullets beyond."""
    marked = [f"{text} [{n}]" for text, n in pairs]
    if len(marked) <= 3:
        return " ".join(marked)
    return "\n".join(f"- {m}" for m in marked)


def _near_duplicate(a: Sentence, b: Sentence) -> bool:
    if not a.stems or not b.stems:
        return a.text == b.text
    inter = len(a.stems & b.stems)
    return inter / len(a.stems | b.stems) >= 0.6 or inter / min(len(a.stems), len(b.stems)) >= 0.85


def _nearest_topics(hits: list[Hit], n: int = 3) -> list[str]:
    seen: list[str] = []
    for h in sorted(hits, key=lambda h: -h.dense):
        label = h.chunk.title
        if label and label not in seen:
            seen.append(label)
        if len(seen) >= n:
            break
    return seen


def pieces(text: str) -> list[str]:
    """The answer text in display pieces (one per sentence or bullet) that concatenate to it."""
    return re.findall(r".+?\](?:\n|\s+|$)|.+$", text, flags=re.S) or [text]
