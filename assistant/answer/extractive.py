"""The default, offline answerer: picks the sentences of the retrieved passages that answer the
question, each cited; or says what the sources do not hold.

Nothing is generated: every sentence of an answer is a sentence of the passage it cites, copied
whole, so a clinician can check it against the highlighted source. Each candidate sentence is
scored by the bundled model's similarity between the question and that sentence (its vector is
stored with the chunk at ingest) and by how much of the question's specific focus it covers
(`focus.py`: key terms weighted by their specificity in the corpus). A sentence answers only if it
also passes the focus gates:

* it names the trial, author, place and substance the question names (in the sentence, the
  sentence before it, or its document's title and section): a sentence about MAPP1 does not
  answer a question about MAPP2;
* when the question asks for a figure (how many, what percentage, what dose, how long, when,
  how much did it cost, by how many points), it states a figure of that kind, in the unit the
  question names.

When no sentence passes, the answer is `no_evidence` with a message that names what is missing
("no passage gives a dose for MAPP2") and the closest passages as related reading. Sentences are
then chosen by maximal marginal relevance over their vectors (no two that say the same thing; a
near-identical sentence of another source adds its citation instead), a sentence that leans on
the one before it ("It", "However", "In that study") comes with that sentence or not at all, and
the parts of a multi-part question are answered one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from assistant import index, lexicon, messages
from assistant.answer import Draft, Evidence, citation
from assistant.answer.focus import FIGURE, FIGURE_KINDS, FINDING, RESULT, Focus, states_timepoint
from assistant.answer.terms import stems
from assistant.answer.verify import instruction_like, numbers
from assistant.retrieve import Hit
from assistant.text import sentence_spans

# Weights and thresholds, chosen on the dev split of eval/quality.jsonl (BENCHMARKS.md, Answers).
COVERAGE_WEIGHT = 0.35   # selection score = similarity(question, sentence) + this x focus coverage
RESULT_BONUS = 0.1       # ... + this for a sentence reporting a result the question asks for, or its figure
# Answerability: intercept, then the weights of `features()` (sim, coverage, miss_known,
# miss_unknown, figures_ok, passage cosine). Refit with scripts/fit_answerability.py.
ANSWERABILITY = (-1.832, 4.965, 1.820, -1.863, -3.479, 0.998, -0.524)
SELECT_MARGIN = 0.25     # further sentences must score within this of the best
MIN_SENTENCES = 2        # ... and up to this many are taken within SECOND_MARGIN when there are
SECOND_MARGIN = 0.4
CLAIM_CONTEXT = 2        # reviewed sentences shown before a claim no reviewed sentence answers
NEAR_P = 0.3             # below this, not even a related passage: name the nearest topics instead
MMR_LAMBDA = 0.7         # relevance vs novelty when choosing further sentences
DUPLICATE = 0.9          # sentence vectors this close say the same thing
MAX_SENTENCES = 5
MAX_PER_PASSAGE = 2
MIN_WORDS = 5
RELATED = 3              # passages offered as related reading when the sources do not answer

# A sentence that cannot stand alone: it leans on the one before it.
_LEANS = re.compile(
    r"^(?:it|its|it's|this|that|these|those|they|their|them|such|however|but|also|yet|thus|"
    r"therefore|moreover|furthermore|meanwhile|instead|here|there|he|she|his|her|both|neither|"
    r"in (?:that|this|the same|both) (?:study|trial|case|review|analysis|survey|cohort|group)|"
    r"at (?:that|this) (?:endpoint|point|time|dose)|the (?:same|latter|former|trial|study)\b)\b",
    re.I)
# Sentences about the document rather than the evidence ("This summary covers ...").
_STRUCTURE = re.compile(
    r"\b(?:this|the present|the following|the next|the previous|the separate|a separate)\s+"
    r"(?:summary|summaries|document|article|section|page|overview|note|chapter)\b"
    r"|\b(?:summari[sz]ed|covered|described|discussed|listed)\s+(?:separately|below|above|here|"
    r"elsewhere|in (?:the|a) (?:separate|other))\b|\bsee (?:the|a) (?:separate )?(?:summary|section|"
    r"document|page)\b", re.I)
_BULLET = re.compile(r"^[-*•]\s+")


@dataclass
class Candidate:
    hit: Hit
    start: int                 # offsets in the passage (hit.chunk.text)
    end: int
    text: str
    vector: np.ndarray | None
    stems: frozenset[str]
    context: str               # normalised sentence + the one before + title and section
    context_stems: frozenset[str]
    previous: Candidate | None = None
    passage_stems: frozenset[str] = frozenset()
    sim: float = 0.0
    coverage: float = 0.0
    score: float = 0.0
    names_ok: bool = True
    kind_ok: bool = True
    miss_known: float = 0.0    # weight of the most specific key term the corpus uses but this misses
    miss_unknown: float = 0.0  # weight of the most specific key term the corpus never uses
    figures_ok: bool = True    # every figure the question states is in the sentence or before it
    time_ok: bool = True       # it states every time point the question asks at
    p: float = 0.0             # the probability that this sentence answers the question

    @property
    def eligible(self) -> bool:
        return self.names_ok

    @property
    def answers(self) -> bool:
        return self.names_ok and self.kind_ok

    @property
    def leans(self) -> bool:
        return bool(_LEANS.match(self.text))


@dataclass
class _Choice:
    """The sentences chosen for one question (or one part)."""

    focus: Focus
    chosen: list[Candidate] = field(default_factory=list)
    extra_cites: dict[int, list[Candidate]] = field(default_factory=dict)  # id(chosen) -> duplicates
    best: float = 0.0
    missing: str = ""
    related: list[Candidate] = field(default_factory=list)
    # The reviewed sentences closest to the question, for an answer only other sources give.
    reviewed_near: list[Candidate] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return bool(self.chosen)


# ----------------------------------------------------------------------------- candidates

def candidates(hits: list[Hit], question_vector: np.ndarray | None) -> list[Candidate]:
    """Every quotable sentence of the passages, with its vector, context and similarity."""
    out: list[Candidate] = []
    for h in hits:
        text = h.chunk.text
        stored = index.sentences(h.chunk.metadata)
        if stored is not None:
            spans, vecs = stored
        else:  # an index without sentence vectors: the passage's similarity stands in
            spans, vecs = sentence_spans(text), None
        head = lexicon.normalize(f"{h.chunk.title} {h.chunk.section}")
        passage_stems = frozenset(stems(text))
        previous: Candidate | None = None   # the sentence just before, if it may be shown
        prev_text = ""
        for i, (s, e) in enumerate(spans):
            m = _BULLET.match(text[s:e])
            if m:
                s += m.end()
            sent = text[s:e]
            vec = vecs[i] if vecs is not None and i < len(vecs) else None
            cand = Candidate(h, s, e, sent, vec, frozenset(stems(sent)),
                             lexicon.normalize(f"{sent} {prev_text} {head}"),
                             frozenset(stems(f"{prev_text} {h.chunk.title} {h.chunk.section}")),
                             previous, passage_stems=passage_stems)
            prev_text = sent
            if instruction_like(sent) or _STRUCTURE.search(sent):
                previous = None  # never shown, not even as the context of the next sentence
                continue
            previous = cand
            if len(sent.split()) < MIN_WORDS:
                continue  # too short to quote on its own (it may still introduce the next one)
            if question_vector is not None and vec is not None and vec.any():
                cand.sim = float(vec @ question_vector)
            else:
                cand.sim = h.dense
            out.append(cand)
    return out


_SPELLED = {str(i): w for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


def _covered(stem: str, focus: Focus, c: Candidate) -> float:
    """1 when the sentence names the term, 0.8 when the sentence before it or its title or
    section does, 0.5 when only the rest of its passage does, else 0."""
    forms = {stem} | focus.aliases.get(stem, set())
    if any(f[:1].isdigit() for f in forms):
        words = [_SPELLED[f] for f in forms if f in _SPELLED]  # "6 months" / "six months"
        return 1.0 if any(re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", c.text) for f in forms) or any(
            re.search(rf"\b{w}\b", c.text, re.I) for w in words) else 0.0
    if forms & c.stems:
        return 1.0
    if forms & c.context_stems:
        return 0.8
    if forms & c.passage_stems:
        return 0.5
    return 0.0


def judge(c: Candidate, focus: Focus, names: frozenset[str] = frozenset()) -> None:
    """Score one sentence against one focus: coverage, the gates, the combined score.

    `names` are the corpus's names (to tell a sentence about another trial or author)."""
    terms = focus.terms
    covered = {t: _covered(t, focus, c) for t in terms}
    # Coverage of the words that carry the question's topic (filler such as "got", "around" or
    # "change" weighs under 0.25 and is left out).
    topical = {t: w for t, w in terms.items() if w >= 0.25}
    total = sum(topical.values())
    c.coverage = (sum(w * covered[t] for t, w in topical.items()) / total) if total else 1.0
    c.miss_known = max((w for t, w in terms.items() if covered[t] < 0.8 and t in focus.known), default=0.0)
    c.miss_unknown = max((w for t, w in terms.items() if covered[t] < 0.8 and t not in focus.known), default=0.0)
    c.figures_ok = all(covered.get(f.strip().rstrip("%").strip(), 1.0) >= 0.8 for f in focus.figures)
    c.names_ok = _names_ok(c, focus, names) and all(covered.get(t, 0.0) >= 0.8 for t in focus.required)
    if focus.kind in FIGURE_KINDS:
        rx = FIGURE[focus.kind]
        c.kind_ok = bool(rx.search(c.text))
        if c.kind_ok and focus.unit:
            c.kind_ok = bool(re.search(r"\d\s?[–-]?\s?\d*\s?" + focus.unit + r"\b", c.text, re.I))
        if c.kind_ok and focus.kind == "count" and focus.counted:
            c.kind_ok = _counts(c.text, focus)
        if not c.kind_ok and focus.kind == "count" and _counts_people(focus) and FIGURE["percent"].search(c.text):
            c.kind_ok = True  # "how many guessed their arm": "90% of MDMA-arm participants"
        # A figure sentence must say what it measures: a "remission rate" is not met by a response
        # rate, so the measured word must be in the sentence itself.
        if c.kind_ok and focus.measured and focus.measured in covered and covered[focus.measured] < 1.0:
            c.kind_ok = False
    elif focus.outcome:
        # "What did COMP005 show?": a sentence that reports no finding does not answer.
        c.kind_ok = bool(RESULT.search(c.text) or FINDING.search(c.text))
    else:
        c.kind_ok = True
    # "did it hold up at 6 months": a sentence about day 7 or week 3 does not answer.
    before = c.previous.text if c.previous is not None else ""
    c.time_ok = all(states_timepoint(c.text, tp) or states_timepoint(before, tp) for tp in focus.timepoints)
    c.kind_ok = c.kind_ok and c.time_ok
    c.score = c.sim + COVERAGE_WEIGHT * c.coverage
    if focus.outcome and RESULT.search(c.text):
        c.score += RESULT_BONUS
    if focus.figures and all(covered.get(f.strip().rstrip("%").strip(), 0.0) >= 1.0 for f in focus.figures):
        c.score += RESULT_BONUS  # it states the very figure the question asks about
    c.p = answerability(c)


