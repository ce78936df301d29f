"""`psyqa bench ingest`: a clean ingest against its own floor, and a no-change re-run.

In ONE run, on a synthetic corpus of N Markdown files made from the eval abstracts:
1. a clean `ingest.pipeline.run` into a temp data dir (model and tokenizer already loaded);
2. the raw `BundledEmbeddings.encode` of exactly the same chunk texts (`embed_text()` of the
   chunks the ingest wrote, read back from the collection), same batch size: the floor;
3. a second `run` with nothing changed (it must embed 0 chunks).
The figure that matters is the ratio (1) / (2): on a shared machine absolute times drift, but
both halves are measured a minute apart under the same load.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

GOAL_RATIO = 1.25
GOAL_RERUN_S = 3.0


def eval_root() -> Path | None:
    """The shared eval data: ../shared/eval beside the repository, or /work/shared/eval."""
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared" / "eval", Path("/work/shared/eval")):
        if cand.is_dir():
            return cand
    return None


def source_docs(eval_dir: Path | None) -> list[tuple[str, str]]:
    """(title, text) pairs: SciFact abstracts, then PubMedQA abstracts (or one given BEIR set)."""
    dirs = [eval_dir] if eval_dir else []
    if not dirs:
        root = eval_root()
        if root is None:
            raise SystemExit("no eval data found; pass --eval-dir DATASET_DIR")
        dirs = [root / "scifact", root / "pubmedqa"]
    docs: list[tuple[str, str]] = []
    for d in dirs:
        if (d / "corpus.jsonl").exists():
            corpus, _, _ = load_beir_corpus_only(d)
            docs.extend(corpus)
    if not docs:
        raise SystemExit(f"no documents under {dirs}")
    return docs


def load_beir_corpus_only(d: Path):
    out = []
    with open(d / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                x = json.loads(line)
                out.append((str(x.get("title") or "").strip() or "Untitled", str(x.get("text") or "").strip()))
    return out, None, None


def write_synthetic(folder: Path, n: int, docs: list[tuple[str, str]]) -> int:
    """N Markdown files with front-matter titles; cycles the sources when N exceeds them."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        title, text = docs[i % len(docs)]
        if i >= len(docs):
            title = f"{title} (copy {i // len(docs)})"
        head = "---\n" + yaml.safe_dump({"title": title}, allow_unicode=True, width=10**6) + "---\n\n"
        body = head + text + "\n"
        (folder / f"doc-{i:06d}.md").write_text(body, encoding="utf-8")
        total += len(body.encode())
    return total


def bench_ingest(settings, files: int = 1000, eval_dir: Path | None = None, profile: Path | None = None) -> dict:
    from assistant.bench import machine
    from assistant.embeddings import BundledEmbeddings, load_tokenizer
    from assistant.bm25 import read_all
    from assistant.models import embed_text
    from assistant import store
    from ingest.pipeline import run

    load_before = machine()["loadavg"]
    docs = source_docs(eval_dir)
    with tempfile.TemporaryDirectory(prefix="psyqa-bench-ingest-") as tmp:
        base = Path(tmp)
        corpus = base / "corpus"
        size = write_synthetic(corpus, files, docs)
        bs = settings.model_copy(update={"data_dir": base / "data", "corpus_dir": corpus,
                                         "collection": "bench", "chroma_host": None})
        embedder = BundledEmbeddings(bs.embedding_model, bs.embed_batch_size)
        embedder.encode(["warm up the model"])  # weights loaded before anything is timed
        load_tokenizer(bs.embedding_model)

        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        first = run([corpus], bs, embedder=embedder)
        t_ingest = time.perf_counter() - t0
        if prof:
            prof.disable()
            prof.dump_stats(str(profile))

        col = store.open_index(bs)
        _, texts_docs, metas = read_all(col)
        texts = [embed_text(str(m.get("title", "")), str(m.get("section", "")), d)
                 for d, m in zip(texts_docs, metas)]
        t0 = time.perf_counter()
        embedder.encode(texts)
        t_encode = time.perf_counter() - t0

        t0 = time.perf_counter()
        second = run([corpus], bs, embedder=embedder)
        t_rerun = time.perf_counter() - t0

    ratio = t_ingest / t_encode if t_encode > 0 else float("nan")
    return {
        "files": files, "bytes": size, "chunks": first.chunks_total,
        "chunks_embedded": first.chunks_embedded, "failed": len(first.failed),
        "ingest_s": round(t_ingest, 2), "encode_s": round(t_encode, 2),
        "ingest_chunks_per_s": round(first.chunks_embedded / t_ingest, 1) if t_ingest else None,
        "encode_chunks_per_s": round(len(texts) / t_encode, 1) if t_encode else None,
        "ratio": round(ratio, 3), "ratio_goal": GOAL_RATIO, "ratio_ok": ratio <= GOAL_RATIO,
        "rerun_s": round(t_rerun, 2), "rerun_chunks_embedded": second.chunks_embedded,
        "rerun_unchanged": second.unchanged, "rerun_goal_s": GOAL_RERUN_S,
        "rerun_ok": t_rerun < GOAL_RERUN_S and second.chunks_embedded == 0,
        "batch_size": settings.embed_batch_size,
        "loadavg_before": load_before, "machine": machine(),
    }


def cmd_ingest(args, settings) -> int:
    result = bench_ingest(settings, args.files, args.eval_dir, getattr(args, "profile", None))
    if args.json:
        print(json.dumps(result))
        return 0
    m = result["machine"]
    print(f"{m['date']}  {m['cores']} cores, {m['memory_gb']} GB, load {result['loadavg_before']} -> {m['loadavg']}")
    print(f"{result['files']} files, {result['chunks']} chunks (batch {result['batch_size']})")
    print(f"clean ingest   {result['ingest_s']:8.2f} s  {result['ingest_chunks_per_s']} chunks/s")
    print(f"raw encode     {result['encode_s']:8.2f} s  {result['encode_chunks_per_s']} chunks/s")
    print(f"ratio          {result['ratio']:8.3f}    goal <= {GOAL_RATIO}: {'ok' if result['ratio_ok'] else 'MISSED'}")
    print(f"no-change run  {result['rerun_s']:8.2f} s  {result['rerun_chunks_embedded']} chunks embedded; "
          f"goal < {GOAL_RERUN_S} s: {'ok' if result['rerun_ok'] else 'MISSED'}")
    return 0
