"""Tests for assistant.lexicon: aliases, word-bounded matching, query expansion."""

from __future__ import annotations

import pytest

from assistant import lexicon
from assistant.lexicon import (
    CONDITIONS,
    DISPLAY_NAMES,
    SUBSTANCES,
    broader,
    expand_query,
    find_conditions,
    find_substances,
    normalize,
)

CANONICAL_SUBSTANCES = [
    "mdma", "psilocybin", "ketamine", "esketamine", "ibogaine", "5-meo-dmt", "dmt", "lsd",
    "mescaline",
]
CANONICAL_CONDITIONS = [
    "ptsd", "depression", "treatment-resistant-depression", "alcohol-use-disorder",
    "opioid-use-disorder", "tobacco-use-disorder", "anxiety", "traumatic-brain-injury",
]


def test_slugs_are_exactly_the_canonical_vocabulary() -> None:
    assert sorted(SUBSTANCES) == sorted(CANONICAL_SUBSTANCES)
    assert sorted(CONDITIONS) == sorted(CANONICAL_CONDITIONS)
    assert set(DISPLAY_NAMES) == set(SUBSTANCES) | set(CONDITIONS)
    assert set(lexicon.EXPANSIONS) == set(DISPLAY_NAMES)


@pytest.mark.parametrize(
    ("alias", "slug"),
    [(a, s) for s, aliases in SUBSTANCES.items() for a in aliases],
)
def test_every_substance_alias_maps_to_its_slug(alias: str, slug: str) -> None:
    assert find_substances(alias) == [slug]
    assert find_substances(f"Tell me about {alias.upper()} please") == [slug]


@pytest.mark.parametrize(
    ("alias", "slug"),
    [(a, s) for s, aliases in CONDITIONS.items() for a in aliases],
)
def test_every_condition_alias_maps_to_its_slug(alias: str, slug: str) -> None:
    assert find_conditions(alias) == [slug]
    assert find_conditions(f"Is there evidence for {alias.title()}?") == [slug]


@pytest.mark.parametrize(
    ("alias", "slug"),
    [
        ("molly", "mdma"), ("ecstasy", "mdma"), ("midomafetamine", "mdma"),
        ("mdma-assisted therapy", "mdma"), ("mdma-at", "mdma"),
        ("magic mushrooms", "psilocybin"), ("shrooms", "psilocybin"),
        ("mushrooms", "psilocybin"), ("psilocin", "psilocybin"), ("comp360", "psilocybin"),
        ("psilocybe", "psilocybin"), ("spravato", "esketamine"),
        ("esketamine nasal spray", "esketamine"), ("ketalar", "ketamine"),
        ("special k", "ketamine"), ("iv ketamine", "ketamine"), ("iboga", "ibogaine"),
        ("noribogaine", "ibogaine"), ("tabernanthe", "ibogaine"), ("toad venom", "5-meo-dmt"),
        ("bufo", "5-meo-dmt"), ("5 meo dmt", "5-meo-dmt"), ("5-meo", "5-meo-dmt"),
        ("5meo", "5-meo-dmt"), ("ayahuasca", "dmt"), ("yage", "dmt"), ("n,n-dmt", "dmt"),
        ("dimethyltryptamine", "dmt"), ("ayahuasca tea", "dmt"), ("acid", "lsd"),
        ("lysergide", "lsd"), ("mm120", "lsd"), ("lysergic acid diethylamide", "lsd"),
        ("peyote", "mescaline"), ("san pedro", "mescaline"),
    ],
)
def test_brief_substance_aliases(alias: str, slug: str) -> None:
    assert find_substances(alias) == [slug]


