"""Load (issue 7): many threads through ONE Assistant, and 10 browser sessions on the real app.

1. 8 threads x 50 questions through one `Assistant.ask` (a list of 25 distinct questions mixing
   answered, no_evidence, declined and crisis, each thread starting at another offset) return
   exactly the answers of a sequential run: text, status and cited chunk ids; no errors.
2. The real Streamlit server holds 10 concurrent browser sessions (10 Playwright contexts in one
   headless Chromium), each typing a different question at once: every one is answered (the
   caveat appears in each page), with no exception element and no traceback.

Both print their figures (`-s` shows them); BENCHMARKS.md `## Load` records a run.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures_assistant import ANSWERABLE

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


def test_streamlit_server_holds_ten_browser_sessions(tmp_path_factory, index_settings):
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

                pages = [open_page() for _ in SESSION_QUESTIONS]
                errors: list[str] = []
                for pg in pages:
                    pg.on("pageerror", lambda exc: errors.append(str(exc)))
                t0 = time.perf_counter()
                for pg, q in zip(pages, SESSION_QUESTIONS):  # all typed within milliseconds
                    box = pg.get_by_test_id("stChatInputTextArea")
                    box.fill(q)
                    box.press("Enter")
                done = []
                for pg, q in zip(pages, SESSION_QUESTIONS):
                    answer = pg.get_by_test_id("stChatMessage").nth(1)
                    answer.get_by_text(CAVEAT_PART).wait_for(timeout=300_000)
                    done.append(time.perf_counter() - t0)
                    assert q in pg.get_by_test_id("stChatMessage").nth(0).inner_text()
                    assert pg.get_by_test_id("stException").count() == 0, q
                    assert "Traceback" not in pg.content(), q
                elapsed = max(done)
                print(f"\nLOAD browser_sessions={len(pages)} answered={len(done)} seconds={elapsed:.1f} "
                      f"answers_per_s={len(done) / elapsed:.2f} slowest_s={elapsed:.1f} "
                      f"first_s={min(done):.1f} errors={len(errors)} cores={os.cpu_count()}")
                assert len(done) == len(SESSION_QUESTIONS)
                assert not errors, errors
            finally:
                browser.close()
    finally:
        stop_app(proc)
