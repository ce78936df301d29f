"""What ingest leaves for readers besides the chunks: facet counts in the commit and the last run's
report (`index.ingest_report_path`), read back by `ingest.status` and shown by `psyqa status`.

Real ingest with the real bundled model, on the embedded store and on a real `chroma run` server.
"""

from __future__ import annotations

import json

import pytest

from helpers import open_collection, psyqa, write_doc

from assistant import index
from ingest.pipeline import run
from ingest.status import index_status, last_run

pytestmark = pytest.mark.slow


def corpus(settings) -> None:
    root = settings.corpus_dir
    write_doc(root / "alpha.md", "Alpha", "## Results\n\nMDMA helped PTSD in the Alpha trial.\n",
              source_type="trial", substances=["mdma"], conditions=["ptsd"])
    write_doc(root / "beta.md", "Beta", "## Review\n\nKetamine and MDMA were reviewed in Beta.\n",
              source_type="review", substances=["ketamine", "mdma"])
    write_doc(root / "gamma.md", "Gamma", "## Notes\n\nGamma has no topic flags at all.\n")


def test_the_commit_counts_documents_per_filter_value(backend, embedder):
    corpus(backend)
    run(None, backend, embedder=embedder)
    facets = index.info(open_collection(backend)).facets
    assert facets == {"substances": {"ketamine": 1, "mdma": 2}, "conditions": {"ptsd": 1},
                      "source_types": {"review": 1, "trial": 1, "unreviewed": 1}}  # gamma names no type
    # a changed document changes the counts at the next commit; status reports the stored ones
    write_doc(backend.corpus_dir / "gamma.md", "Gamma", "## Notes\n\nNow about LSD.\n",
              source_type="review", substances=["lsd"])
    run(None, backend, embedder=embedder)
    st = index_status(backend)
    assert st["facets"]["substances"] == {"ketamine": 1, "lsd": 1, "mdma": 2}
    assert st["facets"]["source_types"] == {"review": 2, "trial": 1}
    # an index committed before facets were stored: counted from the chunks instead
    col = open_collection(backend)
    meta = dict(col.metadata)
    meta.pop("facets")
    meta.pop("hnsw:space", None)
    col.modify(metadata=meta)
    assert index.info(open_collection(backend)).facets is None
    assert index_status(backend)["facets"] == st["facets"]


def test_the_report_says_which_file_failed_why_and_what_is_still_served(backend, embedder):
    corpus(backend)
    run(None, backend, embedder=embedder)
    first = last_run(backend)
    assert first["failed"] == [] and first["added"] == 3 and first["finished"] and not first["stopped"]
    alpha = backend.corpus_dir / "alpha.md"
    alpha.write_text(alpha.read_text().replace("title: Alpha", "title: [broken", 1))
    write_doc(backend.corpus_dir / "delta.md", None, "")  # new and empty: nothing to serve
    report = run(None, backend, embedder=embedder)
    assert sorted(f["path"] for f in report.failed) == ["alpha.md", "delta.md"]
    saved = last_run(backend)
    by_path = {f["path"]: f for f in saved["failed"]}
    assert by_path["alpha.md"]["serving_previous"] is True
    assert by_path["delta.md"]["serving_previous"] is False
    assert "YAML" in by_path["alpha.md"]["problem"] and by_path["alpha.md"]["fix"]
    assert saved["documents_total"] == 3  # alpha's previous version is still indexed
    # the file is unchanged since it failed: status says so instead of "run ingest"
    st = index_status(backend)
    assert "alpha.md" in st["drift"]["changed"] and "alpha.md" in st["unfixed"]
    # once fixed (edited), it is pending again: ingest will pick it up
    alpha.write_text(alpha.read_text().replace("title: [broken", "title: Alpha", 1))
    assert "alpha.md" not in index_status(backend)["unfixed"]
    run(None, backend, embedder=embedder)
    assert [f["path"] for f in last_run(backend)["failed"]] == ["delta.md"]


def test_the_report_is_written_atomically_and_a_damaged_one_is_ignored(settings_factory, embedder):
    settings = settings_factory()
    corpus(settings)
    run(None, settings, embedder=embedder)
    path = index.ingest_report_path(settings)
    assert json.loads(path.read_text())["generation"] == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".report-")]  # no temp left
    path.write_text("{ half a repo")
    assert last_run(settings) is None
    assert index_status(settings)["indexed"]  # the index itself is unaffected


def test_psyqa_status_shows_the_last_run(settings_factory, embedder):
    settings = settings_factory()
    corpus(settings)
    run(None, settings, embedder=embedder)
    bad = settings.corpus_dir / "beta.md"
    bad.write_text(bad.read_text().replace("title: Beta", "title: [broken", 1))
    assert psyqa("ingest", settings=settings).returncode == 1
    res = psyqa("status", settings=settings)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "last ingest run:" in out and "UTC (1 file failed)" in out
    assert "beta.md: its previous version is still being served. Why:" in out
    assert "(failed in the last run, unchanged since)" in out
    assert "fix the failed files above, then run 'psyqa ingest'" in out
    data = json.loads(psyqa("status", "--json", settings=settings).stdout)
    assert data["last_run"]["failed"][0]["serving_previous"] is True and data["unfixed"] == ["beta.md"]
