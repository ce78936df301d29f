"""`psyqa bench retrieval DATASET_DIR`: a BEIR set through the product's own pipeline.

Each corpus document becomes a Markdown file (front matter `title`, `id` = a safe form of the
BEIR `_id`), is ingested with `ingest.pipeline.run` into a cached data dir (keyed by dataset and
the settings that shape the index), and each judged query is run through:

- `default`: the product's retriever, `HybridSearch.search(mode="hybrid")` as the assistant uses it
  (default settings, except `max_per_doc` raised so no chunk is hidden from the document ranking);
- `dense` and `bm25`: the same search with `mode="dense"` / `mode="lexical"` (100 candidates);
- `langchain`: a plain LangChain pipeline (RecursiveCharacterTextSplitter 1000/200,
  HuggingFaceEmbeddings of the bundled model, Chroma `similarity_search` k=100).

Chunk hits become document scores by max (the best chunk of each document). Metrics follow
trec_eval: nDCG@10 (graded gains, log2 discount, ideal from all judged relevant documents),
Recall@k (relevant with grade >= 1 in the top k / all relevant), MRR@10 (1 / rank of the first
relevant document in the top 10, else 0); ties in score are broken by document id descending,
as trec_eval does. Averages are over the judged queries that have at least one relevant document.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path

METHODS = ("default", "dense", "bm25", "langchain")
DEFAULT_METHOD = "default"
SEARCH_K = 100

# ----------------------------------------------------------------------------- metrics


def ranking(run: dict[str, float]) -> list[str]:
    """Documents of one query's run in trec_eval order: score descending, then docno descending."""
    return [d for d, _ in sorted(run.items(), key=lambda x: (-x[1], _Desc(x[0])))]


