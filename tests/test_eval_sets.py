"""The two blind labelled sets (eval/quality.jsonl, eval/safety.jsonl) stay well formed and stay
true to the corpus (fast: no model, no index).

They were written before any tuning by people who saw only the corpus (quality) or a description
of risk signals (safety). A corpus edit may not silently invalidate an item: every fact string must
still occur verbatim in one of its expected documents (after the normalisation the scorer uses).
When a corpus edit breaks a fact, fix the item from the new text; do not loosen the check.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from assistant.bench.gold import KINDS, LABELS, load_quality, load_safety
from assistant.bench.report import normalize_fact_text
from ingest.schema import split_front_matter

REPO = Path(__file__).resolve().parents[1]
QUALITY = REPO / "eval" / "quality.jsonl"
SAFETY = REPO / "eval" / "safety.jsonl"
# The scorer's own normalisation, so "verbatim" means what `psyqa eval` will match.
_norm = normalize_fact_text


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def quality() -> list[dict]:
    return _load(QUALITY)


@pytest.fixture(scope="module")
def safety() -> list[dict]:
    return _load(SAFETY)


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    docs = {}
    for p in sorted((REPO / "corpus").glob("*.md")):
        if p.name.lower() != "readme.md":
            docs[p.stem] = _norm(split_front_matter(p.read_text(encoding="utf-8"))[1])
    return docs


def test_quality_set_shape(quality):
    assert len(quality) >= 250
    assert len({i["id"] for i in quality}) == len(quality)
    splits = Counter(i["split"] for i in quality)
    assert set(splits) == {"dev", "test"} and splits["test"] >= 100
    kinds = Counter(i["kind"] for i in quality)
    assert set(kinds) == set(KINDS)
    for split in ("dev", "test"):
        per = Counter(i["kind"] for i in quality if i["split"] == split)
        assert all(per[k] >= 20 for k in KINDS), (split, per)


def test_quality_items_are_consistent(quality):
    problems = []
    for i in quality:
        if i["expected_status"] == "answered":
            if not i["expected_docs"] or not 1 <= len(i["facts"]) <= 3:
                problems.append(f"{i['id']}: answerable item needs expected_docs and 1-3 facts")
            if i.get("parts") and sorted(f for p in i["parts"] for f in p) != sorted(i["facts"]):
                problems.append(f"{i['id']}: parts do not add up to the facts")
        elif i["expected_status"] == "no_evidence":
            if i["facts"] or not i.get("absence_check"):
                problems.append(f"{i['id']}: no_evidence item needs no facts and an absence_check")
        else:
            problems.append(f"{i['id']}: unexpected status {i['expected_status']}")
        if i["kind"] == "follow_up" and not i["history"]:
            problems.append(f"{i['id']}: follow-up without history")
    assert not problems, "\n".join(problems)


def test_quality_facts_occur_verbatim_in_an_expected_doc(quality, corpus):
    problems = []
    for i in quality:
        for d in i["expected_docs"]:
            if d not in corpus:
                problems.append(f"{i['id']}: no corpus document {d!r}")
        for f in i["facts"]:
            if not any(_norm(f) in corpus.get(d, "") for d in i["expected_docs"]):
                problems.append(f"{i['id']}: fact {f!r} is in none of {i['expected_docs']}")
    assert not problems, "\n".join(problems)


def test_safety_set_shape(safety):
    assert len(safety) >= 400
    assert len({i["id"] for i in safety}) == len(safety)
    splits = Counter(i["split"] for i in safety)
    assert splits["test"] >= 150 and splits["dev"] >= 150
    for split in ("dev", "test"):
        labels = Counter(i["label"] for i in safety if i["split"] == split)
        assert set(labels) == set(LABELS), (split, labels)
    for i in safety:
        assert i["message"].strip(), i["id"]
        for turn in i.get("history") or []:
            assert turn["role"] in ("user", "assistant") and turn["content"].strip(), i["id"]


def test_both_sets_read_with_the_evaluators_item_models(quality, safety):
    """What `psyqa eval --split` / `--safety` will read: every line a valid item."""
    assert len(load_quality(QUALITY)) == len(quality)
    assert len(load_safety(SAFETY)) == len(safety)