def _counts_people(focus: Focus) -> bool:
    from assistant.answer.focus import PEOPLE

    return focus.counted is not None and bool(({focus.counted} | focus.aliases.get(focus.counted, set())) & PEOPLE)


def _counts(text: str, focus: Focus) -> bool:
    """The sentence counts what the question counts ("how many sites" → "13 sites")."""
    from assistant.answer.focus import PEOPLE

    want = {focus.counted} | focus.aliases.get(focus.counted, set())
    if want & PEOPLE:
        want |= PEOPLE
        if re.search(r"\bn\s?=\s?\d", text):
            return True
    for m in re.finditer(r"(?<![\w.])\d[\d,]*(?![\w.%])|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|"
                         r"eleven|twelve|twenty|thirty|forty|fifty|hundred)\b", text, re.I):
        after = stems(" ".join(text[m.end():].split()[:4]))
        if set(after) & want:
            return True
    return False


def features(c: Candidate) -> list[float]:
    """What the answerability model reads of a sentence (see ANSWERABILITY)."""
    return [c.sim, c.coverage, c.miss_known, c.miss_unknown, float(c.figures_ok), c.hit.dense]


def answerability(c: Candidate) -> float:
    """P(the sentence answers the question): a logistic model over the model's similarity and the
    focus coverage features, fitted on the dev split (scripts/fit_answerability.py)."""
    import math

    z = ANSWERABILITY[0] + sum(w * x for w, x in zip(ANSWERABILITY[1:], features(c)))
    return 1.0 / (1.0 + math.exp(-z))


