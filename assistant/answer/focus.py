"""What a question asks for: its focus, read from the question and the corpus's own statistics.

An answer must address the question's specific focus, not just its topic. `analyse` reads:

* the *kind* of answer asked for: a count, a percentage or rate, a dose, a duration, a date, a
  cost, the size of an effect, a value (a cut-off), or a yes/no; and a unit the question names
  ("in hours", "mg/kg") that the answer's figure must carry;
* the *named things* it is about: trial codes (MAPP2, COMP005), authors (Goodwin, Raison),
  places (Oregon), taken from the names the corpus itself writes capitalised or with digits
  (`BM25Index.names`), and the substances of the lexicon: a sentence about another trial or drug
  does not answer;
* its *key terms*, weighted by how specific they are in this corpus (inverse document frequency
  from the index): "washout" and "remission" weigh far more than "trial" or "patients". Brand
  names, clinical shorthand and lay words count as the clinical terms they stand for
  (`lexicon.resolve_terms`), and a misspelt word as the corpus word it is closest to;
* words that appear nowhere in the corpus and are not everyday English: they name a topic the
  corpus does not cover (an everyday word never makes a question out of scope by itself);
* the *parts* of a multi-part question ("How many ..., and at how many sites ...?").

Nothing here is tuned to a question set: the signals come from the index, the lexicon, the
model's word-piece vocabulary (everyday English) and the grammar of questions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from assistant import lexicon
from assistant.answer.terms import stems, words
from assistant.conversation import names_about

# ----------------------------------------------------------------------------- answer kinds

# The kind of figure a question asks for, by its wording (first match wins; order matters).
_KINDS: list[tuple[str, re.Pattern[str]]] = [(k, re.compile(p, re.I)) for k, p in [
    ("money", r"\b(?:how much (?:does|did|do|would|will) [^?]*\bcost|what (?:does|did) [^?]*\bcost|"
              r"\bcost(?:s)?\b|\bprice\b|\bhow expensive\b|\bfees?\b|how much (?:money|funding|"
              r"in funds)|\bfunding\b|\bbudget\b)"),
    ("effect", r"\b(?:by how (?:many|much)|how many (?:points?|madrs|units)|effect size|"
               r"mean difference|how big (?:was|is) the (?:effect|difference)|cohen'?s d|odds ratio|"
               r"how much (?:higher|lower|bigger|smaller)|"
               r"\bdiff(?:erence)?\b (?:vs|versus|from|between)|how much (?:better|worse|more|less|larger|greater)|"
               r"how (?:much|far) (?:did|does|do|was|were|is|are) (?:\S+\s+){1,5}?(?:drop|fall|fell|change|"
               r"improve|decline|decrease|reduce|rise|increase|go down|go up|shift|move)\w*)"),
    ("dose", r"\b(?:what (?:oral |iv |intravenous |single |starting |maximum |typical )?dos(?:e|es|age|ing)|"
             r"(?:what|which)(?:\s+\S+){0,4}?\s+dos(?:e|es|age)s?\b(?!\s+(?:session|day))|"
             r"dos(?:e|es) in (?:mg|micrograms?)|"
             r"how much (?!time)|at what dose|which dose|dose (?:was|were|did)|doses? (?:used|given)|"
             r"mg/kg|milligrams?|micrograms?)"),
    ("duration", r"\b(?:how long|how many (?:weeks|days|hours|months|years|minutes|sessions? long)|"
                 r"half-?life|duration|for how long|how soon|how quickly)"),
    ("percent", r"\b(?:what (?:percent(?:age)?|proportion|share|fraction|rate|%)|how likely|"
                r"\w+ rates?\b|percentage|per ?cent|%|how common|how often|incidence|prevalence|"
                r"how (?:many|much) of (?:the|them))"),
    ("count", r"\b(?:how many|number of|how big (?:was|is) the (?:cohort|sample|trial|study)|"
              r"sample size|how large (?:was|is) the (?:cohort|sample|trial|study)|"
              r"how many (?:people|participants|patients|deaths))"),
    ("date", r"\b(?:when (?:did|was|were|is|will|does|do)|what year|which year|what date|since when|"
             r"in what year|how recently|as of when)"),
    ("value", r"\b(?:what (?:qtc |qt )?(?:value|cut-?off|threshold|level|limit|score|interval)|"
              r"cut-?off|threshold|upper limit)"),
]]
# Kinds whose figure an answer must contain (a yes/no or a "what happened" question has none).
_KINDS_BY = dict(_KINDS)
FIGURE_KINDS = ("money", "effect", "dose", "duration", "percent", "count", "date", "value")
# Questions about results ("how effective is", "what did COMP005 show", "does it work"): a sentence
# that reports a result (a rate, an effect size, a p value, arm versus arm) answers them best.
_OUTCOME = re.compile(r"\b(?:how (?:effective|well|successful)|how (?:did|does|do) (?:\S+\s+){1,4}?(?:do|fare)\b|effectiveness|efficacy|did (?:it|they|\w+) "
                      r"work|does (?:it|\w+) work|what (?:did|does) (?:\S+\s+){1,5}?(?:show|find|found)|"
                      r"what happened|what (?:were|are|was|is) the (?:\w+ )?(?:results?|findings?|outcomes?)\b|"
                      r"\bwhat (?:\w+ )?(?:results?|findings?)\b|"
                      r"\bresults? (?:of|from|in)\b|\bwhat (?:does|did) the (?:\w+ ){0,3}?evidence show)", re.I)
# A sentence that reports a finding in words ("showed a rapid antidepressant effect", "did not
# differ significantly"): with RESULT, what answers a question about results.
FINDING = re.compile(r"\b(?:showed|shown to|shows? (?:a|an|that|no|benefit|improvement)|found (?:that|a|an|no|"
                     r"significant|large|greater|lower|higher|seizures|\d)|findings?|reduc\w*|improv\w*|"
                     r"increas\w*|decreas\w*|"
                     r"did not differ|no (?:significant )?difference|associated with|effective|superior|"
                     r"outperform\w*|remission|respon\w*|abstinen\w*|fell|rose|lower|higher|benefit\w*|"
                     r"efficacy|worse|better|significant\w*|effect sizes?)\b", re.I)
# A reported result: a figure beside what it compares or measures ("64% versus 27%", "d = 1.49",
# "fell by 15.2 points", "P=0.17", "12 of 15 abstinent").
RESULT = re.compile(r"\bd\s?=\s?-?\d|\bp\s?[=<≤]\s?0?\.\d|\b\d+(?:\.\d+)?[- ]points?\b|"
                    r"\d(?:[.,]\d+)?\s?%[^.;]*\b(?:versus|vs\b|compared|respon|remission|"
                    r"abstinen|quit|no longer|reduc|fell|improv)|"
                    r"\b(?:versus|vs\.?|compared with)\s[^.;]*\d(?:[.,]\d+)?\s?%|"
                    r"\b(?:respon\w*|remission|remitted|abstinent|quit)\b[^.;]*\d(?:[.,]\d+)?\s?%|"
                    r"\b\d+ of \d+\b[^.;]*\b(?:respon|remission|remitted|abstinent|quit)", re.I)
_POLAR = re.compile(r"^(?:so |and |but |ok(?:ay)? |also )?(?:is|are|was|were|does|do|did|can|could|"
                    r"has|have|had|should|would|will|may|might|must)\b", re.I)

_NUM = r"(?:\d+(?:[.,]\d+)*)"
_NUMBER_WORDS = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
                 r"twenty|thirty|forty|fifty|hundred|dozen)")
_UNIT_DOSE = r"(?:mg/kg|mg|µg|μg|mcg|micrograms?|milligrams?|g\b|grams?|ml|mL|IU|mmol)"
_UNIT_TIME = r"(?:seconds?|minutes?|min|hours?|hrs?|h\b|days?|weeks?|months?|years?)"
# A figure of each kind, in a sentence.
FIGURE: dict[str, re.Pattern[str]] = {
    "money": re.compile(r"[$€£]\s?" + _NUM + r"|\b" + _NUM + r"\s?(?:dollars|euros|pounds|USD|EUR|GBP)\b"),
    "effect": re.compile(r"\b" + _NUM + r"[- ]points?\b|\bd\s?=\s?-?" + _NUM + r"|\bdifference\b[^.;]*?" + _NUM
                         + r"|\b(?:OR|RR|HR|odds ratio|risk ratio|hazard ratio)\s?[=:]?\s?" + _NUM
                         + r"|[−–-]\s?" + _NUM + r"\b|\b" + _NUM + r"\s?(?:vs|versus|and)\s?" + _NUM),
    "dose": re.compile(r"\b" + _NUM + r"(?:\s?[–-]\s?" + _NUM + r")?\s?" + _UNIT_DOSE),
    "duration": re.compile(r"\b(?:" + _NUM + r"|" + _NUMBER_WORDS + r")(?:\s?[–-]\s?" + _NUM + r")?[- ]"
                           + _UNIT_TIME + r"\b"),
    "percent": re.compile(r"\b" + _NUM + r"\s?%|\bper ?cent\b|\b" + _NUM + r" (?:of|out of) (?:the )?"
                          + _NUM + r"\b|\b(?:half|a third|a quarter|most|none|all) of\b"),
    "count": re.compile(r"(?<![\w.,$€£−–-])(?!(?:19|20)\d\d\b)(?:" + _NUM + r"|" + _NUMBER_WORDS + r")(?![\w.,%])"
                        r"(?!\s?(?:" + _UNIT_DOSE + r"|" + _UNIT_TIME + r"|points?|or older|years? old)\b)"
                        r"(?=\s+(?:of\s+\d+\s+)?[a-z(])|\bn\s?=\s?\d+"),
    "date": re.compile(r"\b(?:19|20)\d\d\b"),
    "value": re.compile(r"(?:[<>≤≥]|\b(?:above|below|over|under|at least|at most|more than|less than)\s)\s?"
                        + _NUM + r"|\b" + _NUM + r"\s?(?:ms|milliseconds?|bpm|mmHg|%|points?|"
                        + _UNIT_DOSE + r")"),
}
# The unit a question names, which the answer's figure must carry ("half-life in hours").
_ASKED_UNIT = re.compile(r"\b(?:in|how many|per|as)\s+(mg/kg|mg|micrograms?|µg|mcg|ms|milliseconds|"
                         r"hours|days|weeks|months|years|minutes|mmhg|points)\b", re.I)
_UNIT_FORMS = {"micrograms": r"(?:micrograms?|µg|μg|mcg)", "µg": r"(?:micrograms?|µg|μg|mcg)",
               "mcg": r"(?:micrograms?|µg|μg|mcg)", "microgram": r"(?:micrograms?|µg|μg|mcg)",
               "milliseconds": r"(?:ms|milliseconds?)", "ms": r"(?:ms|milliseconds?)"}

# Words that only say what kind of answer is wanted (they are checked through the figure).
_KIND_WORDS = frozenset(stems(
    "how many much long percentage percent proportion share fraction rate rates number numbers "
    "dose doses dosage dosing value level cut off cutoff threshold year years date when cost price "
    "size figure figures amount amounts effect effects mg kg micrograms milligrams hours days weeks "
    "months minutes points"))
# The weight of a trial phase's number ("phase 3") as a key term (a stated figure weighs 0.6).
PHASE_WEIGHT = 0.3
# An everyday English word the corpus never uses ("hang around", "how acid hits") weighs this
# fraction of its specificity: it never makes a question out of scope by itself.
EVERYDAY_UNUSED = 0.5
# English function words (NLTK's standard stopword list; bm25s's own list has 33 words and keeps
# "what", "did", "any"): they carry no topic, so they are never key terms.
FUNCTION_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves what which who whom this that these
those am is are was were be been being have has had having do does did doing a an the and but if or
because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where
why how all any both each few more most other some such no nor not only own same so than too very
s t can will just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma
mightn mustn needn shan shouldn wasn weren won wouldn would could might must shall may also ever
whats thats hows wheres whos whens whys theres heres
""".split())  # the last line: contractions typed without their apostrophe
# Conversational framing that says nothing about the topic (closed-class words of questions).
_FRAMING = frozenset(stems(
    "tell explain describe know please thanks thank hi hello hey give show list summarise "
    "summarize anything something info information question wondering wonder curious heard hear "
    "read saw seen someone anyone mean means say says said think thought find found look looking "
    "want wanted need like really actually just exactly basically quick quickly briefly "
    "ok okay yeah yep hmm um uh"))  # interjections


