"""Domain lexicon (substances, conditions, aliases) shared by retrieval, safety and follow-ups."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Canonical slug -> the words people actually use. The first entry of every tuple is the
# canonical term itself so that a single table drives detection. Matching is
# case-insensitive and word-bounded; a space or hyphen inside an alias matches any run of
# spaces/hyphens (or none), so "5-MeO-DMT", "5 meo dmt" and "5meo-dmt" are one alias.
# A trailing plural "s" is accepted on every alias.
SUBSTANCES: dict[str, tuple[str, ...]] = {
    "mdma": (
        "mdma", "molly", "ecstasy", "midomafetamine", "mdma-assisted therapy", "mdma-at",
        "methylenedioxymethamphetamine", "3,4-methylenedioxymethamphetamine", "xtc",
    ),
    "psilocybin": (
        "psilocybin", "magic mushroom", "shroom", "mushroom", "psilocin", "psilo", "comp360",
        "comp 360", "psilocybe", "psilocybe cubensis", "psilocybin-assisted therapy",
    ),
    "ketamine": (
        "ketamine", "ketalar", "special k", "iv ketamine", "intravenous ketamine",
        "racemic ketamine", "k-hole",
    ),
    "esketamine": (
        "esketamine", "spravato", "esketamine nasal spray", "s-ketamine",
    ),
    "ibogaine": (
        "ibogaine", "iboga", "noribogaine", "tabernanthe", "tabernanthe iboga",
    ),
    "5-meo-dmt": (
        "5-meo-dmt", "toad venom", "bufo", "bufo alvarius", "incilius alvarius", "5 meo dmt",
        "5-meo", "5meo", "5-methoxy-n,n-dimethyltryptamine", "gh001",
    ),
    "dmt": (
        "dmt", "ayahuasca", "aya", "yage", "n,n-dmt", "dimethyltryptamine", "n,n-dimethyltryptamine",
        "ayahuasca tea", "hoasca",
    ),
    "lsd": (
        "lsd", "acid", "lysergide", "mm120", "mm-120", "lysergic acid diethylamide", "lsd-25",
    ),
    "mescaline": (
        "mescaline", "peyote", "san pedro", "lophophora", "trichocereus",
    ),
}

# Conditions. Decision on TRD: the most specific mention wins (longest match), so
# "treatment-resistant depression" yields only "treatment-resistant-depression", not also
# "depression". A TRD question must find TRD documents first; callers that also want the
# broader class (e.g. to widen a metadata filter) use `broader()`.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "ptsd": (
        "ptsd", "post-traumatic stress disorder", "posttraumatic stress disorder",
        "post-traumatic stress", "posttraumatic stress", "trauma", "c-ptsd", "complex ptsd",
    ),
    "depression": (
        "depression", "mdd", "major depression", "major depressive disorder", "depressive",
        "depressed", "depressive disorder",
    ),
    "treatment-resistant-depression": (
        "treatment-resistant depression", "trd", "treatment resistant depression",
        "treatment-resistant major depression", "treatment-resistant major depressive disorder",
        "treatment-refractory depression", "refractory depression",
    ),
    "alcohol-use-disorder": (
        "alcohol use disorder", "alcohol dependence", "alcoholism", "drinking", "aud",
        "alcohol addiction", "alcohol misuse", "alcoholic",
    ),
    "opioid-use-disorder": (
        "opioid use disorder", "opioid dependence", "heroin", "fentanyl", "oud",
        "opioid addiction", "opiate addiction", "opiate dependence", "opioid withdrawal",
    ),
    "tobacco-use-disorder": (
        "tobacco use disorder", "smoking", "smoking cessation", "nicotine", "tobacco",
        "cigarette", "cigarettes", "cigs", "smoker", "tobacco addiction", "nicotine dependence",
    ),
    "anxiety": (
        "anxiety", "gad", "generalized anxiety", "generalised anxiety",
        "generalized anxiety disorder", "generalised anxiety disorder", "anxious",
        "anxiety disorder",
    ),
    "traumatic-brain-injury": (
        "traumatic brain injury", "tbi", "brain injury", "concussion",
    ),
}

DISPLAY_NAMES: dict[str, str] = {
    "mdma": "MDMA",
    "psilocybin": "psilocybin",
    "ketamine": "ketamine",
    "esketamine": "esketamine",
    "ibogaine": "ibogaine",
    "5-meo-dmt": "5-MeO-DMT",
    "dmt": "DMT",
    "lsd": "LSD",
    "mescaline": "mescaline",
    "ptsd": "PTSD",
    "depression": "depression",
    "treatment-resistant-depression": "treatment-resistant depression",
    "alcohol-use-disorder": "alcohol use disorder",
    "opioid-use-disorder": "opioid use disorder",
    "tobacco-use-disorder": "tobacco use disorder",
    "anxiety": "anxiety",
    "traumatic-brain-injury": "traumatic brain injury",
}

# Terms appended by `expand_query` so lexical and dense search meet documents that use the
# clinical name. Several terms where the literature uses two names for one thing
# (Spravato/esketamine, ayahuasca/DMT, smoking/tobacco).
EXPANSIONS: dict[str, tuple[str, ...]] = {
    "mdma": ("MDMA",),
    "psilocybin": ("psilocybin",),
    "ketamine": ("ketamine",),
    "esketamine": ("esketamine", "Spravato"),
    "ibogaine": ("ibogaine",),
    "5-meo-dmt": ("5-MeO-DMT",),
    "dmt": ("DMT", "ayahuasca"),
    "lsd": ("LSD",),
    "mescaline": ("mescaline",),
    "ptsd": ("PTSD",),
    "depression": ("depression",),
    "treatment-resistant-depression": ("treatment-resistant depression",),
    "alcohol-use-disorder": ("alcohol use disorder",),
    "opioid-use-disorder": ("opioid use disorder",),
    "tobacco-use-disorder": ("tobacco", "smoking"),
    "anxiety": ("anxiety",),
    "traumatic-brain-injury": ("traumatic brain injury",),
}

_BROADER: dict[str, tuple[str, ...]] = {
    "treatment-resistant-depression": ("depression",),
}

# Aliases whose bare word has common non-drug meanings get a hand-written pattern instead
# of the generated one. "acid": amino/folic/fatty acid, acid reflux are not LSD.
# "drinking": drinking water during a session is not alcohol use disorder. "smoking":
# smoking DMT or 5-MeO-DMT is a route of administration, not tobacco use.
_OVERRIDES: dict[str, str] = {
    "acid": r"(?<!ic )(?<!amino )(?<!fatty )(?<!stomach )acid(?!s)(?![\s-]*(?:reflux|test|rain))",
    "drinking": r"drinking(?!\s+(?:water|fluids?|enough|plenty|lots))",
    "smoking": (
        r"smoking(?!\s+(?:dmt|5|bufo|toad|changa|it\b|cannabis|marijuana|weed|the\s+toad|"
        r"crack|meth|ayahuasca))"
    ),
}

# Any run of spaces or hyphen-like characters (or none) between the words of an alias.
_SEP = r"[\s\-\u2010-\u2015]*"

# Characters that differ from ASCII only in shape; NFKC does not fold them.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u2032": "'",
                         "`": "'", "\u00b4": "'", "\u201c": '"', "\u201d": '"'})


def normalize(text: str) -> str:
    """Fold text to the form every pattern in psyqa is written against.

    NFKC (fullwidth letters, ligatures), removal of format characters (zero-width joiners,
    soft hyphens, bidi marks) and stray control characters, removal of diacritics
    ("yagé" -> "yage"), curly quotes to ASCII, casefold, single spaces.

    Args:
        text: Any user or document text.

    Returns:
        The normalised text; positions do not correspond to the input.
    """
    if text.isascii() and not _ASCII_CONTROL.search(text):
        # Nothing to fold but quotes, case and spaces (most questions and passages; this is the
        # answer step's hottest function, called on every candidate sentence's context).
        return re.sub(r"\s+", " ", text.translate(_QUOTES).casefold()).strip()
    return _normalize_unicode(text)


_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


@lru_cache(maxsize=16384)
def _normalize_unicode(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    # Format characters (Cf) are invisible and are the classic way to break a word
    # for a regex; control characters other than whitespace carry no meaning here.
    text = "".join(
        ch for ch in text
        if unicodedata.category(ch) != "Cf" and (unicodedata.category(ch) != "Cc" or ch.isspace())
    )
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFC", text).translate(_QUOTES).casefold()
    return re.sub(r"\s+", " ", text).strip()


def _alias_pattern(alias: str) -> str:
    if alias in _OVERRIDES:
        return _OVERRIDES[alias]
    parts = [p for p in re.split(r"[\s\-]+", alias) if p]
    return _SEP.join(re.escape(p) for p in parts) + "s?"


def _build(table: dict[str, tuple[str, ...]]) -> tuple[re.Pattern[str], dict[str, str]]:
    # One alternation over every alias, longest first: at a given position the regex takes
    # the first alternative that matches, so longer aliases win ("5-meo-dmt" over "5-meo",
    # "treatment-resistant depression" over "depression") and the scan consumes the span,
    # so "dmt" inside "5-meo-dmt" is never reported on its own.
    entries = sorted(
        ((alias, slug) for slug, aliases in table.items() for alias in aliases),
        key=lambda e: len(e[0]),
        reverse=True,
    )
    groups: dict[str, str] = {}
    alternatives = []
    for i, (alias, slug) in enumerate(entries):
        name = f"g{i}"
        groups[name] = slug
        alternatives.append(f"(?P<{name}>{_alias_pattern(alias)})")
    # Word bounded on both sides: "ketamine" never matches inside "esketamine".
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")
    return pattern, groups


_SUBSTANCE_RE, _SUBSTANCE_GROUPS = _build(SUBSTANCES)
_CONDITION_RE, _CONDITION_GROUPS = _build(CONDITIONS)


def _find(pattern: re.Pattern[str], groups: dict[str, str], text: str) -> list[str]:
    found: list[str] = []
    for m in pattern.finditer(normalize(text)):
        slug = groups[m.lastgroup] if m.lastgroup else None
        if slug and slug not in found:
            found.append(slug)
    return found


# The answer step asks of the same candidate contexts many times per question (once per gate and
# part); the tables never change while psyqa runs.
@lru_cache(maxsize=16384)
def _substances(text: str) -> tuple[str, ...]:
    return tuple(_find(_SUBSTANCE_RE, _SUBSTANCE_GROUPS, text))


@lru_cache(maxsize=16384)
def _conditions(text: str) -> tuple[str, ...]:
    return tuple(_find(_CONDITION_RE, _CONDITION_GROUPS, text))


def is_alias(text: str) -> bool:
    """Whether `text` is, as a whole, a substance or condition alias ("gh001", "special k")."""
    norm = normalize(text)
    return any(rx.fullmatch(norm) for rx in (_SUBSTANCE_RE, _CONDITION_RE))


def find_substances(text: str) -> list[str]:
    """Canonical substance slugs named in `text`.

    Args:
        text: A question, a turn or any passage.

    Returns:
        Slugs in order of first appearance, without duplicates. "Spravato" gives
        ["esketamine"]; "esketamine" never also gives "ketamine".
    """
    return list(_substances(text))


def find_conditions(text: str) -> list[str]:
    """Canonical condition slugs named in `text`.

    The most specific mention wins: "treatment-resistant depression" gives
    ["treatment-resistant-depression"] only (see `broader`).

    Args:
        text: A question, a turn or any passage.

    Returns:
        Slugs in order of first appearance, without duplicates.
    """
    return list(_conditions(text))


def broader(condition: str) -> tuple[str, ...]:
    """Broader condition slugs that include `condition` (TRD -> depression).

    Args:
        condition: A canonical condition slug.

    Returns:
        The broader slugs, empty when there are none.
    """
    return _BROADER.get(condition, ())


@lru_cache(maxsize=256)
def _term_re(term: str) -> re.Pattern[str]:
    parts = [p for p in re.split(r"[\s\-]+", normalize(term)) if p]
    return re.compile(r"(?<!\w)" + _SEP.join(re.escape(p) for p in parts) + r"(?!\w)")


def _has_term(normalized_text: str, term: str) -> bool:
    return _term_re(term).search(normalized_text) is not None


# Lay wording of clinical topics → the terms the literature (and the corpus) uses.
TOPICS: dict[str, tuple[str, ...]] = {
    "side effect": ("adverse events",),
    "side effects": ("adverse events",),
    "bad trips": ("challenging experiences",),
    "bad trip": ("challenging experiences",),
    "bad reaction": ("adverse events",),
    "addictive": ("abuse liability", "dependence"),
    "addiction potential": ("abuse liability",),
    "heart": ("cardiac", "cardiovascular"),
    "blood pressure": ("hypertension",),
    "how long does it last": ("duration", "acute effects"),
    "mixing": ("interactions",),
    "combine": ("interactions",),
    "combined with": ("interactions",),
    "legal": ("legal status", "schedule"),
    "price": ("cost",),
    "expensive": ("cost",),
}


# "Classic (serotonergic) psychedelics" names these substances as a class: a sentence about classic
# psychedelics and lithium speaks about psilocybin and lithium too.
CLASSIC_PSYCHEDELICS: frozenset[str] = frozenset({"psilocybin", "lsd", "dmt", "mescaline"})
CLASS_WORDS = re.compile(r"\b(?:classic|serotonergic)\s+psychedelics?\b")

@lru_cache(maxsize=1)
def place_words() -> frozenset[str]:
    """Words that name a country (ISO 3166 via pycountry) or a state, province or territory of the
    United States, Canada or Australia, lowercased: "germany", "czech", "oregon", "queensland".
    A sentence about one place is not about another."""
    import pycountry

    names: set[str] = set()
    for c in pycountry.countries:
        names.update(getattr(c, a, "") for a in ("name", "common_name", "official_name"))
    for code in ("US", "CA", "AU"):
        names.update(sub.name for sub in pycountry.subdivisions.get(country_code=code))
    out: set[str] = set()
    for name in names:
        out.update(w for w in re.findall(r"[a-z]+", normalize(name))
                   if len(w) >= 4 and w not in _PLACE_FILLER)
    return frozenset(out)


# Words of place names that name no place by themselves ("Republic of", "United", "New").
_PLACE_FILLER = frozenset("republic united kingdom states state federal democratic people peoples "
                          "islands island saint north south east west central city region province "
                          "district territory plurinational bolivarian arab islamic federation "
                          "commonwealth union capital northern southern western eastern new".split())


def _place_form(word: str, place: str) -> bool:
    """`word` is `place` or a form of it ("czech"/"czechia", "mexican"/"mexico")."""
    return word == place or (len(place) >= 6 and len(word) >= 5 and word.startswith(place[:-1])) or (
        len(word) >= 5 and place.startswith(word) and len(place) - len(word) <= 2)


def mentions_place(text: str, exclude: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether normalised `text` names a place (see place_words) other than those in `exclude`."""
    places = place_words()
    for w in set(re.findall(r"[a-z]+", text)):
        if len(w) < 4 or any(_place_form(w, e) or _place_form(e, w) for e in exclude):
            continue
        if w in places or any(_place_form(w, p) for p in places if p[:3] == w[:3]):
            return True
    return False