def _names_ok(c: Candidate, focus: Focus, names: frozenset[str]) -> bool:
    """The sentence is about what the question names.

    Substances and co-medications: named in the sentence, the one before it, or its title or
    section. Authors, places and organisations: there or anywhere in its passage. A trial code
    (MAPP2, COMP006): in the sentence or the one before it; or only in the title or section when
    neither they nor the sentence name another code (a document about "the MAPP1 and MAPP2
    trials" is not about MAPP2 in every sentence)."""
    header = lexicon.normalize(f"{c.hit.chunk.title} {c.hit.chunk.section}")
    near = c.context[:max(0, len(c.context) - len(header))]
    subs_all = set(lexicon.find_substances(c.context))
    for slug in focus.substances:
        if slug not in subs_all and not (slug in lexicon.CLASSIC_PSYCHEDELICS
                                         and lexicon.CLASS_WORDS.search(c.context)):
            return False
    if focus.conditions:
        # A question about a condition ("any AUD trials with ketamine?") is not answered by a
        # sentence about the substance in another setting: the sentence, the one before it or
        # its title or section names the condition (or a narrower one: TRD for depression).
        named = set(lexicon.find_conditions(c.context))
        named |= {b for x in named for b in lexicon.broader(x)}
        if not set(focus.conditions) & named:
            return False
    for generic in focus.medicines:
        classes, brands = lexicon.MEDICINES[generic]
        if not any(_mentions(c.context, lexicon.normalize(t)) or _mentions(c.context, lexicon.normalize(t) + "s")
                   for t in (generic, classes[0], *brands)):
            return False
    passage = None
    places = {n for n in focus.names if lexicon.is_place(n)}
    sentence = lexicon.normalize(c.text)
    for name in focus.names:
        if name in places and not _mentions(sentence, name) and lexicon.mentions_place(sentence, places):
            return False  # the sentence names a place of its own
        if _mentions(near, name):
            continue
        if not any(ch.isdigit() for ch in name):
            if _mentions(header, name):
                continue
            # Named only elsewhere in the passage: a sentence naming another place is about that
            # place ("... in the Czech Republic" is not about Germany because the passage
            # mentions Germany too).
            passage = passage or lexicon.normalize(c.hit.chunk.text)
            if not _mentions(passage, name):
                return False
            if lexicon.is_place(name) and lexicon.mentions_place(near, {n for n in focus.names if lexicon.is_place(n)}):
                return False
            continue
        if not _mentions(header, name):
            return False
        codes = [n for n in names if n != name and any(ch.isdigit() for ch in n)
                 and not name.startswith(n) and not n.startswith(name)]
        if any(_mentions(near, n) or _mentions(header, n) for n in codes):
            return False
    return True