# ----------------------------------------------------------------------------- the focus

@dataclass
class Focus:
    """What one question (or one part of a multi-part question) asks for."""

    text: str
    kind: str | None                       # one of FIGURE_KINDS, or None
    polar: bool                            # a yes/no question
    unit: str | None                       # a unit the figure must carry, as a regex
    names: list[str]                       # named things a sentence must mention (lowercased)
    substances: list[str]                  # lexicon slugs a sentence (or its context) must name
    medicines: list[str]                   # co-medications (generic names) a sentence must name
    terms: dict[str, float]                # key term stem -> weight (specificity in the corpus)
    words: dict[str, str]                  # stem -> the word as the question wrote it
    aliases: dict[str, set[str]]           # stem -> stems that count as covering it
    unknown: list[str]                     # words in neither the corpus nor everyday English
    figures: list[str] = field(default_factory=list)  # figures the question itself states
    counted: str | None = None                        # "how many <X>": the stem of X
    measured: str | None = None                       # "<X> rate": the stem of X
    known: set[str] = field(default_factory=set)       # key terms the corpus uses (or resolves)
    parts: list[Focus] = field(default_factory=list)  # multi-part questions: one focus per part
    outcome: bool = False  # "how effective / what did X show": result figures answer it best
    conditions: list[str] = field(default_factory=list)  # condition slugs the user names
    # Time points the question asks at ("at 6 months", "day 2", "wk 32"): (number, unit) pairs a
    # sentence must state to answer.
    timepoints: list[tuple[str, str]] = field(default_factory=list)
    # A word as written -> the compound name it ends, for messages ("wort" -> "st john's wort").
    phrases: dict[str, str] = field(default_factory=dict)
    # Key terms every sentence shown must cover: what a follow-up switches to when the corpus
    # never uses it ("and in california?" is not answered by what the sources say of Oregon).
    required: set[str] = field(default_factory=set)

    @property
    def multi(self) -> bool:
        return len(self.parts) > 1


