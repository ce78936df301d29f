"""Corpus validation: front matter, vocabulary, size, and every figure traced to the fact base.

Two kinds of file live in corpus/. The project's own starter summaries are marked by
`source_type: summary` with a `facts:` list: for them the 20-30 documents rule, the required
provenance fields and the trace of every figure to the vetted fact base apply. Any other file a
maintainer adds is checked for what every file needs: front matter that validates (with the
canonical vocabulary the filters use) and text that ingest can index.

Each test collects every problem before asserting, so a writer sees all failures in one run.

What counts as a "figure" (see `figures()`):
  * a number with optional decimals (``67``, ``0.91``, ``2024``), with its ``%`` if it has one;
  * a range of two numbers joined by a dash (``80-180``, ``8-19%``), compared as one figure;
  * the leading number of a number-word compound (``18-week`` -> 18, ``3.5-fold`` -> 3.5).
Not figures (ignored):
  * numbers that are part of an identifier: a word-and-hyphen token that contains a digit and either
    starts with a letter or contains an uppercase letter (MAPP2, 5-HT2A, COMP360, NCT03537014,
    CAPS-5, QIDS-SR-16, F12, 5-MeO-DMT, GH001-TRD-201, Q4);
  * numbers written as words ("three");
  * ISO dates (2026-11-27) in the body, which must instead equal the document's ``as_of`` or
    ``reviewed`` date or appear in a cited fact;
  * anything in the front matter (the ``sources`` strings carry DOIs, PMIDs and page numbers).
Before comparing, en dashes, em dashes and minus signs become ``-`` and thousands separators are
dropped (``19,071`` -> ``19071``); the sign of a number is not part of the figure. The same
extraction runs over the text of the cited facts (URLs removed), and a document figure passes when
the same figure occurs there; a bare number also matches a percentage of the same value, and an
endpoint of a range in the facts may be cited alone. Known limit: R-marked details inside an
otherwise verified fact (e.g. page numbers) still count as fact text; writers must leave them out.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import pytest

from assistant.errors import DocumentError
from ingest.schema import parse_front_matter, split_front_matter

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
# The vetted fact base: a copy in the repo, so the trace below runs on any clean clone (CI
# included); the shared original, next to the checkout, is compared with it when present.
VENDORED_FACTS = Path(__file__).resolve().parent / "data" / "FACTS.md"
SHARED_FACTS = REPO.parent / "shared" / "facts" / "FACTS.md"
DEFAULT_FACTS = VENDORED_FACTS

SUBSTANCES = {"mdma", "psilocybin", "ketamine", "esketamine", "ibogaine", "5-meo-dmt", "dmt", "lsd",
              "mescaline"}
CONDITIONS = {"ptsd", "depression", "treatment-resistant-depression", "alcohol-use-disorder",
              "opioid-use-disorder", "tobacco-use-disorder", "anxiety", "traumatic-brain-injury"}
MIN_DOCS, MAX_DOCS = 20, 30


def corpus_docs(root: Path = CORPUS) -> list[Path]:
    """Every Markdown corpus document (README.md is for maintainers and is not indexed)."""
    return sorted(p for p in root.rglob("*.md") if p.name.lower() != "readme.md"
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def is_starter(meta) -> bool:
    """One of the project's own summaries: `source_type: summary` with a `facts:` list."""
    return meta.source_type == "summary" and bool(meta.facts)


def starter_docs(root: Path = CORPUS) -> list[Path]:
    out = []
    for path in corpus_docs(root):
        try:
            meta, _ = read_doc(path)
        except DocumentError:
            continue  # reported by test_every_file_has_valid_front_matter
        if is_starter(meta):
            out.append(path)
    return out


def facts_path() -> Path:
    # Tests may read the environment: the settings rule is for library code.
    return Path(os.environ.get("PSYQA_FACTS") or DEFAULT_FACTS)


# --- figures ---------------------------------------------------------------------------------

_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_URL = re.compile(r"https?://\S+|www\.\S+")
_ISO_DATE = re.compile(r"(?<![\w-])(\d{4}-\d{2}-\d{2})(?![\w-])")
# A token: word characters, decimals inside numbers, and internal hyphens.
_TOKEN = re.compile(r"\w+(?:\.\d+)*(?:-\w+(?:\.\d+)*)*")
_NUM = r"\d+(?:\.\d+)?"
_PLAIN = re.compile(rf"({_NUM})(?:-({_NUM}))?")
_COMPOUND = re.compile(rf"({_NUM})-?[a-z\u00b5]+(?:-[a-z]+)*")


def normalise(text: str) -> str:
    """Unify dashes and minus signs, drop thousands separators and URLs."""
    return _THOUSANDS.sub("", _URL.sub(" ", text.translate(_DASHES)))


