"""Sentence vectors: pooled from the chunk's own encode (what ingest stores) against encoding every
sentence on its own. Reports, in one run, how well each ranks the sentence that holds a must-fact
for the dev split's answerable first questions (MRR, share in the top 5), and what encoding every
sentence separately would cost next to the chunk encode ingest already does.

    PSYQA_DATA_DIR=<index of corpus/> .venv/bin/python scripts/bench_sentence_vectors.py

Reads the committed index (it must have been built by `psyqa ingest`); writes nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from assistant import index, store  # noqa: E402
from assistant.bench.report import normalize_fact_text as normalise  # noqa: E402
from assistant.bm25 import read_all  # noqa: E402
from assistant.embeddings import BundledEmbeddings  # noqa: E402
from assistant.models import embed_text  # noqa: E402
from assistant.settings import load_settings  # noqa: E402


def rank_quality(matrix: np.ndarray, texts: list[str], items: list[dict], questions: np.ndarray):
    rr, top5 = [], 0
    for q, it in zip(questions, items):
        good = {j for j, t in enumerate(texts) if any(normalise(f) in t for f in it["facts"])}
        if not good:
            continue
        order = np.argsort(-(matrix @ q))
        rank = next(r for r, j in enumerate(order) if j in good)
        rr.append(1.0 / (rank + 1))
        top5 += rank < 5
    return float(np.mean(rr)), top5 / len(rr), len(rr)


def main() -> int:
    settings = load_settings()
    col = store.open_index(settings)
    ids, docs, metas = read_all(col)
    stored, texts = [], []
    for doc, meta in zip(docs, metas):
        got = index.sentences(meta)
        if got is None:
            print("the index has chunks without sentence vectors: run `psyqa ingest` first", file=sys.stderr)
            return 2
        spans, vecs = got
        for (a, b), v in zip(spans, vecs):
            stored.append(v)
            texts.append(doc[a:b])
    emb = BundledEmbeddings()
    chunk_texts = [embed_text(m.get("title", ""), m.get("section", ""), d, json.loads(m.get("authors") or "[]"))
                   for d, m in zip(docs, metas)]
    emb.encode(chunk_texts[:8])  # warm
    t0 = time.perf_counter()
    emb.encode(chunk_texts)
    chunk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    separate = emb.encode(texts)
    sentence_s = time.perf_counter() - t0
    items = [json.loads(line) for line in (REPO / "eval" / "quality.jsonl").read_text().splitlines() if line.strip()]
    items = [i for i in items if i["split"] == "dev" and i["expected_status"] == "answered"
             and not i.get("history") and i.get("facts")]
    questions = emb.encode([i["question"] for i in items])
    normed = [normalise(t) for t in texts]
    pooled = rank_quality(np.asarray(stored), normed, items, questions)
    alone = rank_quality(np.asarray(separate), normed, items, questions)
    print(f"{len(ids)} chunks, {len(texts)} sentences, load average {os.getloadavg()[0]:.1f}")
    print(f"pooled (stored):  MRR {pooled[0]:.3f}  top-5 {pooled[1]:.1%}  ({pooled[2]} questions)")
    print(f"encoded alone:    MRR {alone[0]:.3f}  top-5 {alone[1]:.1%}")
    print(f"encode time: chunks {chunk_s:.1f} s, every sentence alone {sentence_s:.1f} s "
          f"({(chunk_s + sentence_s) / chunk_s:.2f}x the chunk encode if both were done)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