@dataclass
class CorpusTerms:
    """What the index says about words: document frequency per stem, names, and the substance a
    name is about (`bm25.name_subjects`)."""

    df: dict[str, int]
    chunks: int
    names: frozenset[str]
    subjects: Mapping[str, str] = field(default_factory=dict)

    def idf(self, stem: str) -> float:
        return math.log((self.chunks + 1) / (self.df.get(stem, 0) + 1)) + 1.0

    @property
    def max_idf(self) -> float:
        return math.log(self.chunks + 1) + 1.0

    def knows(self, stem: str) -> bool:
        return stem in self.df


@lru_cache(maxsize=8192)
def specificity(word: str) -> float:
    """How specific a word is in general English, 0.05 (got, around) to 1 (washout, remission),
    from its Zipf frequency in wordfreq's multi-source English word list. A word rare in the
    corpus can still be an everyday word that says nothing about the topic."""
    from wordfreq import zipf_frequency

    return min(1.0, max(0.05, (6.0 - zipf_frequency(word, "en")) / 3.0))


@lru_cache(maxsize=1)
def everyday_words() -> frozenset[str]:
    """Whole words of the embedding model's word-piece vocabulary: a proxy for everyday English."""
    from assistant.embeddings import load_tokenizer

    return frozenset(w for w in load_tokenizer().get_vocab() if w.isalpha() and len(w) > 1)