class _Desc(str):
    """A string that sorts in reverse."""

    def __lt__(self, other):  # type: ignore[override]
        return str.__gt__(self, other)


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if rels.get(d, 0) > 0)
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(runs: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean metrics over the queries of `qrels` with a relevant document (a missing run scores 0)."""
    qids = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    sums = {"ndcg_at_10": 0.0, "recall_at_5": 0.0, "recall_at_20": 0.0, "mrr_at_10": 0.0}
    for q in qids:
        ranked = ranking(runs.get(q, {}))
        rels = qrels[q]
        sums["ndcg_at_10"] += ndcg_at(ranked, rels, 10)
        sums["recall_at_5"] += recall_at(ranked, rels, 5)
        sums["recall_at_20"] += recall_at(ranked, rels, 20)
        sums["mrr_at_10"] += mrr_at(ranked, rels, 10)
    n = len(qids) or 1
    return {k: round(v / n, 4) for k, v in sums.items()}


# ----------------------------------------------------------------------------- BEIR data


def load_beir(directory: Path):
    """(corpus {id: (title, text)}, queries {id: text}, qrels {qid: {docid: grade}})."""
    corpus: dict[str, tuple[str, str]] = {}
    with open(directory / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                corpus[str(d["_id"])] = (str(d.get("title") or ""), str(d.get("text") or ""))
    queries: dict[str, str] = {}
    with open(directory / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                queries[str(d["_id"])] = str(d["text"])
    qrels: dict[str, dict[str, int]] = {}
    with open(directory / "qrels.tsv", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (i == 0 and not parts[2].lstrip("-").isdigit()):
                continue  # header
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return corpus, queries, qrels


_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")


def safe_ids(ids: list[str]) -> dict[str, str]:
    """BEIR id -> a document id that ingest accepts (see ingest.pipeline._SAFE_ID), unique."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for orig in ids:
        s = _UNSAFE.sub("_", orig)[:180]
        if not s or not s[0].isalnum():
            s = "d" + s
        s = s.replace("..", "_.")
        base, n = s, 1
        while s in used:
            n += 1
            s = f"{base}-{n}"
        used.add(s)
        out[orig] = s
    return out


def write_corpus(corpus: dict[str, tuple[str, str]], folder: Path) -> dict[str, str]:
    """One Markdown file per document; returns {safe id: BEIR id}."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    mapping = safe_ids(list(corpus))
    for i, (orig, (title, text)) in enumerate(corpus.items()):
        fm = {"title": title.strip() or "Untitled", "id": mapping[orig]}
        head = "---\n" + yaml.safe_dump(fm, sort_keys=False, allow_unicode=True, width=10**6) + "---\n\n"
        (folder / f"{i:07d}.md").write_text(head + text.strip() + "\n", encoding="utf-8")
    return {v: k for k, v in mapping.items()}


# ----------------------------------------------------------------------------- the run


def cache_dir(dataset: Path, settings) -> Path:
    """Where the ingested index of `dataset` under these settings lives (re-runs reuse it)."""
    from ingest.pipeline import PIPELINE_VERSION

    corpus = dataset / "corpus.jsonl"
    st = corpus.stat()
    key = json.dumps([str(dataset.resolve()), st.st_size, int(st.st_mtime), PIPELINE_VERSION,
                      settings.embedding_model, settings.max_tokens, settings.overlap_sentences])
    h = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(settings.data_dir).resolve() / "bench" / f"retrieval-{dataset.name}-{h}"


def _log(msg: str) -> None:
    print(f"[bench retrieval] {msg}", file=sys.stderr, flush=True)


def prepare_index(dataset: Path, settings, corpus, embedder):
    """Ingest the corpus once (cached); returns (bench settings, {safe id: BEIR id}, seconds)."""
    from ingest.pipeline import run

    root = cache_dir(dataset, settings)
    files = root / "corpus"
    mapping_file = root / "mapping.json"
    if not mapping_file.exists():
        import shutil

        if files.exists():
            shutil.rmtree(files)
        back = write_corpus(corpus, files)
        mapping_file.write_text(json.dumps(back))
    back = json.loads(mapping_file.read_text())
    bs = settings.model_copy(update={"data_dir": root / "data", "corpus_dir": files,
                                     "collection": "bench", "chroma_host": None})
    t0 = time.perf_counter()
    report = run([files], bs, embedder=embedder)
    if report.failed:
        _log(f"{len(report.failed)} files failed to ingest, e.g. {report.failed[:2]}")
    _log(f"ingest: {report.chunks_embedded} chunks embedded, {report.chunks_total} total, "
         f"{time.perf_counter() - t0:.1f}s")
    return bs, back, time.perf_counter() - t0


def product_runs(bs, embedder, queries: dict[str, str], back: dict[str, str], mode: str,
                 candidates: int | None = None) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Doc-level runs of HybridSearch in `mode`, and per-query seconds."""
    from assistant.retrieve import HybridSearch
    from assistant.services import Services

    upd = {"max_per_doc": SEARCH_K}
    if candidates:
        upd["candidates"] = candidates
    services = Services(settings=bs.model_copy(update=upd), embedder=embedder)
    search = HybridSearch(services)
    runs: dict[str, dict[str, float]] = {}
    times = []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        hits = search.search(text, k=SEARCH_K, mode=mode)
        times.append(time.perf_counter() - t0)
        docs: dict[str, float] = {}
        for h in hits:
            d = back.get(h.chunk.doc_id, h.chunk.doc_id)
            docs[d] = max(docs.get(d, -1e9), h.score)
        runs[qid] = docs
    return runs, times


def langchain_runs(dataset: Path, settings, corpus, queries) -> tuple[dict[str, dict[str, float]], list[float]]:
    """The plain LangChain baseline; its Chroma store is cached next to the product's index."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from assistant.embeddings import model_path

    root = cache_dir(dataset, settings) / "langchain"
    done = root / "done.json"
    emb = HuggingFaceEmbeddings(model_name=model_path(settings.embedding_model), model_kwargs={"device": "cpu"})
    client = chromadb.PersistentClient(path=str(root / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    if not done.exists():
        try:
            client.delete_collection("langchain-baseline")
        except Exception:
            pass
        store = Chroma(collection_name="langchain-baseline", embedding_function=emb, client=client)
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        texts, metas, ids = [], [], []
        for did, (title, text) in corpus.items():
            for j, piece in enumerate(splitter.split_text(f"{title}\n{text}".strip())):
                texts.append(piece)
                metas.append({"doc": did})
                ids.append(f"{did}#{j}")
        t0 = time.perf_counter()
        for k in range(0, len(texts), 1000):
            store.add_texts(texts[k:k + 1000], metadatas=metas[k:k + 1000], ids=ids[k:k + 1000])
        done.write_text(json.dumps({"chunks": len(texts), "seconds": time.perf_counter() - t0}))
        _log(f"langchain: {len(texts)} chunks in {time.perf_counter() - t0:.1f}s")
    store = Chroma(collection_name="langchain-baseline", embedding_function=emb, client=client)
    runs: dict[str, dict[str, float]] = {}
    times = []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        got = store.similarity_search_with_score(text, k=SEARCH_K)
        times.append(time.perf_counter() - t0)
        docs: dict[str, float] = {}
        for doc, dist in got:
            d = doc.metadata["doc"]
            docs[d] = max(docs.get(d, -1e9), -float(dist))
        runs[qid] = docs
    return runs, times


def bench_retrieval(dataset: Path, settings, methods=METHODS, limit_queries: int | None = None) -> dict:
    from assistant.bench import machine, percentile
    from assistant.embeddings import BundledEmbeddings

    corpus, queries, qrels = load_beir(dataset)
    judged = [q for q in queries if q in qrels and any(r > 0 for r in qrels[q].values())]
    if limit_queries:
        judged = judged[:limit_queries]
    qs = {q: queries[q] for q in judged}
    qr = {q: qrels[q] for q in judged}
    embedder = BundledEmbeddings(settings.embedding_model, settings.embed_batch_size)
    out_results = []
    details: dict = {"machine": machine(), "queries": len(qs), "documents": len(corpus)}
    bs = back = None
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        if m != "langchain" and bs is None:
            bs, back, secs = prepare_index(dataset, settings, corpus, embedder)
            details["ingest_seconds"] = round(secs, 1)
        t0 = time.perf_counter()
        if m == "default":
            runs, times = product_runs(bs, embedder, qs, back, "hybrid")
        elif m == "dense":
            runs, times = product_runs(bs, embedder, qs, back, "dense", candidates=SEARCH_K)
        elif m == "bm25":
            runs, times = product_runs(bs, embedder, qs, back, "lexical", candidates=SEARCH_K)
        else:
            runs, times = langchain_runs(dataset, settings, corpus, qs)
        scores = evaluate(runs, qr)
        out_results.append({"method": m, **scores})
        details[m] = {"p50_ms": round(percentile(times, 50) * 1000, 1),
                      "seconds": round(time.perf_counter() - t0, 1)}
        _log(f"{m}: {scores}")
    return {"dataset": dataset.name, "default": DEFAULT_METHOD, "results": out_results, "details": details}


def cmd_retrieval(args, settings) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = bench_retrieval(args.dataset, settings, methods, args.limit_queries)
    details = result.pop("details")
    if args.json:
        if args.details:
            result["details"] = details
        print(json.dumps(result))
        return 0
    mc = details["machine"]
    print(f"{result['dataset']}: {details['queries']} queries, {details['documents']} documents; "
          f"{mc['date']}, {mc['cores']} cores, {mc['memory_gb']} GB, load {mc['loadavg']}")
    print(f"{'method':<12} {'nDCG@10':>8} {'R@5':>7} {'R@20':>7} {'MRR@10':>7}  p50 ms")
    for r in result["results"]:
        print(f"{r['method']:<12} {r['ndcg_at_10']:>8.4f} {r['recall_at_5']:>7.4f} "
              f"{r['recall_at_20']:>7.4f} {r['mrr_at_10']:>7.4f}  {details[r['method']]['p50_ms']}")
    return 0
