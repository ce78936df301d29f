"""The real Streamlit server driven by a real headless Chromium (Playwright, Debian's chromium).

One server serves the session's prebuilt index of corpus/; a second starts on an empty data dir
with the hostile corpus, so the first page load indexes it (progress shown) and the hostile markup
is checked in the live DOM: no injected <script>/<img>, no javascript: link, no dialog.
"""

from __future__ import annotations

import json
import os
import re
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


# ------------------------------------------------------------------ the issue-16 scenarios

def messages_in(page):
    return page.get_by_test_id("stChatMessage")


def ask_next(page, question: str, timeout_ms: int = 300_000):
    """Ask in a chat that may already hold answers; returns the new assistant message once its
    caveat is drawn and the app has finished its run."""
    before = messages_in(page).count()
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=timeout_ms)
    box.fill(question)
    box.press("Enter")
    answer = messages_in(page).nth(before + 1)
    answer.get_by_text(CAVEAT_PART).wait_for(timeout=timeout_ms)
    page.wait_for_function("() => document.querySelector('[data-test-script-state]')"
                           ".getAttribute('data-test-script-state') !== 'running'", timeout=timeout_ms)
    return answer


def choose(page, label: str, option, chip: str) -> None:
    """Pick `option` ("LSD (6)") in the sidebar multiselect `label`; returns once its chip
    (`chip`, "Substance: LSD") is drawn above the chat input."""
    from playwright.sync_api import expect

    box = page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").filter(has_text=label)
    box.click()
    page.get_by_role("option", name=option).click()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("stBottom").get_by_role("button", name=chip)).to_have_count(1, timeout=60_000)


def fresh_page(browser, server, width=1280, height=1000):
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server, timeout=120_000)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
    return page, errors


def test_a_filter_that_excludes_everything_says_so_and_asks_again_without(server, browser):
    page, errors = fresh_page(browser, server)
    choose(page, "Substance", re.compile(r"^LSD \(\d+\)$"), "Substance: LSD")
    choose(page, "Condition", re.compile(r"^tobacco use disorder \(\d+\)$"), "Condition: tobacco use disorder")
    answer = ask_next(page, "Is ibogaine dangerous for the heart?")
    text = answer.inner_text()
    assert "do not cover" in text
    assert ("No passage matches Substance: LSD; Condition: tobacco use disorder; without these "
            "filters the sources do cover this.") in text
    answer.get_by_role("button", name="Ask without filters").click()
    second = messages_in(page).nth(3)
    second.get_by_text(CAVEAT_PART).wait_for(timeout=120_000)
    assert "[1]" in second.inner_text() and "QT" in second.inner_text()
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stBottom").get_by_role("button", name=re.compile("Substance:"))).to_have_count(0)
    assert not errors, errors
    page.context.close()


def test_a_filter_outranks_the_topic_of_a_follow_up(server, browser):
    page, errors = fresh_page(browser, server)
    ask_next(page, "Does psilocybin help depression?")
    choose(page, "Substance", re.compile(r"^ketamine \(\d+\)$"), "Substance: ketamine")
    answer = ask_next(page, "What are the main risks?")
    caption = answer.get_by_text("Interpreted as").inner_text()
    assert "from the filters: ketamine" in caption and "psilocybin" not in caption, caption
    sources = " ".join(answer.get_by_test_id("stExpander").all_inner_texts())
    assert "psilocybin" not in sources.lower().split("—")[0], sources  # no psilocybin document first
    assert not errors, errors
    page.context.close()


def test_a_follow_up_carries_the_trial_it_names(server, browser):
    page, errors = fresh_page(browser, server)
    ask_next(page, "What did the MAPP2 trial find?")
    answer = ask_next(page, "and the placebo group?")
    caption = answer.get_by_text("Interpreted as").inner_text()
    assert "(about MAPP2 and MDMA for PTSD)" in caption, caption
    assert "carried from earlier questions: MAPP2, MDMA, PTSD" in caption, caption
    first = answer.get_by_test_id("stMarkdownContainer").first.inner_text()
    assert "MAPP2" in first.split("\n")[0], first  # the MAPP2 placebo figures lead, not MAPP1's
    assert not errors, errors
    page.context.close()