@lru_cache(maxsize=4096)
def _closest(stem: str, vocab: tuple[str, ...]) -> str | None:
    """The corpus stem a misspelt stem most likely stands for (rapidfuzz; None when none is close)."""
    from rapidfuzz import fuzz, process, utils  # noqa: F401  (utils keeps the import cost visible)

    if len(stem) < 5:
        return None
    best = process.extractOne(stem, vocab, scorer=fuzz.ratio, score_cutoff=84)
    return best[0] if best else None


_CODE = re.compile(r"[a-z]+\d|\d+[a-z]")
_SPLIT_AND = re.compile(
    r"(?:,\s*(?:and\s+|or\s+)?|\s+and\s+|;\s*|\?\s+(?:and\s+|also\s+)?)"
    r"(?=(?:also\s+)?(?:what|which|who|whom|whose|when|where|why|how|is|are|was|were|does|do|did|"
    r"can|could|has|have|had|should|would|will|at what|in what|on what|by how|for how|at how|in how|"
    r"on how|from how|at which|in which|on which|for which|by which)\b)", re.I)
_LEAD = re.compile(r"^(.{8,120}?):\s+(?=(?:what|which|who|when|where|why|how|is|are|was|were|does|"
                   r"do|did)\b)", re.I)


def analyse(question: str, corpus: CorpusTerms | None, encode=None) -> Focus:
    """The focus of `question`; with `corpus`, key terms are weighted by their specificity in it
    and names are taken from it. Multi-part questions get one focus per part in `parts`.

    `encode` (texts -> unit vectors, the embedding model): a word the corpus never uses that
    carries little of the question's meaning ("my nephew asks ...", "for my lecture slides") is
    framing, not a topic the corpus lacks (`framing_words`)."""
    focus = _focus(question, corpus)
    parts = split_parts(question)
    if len(parts) > 1:
        focus.parts = [_focus(p, corpus) for p in parts]
    if encode is not None and (focus.unknown or any(p.unknown for p in focus.parts)):
        framing = framing_words(_CARRIED.sub("", question),
                                {*focus.unknown, *(u for p in focus.parts for u in p.unknown)}, encode)
        for f in (focus, *focus.parts):
            _demote(f, framing)
    if len(parts) > 1:
        # A part that names no substance or thing of its own is about the question's subject.
        for part in focus.parts:
            if not part.substances and not part.names:
                part.substances = list(focus.substances)
                part.names = [n for n in focus.names]
    return focus


_ASKS = re.compile(r"^(?:and\s+|also\s+|so\s+)?(?:what|which|who|whom|whose|when|where|why|how|is|are|was|"
                   r"were|does|do|did|can|could|has|have|had|should|would|will|"
                   r"(?:at|in|on|by|for|from)\s+(?:what|which|how))\b", re.I)
_WH = re.compile(r"\b(?:what|which|who|whom|whose|when|where|why|how)\b", re.I)
# A clause that refers to what the clause before it says ("..., and is that addictive?"); "it" and
# "its" refer to the question's subject, which every part inherits, so they do not lean back.
_LEANS_BACK = re.compile(r"\b(?:that|this|these|those|such|same)\b|(?<!\bis )(?<!\bwas )(?<!\bare )"
                         r"(?<!\bwere )\bthere\b", re.I)
# Words for people: a count of "patients" is met by "104 adults" or "n = 53".
PEOPLE = frozenset(stems("people person patients participants adults subjects individuals volunteers "
                         "veterans men women clients smokers users respondents children adolescents "
                         "drinkers cases pts ppl"))
_TOPIC_ONLY = re.compile(r"^(?:and\s+|so\s+|ok(?:ay)?\s*,?\s*)?(?:what|how)\s+about\b", re.I)
# A follow-up that asks the previous question about something else: "and in X?", "what about X",
# "same for X".
_SWITCH = re.compile(r"^(?:(?:and|but|so|ok(?:ay)?|also)[\s,]+)?(?:(?:what|how)\s+about\b|same\s+"
                     r"(?:question\s+|thing\s+)?(?:for|in|with)\b|(?<=and )(?:in|for|with|among)\b)", re.I)
# The trailing context a rewritten follow-up carries: "(about MDMA for PTSD)".
_CARRIED = re.compile(r"\s*\((?:about|for) [^()]*\)\s*$")


# A word the corpus never uses is framing when removing it from the question moves the question's
# embedding less than this fraction of what removing its most meaningful word does.
FRAMING_IMPORTANCE = 0.2
_CONTENT = re.compile(r"[A-Za-z][\w'-]*")