def is_place(word: str) -> bool:
    return mentions_place(normalize(word))


# Common co-medications by generic name: (drug classes as the literature names them, most specific
# first; brand names).
# Clinicians ask with brands ("my patient on Zoloft"); the corpus speaks of sertraline or of SSRIs.
# A standard reference list (WHO ATC classes, US/UK brand names), not words picked from questions.
MEDICINES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sertraline": (("SSRI", "antidepressant"), ("zoloft", "lustral")),
    "fluoxetine": (("SSRI", "antidepressant"), ("prozac", "sarafem")),
    "escitalopram": (("SSRI", "antidepressant"), ("lexapro", "cipralex")),
    "citalopram": (("SSRI", "antidepressant"), ("celexa", "cipramil")),
    "paroxetine": (("SSRI", "antidepressant"), ("paxil", "seroxat")),
    "fluvoxamine": (("SSRI", "antidepressant"), ("luvox", "faverin")),
    "venlafaxine": (("SNRI", "antidepressant"), ("effexor",)),
    "duloxetine": (("SNRI", "antidepressant"), ("cymbalta",)),
    "desvenlafaxine": (("SNRI", "antidepressant"), ("pristiq",)),
    "amitriptyline": (("tricyclic antidepressant", "antidepressant"), ("elavil",)),
    "nortriptyline": (("tricyclic antidepressant", "antidepressant"), ("pamelor",)),
    "clomipramine": (("tricyclic antidepressant", "antidepressant"), ("anafranil",)),
    "imipramine": (("tricyclic antidepressant", "antidepressant"), ("tofranil",)),
    "phenelzine": (("MAO inhibitor", "MAOI", "antidepressant"), ("nardil",)),
    "tranylcypromine": (("MAO inhibitor", "MAOI", "antidepressant"), ("parnate",)),
    "moclobemide": (("MAO inhibitor", "MAOI", "antidepressant"), ("manerix", "aurorix")),
    "selegiline": (("MAO inhibitor", "MAOI"), ("emsam", "eldepryl")),
    "bupropion": (("antidepressant",), ("wellbutrin", "zyban")),
    "mirtazapine": (("antidepressant",), ("remeron",)),
    "trazodone": (("antidepressant",), ("desyrel", "oleptro")),
    "lithium": (("mood stabiliser",), ("lithobid", "priadel", "camcolit")),
    "lamotrigine": (("anticonvulsant", "mood stabiliser"), ("lamictal",)),
    "valproate": (("anticonvulsant", "mood stabiliser"), ("depakote", "epilim", "valproic acid")),
    "carbamazepine": (("anticonvulsant", "mood stabiliser"), ("tegretol",)),
    "quetiapine": (("antipsychotic",), ("seroquel",)),
    "olanzapine": (("antipsychotic",), ("zyprexa",)),
    "risperidone": (("antipsychotic",), ("risperdal",)),
    "aripiprazole": (("antipsychotic",), ("abilify",)),
    "haloperidol": (("antipsychotic",), ("haldol",)),
    "clozapine": (("antipsychotic",), ("clozaril",)),
    "alprazolam": (("benzodiazepine",), ("xanax",)),
    "lorazepam": (("benzodiazepine",), ("ativan",)),
    "diazepam": (("benzodiazepine",), ("valium",)),
    "clonazepam": (("benzodiazepine",), ("klonopin", "rivotril")),
    "methadone": (("opioid agonist", "opioid"), ("methadose", "dolophine")),
    "buprenorphine": (("opioid agonist", "opioid"), ("suboxone", "subutex", "sublocade")),
    "naltrexone": (("opioid antagonist",), ("vivitrol", "revia")),
    "amphetamine": (("stimulant",), ("adderall", "dexedrine")),
    "methylphenidate": (("stimulant",), ("ritalin", "concerta")),
    "lisdexamfetamine": (("stimulant", "amphetamine"), ("vyvanse", "elvanse")),
    "diphenhydramine": (("antihistamine",), ("benadryl",)),
    "ondansetron": (("antiemetic",), ("zofran",)),
    "tramadol": (("opioid analgesic", "opioid"), ("ultram",)),
    "dextromethorphan": (("cough suppressant",), ("robitussin",)),
}

