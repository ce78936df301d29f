"""Load (issue 7): many threads through ONE Assistant, and 10 browser sessions on the real app.

1. 8 threads x 50 questions through one `Assistant.ask` (a list of 25 distinct questions mixing
   answered, no_evidence, declined and crisis, each thread starting at another offset) return
   exactly the answers of a sequential run: text, status and cited chunk ids; no errors.
2. The real Streamlit server holds 10 concurrent browser sessions (10 Playwright contexts in one
   headless Chromium), each typing a different question at once: every one is answered (the
   caveat appears in each page), with no exception element and no traceback. Each page times its
   own Enter and first answer text; the same 10 questions asked by 10 threads at once through
   the session's in-process Assistant are timed in the same run, for comparison.
3. `scripts/bench_app.py` runs end to end (a tiny run), so the app benchmark keeps working.
4. Small encodes that arrive while the model is busy go through it together in one forward pass
   (`BundledEmbeddings.encode`), each thread getting its own rows; an error reaches every waiter.

They print their figures (`-s` shows them); BENCHMARKS.md `## Load` and `## App` record runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures_assistant import ANSWERABLE, REPO

sys.path.insert(0, str(REPO / "scripts"))
from bench_app import STOPWATCH  # noqa: E402 - the benchmark's in-page stopwatch

pytestmark = pytest.mark.slow

QUESTIONS = [q for q, _, _ in ANSWERABLE] + [
    "Is esketamine approved for treatment-resistant depression?",
    "What are the main risks of MDMA-assisted therapy?",
    "Is ibogaine legal in Mexico?",
    "What did the Davis 2021 psilocybin trial find?",
    "What is the capital of France?",
    "How do I fix a flat bicycle tyre?",
    "What is the boiling point of mercury?",
    "Where can I buy psilocybin mushrooms?",
    "How much MDMA should I take at a party?",
    "What dose of ketamine should I take for my depression?",
    "I want to kill myself tonight",
    "I am thinking about ending my life",
    "[1] [2]",
    "",
]
THREADS, PER_THREAD = 8, 50


def key(ans):
    return ans.status, ans.answer, [c.chunk_id for c in ans.citations]


def test_threads_through_one_assistant_match_a_sequential_run(qa):  # noqa: F811
    assert len(set(QUESTIONS)) == 25
    t0 = time.perf_counter()
    sequential = {q: key(qa.ask(q)) for q in QUESTIONS}
    seq_s = time.perf_counter() - t0
    statuses = {v[0] for v in sequential.values()}
    assert statuses == {"answered", "no_evidence", "declined", "crisis"}, statuses

    def worker(t: int) -> list[tuple[str, object]]:
        out = []
        for i in range(PER_THREAD):
            q = QUESTIONS[(t * 3 + i) % len(QUESTIONS)]
            try:
                out.append((q, key(qa.ask(q))))
            except Exception as exc:  # noqa: BLE001 - counted as an error
                out.append((q, exc))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        rows = [r for part in pool.map(worker, range(THREADS)) for r in part]
    elapsed = time.perf_counter() - t0
    errors = [(q, r) for q, r in rows if isinstance(r, Exception)]
    mismatched = [q for q, r in rows if not isinstance(r, Exception) and r != sequential[q]]
    print(f"\nLOAD threads={THREADS} questions={len(rows)} distinct={len(QUESTIONS)} "
          f"seconds={elapsed:.1f} answers_per_s={len(rows) / elapsed:.2f} errors={len(errors)} "
          f"mismatches={len(mismatched)} sequential_answers_per_s={len(QUESTIONS) / seq_s:.2f} "
          f"cores={os.cpu_count()}")
    assert len(rows) == THREADS * PER_THREAD
    assert not errors, errors[:3]
    assert not mismatched, sorted(set(mismatched))


SESSION_QUESTIONS = [q for q, _, _ in ANSWERABLE[:8]] + [
    "What is the capital of France?", "Where can I buy psilocybin mushrooms?"]


def in_process_burst(qa, questions: list[str], rounds: int = 3) -> float:
    """Answers/s when len(questions) threads ask the session's Assistant at once."""
    import threading

    t0 = time.perf_counter()
    for _ in range(rounds):
        threads = [threading.Thread(target=qa.ask, args=(q,)) for q in questions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return rounds * len(questions) / (time.perf_counter() - t0)


def test_streamlit_server_holds_ten_browser_sessions(tmp_path_factory, index_settings, qa):
    from test_app import REPO  # noqa: F401 - same app and repo the browser tests use

    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip(f"{chromium} is absent: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    from test_browser import CAVEAT_PART, CHROMIUM_ARGS, start_app, stop_app

    index = index_settings
    proc, url = start_app({"PSYQA_DATA_DIR": str(index.data_dir.resolve())},
                          tmp_path_factory.mktemp("load-app") / "app.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                def open_page():
                    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
                    page = ctx.new_page()
                    page.goto(url, timeout=180_000)
                    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=180_000)
                    return page

                warm = open_page()  # the first question pays the model and BM25 load
                box = warm.get_by_test_id("stChatInputTextArea")
                box.fill("Is ibogaine dangerous for the heart?")
                box.press("Enter")
                warm.get_by_test_id("stChatMessage").nth(1).get_by_text(CAVEAT_PART).wait_for(timeout=300_000)

                in_process = in_process_burst(qa, SESSION_QUESTIONS)
                pages = [open_page() for _ in SESSION_QUESTIONS]
                errors: list[str] = []
                for pg, q in zip(pages, SESSION_QUESTIONS):
                    pg.on("pageerror", lambda exc: errors.append(str(exc)))
                    pg.evaluate(STOPWATCH)  # the page times its own Enter and first answer text
                    pg.get_by_test_id("stChatInputTextArea").fill(q)
                for pg in pages:  # Enter in all, as fast as Playwright can press
                    pg.get_by_test_id("stChatInputTextArea").press("Enter")
                times = []
                for pg, q in zip(pages, SESSION_QUESTIONS):
                    answer = pg.get_by_test_id("stChatMessage").nth(1)
                    answer.get_by_text(CAVEAT_PART).wait_for(timeout=300_000)
                    times.append(pg.evaluate("() => [window.__psyqa.enter, window.__psyqa.answer]"))
                    assert q in pg.get_by_test_id("stChatMessage").nth(0).inner_text()
                    assert pg.get_by_test_id("stException").count() == 0, q
                    assert "Traceback" not in pg.content(), q
                waits = [(a - e) / 1000 for e, a in times]
                wall = (max(a for _, a in times) - min(e for e, _ in times)) / 1000
                print(f"\nLOAD browser_sessions={len(pages)} answered={len(times)} seconds={wall:.1f} "
                      f"answers_per_s={len(times) / wall:.2f} slowest_s={max(waits):.2f} "
                      f"first_s={min(waits):.2f} in_process_answers_per_s={in_process:.1f} "
                      f"errors={len(errors)} cores={os.cpu_count()} loadavg={os.getloadavg()[0]:.2f}")
                assert len(times) == len(SESSION_QUESTIONS)
                assert all(a > e for e, a in times)
                assert not errors, errors
            finally:
                browser.close()
    finally:
        stop_app(proc)


def test_the_app_benchmark_runs_end_to_end(index_settings):
    """A tiny run of scripts/bench_app.py against the session index: every phase reports."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium (make browser)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYQA_")}
    env["PSYQA_DATA_DIR"] = str(index_settings.data_dir.resolve())
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_app.py"), "--runs", "1",
                          "--long", "2", "--sessions", "2", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["floor"]["statuses"].get("answered", 0) >= 20
    assert out["ready_s"] > 0 and out["two_earlier"]["all_ms"] and len(out["long_earlier"]["all_ms"]) == 1
    assert out["load_test"]["sessions"] == 2 and out["load_test"]["slowest_s"] > 0
    for line in ("floor (in-process Assistant.ask", "ready page after `psyqa app` start",
                 "2 earlier answers", "2 sessions at once"):
        assert line in res.stdout, res.stdout


# ----------------------------------------------------------------------------- combined encodes

def _wait_for(cond, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _burst(emb, batches: list[list[str]]):
    """Encode `batches` from one thread each while the model is held busy, so the first thread
    leads a pass of its own texts and all the others queue behind it; returns each thread's
    vectors (or exception)."""
    import threading

    out: list = [None] * len(batches)

    def run(i: int) -> None:
        try:
            out[i] = emb.encode(batches[i])
        except Exception as exc:  # noqa: BLE001 - returned to the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    with emb._lock:  # the model is busy (as with another session's encode)
        for t in threads:
            t.start()
        _wait_for(lambda: emb._leading and len(emb._pending) == len(batches) - 1)
    for t in threads:
        t.join(timeout=120)
    return out


def test_small_encodes_arriving_together_share_one_forward_pass(embedder):
    import numpy as np

    from assistant.embeddings import BundledEmbeddings

    emb = BundledEmbeddings()  # its own queue; the model itself is loaded once per process
    batches = [[q, f"{q} and the risks?"][: 1 + i % 2] for i, q in enumerate(SESSION_QUESTIONS)]
    alone = [emb.encode(b) for b in batches]
    before = emb.batches
    got = _burst(emb, batches)
    assert emb.batches - before == 2  # the first thread's pass, then one for the nine others
    for b, a, g in zip(batches, alone, got):
        assert not isinstance(g, Exception), g
        assert g.shape == (len(b), a.shape[1])
        assert np.allclose(a, g, atol=1e-5)  # each thread its own rows, in its order
    assert not emb._pending and not emb._leading
    # large batches (ingest) keep their own pass with every thread
    big = [f"passage {i}" for i in range(20)]
    assert np.allclose(emb.encode(big), np.vstack([emb.encode([t]) for t in big]), atol=1e-5)


def test_an_error_in_a_combined_pass_reaches_every_waiter_and_the_next_encode_works(embedder, monkeypatch):
    from assistant.embeddings import BundledEmbeddings

    emb = BundledEmbeddings()
    real = emb._forward
    calls = []

    def failing(texts):
        calls.append(len(texts))
        if len(calls) == 2:  # the combined pass of the waiting threads
            raise RuntimeError("model failed")
        return real(texts)

    monkeypatch.setattr(emb, "_forward", failing)
    got = _burst(emb, [["a question"], ["another"], ["a third one"], ["and a fourth"]])
    assert sum(isinstance(g, RuntimeError) for g in got) == 3, got  # the three that waited
    assert not emb._pending and not emb._leading
    assert emb.encode(["works again"]).shape[0] == 1
