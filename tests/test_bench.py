"""`psyqa bench`: metric functions against hand-computed values, and each benchmark end to end on
tiny data made here (no timing assertions: the machine is shared)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import PSYQA, REPO  # noqa: E402

from assistant.bench.retrieval import (  # noqa: E402
    evaluate, load_beir, mrr_at, ndcg_at, ranking, recall_at, safe_ids, write_corpus)
from ingest.pipeline import _SAFE_ID  # noqa: E402

# ----------------------------------------------------------------------------- metrics

RELS = {"a": 1, "b": 2, "c": 0}
RANKED = ["x", "b", "a", "y"]


def test_ndcg_by_hand():
    dcg = 2 / math.log2(3) + 1 / math.log2(4)      # b at rank 2, a at rank 3
    idcg = 2 / math.log2(2) + 1 / math.log2(3)     # ideal: b then a
    assert ndcg_at(RANKED, RELS, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(RANKED, RELS, 10) == pytest.approx(0.669672, abs=1e-6)
    assert ndcg_at(RANKED, RELS, 1) == 0.0
    assert ndcg_at(["b", "a"], RELS, 10) == pytest.approx(1.0)
    assert ndcg_at(["a", "b"], RELS, 10) == pytest.approx((1 + 2 / math.log2(3)) / idcg)
    assert ndcg_at(RANKED, {"c": 0}, 10) == 0.0  # no relevant document


def test_recall_by_hand():
    assert recall_at(RANKED, RELS, 1) == 0.0
    assert recall_at(RANKED, RELS, 2) == 0.5
    assert recall_at(RANKED, RELS, 5) == 1.0
    assert recall_at(["c"], RELS, 5) == 0.0  # grade 0 is not relevant


def test_mrr_by_hand():
    assert mrr_at(RANKED, RELS, 10) == 0.5
    assert mrr_at(RANKED, RELS, 1) == 0.0
    assert mrr_at(["y"] * 10 + ["a"], RELS, 10) == 0.0  # first relevant at 11 is past the cut


def test_ties_break_by_docno_descending_like_trec_eval():
    assert ranking({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]


def test_evaluate_means_over_judged_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"z": 0}}
    runs = {"q1": {"a": 0.9, "x": 0.5}, "q2": {"x": 0.9, "b": 0.5}}
    got = evaluate(runs, qrels)
    # q3 has no relevant document: left out. q1 perfect; q2 relevant at rank 2.
    assert got["mrr_at_10"] == pytest.approx((1 + 0.5) / 2)
    assert got["recall_at_5"] == 1.0
    assert got["ndcg_at_10"] == pytest.approx(round((1 + 1 / math.log2(3)) / 2, 4))
    # A judged query without a run counts as 0.
    assert evaluate({}, {"q1": {"a": 1}})["ndcg_at_10"] == 0.0


def test_safe_ids_are_accepted_by_ingest_and_unique():
    ids = ["12345", "doc/with space", "../etc", "_x", "a:b", "a_b", "é", "x" * 300]
    mapping = safe_ids(ids)
    assert len(set(mapping.values())) == len(ids)
    for s in mapping.values():
        assert _SAFE_ID.match(s) and ".." not in s.split("/"), s


# ----------------------------------------------------------------------------- tiny BEIR set

DOCS = {
    "d1": ("Psilocybin for depression", "Psilocybin therapy reduced depressive symptoms in a randomised trial."),
    "d2": ("MDMA for PTSD", "MDMA-assisted therapy lowered PTSD symptom scores compared with placebo."),
    "d3": ("Ketamine infusions", "Intravenous ketamine produced rapid antidepressant effects within hours."),
    "d4": ("Ibogaine cardiac risk", "Ibogaine prolongs the QT interval and has caused fatal arrhythmias."),
    "d5": ("", "Esketamine nasal spray is approved for treatment-resistant depression."),
    "d6": ("Ayahuasca", "Ayahuasca is a brew containing DMT and harmala alkaloids."),
    "d7": ("Smoking cessation", "Psilocybin sessions helped smokers quit in an open-label pilot."),
    "d8": ("Alcohol use disorder", "Psilocybin reduced heavy drinking days in alcohol use disorder."),
    "d9": ("Lithium", "Lithium reduces suicide risk in bipolar disorder."),
    "d/10": ("Exercise", "Aerobic exercise improves mood in mild depression."),
}
QUERIES = {"q1": "Does MDMA help PTSD?", "q2": "Is ibogaine dangerous for the heart?",
           "q3": "psilocybin for alcohol problems"}
QRELS = [("q1", "d2", 1), ("q2", "d4", 1), ("q3", "d8", 2), ("q3", "d7", 0)]


def make_beir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for did, (title, text) in DOCS.items():
            fh.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                      + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return folder


def test_load_beir_and_write_corpus(tmp_path):
    corpus, queries, qrels = load_beir(make_beir(tmp_path / "beir"))
    assert len(corpus) == 10 and len(queries) == 3 and qrels["q3"] == {"d8": 2, "d7": 0}
    back = write_corpus(corpus, tmp_path / "files")
    assert sorted(back.values()) == sorted(corpus)
    files = sorted((tmp_path / "files").glob("*.md"))
    assert len(files) == 10
    text = "".join(f.read_text() for f in files)
    assert "title: Untitled" in text  # the empty title of d5


def _psyqa(*args: str, timeout: int = 1500) -> dict:
    proc = subprocess.run([PSYQA, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_bench_retrieval_end_to_end(tmp_path):
    beir = make_beir(tmp_path / "beir")
    out = _psyqa("bench", "retrieval", str(beir), "--json")
    assert set(out) == {"dataset", "default", "results"}
    assert out["dataset"] == "beir" and out["default"] == "default"
    assert [r["method"] for r in out["results"]] == ["default", "dense", "bm25", "langchain"]
    for r in out["results"]:
        assert set(r) == {"method", "ndcg_at_10", "recall_at_5", "recall_at_20", "mrr_at_10"}
        assert all(0.0 <= r[k] <= 1.0 for k in r if k != "method")
    # Ten short, distinct documents: the product's retriever finds every relevant one.
    assert out["results"][0]["recall_at_5"] == 1.0
    # A second run reuses the cached index and gives the same figures.
    again = _psyqa("bench", "retrieval", str(beir), "--json", "--methods", "default")
    assert again["results"][0] == out["results"][0]


@pytest.mark.slow
def test_bench_ingest_reports_ratio_and_zero_chunk_rerun(tmp_path):
    beir = make_beir(tmp_path / "beir")
    out = _psyqa("bench", "ingest", "--files", "20", "--eval-dir", str(beir), "--json")
    assert out["files"] == 20 and out["failed"] == 0
    assert out["chunks_embedded"] == out["chunks"] > 0
    assert out["ratio"] > 0 and "loadavg" in out["machine"]
    assert out["rerun_chunks_embedded"] == 0 and out["rerun_unchanged"] == 20


@pytest.mark.slow
def test_bench_latency_tiny_scale(tmp_path):
    beir = make_beir(tmp_path / "beir")
    out = _psyqa("bench", "latency", "--sizes", "40,60", "--backend", "both", "--eval-sets", str(beir),
                 "--queries", "3", "--repeat", "1", "--json")
    rows = {(r["size"], r["backend"]): r for r in out["scale"]}
    assert set(rows) == {(40, "embedded"), (40, "server"), (60, "embedded"), (60, "server")}
    for row in rows.values():
        assert row["asks"] == 3 and row["p50_ms"] > 0 and row["encode_p50_ms"] > 0 and row["peak_rss_mb"] > 0
        assert sum(row["statuses"].values()) == 3  # every ask returned an Answer
    for size in (40, 60):  # the same corpus and questions behind both backends
        assert rows[(size, "embedded")]["statuses"] == rows[(size, "server")]["statuses"]
        assert rows[(size, "server")]["server_rss_mb"]["VmHWM"] > 0  # the real `chroma run` process


def test_child_peak_memory_is_its_own_not_the_parents():
    """A benchmark child reports its own peak RSS even when its parent was far larger: Linux
    carries ru_maxrss across exec, which once made two 100k-chunk children both report the
    1.2 GB of the parent that had just built their corpus."""
    from assistant.bench import memory_mb

    ballast = bytearray(400 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # touch every page so it is resident
    parent_peak = memory_mb()["VmHWM"]
    assert parent_peak >= 400
    code = "import json; from assistant.bench import memory_mb; print(json.dumps(memory_mb()['VmHWM']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    child_peak = json.loads(out.stdout)
    del ballast
    assert 0 < child_peak < 200, f"the child's own peak should be small, got {child_peak} MB"