# Clinical shorthand and lay wording → the terms the literature (and the corpus) uses. Abbreviations
# as clinicians type them in notes (pt, tx, SI, AE), plus everyday words for trial vocabulary.
SHORTHAND: dict[str, tuple[str, ...]] = {
    "pt": ("patient",), "pts": ("patients",), "tx": ("treatment",), "dx": ("diagnosis",),
    "hx": ("history",), "rx": ("prescription",), "meds": ("medications",),
    "si": ("suicidal ideation",), "ae": ("adverse event",), "aes": ("adverse events",),
    "sae": ("serious adverse event",), "saes": ("serious adverse events",),
    "rct": ("randomised controlled trial",), "rcts": ("randomised controlled trials",),
    "bp": ("blood pressure",), "hr": ("heart rate",), "ekg": ("ECG",), "ecg": ("ECG",),
    "od": ("overdose",), "vets": ("veterans",), "vet": ("veteran",), "special ops": ("special operations",),
    "aussie": ("Australia",), "aussies": ("Australia",), "uk": ("United Kingdom",),
    "wk": ("week",), "wks": ("weeks",), "hrs": ("hours",), "yr": ("year",), "yrs": ("years",),
    "mo": ("months",), "mos": ("months",), "diff": ("difference",), "ppl": ("people",),
    "dummy pill": ("placebo",), "sugar pill": ("placebo",), "dummy": ("placebo",),
    "control group": ("placebo",), "control arm": ("placebo",),
    "dropout": ("discontinued", "completed"), "dropouts": ("discontinued", "completed"),
    "drop out": ("discontinued", "completed"), "dropped out": ("discontinued", "completed"),
    "head to head": ("compared",), "combo": ("combining", "combination"),
    "combos": ("combining", "combination"), "vape": ("inhaled",), "vaped": ("inhaled",),
    "vaping": ("inhaled",), "cohort": ("participants",), "subjects": ("participants",),
    "enrolled": ("randomised", "participants"), "sample size": ("participants",),
    "script": ("prescription",), "scripts": ("prescriptions",),
    "adcomm": ("advisory committee",), "ad comm": ("advisory committee",),
    "prop": ("proposition",), "ip": ("intellectual property",),
    "endpoint": ("outcome",), "endpoints": ("outcomes",), "end point": ("outcome",),
    # Routes of administration as people say them.
    "infusion": ("intravenous",), "infusions": ("intravenous",), "iv": ("intravenous",),
    "drip": ("intravenous",), "injection": ("intramuscular", "intravenous"),
    "injections": ("intramuscular", "intravenous"),
    # Regulatory decisions as people say them (the FDA "declines to approve" in a complete
    # response letter; nothing is "rejected").
    "reject": ("declined to approve", "complete response letter"),
    "rejected": ("declined to approve", "complete response letter"),
    "rejection": ("declined to approve", "complete response letter"),
    "turned down": ("declined to approve",), "turn down": ("declined to approve",),
    # Lay words for clinical events.
    "overdose": ("toxicity", "high doses"), "overdoses": ("toxicity", "high doses"),
    "overdosed": ("toxicity", "high doses"), "spike": ("rise", "increase"),
    "spikes": ("rise", "increase"),
    # Trial phases as clinicians abbreviate them: ph3, ph 2b.
    **{f"ph{sp}{n}{x}": (f"phase {n}{x}",) for sp in ("", " ") for n in "1234" for x in ("", "a", "b")},
}