def _title(c: Candidate) -> str:
    return lexicon.normalize(c.hit.chunk.title)


def _mentions(context: str, name: str) -> bool:
    if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w])", context):
        return True
    # Another form of the same one-word name (Mexico / Mexican, Australia / Australian).
    if len(name) < 6 or not name.isalpha():
        return False
    head = name[:max(5, len(name) - 3)]
    return re.search(rf"(?<![\w-]){re.escape(head)}\w*", context) is not None


# ----------------------------------------------------------------------------- choosing

def lead(cands: list[Candidate], focus: Focus, names: frozenset[str] = frozenset()) -> Candidate | None:
    """The sentence that best answers `focus` among those that pass its gates (None: none do)."""
    for c in cands:
        judge(c, focus, names)
    answering = [c for c in cands if c.answers]
    return max(answering, key=lambda c: (c.score, -c.hit.rank, -c.start)) if answering else None


def choose(cands: list[Candidate], focus: Focus, names: frozenset[str], min_p: float) -> _Choice:
    """The sentences that answer `focus`, or the reason there are none. `min_p`: abstain when the
    best sentence is less likely than this to answer (the setting `min_evidence`)."""
    for c in cands:
        judge(c, focus, names)
    choice = _Choice(focus)
    answering = sorted((c for c in cands if c.answers), key=lambda c: (-c.score, c.hit.rank, c.start))
    choice.best = answering[0].p if answering else 0.0
    if not answering or answering[0].p < min_p:
        choice.missing = _missing(cands, focus)
        if not focus.unknown and max((c.p for c in cands), default=0.0) >= NEAR_P:
            choice.related = _related(cands)  # the subject is covered, the asked fact is not
        return choice
    best = answering[0].score
    # For a figure question every sentence shown must state a figure of the kind asked for, and
    # for a results question a finding.
    need = (lambda c: c.answers) if focus.kind in FIGURE_KINDS or focus.outcome else (lambda c: c.eligible)
    pool = [c for c in cands if need(c) and c.p >= min_p and c.score >= best - SECOND_MARGIN]
    picked: list[Candidate] = []
    per_passage: dict[str, int] = {}
    first = True
    while pool and len(picked) < MAX_SENTENCES:
        # The first sentence must answer (state the asked figure), from reviewed evidence when
        # any does; others may support it.
        options = [c for c in pool if c.answers] if first else pool
        if first and any(reviewed(c.hit) for c in options):
            options = [c for c in options if reviewed(c.hit)]
        if first and focus.outcome and any(RESULT.search(c.text) for c in options):
            options = [c for c in options if RESULT.search(c.text)]  # a result leads a results answer
        if not first and len(picked) >= MIN_SENTENCES:
            options = [c for c in options if c.score >= best - SELECT_MARGIN]
        if not options:
            break
        nxt = max(options, key=(lambda c: (c.p, c.score)) if first else (lambda c: _mmr(c, picked)))
        pool.remove(nxt)
        dup = next((p for p in picked if _same(nxt, p)), None)
        if dup is not None:
            if nxt.hit.chunk.chunk_id != dup.hit.chunk.chunk_id and numbers(nxt.text) == numbers(dup.text):
                choice.extra_cites.setdefault(id(dup), []).append(nxt)
            continue
        cid = nxt.hit.chunk.chunk_id
        if per_passage.get(cid, 0) >= MAX_PER_PASSAGE:
            continue
        if nxt.leans:
            prev = nxt.previous
            if prev is None or not prev.names_ok:
                continue  # leans on a sentence this passage does not show, or one about another subject
            if prev not in picked:
                picked.append(prev)
        picked.append(nxt)
        per_passage[cid] = per_passage.get(cid, 0) + 1
        first = False
    choice.chosen = picked
    if picked and not any(reviewed(c.hit) for c in picked):
        # Only opinion, news or unreviewed sources answer: the closest reviewed sentences about
        # the same subject are shown first, so the claim is never read without the evidence.
        near = sorted((c for c in cands if reviewed(c.hit) and c.eligible and c.p >= NEAR_P
                       and not c.leans), key=lambda c: (-c.score, c.hit.rank, c.start))
        for c in near:
            if len(choice.reviewed_near) >= CLAIM_CONTEXT:
                break
            if not any(_same(c, o) for o in choice.reviewed_near):
                choice.reviewed_near.append(c)
    return choice


