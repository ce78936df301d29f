"""Files like the seed article, dropped into the starter corpus as they were found (issue 14,
ingest side): a forum repost of an opinion piece with no front matter, forum chrome, a byline
twice, footnote numbers glued to sentence ends and wrong figures.

tests/data/forum_opinion_article.txt is such a file written for the tests (its figures are wrong
on purpose); the real seed (../shared/seeds/000_0e31f853e53dd728.txt, looked for next to the
checkout and above it) is tested too when it is there. Each is ingested with the starter corpus
into real Chroma with the real model: the real title, no chrome in any chunk, no footnote digit
glued to a word in any chunk or shown sentence, the author in `authors`, the document listed as
unreviewed, and a question naming the author retrieves the document.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from assistant import index
from assistant.answer.verify import split_marked
from ingest.loaders import load

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "forum_opinion_article.txt"
SEED_NAME = "000_0e31f853e53dd728.txt"
SEED = next((p / "shared" / "seeds" / SEED_NAME for p in REPO.parents
             if (p / "shared" / "seeds" / SEED_NAME).is_file()), None)
needs_seed = pytest.mark.skipif(SEED is None, reason=f"the seed article (shared/seeds/{SEED_NAME}) is not "
                                "next to this checkout or above it")

# (file in the test corpus, source, title, authors, chrome lines, questions about its claims)
ARTICLES = {
    "fixture": ("forum-opinion-article.txt", FIXTURE, "Psychedelic Medicine Is Ready for the Clinic",
                ["Dana Whitlock"],
                ["nightowl_rx", "Well-known member", "Share", "Share:", "Dana Whitlock, DO, MPH",
                 "Related Threads", "Microdosing Schedule Tracker", "Forum statistics", "Threads",
                 "12,408", "Messages", "Members", "Back", "Top"],
                ["Were 88% of participants free of PTSD after two sessions of MDMA-assisted therapy?",
                 "Did nine in ten patients stay off opioids for a year after one ibogaine treatment?",
                 "Did a single ketamine infusion cut suicidal thinking by 80% within an hour?"],
                "What does Whitlock say about ibogaine?"),
    "seed": ("trautman-open-to-psychedelics.txt", SEED,
             "We Need to Be More Open to Psychedelic and Alternative Treatments", ["Lucas Trautman"],
             ["madman", "Super Moderator", "Lucas Trautman, MD, MPH, ABPN, ABPM", "hCG Mixing Calculator",
              "HCG Mixing Protocol Calculator", "Online statistics", "Members online", "Guests online",
              "Total visitors", "Latest posts", "2", "1,915", "1,917", "Back", "Top"],
             ["Did a single dose of psilocybin cut depressive symptoms by 71% in treatment-resistant depression?",
              "What did the 2017 ibogaine study find for opioid cravings?",
              "Did 67% of people with PTSD no longer meet criteria after 3 sessions of MDMA-assisted therapy?",
              "Does ketamine rapidly reduce suicidal ideation?"],
             "What does Trautman say about MDMA?"),
}
# A footnote number glued to a sentence end or word ("therapy.1", "(TRD).2", "therapy1."), or a
# year glued to its article ("A2017").
GLUED = re.compile(r"[a-z)\]%][.!?]\d|\b[a-z]{3,}\d{1,2}(?=[.,;:]|\s|$)|\bA(?:19|20)\d\d\b")


def articles() -> list:
    return [pytest.param("fixture"), pytest.param("seed", marks=needs_seed)]


@pytest.mark.parametrize("key", articles())
def test_loads_with_its_title_author_and_footnotes(key):
    name, path, title, authors, chrome, _, _ = ARTICLES[key]
    doc = load(Path(name), name, path.read_bytes())
    assert doc.meta.title == title and doc.meta.authors == authors
    assert doc.meta.source_type == "unreviewed"
    body = [doc.text[s.start:s.end] for s in doc.segments]
    lines = {ln.strip() for b in body for ln in b.split("\n")}
    assert not lines & set(chrome), lines & set(chrome)
    assert not any(GLUED.search(b) for b in body), [m.group() for b in body for m in GLUED.finditer(b)]
    assert [n for _, n in doc.footnotes] == ["1", "2", "3"]
    assert len(doc.warnings) == 1 and doc.warnings[0].count("unreviewed") == 1


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, embedder):
    """The starter corpus plus the fixture article (and the seed when present), ingested once."""
    from assistant.assistant import Assistant
    from assistant.settings import Settings
    from helpers import open_collection
    from ingest.pipeline import run

    base = tmp_path_factory.mktemp("seeded")
    corpus = base / "corpus"
    shutil.copytree(REPO / "corpus", corpus)
    for key, (name, path, *_rest) in ARTICLES.items():
        if path is not None:
            shutil.copy(path, corpus / name)
    settings = Settings(data_dir=base / "data", corpus_dir=corpus)
    report = run([corpus], settings, embedder=embedder)
    got = open_collection(settings).get(include=["documents", "metadatas"])
    return settings, report, list(zip(got["documents"], got["metadatas"])), Assistant.from_settings(settings)


def _of(chunks, source):
    rows = [(d, m) for d, m in chunks if m["source"] == source]
    assert rows, f"{source} was not indexed"
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("key", articles())
def test_ingest_indexes_the_article_clean(seeded, key):
    name, _, title, authors, chrome, _, _ = ARTICLES[key]
    settings, report, chunks, _ = seeded
    assert report.failed == []
    mine = [w for w in report.warnings if w.startswith(f"{name}:")]
    assert len(mine) == 1 and "unreviewed" in mine[0] and "title taken from its first line" in mine[0], mine
    rows = _of(chunks, name)
    for text, meta in rows:
        assert meta["title"] == title and json.loads(meta["authors"]) == authors
        assert meta["source_type"] == "unreviewed"
        lines = {ln.strip() for ln in text.split("\n")}
        assert not lines & set(chrome), (lines & set(chrome), text[:80])
        assert not GLUED.search(text), GLUED.search(text).group()
    notes = [n for _, m in rows for _, n in index.footnotes(m)]
    assert set(notes) == {"1", "2", "3"}
    from ingest.status import index_status

    assert name in index_status(settings)["unreviewed"]


@pytest.mark.slow
@pytest.mark.parametrize("key", articles())
def test_no_footnote_digit_glued_in_any_shown_sentence(seeded, key):
    *_, questions, _ = ARTICLES[key]
    qa = seeded[3]
    shown = 0
    for q in questions:
        ans = qa.ask(q, [])
        for text, nums in split_marked(ans.answer):
            if nums:
                shown += 1
                assert not GLUED.search(text), (q, text)
    assert shown


@pytest.mark.slow
@pytest.mark.parametrize("key", articles())
def test_a_question_naming_the_author_retrieves_the_article(seeded, key):
    name, *_, by_author = ARTICLES[key]
    hits = seeded[3].retrieve(by_author)
    assert name in [h.chunk.source for h in hits[:3]], [h.chunk.source for h in hits]


@pytest.mark.slow
def test_psyqa_status_lists_the_unreviewed_files(seeded):
    from helpers import psyqa

    settings = seeded[0]
    res = psyqa("status", settings=settings)
    assert res.returncode == 0, res.stderr
    listed = res.stdout.split("unreviewed (", 1)[1].splitlines()[1:]
    want = sorted(name for name, path, *_ in ARTICLES.values() if path is not None)
    assert [ln.strip() for ln in listed if ln.startswith("  ")] == want, res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("key", articles())
def test_each_claim_is_answered_with_reviewed_evidence_first_and_its_figures_checked(seeded, key):
    """Issue 14: a question about one of the article's figure claims leads with reviewed evidence;
    the article's own sentence comes (if at all) after the claims heading, labelled by its type,
    and every figure of it that no reviewed source states is marked as such."""
    from assistant import messages
    from assistant.answer.extractive import REVIEWED_TYPES

    name, *_, questions, _ = ARTICLES[key]
    qa = seeded[3]
    for q in questions:
        ans = qa.ask(q, [])
        assert ans.status == "answered", (q, ans.answer)
        by_n = {c.n: c for c in ans.citations}
        marked = [(text, nums) for text, nums in split_marked(ans.answer) if nums]
        first_text, first_nums = marked[0]
        assert all(by_n[n].source_type in REVIEWED_TYPES for n in first_nums), (q, first_text)
        before, _, after = ans.answer.partition(messages.CLAIMS_HEADING)
        for c in ans.citations:
            if c.source == name:  # the article itself: labelled, and only under the heading
                assert c.source_type == "unreviewed"
                assert f"[{c.n}]" not in before, (q, before)
                assert f"[{c.n}]" in after, (q, ans.answer)
        # every figure quoted from the article was looked up; one no reviewed source holds says so
        quoted = [f for f in ans.figures if by_n[f.citation].source == name]
        for f in quoted:
            if not f.held:
                assert any(f.figure in note and "not found in any reviewed source" in note
                           for note in ans.notes), (q, f, ans.notes)