def figures(text: str) -> list[str]:
    """Figures in `text` as normalised strings: '67', '67%', '80-180', '8-19%'."""
    text = _ISO_DATE.sub(" ", normalise(text))
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if not any(ch.isdigit() for ch in tok):
            continue
        pct = "%" if text[m.end():m.end() + 1] == "%" else ""
        plain = _PLAIN.fullmatch(tok)
        if plain:
            out.append(tok + pct)
            continue
        compound = _COMPOUND.fullmatch(tok)
        if compound and tok[0].isdigit():
            out.append(compound.group(1))
            continue
        # Otherwise an identifier (MAPP2, 5-HT2A, NCT..., CAPS-5, 5-MeO-DMT): not a figure.
    return out


def iso_dates(text: str) -> list[str]:
    return _ISO_DATE.findall(normalise(text))


# --- fact base -------------------------------------------------------------------------------

_FACT_START = re.compile(r"^\*\*F(\d+)\b", re.M)
_BLOCK_END = re.compile(r"^(?:---\s*$|#{1,6} |\*\*S\d+\.)", re.M)


@lru_cache(maxsize=4)
def load_facts(path: str) -> dict[str, str]:
    """Map 'F12' -> the full text of that fact (statement, source, verification, confidence)."""
    text = Path(path).read_text(encoding="utf-8")
    starts = list(_FACT_START.finditer(text))
    facts: dict[str, str] = {}
    for i, m in enumerate(starts):
        stop = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        end = _BLOCK_END.search(text, m.end(), stop)
        facts[f"F{m.group(1)}"] = text[m.start(): end.start() if end else stop]
    return facts


def r_only(fact_text: str) -> bool:
    """True when the fact's confidence is only 'R' (recalled, unverified)."""
    conf = re.findall(r"Confidence:\s*([^\n]*)", fact_text)
    if not conf:
        return False  # cross-references (e.g. 'See F73-F74') carry no confidence of their own
    joined = " ".join(conf)
    return bool(re.search(r"\bR\b", joined)) and not re.search(r"\bV[12]\b", joined)


def fact_figures(fact_texts: list[str]) -> tuple[set[str], set[str]]:
    """(figures, ISO dates) found in the given fact texts."""
    figs: set[str] = set()
    dates: set[str] = set()
    for t in fact_texts:
        for f in figures(t):
            pct = "%" if f.endswith("%") else ""
            core = f.rstrip("%")
            figs.update({f, core})  # a bare number may restate a percentage of the same value
            if "-" in core:  # a range's endpoints may be cited alone ("up to 180 mg")
                for end in core.split("-"):
                    figs.update({end, end + pct})
        dates.update(iso_dates(t))
    return figs, dates


# --- documents -------------------------------------------------------------------------------

def read_doc(path: Path):
    """Return (meta, body) or raise DocumentError / AssertionError with the file named."""
    raw, body, _ = split_front_matter(path.read_text(encoding="utf-8"))
    if raw is None:
        raise DocumentError(str(path), "no front matter", "start the file with a '---' block")
    return parse_front_matter(raw, str(path)), body


def test_corpus_size():
    docs = starter_docs()
    assert MIN_DOCS <= len(docs) <= MAX_DOCS, (
        f"corpus/ has {len(docs)} starter summaries (source_type: summary with facts:); expected "
        f"{MIN_DOCS}-{MAX_DOCS}: " + ", ".join(p.name for p in docs))


def front_matter_problems(root: Path) -> list[str]:
    """What any Markdown file needs: front matter that validates, the canonical vocabulary, an
    `as_of` for jurisdictions, an id that matches the file, a body; and for the starter summaries
    the provenance fields."""
    problems: list[str] = []
    for path in corpus_docs(root):
        name = path.relative_to(root).as_posix()
        try:
            meta, body = read_doc(path)
        except DocumentError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if meta.id is not None and meta.id != path.stem:
            problems.append(f"{name}: id '{meta.id}' should equal the file stem '{path.stem}'")
        for s in meta.substances:
            if s not in SUBSTANCES:
                problems.append(f"{name}: substance '{s}' is not canonical ({sorted(SUBSTANCES)})")
        for c in meta.conditions:
            if c not in CONDITIONS:
                problems.append(f"{name}: condition '{c}' is not canonical ({sorted(CONDITIONS)})")
        if meta.jurisdictions and meta.as_of is None:
            problems.append(f"{name}: has jurisdictions {meta.jurisdictions} but no 'as_of'")
        if not body.strip():
            problems.append(f"{name}: empty body")
        if is_starter(meta):
            if meta.reviewed is None:
                problems.append(f"{name}: missing 'reviewed'")
            if not meta.sources:
                problems.append(f"{name}: 'sources' is empty")
            for f in meta.facts:
                if not re.fullmatch(r"F\d+", f):
                    problems.append(f"{name}: fact '{f}' is not an F-number like 'F12'")
    return problems