def framing_words(question: str, unknown: set[str], encode) -> dict[str, float]:
    """The `unknown` words that carry little of `question`'s meaning, with how much of it they
    carry relative to its most meaningful word, by the embedding model:
    each content word is left out in turn, and a word whose absence moves the question's vector
    far less than the most meaningful word's does is framing ("nephew" in "my nephew asks if
    shrooms cured smokers"), while the topic the corpus lacks ("kratom" in "can kratom help with
    opioid withdrawal") moves it most."""
    content = list(dict.fromkeys(w for w in _CONTENT.findall(question)
                                 if w.lower() not in FUNCTION_WORDS and len(w) >= 3))
    if len(content) < 2:
        return {}

    def without(ws) -> str:
        out = question
        for w in ws:
            out = re.sub(rf"(?<![\w-]){re.escape(w)}(?![\w-])", " ", out)
        return out

    low = [w for w in content if w.lower() in unknown]
    texts = [question] + [without([w]) for w in content] + ([without(low)] if len(low) > 1 else [])
    vectors = encode(texts)
    drops = {w.lower(): 1.0 - float(vectors[0] @ v) for w, v in zip(content, vectors[1:len(content) + 1])}
    top = max(drops.values())
    if top <= 0:
        return {}
    framing = {u: drops[u] / top for u in unknown if u in drops and drops[u] / top < FRAMING_IMPORTANCE}
    if len(framing) > 1:
        # Words that stand in for each other ("pregnant or breastfeeding") each matter little
        # while the other stays: together they must still matter less than the main word.
        together = [w for w in low if w.lower() in framing]
        v = vectors[-1] if together == low else encode([without(together)])[0]
        joint = 1.0 - float(vectors[0] @ v)
        if joint >= top:
            return {}
    return framing


def _demote(focus: Focus, framing: dict[str, float]) -> None:
    """`framing` words are not topics the corpus lacks; as key terms they weigh in proportion to
    how much of the question they carry ("nutshell" next to nothing, "nursing" a little)."""
    if not framing or not focus.unknown:
        return
    focus.unknown = [u for u in focus.unknown if u not in framing]
    for st, w in list(focus.words.items()):
        if w in framing and st in focus.terms:
            focus.terms[st] *= framing[w] / FRAMING_IMPORTANCE
            focus.known.add(st)


def carry(focus: Focus, previous: Focus, subjects: Mapping[str, str] | None = None) -> Focus:
    """A follow-up that asks the previous question about something else ("and in MAPP2?", "same
    for psilocybin?") inherits what that question asked for: its kind of answer and its key terms
    (at a lower weight); what the follow-up names replaces what the previous one named.

    A follow-up that only switches the topic ("and in california?", "what about in japan") and
    names no substance, condition, medicine or name of its own is about its own words: one the
    corpus never uses is what the sources lack, however common a word it is in English, and no
    sentence about the previous topic answers it (`Focus.required`).

    `subjects` (`CorpusTerms.subjects`): a name the previous question asked about that is about
    another substance than the follow-up's ("what about lsd for anxiety?" after an Alper review
    question) is not carried."""
    own_text = _CARRIED.sub("", focus.text)
    if _SWITCH.match(own_text) and not (focus.names or focus.medicines or focus.conditions
                                        or lexicon.find_substances(own_text)):
        focus.required = {st for st, w in focus.terms.items() if w > 0 and st not in focus.known
                          and not st[:1].isdigit()}
        focus.unknown += [focus.words[st] for st in focus.required if focus.words[st] not in focus.unknown]
    if sum(focus.terms.values()) >= 0.5 and focus.kind is not None:
        return focus
    own = sum(focus.terms.values())
    for st, w in previous.terms.items():
        # A word the corpus never uses ("deadly" in "which antidepressant is deadly w mdma") is no
        # term a passage can cover: it does not carry.
        if st not in focus.terms and st in previous.known and (own < 0.5 or w >= 0.5):
            focus.terms[st] = 0.7 * w
            focus.words.setdefault(st, previous.words.get(st, st))
            if st in previous.known:
                focus.known.add(st)
            if st in previous.aliases:
                focus.aliases.setdefault(st, set()).update(previous.aliases[st])
    if focus.kind is None and not focus.polar:
        focus.kind, focus.unit, focus.counted = previous.kind, previous.unit, previous.counted
        focus.outcome = focus.outcome or previous.outcome
    # What the previous question named carries over, except its trial codes when this one is
    # about another substance ("Did esketamine reduce suicidal ideation in its trials?" after a
    # MAPP2 question is not about MAPP2; "same for 5-MeO?" after a Schedule question, or "same
    # for MDMA?" after an Oregon one, keeps them).
    if not focus.names:
        same = not focus.substances or set(focus.substances) <= set(previous.substances)
        kept = previous.names if same else [n for n in previous.names if not any(ch.isdigit() for ch in n)]
        focus.names = list(kept if same or not subjects else names_about(kept, focus.substances, subjects))
    if not focus.medicines:
        focus.medicines = list(previous.medicines)
    return focus