def within(box, width: float, height: float) -> bool:
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1 \
        and box["y"] >= 0 and box["y"] + box["height"] <= height + 1


def test_landing_at_390_and_1280_px(server, browser, tmp_path):
    for width, height in ((390, 844), (1280, 900)):
        page, errors = fresh_page(browser, server, width, height)
        page.get_by_role("button", name=EXAMPLE).wait_for()
        shot = tmp_path / f"landing-{width}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000  # a real picture, not a blank page
        main = page.get_by_test_id("stMain")
        # the examples and the privacy line are in the main column, on screen, at both widths
        for name in ("What did the MAPP1 trial", "Is ibogaine dangerous", "How is esketamine"):
            assert within(main.get_by_role("button", name=re.compile(name)).bounding_box(), width, height), name
        privacy = main.get_by_text("Do not enter patient-identifying information")
        assert within(privacy.bounding_box(), width, height)
        box = page.get_by_test_id("stChatInputTextArea")
        assert within(box.bounding_box(), width, height)
        # the placeholder fits the input (no cut-off text)
        assert page.evaluate("""() => { const t = document.querySelector('[data-testid="stChatInputTextArea"]');
            return t.scrollWidth <= t.clientWidth + 1; }""")
        collapsed = page.get_by_test_id("stSidebar").get_attribute("data-collapsed")
        assert collapsed == ("true" if width == 390 else "false")
        if width == 1280:  # the sidebar's copies of the examples wait until the chat has begun
            side = page.get_by_test_id("stSidebar").get_by_role("button", name="Is psilocybin legal in Oregon?")
            assert not side.is_visible()
        # no "Deploy" in the toolbar
        assert page.get_by_role("button", name="Deploy").count() == 0
        assert not errors, errors
        page.context.close()


EXAMPLE = "What did the MAPP1 trial of MDMA for PTSD find?"


def test_at_390_px_the_sidebar_closes_after_an_example(server, browser, tmp_path):
    page, errors = fresh_page(browser, server, 390, 844)
    page.get_by_test_id("stMain").get_by_role("button", name=EXAMPLE).click()
    messages_in(page).nth(1).get_by_text(CAVEAT_PART).wait_for(timeout=300_000)
    page.get_by_test_id("stExpandSidebarButton").click()
    sidebar = page.get_by_test_id("stSidebar")
    page.wait_for_function("() => document.querySelector('[data-testid=\"stSidebar\"]')"
                           ".getAttribute('data-collapsed') === 'false'")
    sidebar.get_by_role("button", name="Is psilocybin legal in Oregon?").click()
    messages_in(page).nth(3).get_by_text(CAVEAT_PART).wait_for(timeout=300_000)
    page.wait_for_function("() => document.querySelector('[data-testid=\"stSidebar\"]')"
                           ".getAttribute('data-collapsed') === 'true'", timeout=30_000)
    page.wait_for_timeout(800)  # the slide-out animation
    shot = tmp_path / "example-390.png"
    page.screenshot(path=str(shot))
    bar = sidebar.bounding_box()
    assert bar is None or bar["x"] + bar["width"] <= 1, bar  # nothing covers the answer
    assert within(messages_in(page).nth(3).get_by_text(CAVEAT_PART).bounding_box(), 390, 844) or \
        messages_in(page).nth(3).is_visible()
    assert not errors, errors
    page.context.close()


