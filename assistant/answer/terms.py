"""Question and sentence terms: the same tokenising and stemming as the BM25 index."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_local = threading.local()

# Words that carry no topic in a question: conversational and generic research words. They are
# ignored when asking "does the corpus know this word?" and weigh little in sentence matching.
GENERIC = frozenset("""
what which who whom whose when where why how does did do is are was were can could would should
will may might must shall tell explain describe know please thanks thank hi hello hey give show
list summarise summarize anything something about also like want need find info information
answer question help helps helped work works worked effective effect effects evidence data
study studies trial trials research patient patients people person someone use used using
treat treats treatment treatments therapy good bad best better really much many lot kind type
thing things say says said mean means new latest current currently there their this that these
those with without between compared versus vs yes no not any some all more most less risk risks
safe safety make makes made get got take takes taking been being have has had your you my me we
our us it its they them he she his her one two three first second year years
happen happens happened happening become becomes became sample samples well actually combine
combined combining combination quit quitting overall exactly typical typically usually often
common commonly likely long short high low large small big increase increases decrease reduce
reduces compare comparison difference differ differs similar whole part parts kind kinds
wrong right true false real main major minor important key basic general specific particular
way ways able okay ok look looks looked seem seems seemed feel feels felt go goes went come comes
came put puts keep keeps let lets start started stop stopped try tried call called ask asked
need needs needed happen anyone everyone anybody somebody person's people's today now ever
still yet already soon later earlier recent recently old older young younger
""".split())


def _stemmer():
    st = getattr(_local, "stemmer", None)
    if st is None:
        import Stemmer

        st = _local.stemmer = Stemmer.Stemmer("english")
    return st


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def words(text: str) -> list[str]:
    """Lowercased word tokens without stopwords (as bm25s tokenises)."""
    stop = _stopwords()
    return [w for w in _TOKEN.findall(text.lower()) if w not in stop]


def stems(text: str) -> list[str]:
    ws = words(text)
    return _stemmer().stemWords(ws) if ws else []


# The context a follow-up carries forward: "What about its side effects? (about MDMA for PTSD)".
_CARRIED = re.compile(r"\s\((?:about|for) [^()]*\)\s*$")


def weighted_terms(question: str) -> dict[str, float]:
    """Stemmed question terms with weights: topic words 1.0, generic words 0.25, and half weight
    for the context a follow-up carried forward (the user's own words lead)."""
    m = _CARRIED.search(question)
    own, carried = (question[:m.start()], m.group(0)) if m else (question, "")
    out: dict[str, float] = {}
    for part, scale in ((own, 1.0), (carried, 0.5)):
        ws = words(part)
        for w, s in zip(ws, _stemmer().stemWords(ws) if ws else []):
            weight = (0.25 if w in GENERIC else 1.0) * scale
            out[s] = max(out.get(s, 0.0), weight)
    return out


def focus_words(question: str) -> list[tuple[str, str]]:
    """(word, stem) pairs of the question that carry its topic."""
    ws = [w for w in words(question) if w not in GENERIC and not w.isdigit()]
    return list(zip(ws, _stemmer().stemWords(ws))) if ws else []