def split_parts(question: str) -> list[str]:
    """The questions inside one message ("How many X, and at how many sites Y?"), each standalone
    enough to be answered (a shared lead such as "In the Carbonaro survey:" is kept on each, and so
    is the context a follow-up carries). A clause that leans on the one before it ("..., is that
    addictive?") or only names a topic ("what about kratom?") is not a part of its own."""
    q = question.strip()
    carried = ""
    m = _CARRIED.search(q)
    if m:
        q, carried = q[:m.start()], " " + m.group().strip()
    lead = ""
    m = _LEAD.match(q)
    if m:
        lead, q = m.group(1).strip() + ": ", q[m.end():]
    pieces: list[str] = []
    for p in (x.strip(" ,;?") for x in _SPLIT_AND.split(q)):
        if not p:
            continue
        if not pieces and not _ASKS.match(p) and not _WH.search(p):
            lead += p + ", "  # "In Goodwin 2022, how many ...": a setting, not a question
            continue
        if pieces and (len(p.split()) < 3 or _LEANS_BACK.search(p) or _TOPIC_ONLY.match(pieces[-1])):
            pieces[-1] = f"{pieces[-1]}, {p}"
        else:
            pieces.append(p)
    if len(pieces) < 2:
        return [question]
    return [lead + p + "?" + carried for p in pieces]


def _focus(text: str, corpus: CorpusTerms | None) -> Focus:
    # The context a rewritten follow-up carries ("(about MDMA)") guides retrieval but what the
    # user names replaces it: its names never gate sentences, its substances only while the
    # follow-up names none of its own ("has it been tried for PTSD?" is still about DMT).
    carried = _CARRIED.search(text)
    own = text[:carried.start()] if carried else text
    focus = _analyse_text(text, corpus)
    focus.conditions = lexicon.find_conditions(own)
    if carried:
        own_words = set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", lexicon.normalize(own)))
        focus.names = [n for n in focus.names if n in own_words]
        if focus.names or lexicon.find_substances(own):
            focus.substances = [s for s in focus.substances if s in lexicon.find_substances(own)]
    return focus


def has_subject(question: str) -> bool:
    """Whether a question names what it is about: a substance, a condition, a co-medication or a
    name (capitalised or a code) of its own."""
    own = _CARRIED.sub("", question)
    return bool(lexicon.find_substances(own) or lexicon.find_conditions(own)
                or lexicon.find_medicines(own) or _CODE.search(own.lower())
                or re.search(r"(?<!^)(?<![.?!]\s)\b[A-Z][a-z]+", own.strip()))


# A figure typed against its unit ("10mg", "25mg/kg"): the figure and the unit.
_GLUED = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)(mg/kg|mg|mcg|µg|μg|ug|g|ml|kg|ms|h|hrs?|wks?|mos?)\b", re.I)