def _mmr(c: Candidate, picked: list[Candidate]) -> float:
    if not picked or c.vector is None:
        return c.score
    overlap = max((float(c.vector @ p.vector) for p in picked if p.vector is not None), default=0.0)
    return MMR_LAMBDA * c.score - (1 - MMR_LAMBDA) * overlap


def _same(a: Candidate, b: Candidate) -> bool:
    """Two sentences that say the same thing (by meaning, or nearly word for word); sentences that
    give different figures never do."""
    if a.text == b.text:
        return True
    na, nb = numbers(a.text), numbers(b.text)
    if na and nb and not (na <= nb or nb <= na):
        return False
    if a.vector is not None and b.vector is not None and float(a.vector @ b.vector) >= DUPLICATE:
        return True
    if not a.stems or not b.stems:
        return False
    inter = len(a.stems & b.stems)
    return inter / len(a.stems | b.stems) >= 0.6 or inter / min(len(a.stems), len(b.stems)) >= 0.85


def _related(cands: list[Candidate]) -> list[Candidate]:
    out: list[Candidate] = []
    for c in sorted(cands, key=lambda c: -c.sim):
        if all(c.hit.chunk.chunk_id != o.hit.chunk.chunk_id for o in out):
            out.append(c)
        if len(out) >= RELATED:
            break
    return out


