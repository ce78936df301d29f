"""`psyqa bench latency`: warm `Assistant.ask` latency, on the starter corpus and at scale.

Every configuration is measured in a fresh child process, so its peak RSS (VmHWM) is its own.
In the child: the Assistant is built, warmed (model weights, BM25 index, Chroma caches), then each
question is asked `repeat` times; right after each ask the raw query encode
(`embedder.embed_query`) of the same question is timed as the floor, so both see the same load.

Scale corpus (sizes such as 1k, 10k, 100k chunks), built once and cached under the data dir:
1. the real eval chunks: SciFact and PubMedQA passages, each ingested by `ingest.pipeline.run`
   exactly as `psyqa bench retrieval` does (the same cache), then read back with their vectors;
2. the first min(N, base) real chunks are taken as they are; the rest are copies of real chunks
   (cycled) with a distinct id, a distinct document id (`<doc>-c<k>`), the text slightly altered
   (one word dropped, a copy marker appended) and the vector perturbed by Gaussian noise
   (sigma 0.01 per dimension, about cos 0.98 to the original) and re-normalised;
3. written straight into a Chroma collection with the chunk metadata ingest writes, visible at
   generation 1 (`index.chunk_meta` keys), a BM25 index from `BM25Index.build` saved where
   `Services.bm25` looks (`index.bm25_dir`), and committed with `index.commit` (identity,
   generation 1, documents, chunks), as ingest commits.
The server backend copies that Chroma directory to a temp path and serves it with a real
`chroma run` on a free loopback port (stopped afterwards); its RSS is read from /proc.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTER_QUESTIONS = [
    "What did the MAPP1 trial of MDMA for PTSD find?",
    "What did MAPP2 find?",
    "Is psilocybin approved by the FDA?",
    "How does esketamine nasal spray work for treatment-resistant depression?",
    "What are the main risks of ketamine infusions?",
    "What is the legal status of psilocybin in Oregon?",
    "What happened with Colorado's natural medicine law?",
    "Why did the FDA reject MDMA-assisted therapy in 2024?",
    "What is ibogaine and why is it considered risky for the heart?",
    "What did the COMP360 psilocybin trial show for depression?",
    "Which drug interactions matter with MDMA?",
    "Can people on SSRIs take part in psilocybin therapy?",
    "How is ayahuasca different from DMT?",
    "What is 5-MeO-DMT?",
    "What is the evidence for psilocybin in alcohol use disorder?",
    "Does psilocybin help smoking cessation?",
    "What screening is done before psychedelic-assisted therapy?",
    "What adverse events were reported in psilocybin trials?",
    "What is functional unblinding and why does it matter?",
    "How much does MDMA-assisted therapy cost?",
    "What is Australia's policy on MDMA and psilocybin prescribing?",
    "What did the Texas ibogaine legislation do?",
    "Is LSD being studied for anxiety?",
    "What are the concerns about misconduct in psychedelic trials?",
    "What role does preparation and integration play in the therapy?",
    "How long does a psilocybin session last?",
    "What is Spravato and who can prescribe it?",
    "What did the ketamine versus ECT trial find?",
    "What are Indigenous reciprocity concerns around ayahuasca and peyote?",
    "What is the abuse liability of ketamine?",
]

NOISE_SIGMA = 0.01
GOAL = {"starter_p50_ms": 150, "semantic_check_p50_ms": 10, "starter_p95_ms": 400, "p50_ms_10000": 150, "p50_ms_100000": 300,
        "rss_mb_100000": 1536}


def _log(msg: str) -> None:
    print(f"[bench latency] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the child


class PatternsOnly:
    """The safety screen without its semantic layer: the baseline that prices the semantic check
    (the bench only; the product always runs both layers)."""

    def __init__(self, screen) -> None:
        self.screen = screen

    def plan(self, *args, **kwargs):
        plan = self.screen.plan(*args, **kwargs)
        plan.texts = []  # nothing to encode beyond the queries, nothing to classify
        return plan

    def decide(self, plan, vectors):
        return plan.decision or plan.pattern


def measure(overrides: dict, questions: list[str], repeat: int) -> dict:
    """Warm ask() latency and the embed_query floor, in this process, and the same ask with the
    pattern layer only (each question asked both ways in turn). Returns ms and MB."""
    from assistant.assistant import Assistant
    from assistant.bench import memory_mb, percentile
    from assistant.services import build_services
    from assistant.settings import Settings

    settings = Settings(**overrides)
    services = build_services(settings)
    assistant = Assistant(services)
    bare = Assistant(services)
    bare.safety = PatternsOnly(bare.safety)
    t0 = time.perf_counter()
    for q in questions[:2]:
        assistant.ask(q)  # loads the model, BM25 index and Chroma segments
        bare.ask(q)
    warm_s = time.perf_counter() - t0
    asks: list[float] = []
    bare_asks: list[float] = []
    extra: list[float] = []
    floor: list[float] = []
    statuses: dict[str, int] = {}
    for _ in range(repeat):
        for q in questions:
            t0 = time.perf_counter()
            ans = assistant.ask(q)
            asks.append((time.perf_counter() - t0) * 1000)
            statuses[ans.status] = statuses.get(ans.status, 0) + 1
            t0 = time.perf_counter()
            bare.ask(q)
            bare_asks.append((time.perf_counter() - t0) * 1000)
            extra.append(asks[-1] - bare_asks[-1])
            t0 = time.perf_counter()
            services.embedder.embed_query(q)
            floor.append((time.perf_counter() - t0) * 1000)
    check_ms = _check_cost(services)
    peak = memory_mb().get("VmHWM")
    if peak is None:  # no /proc: ru_maxrss, which may include the parent's peak (see memory_mb)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "asks": len(asks), "p50_ms": round(percentile(asks, 50), 1), "p95_ms": round(percentile(asks, 95), 1),
        "encode_p50_ms": round(percentile(floor, 50), 1), "encode_p95_ms": round(percentile(floor, 95), 1),
        "patterns_only_p50_ms": round(percentile(bare_asks, 50), 1),
        "semantic_check_p50_ms": round(percentile(extra, 50), 1),
        "warmup_s": round(warm_s, 2), "peak_rss_mb": round(peak, 1), "statuses": statuses,
        "damage_check_ms": check_ms,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def _check_cost(services, repeat: int = 5) -> dict:
    """What the damage checks cost, each the median of `repeat` runs: the store's files (once
    per client) and the collection's consistency (once per generation); neither runs per question."""
    from assistant import store
    from assistant.bench import percentile

    settings = services.settings
    col = services.collection()
    out: dict[str, float] = {}
    steps = {"collection": lambda: store.verify(services.client, settings, col)}
    if not settings.chroma_host:
        steps["files"] = lambda: store.check_files(settings.chroma_dir, settings.collection)
    for name, step in steps.items():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = round(percentile(times, 50), 2)
    return out


