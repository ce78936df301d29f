"""Benchmark the chat app in a real headless Chromium: start-up to a ready page, Enter to first answer text.

Usage (an index must exist in PSYQA_DATA_DIR, e.g. after `psyqa ingest`):

    PSYQA_DATA_DIR=/tmp/appdata .venv/bin/python scripts/bench_app.py [--runs 5]

1. ready: from launching `psyqa app` (a fresh process) until the page shows the chat input.
2. first answer: from pressing Enter until the assistant message shows answer text, for the first
   question after start-up and then for `--runs` more questions, each in a new browser session.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from assistant.bench.server import free_port

REPO = Path(__file__).resolve().parents[1]
PSYQA = str(Path(sys.executable).parent / "psyqa")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTIONS = [
    "What did the MAPP1 trial of MDMA for PTSD find?",
    "Is ibogaine dangerous for the heart?",
    "How is esketamine given?",
    "What did psilocybin trials for alcohol use disorder find?",
    "What are the contraindications for psilocybin therapy?",
    "Is psilocybin legal in Oregon?",
]
# The assistant message (2nd chat message) has visible answer text (markdown or an alert).
HAS_ANSWER = """() => {
  const m = document.querySelectorAll('[data-testid="stChatMessage"]');
  if (m.length < 2) return false;
  const t = m[1].querySelector('[data-testid="stMarkdownContainer"]');
  return !!t && t.innerText.trim().length > 10;
}"""



def first_answer_ms(browser, url: str, question: str) -> float:
    page = browser.new_page()
    try:
        page.goto(url)
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for(timeout=300_000)
        box.fill(question)
        t0 = time.perf_counter()
        box.press("Enter")
        page.wait_for_function(HAS_ANSWER, polling="raf", timeout=300_000)
        return (time.perf_counter() - t0) * 1000
    finally:
        page.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="warm questions after the first one")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = os.environ | {"PSYQA_APP_PORT": str(port), "PSYQA_APP_HOST": "127.0.0.1"}
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        t0 = time.perf_counter()
        proc = subprocess.Popen([PSYQA, "app"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            page = browser.new_page()
            while True:
                try:
                    page.goto(url, timeout=5_000)
                    listening = time.perf_counter() - t0
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    if proc.poll() is not None or time.perf_counter() - t0 > 300:
                        raise SystemExit("psyqa app did not start") from None
                    time.sleep(0.2)
            page.get_by_test_id("stChatInputTextArea").wait_for(timeout=300_000)
            ready = time.perf_counter() - t0
            page.close()
            cold = first_answer_ms(browser, url, QUESTIONS[0])
            warm = [first_answer_ms(browser, url, QUESTIONS[1 + i % (len(QUESTIONS) - 1)])
                    for i in range(args.runs)]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        browser.close()
    print(f"ready page after `psyqa app` start: {ready:.1f} s (goal 15 s); "
          f"server answered HTTP after {listening:.1f} s")
    print(f"Enter -> first answer text, first question after start: {cold:.0f} ms")
    print(f"Enter -> first answer text, next {len(warm)} questions: median {statistics.median(warm):.0f} ms, "
          f"max {max(warm):.0f} ms (goal 1000 ms); all: {', '.join(f'{w:.0f}' for w in warm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