@pytest.mark.parametrize(
    ("alias", "slug"),
    [
        ("post-traumatic stress", "ptsd"), ("trauma", "ptsd"), ("mdd", "depression"),
        ("major depression", "depression"), ("depressive", "depression"),
        ("trd", "treatment-resistant-depression"),
        ("treatment resistant depression", "treatment-resistant-depression"),
        ("alcohol dependence", "alcohol-use-disorder"), ("drinking", "alcohol-use-disorder"),
        ("alcoholism", "alcohol-use-disorder"), ("aud", "alcohol-use-disorder"),
        ("opioid dependence", "opioid-use-disorder"), ("heroin", "opioid-use-disorder"),
        ("fentanyl", "opioid-use-disorder"), ("oud", "opioid-use-disorder"),
        ("opioid addiction", "opioid-use-disorder"), ("smoking", "tobacco-use-disorder"),
        ("nicotine", "tobacco-use-disorder"), ("tobacco", "tobacco-use-disorder"),
        ("cigarettes", "tobacco-use-disorder"), ("smokers", "tobacco-use-disorder"),
        ("gad", "anxiety"), ("generalized anxiety", "anxiety"), ("anxious", "anxiety"),
        ("tbi", "traumatic-brain-injury"), ("brain injury", "traumatic-brain-injury"),
    ],
)
def test_brief_condition_aliases(alias: str, slug: str) -> None:
    assert find_conditions(alias) == [slug]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Is esketamine better than ketamine?", ["esketamine", "ketamine"]),
        ("What is esketamine?", ["esketamine"]),
        ("How is Spravato given?", ["esketamine"]),
        ("Is Spravato the same as ketamine?", ["esketamine", "ketamine"]),
        ("ESKETAMINE nasal spray dosing", ["esketamine"]),
        # R-ketamine (arketamine) is an enantiomer of ketamine, not esketamine.
        ("S-ketamine versus R-ketamine", ["esketamine", "ketamine"]),
        ("IV ketamine infusions", ["ketamine"]),
        ("ketamine-assisted psychotherapy", ["ketamine"]),
    ],
)
def test_esketamine_ketamine_distinction(text: str, expected: list[str]) -> None:
    assert find_substances(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5-MeO-DMT", ["5-meo-dmt"]),
        ("5-MeO-DMT is not DMT", ["5-meo-dmt", "dmt"]),
        ("smoked 5 MeO DMT", ["5-meo-dmt"]),
        ("5-methoxy-N,N-dimethyltryptamine", ["5-meo-dmt"]),
        ("N,N-DMT in ayahuasca", ["dmt"]),
    ],
)
def test_5meo_dmt_is_not_also_dmt(text: str, expected: list[str]) -> None:
    assert find_substances(text) == expected


def test_results_are_in_order_of_first_appearance_and_deduplicated() -> None:
    text = "LSD vs molly vs MDMA vs psilocybin vs acid vs shrooms"
    assert find_substances(text) == ["lsd", "mdma", "psilocybin"]
    assert find_conditions("PTSD, alcoholism and trauma, then AUD and anxiety") == [
        "ptsd", "alcohol-use-disorder", "anxiety",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Tell me about the acidic pH of the stomach",
        "Amino acid supplements",
        "folic acid and valproic acid",
        "fatty acids",
        "acid reflux",
        "Is it mandatory?",
        "the mushroomed costs of research",
        "a dmtx gene",
        "bufonidae frogs",
    ],
)
def test_no_false_substance_matches(text: str) -> None:
    assert find_substances(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "drinking water during an MDMA session",
        "smoking DMT",
        "smoking 5-MeO-DMT",
        "traumatic experiences",
        "gadolinium contrast",
        "audit of trial sites",
    ],
)
def test_no_false_condition_matches(text: str) -> None:
    assert find_conditions(text) == []


def test_word_boundaries_for_acid_trip() -> None:
    assert find_substances("an acid trip") == ["lsd"]
    assert find_substances("LSD (acid)") == ["lsd"]


def test_trd_is_found_as_trd_only() -> None:
    # Decision: the most specific mention wins; broader() gives the parent class.
    assert find_conditions("esketamine for treatment-resistant depression") == [
        "treatment-resistant-depression"
    ]
    assert find_conditions("TRD") == ["treatment-resistant-depression"]
    assert find_conditions("Treatment\u2011resistant depression") == [
        "treatment-resistant-depression"
    ]
    assert find_conditions("TRD and major depression") == [
        "treatment-resistant-depression", "depression",
    ]
    assert broader("treatment-resistant-depression") == ("depression",)
    assert broader("ptsd") == ()


def test_traumatic_brain_injury_is_not_ptsd() -> None:
    assert find_conditions("ibogaine for traumatic brain injury in veterans") == [
        "traumatic-brain-injury"
    ]
    assert find_conditions("post-traumatic stress disorder") == ["ptsd"]


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("\uff4d\uff4f\uff4c\uff4c\uff59", "mdma"),  # fullwidth "molly"
        ("mo\u200blly", "mdma"),  # zero-width space
        ("yag\u00e9", "dmt"),  # diacritic
        ("PSILOCYBIN", "psilocybin"),
        ("Psilocybin\u2019s effects", "psilocybin"),
    ],
)
def test_unicode_and_case_are_normalised(text: str, slug: str) -> None:
    assert find_substances(text) == [slug]