def _child_main() -> None:
    spec = json.loads(sys.stdin.read())
    out = measure(spec["overrides"], spec["questions"], spec["repeat"])
    print("BENCH-RESULT " + json.dumps(out), flush=True)


def run_child(overrides: dict, questions: list[str], repeat: int) -> dict:
    spec = json.dumps({"overrides": {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()},
                       "questions": questions, "repeat": repeat})
    proc = subprocess.run([sys.executable, "-c", "from assistant.bench.latency import _child_main; _child_main()"],
                          input=spec, capture_output=True, text=True, cwd=os.getcwd())
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    raise RuntimeError(f"latency child failed ({proc.returncode}): {proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------- starter corpus


def starter_corpus(settings) -> Path:
    corpus = Path(settings.corpus_dir)
    if corpus.is_dir():
        return corpus
    return Path(__file__).resolve().parents[2] / "corpus"


def bench_starter(settings, repeat: int = 3, questions: list[str] | None = None) -> dict:
    from ingest.pipeline import run

    questions = questions or STARTER_QUESTIONS
    with tempfile.TemporaryDirectory(prefix="psyqa-bench-starter-") as tmp:
        corpus = starter_corpus(settings)
        bs = settings.model_copy(update={"data_dir": Path(tmp) / "data", "chroma_host": None,
                                         "corpus_dir": corpus})
        report = run([corpus], bs)
        _log(f"starter corpus: {report.documents_total} documents, {report.chunks_total} chunks")
        res = run_child({"data_dir": bs.data_dir, "corpus_dir": corpus, "collection": bs.collection},
                        questions, repeat)
    res.update(documents=report.documents_total, chunks=report.chunks_total, questions=len(questions),
               repeat=repeat)
    return res


# ----------------------------------------------------------------------------- scale corpus


def default_eval_sets() -> list[Path]:
    from assistant.bench.ingest import eval_root

    root = eval_root()
    if root is None:
        raise SystemExit("no eval data found; pass --eval-sets DIR[,DIR]")
    return [root / "scifact", root / "pubmedqa_passages"]


def base_chunks(settings, eval_sets: list[Path]):
    """(ids, docs, metas, vectors) of the real eval chunks, embedded once (shared with bench retrieval)."""
    import numpy as np

    from assistant import store
    from assistant.bench.retrieval import cache_dir, load_beir, prepare_index
    from assistant.embeddings import BundledEmbeddings

    # Keyed by the retrieval caches it reads, which are keyed by the data and the pipeline version:
    # a new chunker gives a new scale corpus rather than a stale one.
    key = hashlib.sha256(json.dumps([str(cache_dir(p, settings)) for p in eval_sets]).encode()).hexdigest()[:8]
    cache = Path(settings.data_dir).resolve() / "bench" / f"scale-base-{key}"
    if not (cache / "chunks.json").exists():
        embedder = BundledEmbeddings(settings.embedding_model, settings.embed_batch_size)
        ids, docs, metas, vecs = [], [], [], []
        for ds in eval_sets:
            corpus, _, _ = load_beir(ds)
            bs, _, _ = prepare_index(ds, settings, corpus, embedder)
            col = store.open_index(bs)
            offset = 0
            while True:
                got = col.get(include=["documents", "metadatas", "embeddings"], limit=5000, offset=offset)
                if not len(got["ids"]):
                    break
                ids += [f"{ds.name}:{i}" for i in got["ids"]]
                docs += got["documents"]
                for m in got["metadatas"]:
                    m = dict(m)
                    m["doc_id"] = f"{ds.name}:{m.get('doc_id', '')}"
                    metas.append(m)
                vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
                offset += len(got["ids"])
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "vectors.npy", np.concatenate(vecs))
        (cache / "chunks.json").write_text(json.dumps({"ids": ids, "docs": docs, "metas": metas}))
    data = json.loads((cache / "chunks.json").read_text())
    return data["ids"], data["docs"], data["metas"], np.load(cache / "vectors.npy"), key


