"""Benchmark the chat app in a real headless Chromium against `Assistant.ask` in the same run.

Usage (an index must exist in PSYQA_DATA_DIR, e.g. after `psyqa ingest`):

    PSYQA_DATA_DIR=/tmp/appdata .venv/bin/python scripts/bench_app.py [--runs 5] [--long 20] [--sessions 10]

`--repo DIR` benchmarks the app of another checkout (e.g. a clone at an older commit, for a
before/after comparison) with the same index, browser and questions: its `psyqa app` runs with
DIR first on PYTHONPATH.

1. floor: the same questions through one in-process `Assistant.ask` (warm): the median per
   question, and answers/s when `--sessions` threads ask at once. Measured first, before the app
   starts, so the two never share the CPU.
2. ready: from launching `psyqa app` (a fresh process) until the page shows the chat input.
3. first answer: from pressing Enter until the newest assistant message shows answer text:
   the first question after start-up; then `--runs` sessions that each ask 2 questions first
   ("2 earlier answers"); then one session that asks `--long` questions first and times `--runs`
   more ("20 earlier answers").
4. load: `--sessions` browser sessions (one context each) with a question typed in press Enter at
   the same instant (`--enter press`: one after the other, as Playwright can); each page times its
   own Enter and first answer text; the slowest, answers/s, and the CPU seconds the app, the
   browser and this script used meanwhile (`--spy FILE`: a py-spy profile of the app as well).

Every phase prints the load average, because on a shared 2-core machine absolute times are noisy;
the ratio app/ask is the figure to compare across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from assistant.bench.server import free_port

REPO = Path(__file__).resolve().parents[1]
PSYQA = str(Path(sys.executable).parent / "psyqa")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Answered from the starter corpus (the floor phase prints how many were).
QUESTIONS = [
    "What did the MAPP1 trial of MDMA for PTSD find?",
    "Is ibogaine dangerous for the heart?",
    "How is esketamine given?",
    "What did psilocybin trials for alcohol use disorder find?",
    "What are the contraindications for psilocybin therapy?",
    "Is psilocybin legal in Oregon?",
    "What doses of MDMA were given in MAPP1?",
    "What psilocybin dose was used in Goodwin 2022?",
    "Is Spravato approved for depression?",
    "What is the legal status of psilocybin in Australia?",
    "How effective was psilocybin for smoking cessation?",
    "What is functional unblinding in psychedelic trials?",
    "What did the Stanford ibogaine study in veterans with TBI find?",
    "What did the MAPP2 trial find?",
    "Why did the FDA decline to approve MDMA-assisted therapy?",
    "What are the risks of ketamine for depression?",
    "Is ayahuasca legal in Brazil?",
    "What is 5-MeO-DMT?",
    "What did the COMP360 trial find?",
    "Which drugs interact dangerously with MDMA?",
    "How long does a psilocybin session last?",
    "What is the risk of QT prolongation with ibogaine?",
    "What are challenging experiences on psychedelics?",
    "Is LSD being studied for anxiety?",
    "What did the Bogenschutz 2022 trial find for alcohol use disorder?",
]
TIMEOUT = int(os.environ.get("BENCH_TIMEOUT_MS", "300000"))
# The newest assistant message (the n-th chat message) shows answer text.
HAS_ANSWER = """(n) => {
  const m = document.querySelectorAll('[data-testid="stChatMessage"]');
  if (m.length < n) return false;
  const t = m[n - 1].querySelector('[data-testid="stMarkdownContainer"]');
  return !!t && t.innerText.trim().length > 10;
}"""
# ...its caveat is drawn (the answer is complete) and the app has finished its run, as a person
# reading the answer would find it before typing the next question.
COMPLETE = """(n) => {
  const m = document.querySelectorAll('[data-testid="stChatMessage"]');
  const app = document.querySelector('[data-test-script-state]');
  return m.length >= n && m[n - 1].innerText.includes('not medical advice')
    && (!app || app.getAttribute('data-test-script-state') !== 'running');
}"""


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- CPU time, from /proc

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def cpu_by_tree(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its live descendants (a descendant is
    counted under the nearest named root)."""
    stats = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if name.isdigit() and (st := _stat(int(name))) is not None:
            stats[int(name)] = st
    owner = {pid: label for label, pid in roots.items()}
    out = dict.fromkeys(roots, 0.0)
    for pid, (_, cpu) in stats.items():
        p, seen = pid, 0
        while p not in owner and p in stats and seen < 64:
            p, seen = stats[p][0], seen + 1
        if p in owner:
            out[owner[p]] += cpu
    return out


