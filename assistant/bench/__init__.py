"""`psyqa bench`: ingest, latency and retrieval benchmarks.

Every result carries the machine it ran on (cores, memory, load average), the date and the exact
command, because on a shared 2-core machine absolute times are noisy: each benchmark therefore
also measures its own floor (raw encode time) in the same run and reports the ratio.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys


def machine() -> dict:
    """Where and when a figure was measured."""
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["psyqa"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("psyqa")
        else " ".join(sys.argv),
    }


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory of a process in MB from /proc: now (VmRSS) and its peak (VmHWM).

    VmHWM belongs to the process's address space, which exec replaces, so a benchmark child's
    figure is its own. (`getrusage(...).ru_maxrss` is not: Linux carries it across exec, so a
    child started by a 1.2 GB parent reports at least 1.2 GB.) Empty where /proc is missing.
    """
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def percentile(values: list[float], p: float) -> float:
    """Percentile `p` (0..100), interpolated linearly between the closest ranks (numpy's
    default method); NaN for no values."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), p)) if values else float("nan")


def register(subparsers) -> None:
    """Add `psyqa bench {ingest,latency,retrieval}` to the psyqa command line."""
    from pathlib import Path

    p = subparsers.add_parser("bench", help="benchmarks: ingest, latency, retrieval")
    sub = p.add_subparsers(dest="bench_cmd", required=True)

    q = sub.add_parser("ingest", help="ingest throughput vs the raw encode floor, and a no-change re-run")
    q.add_argument("--files", type=int, default=1000, help="synthetic corpus size in files (default 1000)")
    q.add_argument("--eval-dir", type=Path, default=None, help="BEIR set the files are made from")
    q.add_argument("--profile", type=Path, default=None, help="write cProfile stats of the clean ingest here")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=_run_ingest)

    q = sub.add_parser("latency", help="warm ask() latency on the starter corpus and at scale")
    q.add_argument("--sizes", default="1000,10000,100000", help="comma-separated chunk counts")
    q.add_argument("--backend", choices=["embedded", "server", "both"], default="both")
    q.add_argument("--starter", action="store_true", help="only the starter-corpus benchmark")
    q.add_argument("--queries", type=int, default=30, help="questions per size (default 30)")
    q.add_argument("--repeat", type=int, default=3, help="times each question is asked")
    q.add_argument("--eval-sets", default=None,
                   help="comma-separated BEIR dirs the scale corpus is made from "
                        "(default: shared eval scifact,pubmedqa_passages)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=_run_latency)

    q = sub.add_parser("retrieval", help="nDCG@10 / Recall / MRR on a BEIR-format set")
    q.add_argument("dataset", type=Path, help="folder with corpus.jsonl, queries.jsonl, qrels.tsv")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--limit-queries", type=int, default=None, help="only the first N judged queries")
    q.add_argument("--methods", default="default,dense,bm25,langchain",
                   help="comma-separated subset of default,dense,bm25,langchain")
    q.add_argument("--details", action="store_true", help="with --json, add machine and timing details")
    q.set_defaults(func=_run_retrieval)


def _run_ingest(args, settings) -> int:
    from assistant.bench.ingest import cmd_ingest

    return cmd_ingest(args, settings)


def _run_latency(args, settings) -> int:
    from assistant.bench.latency import cmd_latency

    return cmd_latency(args, settings)


def _run_retrieval(args, settings) -> int:
    from assistant.bench.retrieval import cmd_retrieval

    return cmd_retrieval(args, settings)
