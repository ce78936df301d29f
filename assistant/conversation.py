"""Follow-up handling: turn a question that leans on earlier turns into a standalone one."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from assistant.lexicon import DISPLAY_NAMES, find_conditions, find_substances, normalize
from assistant.models import Turn

# Openings that only make sense as a continuation ("and what about psilocybin?").
_FOLLOWUP_LEAD = re.compile(
    r"^(?:and|but|also|plus|so|then|ok(?:ay)?\s*,?\s*(?:and|so|what|how)|"
    r"what\s+about|how\s+about|what\s+of|and\s+what|and\s+how|same\s+(?:for|with|question)|"
    r"what\s+else|anything\s+else|any\s+other|compared\s+(?:to|with)|versus|vs\.?|"
    r"as\s+for|in\s+comparison|similarly|likewise|or)\b"
)
# Endings and words that mark a comparison with, or extension of, what came before.
_FOLLOWUP_ANY = re.compile(
    r"\b(?:also|too|as well|instead|either|the same|likewise|similarly|in comparison)\s*[?.!]*$"
    r"|\balso\b|\bhow\s+does\s+(?:it|that|this)\s+compare\b"
    r"|\bcompared?\s+(?:to|with)\s+(?:it|that|this|them)\b"
)
# Expletive "it" ("Is it legal to ...", "it is known that ...") refers to nothing earlier.
_EXPLETIVE_IT = re.compile(
    r"\b(?:is|was|isn't|wasn't|would|will|does)\s+it\s+(?:\w+\s+){0,2}?"
    r"(?:to|that|for\s+\w+\s+to|whether)\b"
    r"|\bit\s+(?:is|was|'s|seems|appears)\s+(?:\w+\s+){0,2}?(?:to|that|whether)\b"
)
_PRONOUN = re.compile(
    r"\b(?:it|its|it's|itself|they|them|their|theirs|themselves|he|she|his|her)\b"
)
_DEMONSTRATIVE = re.compile(
    r"\b(?:this|that|these|those|the|such|said)\s+(?:drug|drugs|substance|substances|one|ones|"
    r"treatment|treatments|therapy|therapies|trial|trials|study|studies|medicine|medication|"
    r"medications|compound|compounds|approach|dose|doses|dosing|stuff|condition|conditions|"
    r"disorder|disorders|result|results|finding|findings|paper|papers|research|option|options|"
    r"product|products|intervention|protocol|program|programme|law|laws|same)\b"
    r"|\b(?:this|that|these|those)\s*[?.!]*$"
    r"|^(?:is|was|are|were|does|did|do|how|why|what|where|when|who)\s+(?:is\s+|was\s+|does\s+)?"
    r"(?:this|that|these|those)\b"
    r"|\b(?:about|with|for|of|on|from|after|before|like|than|to)\s+(?:this|that|these|those)"
    r"\s*[?.!]*$"
)
# Aspects that need a subject: "side effects?" or "What are the risks?" alone.
_ASPECT = re.compile(
    r"\b(?:side[- ]?effects?|adverse\s+(?:events?|effects?|reactions?)|risks?|dangers?|"
    r"safety|doses?|dosage|dosing|legal(?:ity)?|legal\s+status|status|efficacy|effective(?:ness)?|"
    r"evidence|contraindications?|interactions?|results?|outcomes?|findings?|mechanism|"
    r"how\s+long|duration|cost|price|availability|approv(?:al|ed)|sessions?|response\s+rates?|"
    r"remission|relapse|trials?|studies|study|data|limitations?|long[- ]term|follow[- ]up|"
    r"withdrawal|addictive|addiction\s+potential|abuse\s+potential)\b"
)
_SHORT_WORDS = 4


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text)


def _is_followup(norm: str) -> bool:
    return bool(_FOLLOWUP_LEAD.search(norm) or _FOLLOWUP_ANY.search(norm))


def _has_anaphora(norm: str) -> bool:
    if _DEMONSTRATIVE.search(norm):
        return True
    return bool(_PRONOUN.search(_EXPLETIVE_IT.sub(" ", norm)))


def needs_context(question: str) -> bool:
    """Whether a question leans on earlier turns to be understood.

    True for continuations ("what about ...", "and for ...", "how about ..."), anaphora
    ("it", "they", "that drug", "this trial"; expletive "is it legal to ..." excepted),
    an aspect with no substance or condition named ("side effects?", "What are the
    risks?"), and very short questions that name no substance.

    Args:
        question: The user's question as typed.

    Returns:
        True when the question should be read together with the conversation.
    """
    norm = normalize(question)
    if not norm:
        return False
    if _is_followup(norm) or _has_anaphora(norm):
        return True
    if find_substances(norm) or find_conditions(norm):
        return False
    return bool(_ASPECT.search(norm)) or len(_words(norm)) <= _SHORT_WORDS


def _as_turn(turn: Turn | dict) -> Turn:
    return turn if isinstance(turn, Turn) else Turn.model_validate(turn)


def _topic(history: Sequence[Turn]) -> tuple[list[str], list[str]]:
    """Substances and conditions the conversation is currently about.

    User turns are replayed oldest to newest with the same rules `rewrite` applies, so
    the most recent turn that names something wins and a new topic replaces the old one
    ("MDMA for PTSD?" then "Is ketamine legal in Germany?" is about ketamine only), while
    a follow-up such as "and what about psilocybin?" keeps PTSD. Assistant turns are used
    only when no user turn names anything, because answers mention many substances in
    passing; then only the first two of each from the most recent such answer.
    """
    substances: list[str] = []
    conditions: list[str] = []
    for turn in history:
        if turn.role != "user":
            continue
        subs, conds = find_substances(turn.content), find_conditions(turn.content)
        if not subs and not conds:
            continue
        norm = normalize(turn.content)
        continues = _is_followup(norm) or _has_anaphora(norm)
        if subs and conds:
            substances, conditions = subs, conds
        elif subs:
            substances, conditions = subs, (conditions if continues else [])
        else:
            substances, conditions = (substances if continues else []), conds
    if substances or conditions:
        return substances, conditions
    for turn in reversed(history):
        if turn.role == "assistant":
            subs, conds = find_substances(turn.content), find_conditions(turn.content)
            if subs or conds:
                return subs[:2], conds[:2]
    return [], []


def _join(slugs: Sequence[str]) -> str:
    names = [DISPLAY_NAMES.get(s, s) for s in slugs]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ------------------------------------------------------------------ named things

# Words shaped like names but never the name of a trial, place or group.
_NOT_NAMES = frozenset(
    "i ok okay january february march april may june july august september october november "
    "december monday tuesday wednesday thursday friday saturday sunday".split())
# Groups of people the literature studies; kept only when the corpus uses the word (`known`).
POPULATIONS = ("veterans", "adolescents", "children", "older adults", "elderly", "women",
               "pregnant people", "first responders", "young adults", "healthy volunteers")
_POPULATION = re.compile(r"\b(" + "|".join(p.rstrip("s") for p in POPULATIONS) + r")s?\b")
_WORD = re.compile(r"[^\W_][\w'\-]*")
_SENTENCE_GAP = re.compile(r"[.!?:;\n]")
# "there" as a place ("Is it legal there?"), not the expletive of "is there" / "there are".
_THERE = re.compile(r"(?<!\bis )(?<!\bare )(?<!\bwas )(?<!\bwere )\bthere\b"
                    r"(?!\s*(?:is|are|was|were|be|been|'s|have|has)\b)")

Known = Callable[[str], bool]


@dataclass(frozen=True)
class Names:
    """Named things of a text. `ids` are letters with digits or acronyms (MAPP2, COMP005,
    NCT03537014, FDA): they belong to the substance they were asked about. `names` are
    capitalised words inside a sentence (Oregon, New Mexico, Stanford, Bogenschutz) and groups of
    people (veterans, adolescents)."""

    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


def _is_id(word: str) -> bool:
    has_digit = any(ch.isdigit() for ch in word)
    has_alpha = any(ch.isalpha() for ch in word)
    return (has_digit and has_alpha) or (word.isupper() and word.isalpha() and len(word) >= 2)


def _lexicon_term(word: str) -> bool:
    return bool(find_substances(word) or find_conditions(word))


def find_names(text: str, known: Known | None = None) -> Names:
    """Trial names, places, people and groups named in `text`, by their shape (see `Names`).

    Substances and conditions are not names here (the lexicon has them), nor are sentence-initial
    capitalised words ("Tell", "Is"), months and days. With `known` (the corpus vocabulary: does
    this word occur in the indexed passages?) only names the corpus uses are kept, so the list is
    derived from the data rather than kept by hand.

    Args:
        text: One turn of the conversation.
        known: Whether a name occurs in the corpus; None keeps every shaped name.

    Returns:
        The ids and names in order of first appearance, without duplicates.
    """
    ids: list[str] = []
    names: list[str] = []
    keep = known or (lambda _w: True)
    words = list(_WORD.finditer(text or ""))
    i = 0
    while i < len(words):
        word = words[i].group(0).strip("'-")
        initial = i == 0 or bool(_SENTENCE_GAP.search(text[words[i - 1].end():words[i].start()]))
        if word and _is_id(word) and not (initial and word.isalpha() and len(word) < 3):
            if not _lexicon_term(word) and word.lower() not in _NOT_NAMES and word not in ids and keep(word):
                ids.append(word)
            i += 1
            continue
        if word[:1].isupper() and not word.isupper() and not initial:
            j = i + 1  # consecutive capitalised words are one name ("New Mexico")
            while (j < len(words) and words[j].group(0)[:1].isupper()
                   and text[words[j - 1].end():words[j].start()] == " "):
                j += 1
            name = " ".join(w.group(0).strip("'-") for w in words[i:j])
            if (not _lexicon_term(name) and name.lower() not in _NOT_NAMES and name not in names
                    and keep(name)):
                names.append(name)
            i = j
            continue
        i += 1
    for m in _POPULATION.finditer(normalize(text or "")):
        group = next(p for p in POPULATIONS if p.startswith(m.group(1)))
        if group not in names and keep(group):
            names.append(group)
    return Names(tuple(ids), tuple(names))


def _carried_names(history: Sequence[Turn], known: Known | None) -> Names:
    """The names the conversation is currently about, replayed like `_topic`: a question that
    does not lean on earlier turns starts afresh; a follow-up replaces only the kind of name it
    gives ("and MAPP1?" replaces MAPP2, keeps Oregon), and a follow-up naming another substance
    drops the trial names of the old one. Only user turns count: answers name many things."""
    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    for turn in history:
        if turn.role != "user":
            continue
        found = find_names(turn.content, known)
        if not needs_context(turn.content):
            ids, names = found.ids, found.names
            continue
        if found.ids:
            ids = found.ids
        elif find_substances(turn.content):
            ids = ()
        if found.names:
            names = found.names
    return Names(ids, names)


# ------------------------------------------------------------------ the standalone question

@dataclass(frozen=True)
class Standalone:
    """A question made standalone, and what was added to it.

    `carried` lists what came from earlier turns (display names), `from_filters` what came from
    the sidebar filters; the app's caption shows both. `text` always contains the user's
    question verbatim."""

    text: str
    carried: tuple[str, ...] = ()
    from_filters: tuple[str, ...] = ()
    own_subject: tuple[str, ...] = ()  # corpus names that made a question stand alone (`_own_names`)


def standalone(question: str, history: Sequence[Turn | dict], *, substances: Sequence[str] = (),
               conditions: Sequence[str] = (), known: Known | None = None,
               subjects: Mapping[str, str] | None = None) -> Standalone:
    """Make a follow-up standalone and name the filters' topics, filters first.

    Carries the conversation's substances, conditions and names (trials, places, groups) into a
    question that leans on earlier turns, as `rewrite` describes. Sidebar filters (`substances`,
    `conditions`) outrank what earlier turns carried: with a substance filter no substance is
    carried from history (nor the trial names of a substance outside the filter), and the
    filter's own topics are named instead when the question names none of its own.

    Args:
        question: The user's latest question.
        history: Earlier turns, oldest first, not including `question`.
        substances: Substance slugs of the sidebar filter (empty: no filter).
        conditions: Condition slugs of the sidebar filter.
        known: Whether a name occurs in the corpus (see `find_names`).
        subjects: The substance each corpus name is about (`bm25.name_subjects`): a question that
            names one ("what was the dropout rate in the bogenschutz alcohol trial") and does not
            continue the conversation ("and ...", "it", "there") is about that name when its
            substance is not the conversation's (`_own_names`).

    Returns:
        The standalone question with what was carried and what the filters added.
    """
    q = question.strip()
    if not q:
        return Standalone(question)
    turns = [_as_turn(t) for t in history]
    q_subs, q_conds = find_substances(q), find_conditions(q)
    carry_subs: list[str] = []
    carry_conds: list[str] = []
    carry_ids: tuple[str, ...] = ()
    carry_names: tuple[str, ...] = ()
    own_subject: tuple[str, ...] = ()
    leans = bool(turns) and _leans_on_history(q, q_subs, q_conds)
    topic_subs, topic_conds = _topic(turns) if leans else ([], [])
    if leans:
        own_subject = _own_names(q, q_subs, topic_subs, subjects)
    if leans and not own_subject:
        carry_subs = [] if q_subs else list(topic_subs)
        carry_conds = [] if q_conds else list(topic_conds)
        norm = normalize(q)
        own = find_names(q, known)
        found = _carried_names(turns, known)
        carry_ids = () if (own.ids or q_subs) else found.ids
        if (_is_followup(norm) or _THERE.search(norm)) and not own.names:
            carry_names = found.names
        if subjects:  # a carried name about another substance than the question's is not carried
            about = set(q_subs or carry_subs)
            carry_ids = names_about(carry_ids, about, subjects)
            carry_names = names_about(carry_names, about, subjects)
        if substances:  # the filter outranks history
            if carry_subs and not set(carry_subs) <= set(substances):
                carry_ids = ()
            carry_subs = []
        if conditions:
            carry_conds = []
    add_subs = carry_subs + ([] if q_subs or carry_subs else list(substances))
    add_conds = carry_conds + ([] if q_conds or carry_conds else list(conditions))
    text = _with_topic(q, add_subs, add_conds, carry_ids, carry_names)
    if text is None:
        return Standalone(question, own_subject=own_subject)
    carried = tuple(carry_ids) + tuple(DISPLAY_NAMES.get(s, s) for s in carry_subs + carry_conds) \
        + tuple(carry_names)
    from_filters = tuple(DISPLAY_NAMES.get(s, s) for s in add_subs + add_conds
                         if s not in carry_subs and s not in carry_conds)
    return Standalone(text, carried, from_filters, own_subject)


def names_about(names: Sequence[str], substances: set[str] | Sequence[str],
                subjects: Mapping[str, str]) -> tuple[str, ...]:
    """The carried `names` that may be about `substances`: "what about lsd for anxiety?" after an
    ibogaine question does not take Alper along, nor "and how much does spravato cost?" Oregon.
    A name with no one substance of its own (FDA, Australia, veterans) is always kept."""
    if not substances:
        return names
    return tuple(n for n in names
                 if all(w not in subjects or subjects[w] in substances for w in n.lower().split()))


def _own_names(q: str, subs: list[str], topic_subs: list[str],
               subjects: Mapping[str, str] | None) -> tuple[str, ...]:
    """The corpus names in `q` that make it a question of its own although it reads like a
    follow-up (an aspect word and no substance: "what was the dropout rate in the bogenschutz
    alcohol trial", typed in lower case after a Spravato question): names about a substance
    (`subjects`) that is not the conversation's. A name typed in lower case counts only when it is
    no everyday English word ("noller" does, "right" and "bill" do not). Empty for a continuation
    ("and in Oregon?", "what about it there?"), which asks the previous question again, and for a
    question naming a substance of its own, which the usual rules already read."""
    if not subjects or not topic_subs or subs:
        return ()
    norm = normalize(q)
    if _is_followup(norm) or _has_anaphora(norm) or _THERE.search(norm):
        return ()
    from assistant.answer.focus import everyday_words

    own: list[str] = []
    for m in re.finditer(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*", q):
        word = m.group().lower()
        typed_as_name = m.group() != word and m.start() > 0
        if (word in subjects and subjects[word] not in topic_subs and word not in own
                and (typed_as_name or word not in everyday_words())):
            own.append(word)
    return tuple(own)


def _leans_on_history(q: str, subs: list[str], conds: list[str]) -> bool:
    """Whether `rewrite` would carry anything into `q` (the rules in its docstring)."""
    norm = normalize(q)
    if _is_followup(norm) or _THERE.search(norm):
        return True  # with both named, only names can still be missing ("and psilocybin there?")
    if not subs and not conds:
        return needs_context(q)
    return not subs and _has_anaphora(norm)


def rewrite(question: str, history: list[Turn], known: Known | None = None) -> str:
    """Make a follow-up question standalone by carrying the conversation's topic forward.

    The user's words are never dropped or reworded: the stripped question is kept
    verbatim and the carried names, substances and conditions are appended in parentheses,
    e.g. "What are its side effects? (about MDMA for PTSD)" or "and the placebo group? (about
    MAPP2 and MDMA for PTSD)". Only what is missing is carried:
    a question naming a substance gets conditions only when it is clearly a follow-up
    ("and what about psilocybin?" -> "(for PTSD)"); a question naming a condition gets
    substances only when it is a follow-up or uses anaphora ("Does it help depression?").
    Trial names and acronyms (MAPP2, COMP005) travel with the substance they were asked about;
    places, people and groups (Oregon, veterans) only into continuations ("and MDMA?") or a
    question that says "there". A self-contained question is returned unchanged, as is any
    question when the history is empty.

    Args:
        question: The user's latest question.
        history: Earlier turns, oldest first, not including `question`.
        known: Whether a name occurs in the corpus (see `find_names`); None keeps every name.

    Returns:
        The standalone question; `question.strip()` is always a substring of it.
    """
    if not history:
        return question
    return standalone(question, history, known=known).text


def _with_topic(q: str, substances: Sequence[str], conditions: Sequence[str],
                ids: Sequence[str] = (), names: Sequence[str] = ()) -> str | None:
    """`q (about MAPP2 and X for Y, Oregon)`, or None when there is nothing to add."""
    about = list(ids) + [DISPLAY_NAMES.get(s, s) for s in substances]
    parts = ([f"about {_join(about)}"] if about else []) + (
        [f"for {_join(list(conditions))}"] if conditions else [])
    text = " ".join(parts)
    if names:
        text = (text + ", " if text else "about ") + _join(list(names))
    return f"{q} ({text})" if text else None


def with_filters(question: str, substances: Sequence[str], conditions: Sequence[str]) -> str:
    """Name the sidebar's filter topics in a question that names none of its own.

    A filter restricts retrieval to documents tagged with the substance or condition, but a
    document about several substances (drug interactions, screening) is tagged with all of them:
    "What are the main risks?" filtered to ketamine would rank its ibogaine passages as high as its
    ketamine ones. Appending "(about ketamine)" makes retrieval and sentence selection prefer the
    filtered topic, and the app shows it as "Interpreted as: ...". The user's words are kept
    verbatim; a question that already names a substance (or condition) gets none added for it.
    """
    q = question.strip()
    if not q:
        return question
    add_subs = [] if find_substances(q) else substances
    add_conds = [] if find_conditions(q) else conditions
    return _with_topic(q, add_subs, add_conds) or question