_MEDICINE_ALIASES: dict[str, str] = {
    alias: generic for generic, (_, brands) in MEDICINES.items() for alias in (generic, *brands)}


def find_medicines(text: str) -> list[str]:
    """Generic names of the co-medications named in `text`, by generic or brand name."""
    norm = normalize(text)
    return list(dict.fromkeys(g for alias, g in _MEDICINE_ALIASES.items() if _has_term(norm, alias)))


def resolve_terms(text: str) -> list[str]:
    """The clinical terms that a question's brand names, shorthand and lay wording stand for
    (generic names, drug classes, trial vocabulary); nothing for words already clinical."""
    norm = normalize(text)
    extras: list[str] = []
    for generic in find_medicines(text):
        classes, _ = MEDICINES[generic]
        extras += [generic, *classes]
    for phrase, terms in SHORTHAND.items():
        if _has_term(norm, phrase):
            extras.extend(terms)
    return [t for t in dict.fromkeys(extras) if not _has_term(norm, t)]


def expand_query(text: str) -> str:
    """Append canonical terms for aliases so search also finds the clinical literature.

    For every substance or condition named only by an alias ("molly", "Spravato",
    "ayahuasca", "alcoholism"), the canonical terms that are missing from the text are
    appended ("MDMA", "esketamine", "DMT", "alcohol use disorder"). Nothing is appended
    for a slug whose canonical or display name is already present.

    Args:
        text: The (standalone) question.

    Returns:
        `text` itself, followed by a space and the added terms when there are any; the
        original text is always a prefix of the result.
    """
    norm = normalize(text)
    extras: list[str] = []
    for slug in find_substances(text) + find_conditions(text):
        if _has_term(norm, slug) or _has_term(norm, DISPLAY_NAMES[slug]):
            continue
        for term in EXPANSIONS[slug]:
            if not _has_term(norm, term) and term not in extras:
                extras.append(term)
    for phrase, terms in TOPICS.items():
        if _has_term(norm, phrase) and not any(_has_term(norm, t) for t in terms):
            extras.extend(t for t in terms if t not in extras)
    extras.extend(t for t in resolve_terms(text) if t not in extras)
    if not extras:
        return text
    return f"{text} {' '.join(extras)}"


def substance_pattern() -> str:
    """Regex source (for normalised text) matching any substance alias.

    Used by `assistant.safety` so that the lexicon is the one list of drug names.

    Returns:
        A pattern string without flags, to be embedded in a larger regex.
    """
    # Named groups removed: the caller may embed the pattern several times in one regex.
    return re.sub(r"\(\?P<g\d+>", "(?:", _SUBSTANCE_RE.pattern)