def test_normalize() -> None:
    assert normalize("  ＭＤＭＡ\u200d  and\n\tK\u00e9tamine\u2019s  ") == "mdma and ketamine's"
    assert normalize("") == ""


def test_display_names() -> None:
    assert DISPLAY_NAMES["5-meo-dmt"] == "5-MeO-DMT"
    assert DISPLAY_NAMES["treatment-resistant-depression"] == "treatment-resistant depression"
    assert DISPLAY_NAMES["mdma"] == "MDMA"
    assert DISPLAY_NAMES["lsd"] == "LSD"


@pytest.mark.parametrize(
    ("text", "must_contain"),
    [
        ("Is molly safe for PTSD?", ["MDMA"]),
        ("How is Spravato given?", ["esketamine"]),
        ("ayahuasca for depression", ["DMT"]),
        ("Do shrooms help alcoholism?", ["psilocybin", "alcohol use disorder"]),
        ("toad venom risks", ["5-MeO-DMT"]),
        ("acid microdosing", ["LSD"]),
        ("iboga for heroin addiction", ["ibogaine", "opioid use disorder"]),
        ("esketamine for TRD", ["treatment-resistant depression"]),
        ("quitting cigarettes with psilocybin", ["tobacco", "smoking"]),
        ("peyote legal status", ["mescaline"]),
    ],
)
def test_expand_query_appends_canonical_terms(text: str, must_contain: list[str]) -> None:
    expanded = expand_query(text)
    assert expanded.startswith(text)
    added = expanded[len(text):]
    for term in must_contain:
        assert term in added


@pytest.mark.parametrize(
    "text",
    [
        "Does MDMA help PTSD?",
        "What is the legal status of psilocybin in Oregon?",
        "esketamine Spravato dosing",
        "5-MeO-DMT safety",
        "DMT and ayahuasca",
        "LSD for anxiety",
        "What is the capital of France?",
        "",
    ],
)
def test_expand_query_leaves_canonical_text_alone(text: str) -> None:
    assert expand_query(text) == text


def test_expand_query_only_adds_missing_terms_once() -> None:
    text = "Spravato vs molly vs ecstasy"
    expanded = expand_query(text)
    assert expanded.startswith(text)
    assert expanded[len(text):].split() == ["esketamine", "MDMA"]


def test_expand_query_molly_and_mdma_together_adds_nothing() -> None:
    assert expand_query("molly (MDMA) for trauma (PTSD)") == "molly (MDMA) for trauma (PTSD)"


def test_expand_query_keeps_original_whitespace_as_prefix() -> None:
    text = "  molly   \n"
    assert expand_query(text).startswith(text)


try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra
    given = None

if given is not None:

    @given(st.text(max_size=200))
    def test_expand_query_prefix_property(text: str) -> None:
        assert expand_query(text).startswith(text)

    @given(st.lists(st.sampled_from(
        [a for aliases in SUBSTANCES.values() for a in aliases] + ["and", "the", "for", "?"]
    ), max_size=8))
    def test_find_substances_never_duplicates(words: list[str]) -> None:
        found = find_substances(" ".join(words))
        assert len(found) == len(set(found))
        assert set(found) <= set(SUBSTANCES)


def test_modules_import_without_heavy_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, time; t = time.perf_counter();"
        "import assistant.lexicon, assistant.safety, assistant.conversation;"
        "heavy = [m for m in ('torch', 'chromadb', 'streamlit', 'sentence_transformers',"
        " 'langchain_core') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_module_docstring_is_one_line() -> None:
    assert lexicon.__doc__ and "\n" not in lexicon.__doc__.strip()


def test_the_ascii_fast_path_folds_as_the_full_unicode_path_does():
    from pathlib import Path

    texts = [p.read_text(encoding="utf-8") for p in sorted(Path("corpus").glob("*.md"))]
    texts += ["Is  MDMA\tlegal?", "don`t", "a\x0bb\x1fc", "ctrl\x01char", "What about Zoloft's dose?"]
    for text in texts:
        assert lexicon.normalize(text) == lexicon._normalize_unicode(text), text[:60]
