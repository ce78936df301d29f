"""Session-wide state for the assistant-core tests: the real corpus/ ingested once, one Assistant.

Loaded as a pytest plugin (`pytest_plugins` in conftest.py), so its session fixtures exist once
per test run however many modules use them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from assistant.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"

_ANSWERS: dict[str, object] = {}
_LOCK = threading.Lock()


@pytest.fixture(scope="session")
def index_settings(tmp_path_factory, embedder) -> Settings:
    """Settings of an index holding the real corpus/, built once per session with the real model."""
    from ingest.pipeline import run

    data = tmp_path_factory.mktemp("assistant-index") / "data"
    settings = Settings(data_dir=data, corpus_dir=Path("corpus"))
    report = run(None, settings, embedder=embedder)
    assert not report.failed, report.failed
    assert report.documents_total >= 25, report.as_json()
    # The safety bank's vectors beside the index, as the app's warm-up leaves them, so the CLI
    # processes started on this data dir do not each encode the bank.
    from assistant.safety_semantic import SafetyScreen

    SafetyScreen(embedder.encode, cache_dir=settings.index_dir / "safety").warm()
    return settings


@pytest.fixture(scope="session")
def qa(index_settings):
    """The session's Assistant (named qa: `assistant` is the package); the model is shared."""
    from assistant.assistant import Assistant

    return Assistant.from_settings(index_settings)


def ask(assistant, question: str, history: list[dict] | None = None):
    """`assistant.ask`, memoised per session so modules checking the same answer ask once.

    Returns a deep copy, so a test that tampers with an answer does not change another's."""
    key = json.dumps([question, history or []])
    with _LOCK:
        cached = _ANSWERS.get(key)
    if cached is None:
        cached = assistant.ask(question, history or [])
        with _LOCK:
            _ANSWERS[key] = cached
    return cached.model_copy(deep=True)  # type: ignore[attr-defined]


# Questions whose answers are in the corpus, with a word or figure each answer must contain
# (checked against FACTS.md-vetted corpus text) and the document the answer must cite.
ANSWERABLE: list[tuple[str, str, str]] = [
    ("What did the MAPP1 trial of MDMA for PTSD find?", "MAPP1", "mdma-ptsd-phase3-trials"),
    ("What doses of MDMA were given in MAPP1?", "mg", "mdma-ptsd-phase3-trials"),
    ("What psilocybin dose was used in Goodwin 2022?", "25 mg", "psilocybin-treatment-resistant-depression"),
    ("Is Spravato approved for depression?", "Spravato", "esketamine-spravato"),
    ("What are the cardiac risks of ibogaine?", "QT", "ibogaine-cardiac-risk-and-deaths"),
    ("Is psilocybin legal in Oregon?", "Oregon", "legal-status-us-states"),
    ("What is the legal status of psilocybin in Australia?", "Australia", "legal-status-international"),
    ("What did Bogenschutz 2022 find for alcohol use disorder?", "Bogenschutz", "psilocybin-alcohol-use-disorder"),
    ("How effective was psilocybin for smoking cessation?", "smoking", "psilocybin-smoking-cessation"),
    ("What is functional unblinding in psychedelic trials?", "unblinding", "ethics-unblinding-and-expectancy"),
    ("What did the Stanford ibogaine study in veterans with TBI find?", "Cherian", "ibogaine-veterans-tbi-study"),
]