def index_problems(root: Path, tmp_path: Path) -> list[str]:
    """What ingest would refuse, for every supported file (Markdown, text, HTML, PDF)."""
    from assistant.settings import Settings
    from ingest.pipeline import run

    report = run([root], Settings(data_dir=tmp_path / "data", corpus_dir=root), check=True)
    return [f"{f['path']}: {f['error']}" for f in report.failed]


def test_every_file_has_valid_front_matter():
    assert corpus_docs(), f"no documents in {CORPUS}"
    problems = front_matter_problems(CORPUS)
    assert not problems, f"{len(problems)} front-matter problem(s):\n" + "\n".join(problems)


def test_every_file_can_be_indexed(tmp_path):
    problems = index_problems(CORPUS, tmp_path)
    assert not problems, f"{len(problems)} file(s) ingest would refuse:\n" + "\n".join(problems)


def test_a_maintainers_own_files_need_only_what_any_file_needs(tmp_path):
    """A 31st file, a file without facts and a text file do not break the suite; a broken one does."""
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(CORPUS, root)
    (root / "clinic-notes.md").write_text(
        "---\ntitle: Our clinic's ketamine protocol\nsource_type: guideline\nsubstances: [ketamine]\n"
        "facts: []\n---\n\n# Our clinic's ketamine protocol\n\nPatients are observed for 2 hours.\n")
    (root / "extra").mkdir()
    (root / "extra" / "handout.txt").write_text("A plain handout with 3 figures: 10, 20 and 30.\n")
    assert len(corpus_docs(root)) == len(corpus_docs()) + 1  # e.g. a 31st Markdown file
    assert front_matter_problems(root) == [] and index_problems(root, tmp_path) == []
    assert len(starter_docs(root)) == len(starter_docs())  # not traced against the fact base
    (root / "broken.md").write_text("---\ntitle: [oops\n---\n\nBody.\n")
    assert any(p.startswith("broken.md:") for p in front_matter_problems(root))
    assert any(p.startswith("broken.md:") for p in index_problems(root, tmp_path))


def test_vendored_fact_base_matches_the_shared_one():
    shared = Path(os.environ.get("PSYQA_FACTS") or SHARED_FACTS)
    assert VENDORED_FACTS.is_file(), f"{VENDORED_FACTS} is missing: copy the fact base there"
    if not shared.is_file():
        pytest.skip(f"no shared fact base at {shared} to compare the repo's copy with")
    assert VENDORED_FACTS.read_bytes() == shared.read_bytes(), (
        f"{VENDORED_FACTS.relative_to(REPO)} differs from {shared}: copy the new fact base into the repo")


def test_figures_traced_to_cited_facts():
    fpath = facts_path()
    assert fpath.exists(), f"fact base not found at {fpath} (set PSYQA_FACTS to its path)"
    facts = load_facts(str(fpath))
    problems: list[str] = []
    checked = 0
    for path in starter_docs():
        name = path.name
        meta, body = read_doc(path)
        cited = []
        for f in meta.facts:
            if f not in facts:
                problems.append(f"{name}: cites {f}, which is not in the fact base")
            elif r_only(facts[f]):
                problems.append(f"{name}: cites {f}, which is marked R (unverified) only")
            else:
                cited.append(facts[f])
        figs, dates = fact_figures(cited)
        allowed_dates = dates | {str(d) for d in (meta.as_of, meta.reviewed) if d}
        for d in iso_dates(body):
            if d not in allowed_dates:
                problems.append(f"{name}: date {d} is neither as_of/reviewed nor in a cited fact")
        seen: set[str] = set()
        for fig in figures(body):
            checked += 1
            if fig in figs or fig in seen:
                continue
            seen.add(fig)
            problems.append(f"{name}: figure '{fig}' is not in its cited facts {meta.facts}")
    assert not problems, (f"{len(problems)} untraced item(s) ({checked} figures checked):\n"
                          + "\n".join(problems))


# --- the figure extractor itself ---------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("67% versus 32%", ["67%", "32%"]),
    ("a split dose of 80\u2013180 mg per session", ["80-180"]),
    ("\u221210.2 to \u22122.9", ["10.2", "2.9"]),
    ("8\u201319% of patients", ["8-19%"]),
    ("19,071 patients", ["19071"]),
    ("an 18-week, 3.5-fold package", ["18", "3.5"]),
    ("MAPP2, 5-HT2A, COMP360, NCT03537014, CAPS-5, QIDS-SR-16, F12, 5-MeO-DMT, GH001-TRD-201", []),
    ("as of 2026-11-27, in 2024.", ["2024"]),
    ("see https://example.org/a/123 for 4 deaths", ["4"]),
])
def test_figures_extractor(text, expected):
    assert figures(text) == expected
