"""Every fixed text a user sees (caveat, crisis and decline texts, abstentions, notes, app copy).

The wording is reviewed here, in one file; the modules that decide when a text is shown
(`safety.py`, `assistant.py`, `answer/generative.py`, `app.py`) import it. The safety texts are
deliberately constants in code, not instructions in a prompt: no model, retrieved passage or
user message can change, soften or remove them.
"""

from __future__ import annotations

# ------------------------------------------------------------------ on every answer

CAVEAT: str = (
    "Psychedelic and related treatments carry real psychological and medical risks, and "
    "several are contraindicated with common conditions and medicines. Legal status differs "
    "between jurisdictions and changes over time. This is information from a curated corpus, "
    "not medical advice, and it does not replace clinical judgement."
)

# ------------------------------------------------------------------ safety (assistant/safety.py)

CRISIS_RESPONSE: str = (
    "If you or someone else is in immediate danger, or someone's life may be at risk, call "
    "your local emergency number now (911 in the US).\n"
    "In the US you can call or text 988 to reach the 988 Suicide & Crisis Lifeline, any time. "
    "Elsewhere, findahelpline.com lists free, confidential crisis lines country by country.\n"
    "If a possible overdose or a bad reaction is happening now, call emergency services and "
    "stay with the person until help arrives.\n"
    "You don't have to handle this alone."
)

# Under an answer given right after a crisis message (assistant/safety_semantic.py, AFTER_CRISIS_CONTEXT):
# the new question is answered, and the way to help stays in view (the app also keeps the crisis
# text in the sidebar for the rest of the chat).
AFTER_CRISIS_NOTE: str = (
    "Answered as a question of its own. If you are still in danger, call your local emergency "
    "number (911 in the US), or call or text 988 in the US; findahelpline.com lists crisis lines "
    "in other countries."
)

SOURCING_DECLINE: str = (
    "psyqa does not help anyone obtain, buy, grow, extract or synthesise controlled "
    "substances. It can describe what clinical trials did, what the evidence shows, and the "
    "legal status and licensed access routes (such as regulated programs, prescriptions and "
    "clinical trials) in a given jurisdiction. You could ask, for example, \"Where is "
    "psilocybin legally available through a licensed program?\"."
)

PERSONAL_DOSE_DECLINE: str = (
    "psyqa does not give personal doses for non-clinical use. It can describe the doses "
    "used in clinical trials and on approved labels, and what the evidence says about risks. "
    "You could ask, for example, \"What doses were used in the psilocybin trials?\"."
)

# ------------------------------------------------------------------ the assistant (assistant.py)

EMPTY_QUESTION: str = (
    "Please type a question about psychedelic-assisted or related treatments, "
    "for example: \"What did the MAPP1 trial of MDMA for PTSD find?\""
)


def question_too_long(length: int, limit: int) -> str:
    """The answer to a question longer than `PSYQA_MAX_QUESTION_CHARS`."""
    return (f"The question is {length:,} characters long; the limit is {limit:,}. "
            "Please shorten it to the question itself.")


def no_evidence_text(missing: str, related: int, nearest: list[str]) -> str:
    """The abstention message: what the sources do not hold, then where to read on.

    `missing` says what is absent (see the functions below); `related` is how many passages are
    offered as related reading (listed under the answer, not answering the question)."""
    if related:
        return (missing or "The curated sources do not answer this question.") + (
            " The closest passages are listed as related reading; they do not answer the question.")
    text = missing if missing.startswith("The curated sources do not cover") else \
        "The curated sources do not cover this question."
    if nearest:
        text += " The nearest topics they do cover: " + "; ".join(nearest) + "."
    return text


# The line in an answer above the sentences quoted from opinion, news or unreviewed sources. It is
# the only uncited line an answer may hold (the citation gate skips exactly this text).
CLAIMS_HEADING: str = "Claims in other sources (opinion, news or unreviewed; not reviewed evidence):"


def claims_only(shown: int) -> str:
    """A note under an answer that only opinion, news or unreviewed sources give."""
    what = "passage shown first is" if shown == 1 else "passages shown first are"
    return (f"No reviewed source answers this directly; the reviewed {what} the closest to it, "
            "and the claims after them come from other sources.")


def figure_not_found(figure: str, title: str) -> str:
    """A figure of an opinion, news or unreviewed source that no reviewed source holds."""
    return f"{figure} (from \"{title}\"): not found in any reviewed source."


def figures_disagree(claim_title: str, claim_figures: list[str], evidence_title: str,
                     evidence_figures: list[str]) -> str:
    """An opinion sentence and a reviewed sentence of the same answer give different figures."""
    return (f"The sources disagree: \"{claim_title}\" gives {', '.join(claim_figures)} where the "
            f"reviewed source \"{evidence_title}\" gives {', '.join(evidence_figures)} for the same "
            "trial or outcome.")