def build_scale(settings, eval_sets: list[Path], n: int) -> Path:
    """A data dir holding an n-chunk collection and its BM25 index (cached); returns it."""
    import numpy as np

    from assistant import index, store
    from assistant.bm25 import BM25Index
    from assistant.models import embed_text

    ids, docs, metas, vecs, key = base_chunks(settings, eval_sets)
    root = Path(settings.data_dir).resolve() / "bench" / f"scale-{n}-{key}-{settings.collection}"
    if (root / "done.json").exists():
        return root / "data"
    if root.exists():
        shutil.rmtree(root)
    data = root / "data"
    bs = settings.model_copy(update={"data_dir": data, "chroma_host": None})
    client = store.open_client(bs)
    col = store.create_collection(client, bs.collection, bs)
    rng = np.random.default_rng(12345)
    base = len(ids)
    out_ids: list[str] = []
    out_texts: list[str] = []
    doc_ids: set[str] = set()
    t0 = time.perf_counter()
    batch = 2000
    for start in range(0, n, batch):
        idx = list(range(start, min(n, start + batch)))
        b_ids, b_docs, b_metas, b_vecs = [], [], [], []
        for i in idx:
            j, copy = i % base, i // base
            text, meta = docs[j], dict(metas[j])
            meta.update(index.alive(1))  # visible at the collection's generation 1
            v = vecs[j]
            if copy:
                words = text.split(" ")
                if len(words) > 3:
                    del words[(copy * 7) % len(words)]
                text = " ".join(words) + f" [copy {copy}]"
                meta["doc_id"] = f"{meta['doc_id']}-c{copy}"
                meta["source"] = f"{meta.get('source', '')}-c{copy}"
                v = v + rng.normal(0.0, NOISE_SIGMA, v.shape).astype(np.float32)
                v = v / np.linalg.norm(v)
            cid = ids[j] if not copy else f"{ids[j]}-c{copy}"
            b_ids.append(cid)
            b_docs.append(text)
            b_metas.append(meta)
            b_vecs.append(v)
            doc_ids.add(meta["doc_id"])
            out_ids.append(cid)
            out_texts.append(embed_text(str(meta.get("title", "")), str(meta.get("section", "")), text))
        col.add(ids=b_ids, documents=b_docs, metadatas=b_metas, embeddings=np.stack(b_vecs))
    _log(f"scale {n}: chroma written in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    lex = BM25Index.build(out_ids, out_texts, 1, str(col.id))
    lex.save(index.bm25_dir(bs, 1))
    _log(f"scale {n}: BM25 built in {time.perf_counter() - t0:.1f}s")
    index.commit(col, bs, 1, documents=len(doc_ids), chunks=col.count(), corpus_hash=f"bench-{n}",
                 last_ingest="bench")
    (root / "done.json").write_text(json.dumps({"chunks": n, "documents": len(doc_ids)}))
    return data


def scale_questions(eval_sets: list[Path], count: int) -> list[str]:
    per = [[json.loads(x)["text"] for x in (ds / "queries.jsonl").read_text().splitlines() if x.strip()]
           for ds in eval_sets]
    out: list[str] = []
    i = 0
    while len(out) < count and any(i < len(p) for p in per):
        for p in per:
            if i < len(p) and len(out) < count:
                out.append(p[i])
        i += 1
    return out


def bench_scale(settings, sizes: list[int], backends: list[str], eval_sets: list[Path],
                questions_n: int = 30, repeat: int = 3) -> list[dict]:
    from assistant.bench import memory_mb
    from assistant import index
    from assistant.bench.server import start_chroma_server, stop_process

    questions = scale_questions(eval_sets, questions_n)
    results = []
    for n in sizes:
        t0 = time.perf_counter()
        data = build_scale(settings, eval_sets, n)
        _log(f"scale {n}: ready in {time.perf_counter() - t0:.1f}s")
        for backend in backends:
            if backend == "embedded":
                res = run_child({"data_dir": data, "collection": settings.collection}, questions, repeat)
            else:
                with tempfile.TemporaryDirectory(prefix="psyqa-bench-server-") as tmp:
                    srv = Path(tmp) / "chroma"
                    local = settings.model_copy(update={"data_dir": data, "chroma_host": None})
                    index.adopt_old_layout(local)  # a cache built before data/index/ existed
                    shutil.copytree(local.chroma_dir, srv)
                    proc, _, port = start_chroma_server(srv)
                    try:
                        sdata = Path(tmp) / "data"
                        src = index.bm25_dir(local, 1)
                        served = settings.model_copy(update={"data_dir": sdata, "chroma_host": "127.0.0.1",
                                                             "chroma_port": port})
                        shutil.copytree(src, index.bm25_dir(served, 1))
                        res = run_child({"data_dir": sdata, "collection": settings.collection,
                                         "chroma_host": "127.0.0.1", "chroma_port": port}, questions, repeat)
                        res["server_rss_mb"] = memory_mb(proc.pid)
                    finally:
                        stop_process(proc)
            res.update(size=n, backend=backend)
            _log(f"scale {n} {backend}: {res}")
            results.append(res)
    return results


def cmd_latency(args, settings) -> int:
    from assistant.bench import machine

    before = machine()["loadavg"]
    out: dict = {"machine": None, "loadavg_before": before}
    if args.starter:
        out["starter"] = bench_starter(settings, args.repeat)
    else:
        sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
        backends = ["embedded", "server"] if args.backend == "both" else [args.backend]
        sets = [Path(p) for p in args.eval_sets.split(",")] if getattr(args, "eval_sets", None) else default_eval_sets()
        out["scale"] = bench_scale(settings, sizes, backends, sets, args.queries, args.repeat)
    out["machine"] = machine()
    out["goals"] = GOAL
    if args.json:
        print(json.dumps(out))
        return 0
    m = out["machine"]
    print(f"{m['date']}  {m['cores']} cores, {m['memory_gb']} GB, load {before} -> {m['loadavg']}")
    print(f"{'corpus':<20} {'backend':<9} {'p50 ms':>8} {'p95 ms':>8} {'encode p50':>10} {'RSS MB':>8} {'server MB':>9}")
    rows = [dict(out["starter"], size="starter", backend="embedded")] if "starter" in out else out["scale"]
    for r in rows:
        label = r["size"] if r["size"] == "starter" else f"{r['size']:,} chunks"
        srv = r.get("server_rss_mb", {}).get("VmHWM", "")
        print(f"{label:<20} {r['backend']:<9} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['encode_p50_ms']:>10} "
              f"{r['peak_rss_mb']:>8} {srv:>9}")
    for r in rows:
        print(f"{r['size'] if r['size'] == 'starter' else r['size']}: ask with the pattern layer only "
              f"p50 {r['patterns_only_p50_ms']} ms; the semantic check adds {r['semantic_check_p50_ms']} ms "
              f"at p50 (per-question differences, same run)")
    return 0