def test_the_downloaded_conversation_and_a_reload_that_keeps_it(server, browser, tmp_path):
    page, errors = fresh_page(browser, server)
    ask_next(page, "What did the MAPP1 trial of MDMA for PTSD find?")
    ask_next(page, "Is ibogaine dangerous for the heart?")
    assert "c=" in page.url
    sidebar = page.get_by_test_id("stSidebar")
    with page.expect_download() as dl:
        sidebar.get_by_role("button", name="Markdown").click()
    md = (tmp_path / "conversation.md")
    dl.value.save_as(str(md))
    text = md.read_text()
    assert text.startswith("# psyqa conversation\n")
    assert re.search(r"Exported \d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC · corpus: \d+ documents, version \w+", text)
    assert "What did the MAPP1 trial of MDMA for PTSD find?" in text  # not "find\?"
    assert "\\?" not in text and "\\-" not in text and "\\:" not in text and "\\," not in text
    assert text.count("#### Sources") == 2 and text.count("**Caveat:**") == 2
    assert "\n> " in text and "**" in text  # the passages, their supporting sentences in bold
    assert "filters: none" in text
    with page.expect_download() as dl:
        sidebar.get_by_role("button", name="JSON").click()
    data = json.loads(open(dl.value.path()).read())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"] * 2
    assert data["messages"][1]["answer"]["citations"][0]["passage"]
    # a reload keeps the chat (saved under the id in the URL)
    url = page.url
    page.reload()
    messages_in(page).nth(3).get_by_text(CAVEAT_PART).wait_for(timeout=120_000)
    assert page.url == url and messages_in(page).count() == 4
    assert "Is ibogaine dangerous for the heart?" in messages_in(page).nth(2).inner_text()
    # and deleting it leaves an empty chat and a URL without the id
    sidebar.get_by_role("button", name="Delete this conversation").click()
    page.get_by_test_id("stMain").get_by_role("button", name=EXAMPLE).wait_for(timeout=60_000)
    assert messages_in(page).count() == 0 and "c=" not in page.url
    assert not errors, errors
    page.context.close()


def test_feedback_buttons_fit_their_labels(server, browser):
    page, errors = fresh_page(browser, server)
    answer = ask_next(page, "Is ibogaine dangerous for the heart?")
    answer.get_by_text("Rate this answer").click()
    for name in ("Helpful", "Not helpful"):
        button = answer.get_by_role("button", name=name, exact=True)
        button.wait_for()
        fits = button.evaluate("b => [...b.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth + 1)"
                               " && !b.innerText.includes('…')")
        assert fits, name
    assert not errors, errors
    page.context.close()


def test_a_broken_file_after_ingest_is_named_in_the_sidebar_and_still_served(tmp_path, browser, embedder):
    from assistant.settings import Settings
    from ingest.pipeline import run

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("lsd.md", "ibogaine-cardiac-risk-and-deaths.md"):
        (corpus / name).write_text((REPO / "corpus" / name).read_text())
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus)
    assert not run(None, settings, embedder=embedder).failed
    lsd = corpus / "lsd.md"
    lsd.write_text(lsd.read_text().replace("title:", "title: [broken", 1))
    assert [f["path"] for f in run(None, settings, embedder=embedder).failed] == ["lsd.md"]
    proc, url = start_app({"PSYQA_DATA_DIR": str(settings.data_dir), "PSYQA_CORPUS_DIR": str(corpus)},
                          tmp_path / "app.log")
    try:
        page, errors = fresh_page(browser, url)
        sidebar = page.get_by_test_id("stSidebar")
        box = sidebar.get_by_test_id("stExpander").filter(has_text="1 file failed")
        box.wait_for(timeout=60_000)
        text = box.inner_text()
        assert "lsd.md: its previous version is still being served" in text, text
        assert "malformed YAML" in text and "Fix:" in text, text
        assert "changed since the last indexing" not in sidebar.inner_text()  # ingest again won't help
        page.screenshot(path=str(tmp_path / "broken-file.png"), full_page=True)
        answer = ask_next(page, "Is LSD being studied for anxiety?")
        assert "[1]" in answer.inner_text()
        assert answer.get_by_test_id("stExpander").filter(has_text="LSD").count() >= 1  # its old version
        assert not errors, errors
        page.context.close()
    finally:
        stop_app(proc)