def chromium_by_type(root: int | None) -> dict[str, float]:
    """CPU seconds so far of the Chromium under `root`, by process type (browser, renderer,
    gpu-process, utility), from each process's --type= argument."""
    out: dict[str, float] = {}
    if root is None:
        return out
    stats = {int(n): st for n in os.listdir("/proc") if n.isdigit() and (st := _stat(int(n)))}
    for pid, (_, cpu) in stats.items():
        p, seen = pid, 0
        while p != root and p in stats and seen < 64:
            p, seen = stats[p][0], seen + 1
        if p != root:
            continue
        try:
            with open(f"/proc/{pid}/cmdline") as f:
                args = f.read().replace("\0", " ").split()
        except OSError:
            continue
        kind = next((a.split("=", 1)[1] for a in args if a.startswith("--type=")), "browser")
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def browser_root() -> int | None:
    """The pid of the Chromium this process launched (through Playwright's driver)."""
    def comm(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return ""

    mine = {os.getpid()}
    stats = {int(n): st for n in os.listdir("/proc") if n.isdigit() and (st := _stat(int(n)))}
    for _ in range(4):  # the driver's children's children at most
        mine |= {pid for pid, (ppid, _) in stats.items() if ppid in mine}
    roots = [pid for pid in mine if comm(pid).startswith("chrom")
             and not comm(stats[pid][0]).startswith("chrom")]
    return min(roots) if roots else None


# ----------------------------------------------------------------------------- in-process floor

def floor(sessions: int) -> dict:
    from assistant.assistant import Assistant
    from assistant.settings import load_settings

    qa = Assistant.from_settings(load_settings())
    qa.ask(QUESTIONS[0])  # model and BM25 load
    per_q, statuses = [], {}
    for q in QUESTIONS:
        t0 = time.perf_counter()
        ans = qa.ask(q)
        per_q.append((time.perf_counter() - t0) * 1000)
        statuses[ans.status] = statuses.get(ans.status, 0) + 1
    for q in QUESTIONS:  # a second round: the median of warm answers
        t0 = time.perf_counter()
        qa.ask(q)
        per_q.append((time.perf_counter() - t0) * 1000)
    # `sessions` threads asking at once, 5 rounds: the in-process counterpart of the load phase.
    rounds, n_answers = 5, 0
    t0 = time.perf_counter()
    for r in range(rounds):
        threads = [threading.Thread(target=qa.ask, args=(QUESTIONS[(r * sessions + i) % len(QUESTIONS)],))
                   for i in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        n_answers += sessions
    conc_s = time.perf_counter() - t0
    return {"ask_median_ms": median(per_q), "ask_max_ms": max(per_q), "statuses": statuses,
            "threads": sessions, "threaded_answers_per_s": n_answers / conc_s,
            "threaded_round_s": conc_s / rounds, "load": load()}


# ----------------------------------------------------------------------------- the browser

def ask_in(page, question: str, n_before: int, complete: bool = True) -> float:
    """Type `question` into a page whose chat already holds `n_before` answers; return ms from
    Enter to the new answer's first text (then wait until it is complete)."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=TIMEOUT)
    box.fill(question)
    n = 2 * (n_before + 1)
    t0 = time.perf_counter()
    box.press("Enter")
    page.wait_for_function(HAS_ANSWER, arg=n, polling="raf", timeout=TIMEOUT)
    ms = (time.perf_counter() - t0) * 1000
    if complete:
        page.wait_for_function(COMPLETE, arg=n, polling=50, timeout=TIMEOUT)
    return ms


def open_page(browser, url: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(url, timeout=TIMEOUT)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=TIMEOUT)
    return page


def session_with(browser, url: str, earlier: int, runs: int, offset: int) -> list[float]:
    """One session: `earlier` untimed answers, then `runs` timed ones."""
    page = open_page(browser, url)
    try:
        for i in range(earlier):
            ask_in(page, QUESTIONS[(offset + i) % len(QUESTIONS)], i)
        return [ask_in(page, QUESTIONS[(offset + earlier + i) % len(QUESTIONS)], earlier + i)
                for i in range(runs)]
    finally:
        page.context.close()


# In each page: the wall-clock time of Enter in the chat input and of the first answer text, taken by
# the page itself, so the figures do not depend on the order in which Playwright visits the pages.
# The observer starts at Enter and stops at the answer, and reads textContent (no layout), so the
# stopwatch adds no work to the page it times.
# `window.__psyqa.done` resolves then, so the benchmark waits without polling the page.
STOPWATCH = """() => {
  let resolve;
  window.__psyqa = {done: new Promise(r => { resolve = r; })};
  const seen = () => {
    const m = document.querySelectorAll('[data-testid="stChatMessage"]');
    const t = m.length >= 2 && m[1].querySelector('[data-testid="stMarkdownContainer"]');
    if (t && t.textContent.trim().length > 10) {
      window.__psyqa.answer = Date.now();
      observer.disconnect();
      resolve([window.__psyqa.enter, window.__psyqa.answer]);
    }
  };
  const observer = new MutationObserver(seen);
  document.addEventListener('keydown', e => {
    if (e.key !== 'Enter' || window.__psyqa.enter) return;
    window.__psyqa.enter = Date.now();
    observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  }, true);
}"""


# Enter in the chat input at the wall-clock time `at` (ms), dispatched by the page itself.
ENTER_AT = """(at) => setTimeout(() => document.querySelector('[data-testid="stChatInputTextArea"]')
  .dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', code: 'Enter', keyCode: 13, which: 13,
                                               bubbles: true, cancelable: true})), at - Date.now())"""


def concurrent(browser, url: str, sessions: int, roots: dict[str, int] | None = None,
               together: bool = True) -> dict:
    """`sessions` pages, each with its question typed in, get Enter at the same instant (a timer
    in each page; with `together` False, one after the other as fast as Playwright can press);
    each page times its own Enter and first answer text. With `roots`
    ({"app": pid, "browser": pid, ...}), also the CPU seconds each process tree used from just
    before the first Enter until every page showed its answer."""
    pages = [open_page(browser, url) for _ in range(sessions)]
    try:
        for i, pg in enumerate(pages):
            pg.evaluate(STOPWATCH)
            pg.get_by_test_id("stChatInputTextArea").fill(QUESTIONS[i % len(QUESTIONS)])
        time.sleep(1.0)  # let the pages settle after typing
        cpu0 = cpu_by_tree(roots or {})
        kinds0 = chromium_by_type((roots or {}).get("browser"))
        if together:  # each page presses Enter itself at one agreed instant, 1 s from now
            at = int(time.time() * 1000) + 1000
            for pg in pages:
                pg.evaluate(ENTER_AT, at)
        else:  # Enter in one page after the other, as fast as Playwright can press
            for pg in pages:
                pg.get_by_test_id("stChatInputTextArea").press("Enter")
        times = []
        for pg in pages:
            times.append(pg.evaluate("""(ms) => Promise.race([window.__psyqa.done, new Promise(
                (_, no) => setTimeout(() => no(new Error('no answer text')), ms))])""", TIMEOUT))
        cpu1 = cpu_by_tree(roots or {})
        kinds1 = chromium_by_type((roots or {}).get("browser"))
        waits = [(a - e) / 1000 for e, a in times]
        wall = (max(a for _, a in times) - min(e for e, _ in times)) / 1000
        return {"sessions": sessions, "first_s": min(waits), "slowest_s": max(waits),
                "median_s": median(waits), "spread_of_enters_s": (max(e for e, _ in times) - min(e for e, _ in times)) / 1000,
                "wall_s": wall, "answers_per_s": sessions / wall, "load": load(),
                "cpu_s": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0},
                "browser_cpu_s": {k: round(v - kinds0.get(k, 0.0), 2) for k, v in kinds1.items()
                                  if v - kinds0.get(k, 0.0) >= 0.01}}
    finally:
        for pg in pages:
            pg.context.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed questions per scenario (default 5)")
    ap.add_argument("--long", type=int, default=20, help="earlier answers in the long chat (default 20)")
    ap.add_argument("--sessions", type=int, default=10, help="concurrent browser sessions (default 10)")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose app to run (default: this one)")
    ap.add_argument("--json", action="store_true", help="also print one JSON object")
    ap.add_argument("--enter", choices=("together", "press"), default="together",
                    help="load phase: Enter in every page at one instant (default), or pressed by "
                    "Playwright in one page after the other (spread over 0.4-2.5 s)")
    ap.add_argument("--spy", type=Path, help="record the app with py-spy during the load phase "
                    "into this file (collapsed stacks; py-spy must be installed)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out: dict = {"cores": os.cpu_count(), "load_start": load(), "repo": str(args.repo)}
    out["floor"] = fl = floor(args.sessions)
    print(f"floor (in-process Assistant.ask, load {fl['load']}): median {fl['ask_median_ms']:.0f} ms, "
          f"max {fl['ask_max_ms']:.0f} ms over {2 * len(QUESTIONS)} warm answers {fl['statuses']}; "
          f"{fl['threads']} threads at once: {fl['threaded_answers_per_s']:.1f} answers/s", flush=True)

    port = free_port()
    env = os.environ | {"PSYQA_APP_PORT": str(port), "PSYQA_APP_HOST": "127.0.0.1"}
    repo = args.repo.resolve()
    if repo != REPO:
        env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        t0 = time.perf_counter()
        proc = subprocess.Popen([PSYQA, "app"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
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
                    time.sleep(0.1)
            page.get_by_test_id("stChatInputTextArea").wait_for(timeout=TIMEOUT)
            out["ready_s"], out["listening_s"] = time.perf_counter() - t0, listening
            out["load_ready"] = load()
            out["first_ms"] = ask_in(page, QUESTIONS[0], 0)
            page.close()
            print(f"ready page after `psyqa app` start: {out['ready_s']:.1f} s (goal 8 s; HTTP after "
                  f"{listening:.1f} s; load {out['load_ready']}); first question after start: "
                  f"{out['first_ms']:.0f} ms", flush=True)

            for _ in range(args.runs and 1):  # --runs 0: the load phase only
                short = [session_with(browser, url, 2, 1, 3 * r)[0] for r in range(args.runs)]
                out["two_earlier"] = {"median_ms": median(short), "all_ms": short, "load": load()}
                print(f"Enter -> first answer text, 2 earlier answers: median {median(short):.0f} ms "
                      f"(goal 600 ms; ratio app/ask {median(short) / fl['ask_median_ms']:.1f}); "
                      f"all: {', '.join(f'{x:.0f}' for x in short)}; load {load()}", flush=True)

                long = session_with(browser, url, args.long, args.runs, 1)
                out["long_earlier"] = {"earlier": args.long, "median_ms": median(long), "all_ms": long,
                                       "load": load()}
                print(f"Enter -> first answer text, {args.long} earlier answers: median {median(long):.0f} ms "
                      f"(goal 1000 ms; ratio app/ask {median(long) / fl['ask_median_ms']:.1f}); "
                      f"all: {', '.join(f'{x:.0f}' for x in long)}; load {load()}", flush=True)

            if args.sessions:
                roots = {"app": proc.pid, "bench": os.getpid()}
                if (chromium := browser_root()) is not None:
                    roots["browser"] = chromium
                spy = None
                if args.spy:  # a sampling profile of the app during the load phase (py-spy)
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                            "--pid", str(proc.pid), "--subprocesses", "--nonblocking",
                                            "--threads", "--format", "raw", "-o", str(args.spy)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1.0)
                out["load_test"] = lt = concurrent(browser, url, args.sessions, roots,
                                                   together=args.enter == "together")
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
                print(f"{lt['sessions']} sessions at once (Enter pressed in all within "
                      f"{lt['spread_of_enters_s']:.2f} s): Enter -> answer text first {lt['first_s']:.2f} s, "
                      f"median {lt['median_s']:.2f} s, slowest {lt['slowest_s']:.2f} s (goal 2.5 s); "
                      f"{lt['answers_per_s']:.2f} answers/s through the app (all answered "
                      f"{lt['wall_s']:.2f} s after the first Enter) vs {fl['threaded_answers_per_s']:.1f}/s "
                      f"in-process; load {lt['load']}; CPU s in that time: "
                      f"{', '.join(f'{k} {v:.1f}' for k, v in lt['cpu_s'].items())} (browser: "
                      f"{', '.join(f'{k} {v:.1f}' for k, v in lt['browser_cpu_s'].items())})", flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        browser.close()
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