# The heading over Answer.related, wherever it is shown (app, CLI, exported conversation).
RELATED_HEADING: str = "Related reading (these passages do not answer the question)"
NOTES_HEADING: str = "Notes"


def _quoted(words: list[str]) -> str:
    words = [f"'{w}'" for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def not_in_sources(unknown: list[str]) -> str:
    """The question names something the corpus never mentions."""
    verb = "does" if len(unknown[:3]) == 1 else "do"
    return (f"The curated sources do not cover this question ({_quoted(unknown[:3])} {verb} not "
            "appear in them).")


FIGURE_PHRASES: dict[str, str] = {
    "count": "a number", "percent": "a percentage or rate", "dose": "a dose",
    "duration": "a duration", "date": "a date", "money": "a cost",
    "effect": "the size of the effect", "value": "a value",
}


def no_figure(kind: str, key: list[str], names: list[str]) -> str:
    """The sources discuss the question's subject but give no figure of the kind asked for."""
    what = f" for {_quoted(key)}" if key else ""
    where = f" in {', '.join(_display(n) for n in names)}" if names else ""
    return (f"The curated sources do not report {FIGURE_PHRASES.get(kind, 'a figure')}{what}{where}: "
            "no passage states it.")


def no_result(names: list[str]) -> str:
    """The sources discuss what a question about results names, but report no finding of it."""
    where = f" for {', '.join(_display(n) for n in names)}" if names else ""
    return f"The curated sources report no results{where}: no passage states a finding."


def no_timepoint(points: list[tuple[str, str]], names: list[str]) -> str:
    """The sources discuss the question's subject, but not at the time point it asks about."""
    when = " or ".join(f"{unit} {n}" if unit in ("day", "week") else f"{n} {unit}{'' if n == '1' else 's'}"
                       for n, unit in points)
    where = f" for {', '.join(_display(n) for n in names)}" if names else ""
    return (f"The curated sources report nothing at {when}{where}: the passages on it give other "
            "time points.")


def not_for(names: list[str], key: list[str]) -> str:
    """Passages cover the question's terms, but for other trials, drugs or places than asked."""
    what = f" about {_quoted(key)}" if key else ""
    return (f"The curated sources say nothing{what} for {', '.join(_display(n) for n in names)}; "
            "the passages that come closest are about other trials, substances or places.")


def not_mentioned(key: list[str], names: list[str]) -> str:
    """The passages about the question's subject do not mention what it asks about."""
    where = f" in connection with {', '.join(_display(n) for n in names)}" if names else ""
    if not key:
        return "The curated sources do not answer this question."
    return f"The curated sources do not mention {_quoted(key)}{where}."


def part_not_covered(part: str, missing: str) -> str:
    """A note under a multi-part answer for a part the sources do not answer."""
    return f"Not answered by the sources: \"{part.strip()}\" — {missing}"


def _display(name: str) -> str:
    """A lowercased name as people write it (MAPP2, COMP005, Oregon)."""
    if any(ch.isdigit() for ch in name) or len(name) <= 4:
        return name.upper()
    return name[:1].upper() + name[1:]


# ------------------------------------------------------------------ language-model notes
# (assistant/answer/generative.py; shown under an answer, in Answer.notes)

UNVERIFIED_NOTE: str = ("The language model's answer could not be verified; showing sentences "
                        "quoted from the sources instead.")
# How every "unavailable" note starts (evaluation counts these as fallbacks).
UNAVAILABLE_START: str = "The language model was unavailable"


def removed_note(n: int) -> str:
    them = "them" if n != 1 else "it"
    return f"{n} sentence{'s' if n != 1 else ''} removed because the cited passages did not support {them}."


def unavailable_note(reason: str) -> str:
    return f"{UNAVAILABLE_START} ({reason}); showing sentences quoted from the sources."


def withheld_note(n: int) -> str:
    return (f"{n} further sentence{'s' if n != 1 else ''} withheld because most of the "
            "language model's sentences could not be verified.")


def stopped_early_note(reason: str) -> str:
    return f"The language model stopped early ({reason}); the answer may be incomplete."


# ------------------------------------------------------------------ the chat app (app.py)

BANNER: str = ("Information from a curated corpus — not medical advice. Answers quote and cite the "
               "sources; check them before acting.")
PRIVACY: str = ("Do not enter patient-identifying information: this conversation is saved on the "
                "server that runs psyqa, under the random id in this page's address, until you "
                "delete it (sidebar); feedback is stored there too. Nothing is sent anywhere else.")
EXAMPLES: list[str] = [
    "What did the MAPP1 trial of MDMA for PTSD find?",
    "Is ibogaine dangerous for the heart?",
    "How is esketamine (Spravato) given?",
    "Is psilocybin legal in Oregon?",
]
