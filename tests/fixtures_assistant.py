"""Session-wide state for the assistant-core tests: the real corpus/ ingested once, one Assistant.

pytest turns a fixture imported into several test modules into one fixture definition per module,
so a session-scoped fixture alone would ingest the corpus once per module. The module-level cache
below makes the work happen once per process however many modules use it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from assistant.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"

_CACHE: dict[str, object] = {}
_LOCK = threading.Lock()


def corpus_settings(tmp_path_factory, embedder) -> Settings:
    """Settings of an index holding the real corpus/, built once per session with the real model."""
    with _LOCK:
        if "settings" not in _CACHE:
            from ingest.pipeline import run

            data = tmp_path_factory.mktemp("assistant-index") / "data"
            settings = Settings(data_dir=data, corpus_dir=Path("corpus"))
            report = run(None, settings, embedder=embedder)
            assert not report.failed, report.failed
            assert report.documents_total >= 25, report.as_json()
            _CACHE["settings"] = settings
        return _CACHE["settings"]  # type: ignore[return-value]


def corpus_assistant(tmp_path_factory, embedder):
    """One Assistant over the session index (the model is shared: it is cached per process)."""
    settings = corpus_settings(tmp_path_factory, embedder)
    with _LOCK:
        if "assistant" not in _CACHE:
            from assistant.assistant import Assistant

            _CACHE["assistant"] = Assistant.from_settings(settings)
        return _CACHE["assistant"]


def ask(assistant, question: str, history: list[dict] | None = None):
    """`assistant.ask`, memoised per session so modules checking the same answer ask once.

    Returns a deep copy, so a test that tampers with an answer does not change another's."""
    key = json.dumps([question, history or []])
    with _LOCK:
        cached = _CACHE.get(("ask", key))  # type: ignore[call-overload]
    if cached is None:
        cached = assistant.ask(question, history or [])
        with _LOCK:
            _CACHE[("ask", key)] = cached  # type: ignore[index]
    return cached.model_copy(deep=True)


@pytest.fixture
def index_settings(tmp_path_factory, embedder) -> Settings:
    return corpus_settings(tmp_path_factory, embedder)


@pytest.fixture
def qa(tmp_path_factory, embedder):
    """The session's Assistant (named qa: `assistant` is the package)."""
    return corpus_assistant(tmp_path_factory, embedder)


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