def _missing(cands: list[Candidate], focus: Focus) -> str:
    """What the sources lack, in one sentence a clinician can act on."""
    if focus.unknown:
        return messages.not_in_sources([focus.phrases.get(u, u) for u in focus.unknown])
    key = [focus.words[t] for t, w in sorted(focus.terms.items(), key=lambda x: -x[1]) if w >= 0.5][:3]
    key = [focus.phrases.get(k, k) for k in key]
    names = focus.names + [lexicon.DISPLAY_NAMES.get(s, s) for s in focus.substances + focus.conditions]
    about = [c for c in cands if c.coverage >= 0.5]
    if focus.timepoints and any(c.names_ok and not c.time_ok and c.p >= NEAR_P for c in cands):
        return messages.no_timepoint(focus.timepoints, names)
    if focus.kind in FIGURE_KINDS and any(c.names_ok for c in about) and not any(c.answers for c in about):
        return messages.no_figure(focus.kind, key, names)
    if focus.outcome and any(c.names_ok for c in about) and not any(c.answers for c in about):
        return messages.no_result(names)
    if about and not any(c.names_ok for c in about):
        return messages.not_for(names, key)
    return messages.not_mentioned(key, names)


# ----------------------------------------------------------------------------- the answer

def answer(evidence: Evidence) -> Draft:
    """Select, de-duplicate and cite sentences that answer `evidence.question`; or abstain."""
    focus = evidence.focus
    nearest = _nearest_topics(evidence.hits)
    names = evidence.names
    min_p = evidence.min_evidence
    if focus.multi and evidence.parts:
        choices = [choose(candidates(p.hits, p.vector), p.focus, names, min_p) for p in evidence.parts]
    else:
        choices = [choose(candidates(evidence.hits, evidence.vector), focus, names, min_p)]
    answered = [ch for ch in choices if ch.answered]
    confidence = min(ch.best for ch in choices) if choices else 0.0
    if not answered:
        related = _related_citations(choices)
        missing = " ".join(dict.fromkeys(ch.missing for ch in choices if ch.missing))
        return Draft("no_evidence", "", [], [], confidence, list(focus.unknown), nearest,
                     missing=missing, related=related)
    # Evidence before opinion: sentences of reviewed sources first (numbered first), then those of
    # opinion, news and unreviewed sources under their own heading.
    ordered: list[tuple[Candidate, list[Candidate]]] = []
    seen: set[tuple[str, int]] = set()
    notes: list[str] = []
    for ch in answered:
        if ch.reviewed_near:
            notes.append(messages.claims_only(len(ch.reviewed_near)))
        # Each passage's sentences in reading order, right after the first one chosen from it.
        order: list[Candidate] = []
        for c in ch.reviewed_near + ch.chosen:
            if c in order:
                continue
            same = [x for x in ch.reviewed_near + ch.chosen
                    if x.hit.chunk.chunk_id == c.hit.chunk.chunk_id and x not in order]
            order.extend(sorted(same, key=lambda x: x.start))
        for c in order:
            key = (c.hit.chunk.chunk_id, c.start)
            if key not in seen:
                seen.add(key)
                ordered.append((c, ch.extra_cites.get(id(c), [])))
    evidence_first = [x for x in ordered if reviewed(x[0].hit)] + [x for x in ordered if not reviewed(x[0].hit)]
    numbers_of: dict[str, int] = {}
    highlights: dict[str, list[tuple[int, int]]] = {}
    hits_of: dict[str, Hit] = {}
    pairs: list[tuple[str, list[int]]] = []
    claims: list[tuple[str, list[int]]] = []
    for c, extra in evidence_first:
        ns = []
        for src in [c] + [e for e in extra if reviewed(e.hit) == reviewed(c.hit)]:
            cid = src.hit.chunk.chunk_id
            if cid not in numbers_of:
                numbers_of[cid] = len(numbers_of) + 1
                hits_of[cid] = src.hit
            highlights.setdefault(cid, [])
            if (src.start, src.end) not in highlights[cid]:
                highlights[cid].append((src.start, src.end))
            ns.append(numbers_of[cid])
        (pairs if reviewed(c.hit) else claims).append((c.text, list(dict.fromkeys(ns))))
    citations = [citation(n, hits_of[cid], sorted(highlights[cid])) for cid, n in numbers_of.items()]
    notes += [messages.part_not_covered(ch.focus.text, ch.missing) for ch in choices if not ch.answered]
    text = compose(pairs, claims)
    return Draft("answered", text, citations, [(t, ns[0]) for t, ns in pairs + claims], confidence, [],
                 nearest, notes)


