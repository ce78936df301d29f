"""Follow-up handling: turn a question that leans on earlier turns into a standalone one."""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def _join(slugs: list[str]) -> str:
    names = [DISPLAY_NAMES.get(s, s) for s in slugs]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def rewrite(question: str, history: list[Turn]) -> str:
    """Make a follow-up question standalone by carrying the conversation's topic forward.

    The user's words are never dropped or reworded: the stripped question is kept
    verbatim and the carried substances and conditions are appended in parentheses, e.g.
    "What are its side effects? (about MDMA for PTSD)". Only what is missing is carried:
    a question naming a substance gets conditions only when it is clearly a follow-up
    ("and what about psilocybin?" -> "(for PTSD)"); a question naming a condition gets
    substances only when it is a follow-up or uses anaphora ("Does it help depression?").
    A question that names both, or is self-contained, is returned unchanged, as is any
    question when the history is empty.

    Args:
        question: The user's latest question.
        history: Earlier turns, oldest first, not including `question`.

    Returns:
        The standalone question; `question.strip()` is always a substring of it.
    """
    if not history:
        return question
    q = question.strip()
    if not q:
        return question
    norm = normalize(q)
    subs, conds = find_substances(q), find_conditions(q)
    if subs and conds:
        return question
    if not subs and not conds and not needs_context(q):
        return question
    if subs and not _is_followup(norm):
        return question
    if conds and not (_is_followup(norm) or _has_anaphora(norm)):
        return question

    topic_subs, topic_conds = _topic([_as_turn(t) for t in history])
    carry_subs = [] if subs else [s for s in topic_subs if s not in subs]
    carry_conds = [] if conds else [c for c in topic_conds if c not in conds]
    return _with_topic(q, carry_subs, carry_conds) or question


def _with_topic(q: str, substances: Sequence[str], conditions: Sequence[str]) -> str | None:
    """`q (about X for Y)`, or None when there is nothing to add."""
    parts = ([f"about {_join(list(substances))}"] if substances else []) + (
        [f"for {_join(list(conditions))}"] if conditions else [])
    return f"{q} ({' '.join(parts)})" if parts else None


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
