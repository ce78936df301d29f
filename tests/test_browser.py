"""The real Streamlit server driven by a real headless Chromium (Playwright, Debian's chromium).

One server serves the session's prebuilt index of corpus/; a second starts on an empty data dir
with the hostile corpus, so the first page load indexes it (progress shown) and the hostile markup
is checked in the live DOM: no injected <script>/<img>, no javascript: link, no dialog.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_app import HOSTILE, REPO, prebuilt_index

from assistant.bench.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STREAMLIT = str(Path(sys.executable).parent / "streamlit")
ARTIFACTS = REPO / "artifacts"
CAVEAT_PART = "not medical advice, and it does not replace clinical judgement"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make browser) to run the browser "
                "tests", allow_module_level=True)



def start_app(env_extra: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` headless on a free loopback port; returns once /_stcore/health is up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYQA_")} | env_extra
    log = log_path.open("w")
    proc = subprocess.Popen(
        [STREAMLIT, "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_app(proc)
    raise RuntimeError(f"streamlit did not come up in 120 s: {log_path.read_text()[-2000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    index = prebuilt_index(tmp_path_factory, embedder)
    proc, url = start_app({"PSYQA_DATA_DIR": str(index)}, tmp_path_factory.mktemp("st") / "app.log")
    try:
        yield url
    finally:
        stop_app(proc)


def ask(page, question: str, timeout_ms: int = 300_000):
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=timeout_ms)
    box.fill(question)
    box.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    answer.get_by_text(CAVEAT_PART).wait_for(timeout=timeout_ms)
    return answer


def test_question_answer_sources_in_chromium(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server, timeout=120_000)
    page.get_by_text("Information from a curated corpus").wait_for(timeout=120_000)
    answer = ask(page, "What did the MAPP1 trial of MDMA for PTSD find?")
    text = answer.inner_text()
    assert "[1]" in text and "MAPP1" in text
    assert "Traceback" not in page.content()
    expander = answer.get_by_test_id("stExpander").filter(has_text="[1]").first
    expander.locator("summary").click()
    passage = expander.get_by_test_id("stMarkdownContainer").filter(has=page.locator("strong")).first
    passage.wait_for(timeout=30_000)
    strong = passage.locator("strong").first.inner_text()
    assert "MAPP1" in strong or "MDMA" in strong, strong  # the supporting sentence, highlighted
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-answer.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_hostile_corpus_first_start_in_chromium(tmp_path, browser):
    proc, url = start_app({"PSYQA_DATA_DIR": str(tmp_path / "data"), "PSYQA_CORPUS_DIR": str(HOSTILE)},
                          tmp_path / "app.log")
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url, timeout=120_000)
        page.get_by_text("Indexed 1 documents").wait_for(timeout=300_000)  # first-start indexing
        answer = ask(page, "What did the Zorblax psilocybin trial find?")
        answer.get_by_test_id("stExpander").filter(has_text="[1]").first.locator("summary").click()
        answer.get_by_text("not a web link").wait_for(timeout=30_000)
        text = answer.inner_text()
        assert "<script>alert('xss')</script>" in text  # shown as the characters it is
        assert "<img src=x onerror=alert('img')>" in text
        assert "javascript:alert(document.cookie)" in text
        assert answer.locator("script").count() == 0
        assert page.locator("img[src='x']").count() == 0
        assert page.locator("a[href^='javascript' i]").count() == 0
        assert answer.locator("a").count() == 0  # the only URL is not http(s): no link at all
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-hostile.png"), full_page=True)
        assert not dialogs, dialogs
        page.close()
    finally:
        stop_app(proc)