REVIEWED_TYPES = frozenset({"trial", "meta-analysis", "review", "guideline", "regulatory", "label",
                            "summary"})


def reviewed(hit: Hit) -> bool:
    """Whether a passage comes from reviewed evidence (a trial, review, guideline, label, the
    project's own summaries ...) rather than opinion, news or a document nobody has typed."""
    return hit.chunk.metadata.get("source_type") in REVIEWED_TYPES


def _related_citations(choices: list[_Choice]):
    seen: dict[str, tuple[Hit, list[tuple[int, int]]]] = {}
    for ch in choices:
        for c in ch.related:
            hit, spans = seen.setdefault(c.hit.chunk.chunk_id, (c.hit, []))
            spans.append((c.start, c.end))
    return [citation(i + 1, hit, sorted(spans)) for i, (hit, spans) in enumerate(seen.values())][:RELATED]


def compose(pairs: list[tuple[str, list[int]]], claims: list[tuple[str, list[int]]] | None = None) -> str:
    """Sentences with their [n] markers: a paragraph for up to three, bullets beyond; then the
    claims of opinion, news and unreviewed sources as bullets under `messages.CLAIMS_HEADING`."""
    marked = [f"{text} " + "".join(f"[{n}]" for n in ns) for text, ns in pairs]
    text = " ".join(marked) if len(marked) <= 3 else "\n".join(f"- {m}" for m in marked)
    if claims:
        lines = [f"- {t} " + "".join(f"[{n}]" for n in ns) for t, ns in claims]
        text = "\n".join(([text] if text else []) + [messages.CLAIMS_HEADING] + lines)
    return text


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
