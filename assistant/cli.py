"""`psyqa`: the command line. Presents; the work happens in ingest/ and assistant/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant import bench, feedback, saved
from assistant.bench.gold import DEFAULT_GOLD, DEFAULT_QUALITY, DEFAULT_SAFETY, KINDS
from assistant.errors import IndexDamagedError, PsyqaError, StoreUnavailableError
from assistant.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="psyqa", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("ingest", help="index corpus files (incremental)")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the corpus folder)")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the index from scratch (also when it is damaged: the damaged "
                        "store is moved aside); the previous index serves until the new one is complete")
    p.add_argument("--heal", action="store_true",
                   help="sync as usual, but rebuild instead of stopping when the index is damaged "
                        "(what 'make run' does)")
    p.add_argument("--check", action="store_true", help="validate files without writing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("clean", help="remove the derived index data (never feedback or other user data)")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("status", help="what is indexed, and drift from the corpus folders it was built from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("config", help="print the effective settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("ask", help="ask a question; prints the answer, sources and caveat")
    p.add_argument("question", nargs="?", help="the question (omit with --jsonl)")
    p.add_argument("--json", action="store_true", help="print the Answer as JSON")
    p.add_argument("--jsonl", action="store_true",
                   help='read {"question", "history"} per line from stdin, write one Answer per line')
    p.add_argument("--substance", action="append", default=[], help="filter (repeatable)")
    p.add_argument("--condition", action="append", default=[], help="filter (repeatable)")
    p.add_argument("--source-type", action="append", default=[], help="filter (repeatable)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("app", help="start the chat app (Streamlit) on the configured address")
    p.set_defaults(func=cmd_app)

    _add_eval(sub)
    bench.register(sub)
    feedback.register(sub)
    saved.register(sub)
    args = parser.parse_args(argv)
    _log_to_stderr()
    settings = None
    try:
        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except PsyqaError as exc:
        print(f"psyqa: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("psyqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `psyqa config | head`: the reader left, that is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the edge: a full disk is an operator problem, not a crash
        assert settings is not None  # load_settings raises only PsyqaError
        if _disk_full(exc, settings):
            print(f"psyqa: the disk is full ({_one_line(exc)}). Nothing was committed: the previous "
                  f"index is intact. Free space under {settings.data_dir} and run the command again.",
                  file=sys.stderr)
            return 3
        from assistant import store

        err = store.explain(exc, settings)  # a damaged store: one line naming the path and the fix
        if err is None:
            raise
        print(f"psyqa: {err}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _log_to_stderr() -> None:
    """psyqa's own log messages (not the libraries') as 'psyqa: ...' lines on stderr."""
    import logging

    log = logging.getLogger("psyqa")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("psyqa: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        log.propagate = False


def _disk_full(exc: BaseException, settings: Settings) -> bool:
    from chromadb.errors import InternalError

    from assistant.store import is_disk_full

    if is_disk_full(exc):
        return True
    while exc is not None:  # Chroma reports a full disk as a failed compaction
        if isinstance(exc, InternalError) and _free_bytes(settings) < 16 * 1024 * 1024:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _free_bytes(settings: Settings) -> int:
    import shutil

    try:
        return shutil.disk_usage(settings.data_dir).free
    except OSError:
        return 1 << 62


def cmd_ingest(args, settings: Settings) -> int:
    from ingest.pipeline import progress_bar, run

    progress = None if args.json else progress_bar()
    try:
        report = run(args.paths or None, settings, rebuild=args.rebuild, check=args.check,
                     heal=args.heal, progress=progress)
    except IndexDamagedError as exc:
        if args.rebuild or args.heal or args.check:
            raise
        raise IndexDamagedError(f"{exc} Nothing was changed.") from None
    except Exception as exc:  # noqa: BLE001 - the server went away mid-run: say what that means
        from assistant import store

        err = store.explain(exc, settings)
        if err is exc or not isinstance(err, StoreUnavailableError):
            raise
        raise StoreUnavailableError(
            f"{err} Nothing this run wrote is visible until its commit; the next 'psyqa ingest' "
            "finishes it and repairs what it half-wrote.") from None
    if report.took_over:
        print(f"psyqa: took over from an ingest that stopped without finishing ({report.took_over})",
              file=sys.stderr)
    if report.damaged:
        kept = f"; the damaged store is kept at {report.kept}" if report.kept else ""
        print(f"psyqa: rebuilt the damaged index from the corpus{kept}.", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for w in report.warnings:
            print(f"warning: {w}", file=sys.stderr)
        for s in report.skipped:
            print(f"skipped: {s['path']}: {s['reason']}", file=sys.stderr)
        for f in report.failed:
            print(f"error: {f['path']}: {f['error']}", file=sys.stderr)
        if report.checked_only:
            ok = "all files valid" if not report.failed else f"{len(report.failed)} file(s) failed"
            print(f"check: {ok} ({report.seconds:.1f} s)")
        else:
            print(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
                  f"removed {report.removed}, failed {len(report.failed)}; "
                  f"{report.chunks_embedded} chunks embedded in {report.seconds:.1f} s "
                  f"(index: {report.documents_total} documents, {report.chunks_total} chunks)")
    return 1 if report.failed else 0


def cmd_ask(args, settings: Settings) -> int:
    from assistant.assistant import Assistant
    from assistant.retrieve import Filters

    filters = Filters(substances=args.substance, conditions=args.condition,
                      source_types=args.source_type)
    assistant = Assistant.from_settings(settings)
    if args.jsonl:
        for lineno, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                question, history = item["question"], item.get("history") or []
            except (ValueError, KeyError, TypeError) as exc:
                print(json.dumps({"error": f"line {lineno}: expected {{'question': ..., 'history': [...]}} ({exc})"}))
                continue
            print(assistant.ask(question, history, filters).model_dump_json(), flush=True)
        return 0
    if not args.question:
        print("psyqa ask: give a question, or --jsonl to read questions from stdin", file=sys.stderr)
        return 2
    ans = assistant.ask(args.question, [], filters)
    if args.json:
        print(ans.model_dump_json(indent=2))
        return 0
    print(render_text(ans))
    return 0


def render_text(ans) -> str:
    """An Answer for a person at a terminal: answer, numbered sources, notes, caveat."""
    from assistant import messages

    lines = []
    if ans.standalone_question and ans.status == "answered":
        lines.append(f"Q: {ans.standalone_question}\n")
    lines.append(ans.answer)
    for heading, cites in (("Sources", ans.citations), (messages.RELATED_HEADING, ans.related)):
        if not cites:
            continue
        lines.append(f"\n{heading}:")
        for c in cites:
            where = " > ".join(x for x in (c.section, f"page {c.page}" if c.page else "") if x)
            extra = ", ".join(x for x in (c.source_type or "", f"as of {c.as_of}" if c.as_of else "") if x)
            lines.append(f"  [{c.n}] {c.title}" + (f" — {where}" if where else "")
                         + (f" ({extra})" if extra else "") + f"  [{c.source}]")
            if heading != "Sources":
                for a, b in c.highlight[:1]:
                    lines.append(f"      \"{c.passage[a:b]}\"")
            if c.url:
                lines.append(f"      {c.url}")
    if ans.notes:
        lines.append(f"\n{messages.NOTES_HEADING}:")
        lines.extend(f"  - {n}" for n in ans.notes)
    lines.append(f"\nCaveat: {ans.caveat}")
    return "\n".join(lines)


def cmd_app(args, settings: Settings) -> int:
    import os

    app = Path(__file__).resolve().parent.parent / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.address", settings.app_host, "--server.port", str(settings.app_port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    print(f"psyqa: chat app on http://{settings.app_host}:{settings.app_port}", file=sys.stderr)
    os.execv(sys.executable, cmd)
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="score the assistant on a labelled set: the gold set (default), the quality "
                     "set (--split) or the safety set (--safety)")
    p.add_argument("--gold", type=Path, default=None,
                   help="gold JSONL file (default: eval/gold.jsonl)")
    p.add_argument("--topic", action="append", default=None,
                   help="gold set: only items of this topic (repeatable)")
    p.add_argument("--split", choices=["dev", "test"], default=None,
                   help="run the quality set's dev or test split (with --safety: the safety "
                        "set's)")
    p.add_argument("--kind", action="append", default=None, choices=KINDS,
                   help="quality set: only items of this kind (repeatable)")
    p.add_argument("--quality", type=Path, default=DEFAULT_QUALITY, metavar="PATH",
                   help="quality JSONL file (default: eval/quality.jsonl)")
    p.add_argument("--safety", type=Path, nargs="?", const=DEFAULT_SAFETY, default=None,
                   metavar="PATH", help="run the safety set (default file: eval/safety.jsonl)")
    p.add_argument("--backend", choices=["extractive", "ollama", "openai"], default=None,
                   help="answer backend to score (default: PSYQA_LLM__BACKEND)")
    p.add_argument("--llm-base-url", default=None,
                   help="language-model server URL (default: PSYQA_LLM__BASE_URL)")
    p.add_argument("--llm-model", default=None,
                   help="model name on that server (default: PSYQA_LLM__MODEL)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    p.set_defaults(func=cmd_eval)


def with_llm(settings: Settings, backend: str | None = None, base_url: str | None = None,
             model: str | None = None) -> Settings:
    """`settings` with the PSYQA_LLM__* values overridden by the ones given."""
    update = {k: v for k, v in (("backend", backend), ("base_url", base_url), ("model", model))
              if v is not None}
    if not update:
        return settings
    llm = type(settings.llm).model_validate(settings.llm.model_dump() | update)
    return settings.model_copy(update={"llm": llm})


def cmd_eval(args, settings: Settings) -> int:
    """Score one labelled set; 0 when every goal of that set is met, 1 otherwise, 2 on bad use."""
    from assistant.assistant import Assistant
    from assistant.bench import gold, quality, report, screening

    if args.safety is not None and args.kind:
        return _usage("--kind selects quality items; the safety set has labels, not kinds")
    if args.kind and not args.split:
        return _usage("--kind needs --split dev|test (it selects items of the quality set)")
    if (args.split or args.safety is not None) and (args.gold or args.topic):
        return _usage("--gold and --topic belong to the gold set, which runs without --split "
                      "and --safety")
    if args.safety is not None:
        name = "safety"
        items = gold.load_safety(gold.resolve(args.safety))
        items = [i for i in items if not args.split or i.split == args.split]
    elif args.split:
        name = "quality"
        items = gold.load_quality(gold.resolve(args.quality))
        items = [i for i in items
                 if i.split == args.split and (not args.kind or i.kind in set(args.kind))]
    else:
        name = "gold"
        items = gold.load_gold(gold.resolve(args.gold or DEFAULT_GOLD))
        items = [i for i in items if not args.topic or i.topic in set(args.topic)]
    if not items:
        return _usage(f"no {name} items match the selection")
    settings = with_llm(settings, args.backend, args.llm_base_url, args.llm_model)
    assistant = Assistant.from_settings(settings)

    def progress(done: int, total: int, res) -> None:
        report.progress_mark(res.failed, done, total)

    shown = None if args.json else progress
    if name == "safety":
        result = screening.score(items, assistant, split=args.split, progress=shown)
        render = screening
    elif name == "quality":
        result = quality.score(items, assistant, split=args.split, kinds=args.kind,
                               progress=shown)
        render = quality
    else:
        result = report.score(items, assistant, progress=shown)
        render = report
    if args.json:
        print(result.model_dump_json(indent=2))
    elif args.markdown:
        print(render.format_markdown(result))
    else:
        print(render.format_summary(result))
    return 0 if result.passed else 1


def _usage(problem: str) -> int:
    print(f"psyqa eval: {problem}", file=sys.stderr)
    return 2


def cmd_status(args, settings: Settings) -> int:
    from assistant.chat import human_time, ingest_lines, ingest_state
    from ingest.status import index_status

    st = index_status(settings)
    if args.json:
        print(json.dumps(st, default=str))
        return 2 if st["damaged"] else 0
    if st["damaged"]:
        print(f"psyqa: {st['damaged']}", file=sys.stderr)
        return 2
    if not st["indexed"]:
        print(f"No index yet ({st['store']}). Run 'psyqa ingest'.")
        for line in ingest_lines(st):
            print(line)
        return 0
    print(f"store:           {st['store']}")
    print(f"documents:       {st['documents']}")
    print(f"chunks:          {st['chunks']}")
    print(f"embedding model: {st['embedding_model']}")
    print(f"last indexed:    {human_time(st['last_ingest'])}")
    print(f"corpus hash:     {st['corpus_hash']}")
    print(f"built from:      {', '.join(st.get('root_folders') or st['roots']) or '-'}")
    for line in ingest_lines(st):
        print(line)
    drift, pending = st["drift"], set(ingest_state(st)["pending"])
    if any(drift.values()):
        hint = ("run 'psyqa ingest' on them" if pending
                else "fix the failed files above, then run 'psyqa ingest'")
        print(f"drift from the corpus folders ({hint}):")
        for kind, items in drift.items():
            for item in items:
                print(f"  {kind}: {item}" + ("" if item in pending else " (failed in the last run, unchanged since)"))
    else:
        print("in step with the corpus folders")
    if st["unreviewed"]:
        print(f"unreviewed ({len(st['unreviewed'])}: no source_type; their citations are marked so):")
        for source in st["unreviewed"]:
            print(f"  {source}")
    return 0


def cmd_clean(args, settings: Settings) -> int:
    from ingest.clean import clean, describe

    removed, kept = clean(settings)
    for path in removed:
        print(f"psyqa: removed {describe(path)}", file=sys.stderr)
    if not removed:
        print(f"psyqa: no derived index data under {settings.data_dir}", file=sys.stderr)
    print(f"psyqa: kept the user data in {kept} (feedback, saved conversations). Run "
          "'psyqa ingest' (or 'make run') to build the index again.", file=sys.stderr)
    return 0


def cmd_config(args, settings: Settings) -> int:
    data = settings.model_dump(mode="json")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for name, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                print(f"PSYQA_{name.upper()}__{k.upper()} = {v}")
        else:
            print(f"PSYQA_{name.upper()} = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