def _analyse_text(text: str, corpus: CorpusTerms | None) -> Focus:
    text = _GLUED.sub(r"\1 \2", text)
    norm = lexicon.normalize(text)
    kind = next((k for k, rx in _KINDS if rx.search(norm)), None)
    if kind == "percent" and _POLAR.search(norm) and not _KINDS_BY["percent"].search(norm.replace("%", " ")):
        kind = None  # "Did it cut X by 80%?" asks whether the stated figure is right
    polar = bool(_POLAR.search(norm)) and kind is None
    unit = None
    um = _ASKED_UNIT.search(norm)
    if um and kind in ("dose", "duration", "value", "effect", "count"):
        u = um.group(1).lower()
        unit = _UNIT_FORMS.get(u, re.escape(u.rstrip("s")) + r"s?")
    substances = lexicon.find_substances(text)
    counted = None
    if kind == "count":
        cm = re.search(r"\bhow many\s+(?:\w+\s+){0,2}?(\w{3,})\b(?=\s+(?:were|was|are|is|did|do|does|had|have|has|got|in|took|died|at|on|who|\w+ed|quit|left|met|lost|kept|felt|became|went)\b|\s*[?,]|$)", norm)
        if cm and cm.group(1) not in FUNCTION_WORDS:
            counted = stems(cm.group(1))[0] if stems(cm.group(1)) else None
        # "how many needed medical attention", "how many guessed their arm": the people who did it;
        # "how many licensed service centers": a participle before the plural noun counted.
        if re.search(r"\bhow many\s+\w+ed\b(?!\s+(?:\w+\s+)?\w+s\b)", norm) and not re.search(r"\bhow many hundred", norm):
            counted = "peopl"
        if re.search(r"\bhow many\s+(?:were|was|are|is|had|have|did|got|became|remained|stayed)\b", norm):
            counted = "peopl"  # "how many were abstinent": how many of the people
    measured = None
    if kind == "percent":
        mm = re.search(r"\b(\w{4,}) rates?\b", norm)
        if mm and mm.group(1) not in FUNCTION_WORDS and stems(mm.group(1)):
            measured = stems(mm.group(1))[0]
    # Figures the question states; not years, and not the number of a phase ("phase 3 trials").
    figures = [m.group() for m in re.finditer(r"(?<![\w.-])(?<!phase )(?<!Phase )\d+(?:[.,]\d+)?(?:\s?%)?(?![\w.])(?!-(?!" + _UNIT_TIME + r"\b|points?\b|mg\b)[a-z])", text, re.I)
               if not re.fullmatch(r"(?:19|20)\d\d", m.group().strip())]

    resolved = lexicon.resolve_terms(text)
    names: list[str] = []
    terms: dict[str, float] = {}
    shown: dict[str, str] = {}
    aliases: dict[str, set[str]] = {}
    unknown: list[str] = []
    known: set[str] = set()
    everyday = everyday_words()
    alias_words = _alias_words()
    raw_words = words(text)
    stemmed = stems(text) if raw_words else []
    capitalised = {w.lower() for w in re.findall(r"(?<!^)(?<![.?!]\s)\b[A-Z][\w-]*", text.strip())}
    vocab = tuple(corpus.df) if corpus else ()
    condition_words = {w for slug in lexicon.find_conditions(text) for a in lexicon.CONDITIONS[slug]
                       for w in re.findall(r"[a-z0-9]+", a)}
    substance_words = {w for slug in substances for a in lexicon.SUBSTANCES[slug]
                       if lexicon._has_term(norm, a) for w in re.findall(r"[a-z0-9]+", a)}
    medicine_words = {w for g in lexicon.find_medicines(text)
                      for a in (g, *lexicon.MEDICINES[g][1]) for w in re.findall(r"[a-z0-9]+", a)}
    # Hyphenated names the corpus uses whole ("GH001-TRD-201", "Palhano-Fontes").
    inside: set[str] = set()
    if corpus:
        for m in re.finditer(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+", text):
            whole = m.group().lower()
            pieces = re.findall(r"[a-z0-9]+", whole)
            plain = all(x.isdigit() or specificity(x) < 0.5 for x in pieces)
            if whole in corpus.names and not lexicon.is_alias(whole) and not plain:
                names.append(whole)
                inside.update(re.findall(r"[a-z0-9]+", whole))
    for w, st in zip(raw_words, stemmed):
        if w.isdigit() or w in FUNCTION_WORDS or st in _KIND_WORDS or st in _FRAMING:
            continue
        if any(ch.isdigit() for ch in w) and sum(ch.isalpha() for ch in w) < 2:
            continue  # "31m", "2x": not a word, not a name
        if lexicon.find_substances(w) or w in inside or w in medicine_words or w in substance_words:
            continue  # substances, co-medications and names are checked as such
        if corpus and w in corpus.names and w not in condition_words and (
                _CODE.search(w) or w in capitalised or specificity(w) >= 0.3):
            if w not in names:
                names.append(w)
            continue
        general = specificity(w)
        weight = general
        if corpus:
            if corpus.knows(st):
                weight = corpus.idf(st) / corpus.max_idf * general
                known.add(st)
            else:
                near = _closest(st, vocab) if w not in everyday else None
                if near is not None:
                    aliases.setdefault(st, set()).add(near)  # a typo of a corpus word
                    weight = corpus.idf(near) / corpus.max_idf * general
                    known.add(st)
                elif forms := _forms(st, vocab):
                    aliases.setdefault(st, set()).update(forms)  # Brazilian / Brazil
                    weight = max(corpus.idf(f) for f in forms) / corpus.max_idf * general
                    known.add(st)
                elif (w in alias_words or lexicon.find_conditions(w) or lexicon.find_medicines(w)
                      or _resolved_by(w, resolved)):
                    weight = general * 0.5  # covered through what it stands for
                    known.add(st)
                elif w not in everyday and (full := _completion(st, corpus)):
                    aliases.setdefault(st, set()).add(full)  # shortened: "cigs", "psilo"
                    weight = corpus.idf(full) / corpus.max_idf * general
                    known.add(st)
                elif w not in everyday and _function_typo(w):
                    continue  # "wats", "whats": a question word mistyped
                elif general >= 0.5 and len(w) >= 4:
                    unknown.append(w)  # a specific word the corpus never uses
                elif substances or medicine_words or condition_words:
                    # everyday English the corpus happens not to use, in a question about one of
                    # its subjects ("how long does a pt hang around after Spravato?"); without a
                    # subject it may be the whole question ("what is the capital of Australia?")
                    weight = general * EVERYDAY_UNUSED
        terms[st] = max(terms.get(st, 0.0), weight)
        shown.setdefault(st, w)
    for f in figures:  # "at 6 months", "by 71%": the figure the question is about
        key = f.strip().rstrip("%").strip()
        terms.setdefault(key, 0.6)
        shown.setdefault(key, f.strip())
        known.add(key)
    for m in re.finditer(r"\bphase (\d)\b", text, re.I):  # "phase 3": a topic word, not a figure asked for
        terms.setdefault(m.group(1), PHASE_WEIGHT)
        shown.setdefault(m.group(1), m.group())
        known.add(m.group(1))
    # What brand names, shorthand and lay words stand for covers them.
    for term in resolved:
        for st in stems(term):
            for q_st, w in shown.items():
                if _resolved_by(w, [term]):
                    aliases.setdefault(q_st, set()).add(st)
    for slug in lexicon.find_conditions(text):
        for alias in lexicon.CONDITIONS[slug]:
            for q_st in stems(alias):
                aliases.setdefault(q_st, set()).update(stems(" ".join(lexicon.CONDITIONS[slug])))
    return Focus(text=text, kind=kind, polar=polar, unit=unit, names=names, substances=substances,
                 medicines=lexicon.find_medicines(text), terms=terms, words=shown, aliases=aliases,
                 unknown=unknown, figures=figures, known=known, counted=counted, measured=measured,
                 timepoints=timepoints(text), phrases=_compounds(text, [*shown.values(), *unknown]),
                 outcome=kind is None and bool(_OUTCOME.search(norm)))


_TIME_UNITS = {"day": "day", "days": "day", "week": "week", "weeks": "week", "wk": "week",
               "wks": "week", "month": "month", "months": "month", "mo": "month", "mos": "month",
               "year": "year", "years": "year", "yr": "year", "yrs": "year", "hour": "hour",
               "hours": "hour", "hr": "hour", "hrs": "hour", "h": "hour"}
_UNIT_ALT = "|".join(sorted(_TIME_UNITS, key=len, reverse=True))
_TIMEPOINT = re.compile(rf"\b(?:at|by|after|to|through|until|in|on|over)\s+(?:(?:the|a)\s+)?(?:"
                        rf"(?P<u1>{_UNIT_ALT})[\s-]*(?P<n1>\d+)|(?P<n2>\d+)[\s-]*(?P<u2>{_UNIT_ALT}))\b"
                        rf"|\b(?P<u3>day|week|wk|month)[\s-]*(?P<n3>\d+)\b", re.I)


def _compounds(text: str, written: list[str]) -> dict[str, str]:
    """The words of `written` that end a compound name with a possessive in it ("St John's
    wort", "Parkinson's disease"), with that name as the question wrote it."""
    out = {}
    for w in dict.fromkeys(written):
        m = re.search(rf"(?:\b[A-Za-z]{{1,3}}\.?\s+)?\b[A-Za-z]+['’]s\s+{re.escape(w)}\b", text, re.I)
        if m:
            out[w] = m.group()
    return out


def timepoints(text: str) -> list[tuple[str, str]]:
    """The time points a question asks at: "at 6 months", "by week 12", "day 2" ((number, unit))."""
    out = []
    for m in _TIMEPOINT.finditer(text):
        n = m.group("n1") or m.group("n2") or m.group("n3")
        u = _TIME_UNITS[(m.group("u1") or m.group("u2") or m.group("u3")).lower()]
        if (n, u) not in out:
            out.append((n, u))
    return out


def states_timepoint(text: str, point: tuple[str, str]) -> bool:
    """Whether `text` states the time point ("6 months", "6-month", "month 6", "week-12")."""
    return bool(_timepoint_pattern(*point).search(text))


@lru_cache(maxsize=256)
def _timepoint_pattern(n: str, unit: str) -> re.Pattern[str]:
    forms = "|".join(re.escape(k) for k, v in _TIME_UNITS.items() if v == unit)
    return re.compile(rf"(?<![\d.]){n}[\s-]*(?:{forms})\b|\b(?:{forms})[\s-]*{n}(?!\d|\.\d)", re.I)


def _completion(stem: str, corpus: CorpusTerms) -> str | None:
    """The corpus stem a shortened word most likely stands for: the most frequent corpus stem it
    begins ("cig" -> "cigarett", "psilo" -> "psilocybin"); None when none does."""
    if len(stem) < 3:
        return None
    longer = [v for v in corpus.df if len(v) > len(stem) + 1 and v.startswith(stem)]
    return max(longer, key=lambda v: (corpus.df[v], v)) if longer else None


def _function_typo(word: str) -> bool:
    """A short word one letter away from an English function word ("wats", "whta")."""
    from rapidfuzz.distance import Levenshtein

    return 4 <= len(word) <= 5 and any(len(f) >= 3 and f[0] == word[0] and Levenshtein.distance(word, f) <= 1
                                  for f in FUNCTION_WORDS)


def _forms(stem: str, vocab: tuple[str, ...]) -> set[str]:
    """Corpus stems that are another form of the same word (a shared stem of 5+ letters)."""
    if len(stem) < 6:
        return set()
    head = stem[:5]
    return {v for v in vocab if v.startswith(head) and (v.startswith(stem) or stem.startswith(v))
            or v[:6] == stem[:6]}


def _resolved_by(word: str, terms: list[str]) -> bool:
    """Whether `word` is a brand name, shorthand or lay word that `terms` resolve."""
    norm = lexicon.normalize(word)
    if lexicon.find_medicines(word):
        return any(t in lexicon.resolve_terms(word) for t in terms)
    return any(lexicon._has_term(norm, phrase) and set(targets) & set(terms)
               for phrase, targets in lexicon.SHORTHAND.items() if " " not in phrase)


@lru_cache(maxsize=1)
def _alias_words() -> frozenset[str]:
    """Single words of the lexicon's aliases ("magic" of magic mushrooms, "venom" of toad venom)."""
    out: set[str] = set()
    for table in (lexicon.SUBSTANCES, lexicon.CONDITIONS):
        for aliases in table.values():
            for alias in aliases:
                out.update(re.findall(r"[a-z0-9]+", alias.lower()))
    for phrase in lexicon.SHORTHAND:
        out.update(re.findall(r"[a-z0-9]+", phrase))
    return frozenset(out)
