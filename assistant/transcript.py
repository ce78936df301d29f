"""Safe Markdown for the chat app, and a conversation as a Markdown document (pure functions).

Corpus text is data, never markup: every ASCII punctuation character is backslash-escaped
(CommonMark renders `\\x` as a literal `x` for any punctuation), so `<script>`, `[x](javascript:..)`,
`*`, `$` (LaTeX) and `:color[...]` / `:emoji:` directives come out as the characters typed.
Links are made only from http(s) URLs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

from assistant.messages import RELATED_HEADING

_PUNCT = frozenset(string.punctuation)
_BULLET = re.compile(r"^(\s*)- ")


def escape_markdown(text: str) -> str:
    """`text` as Markdown that renders as exactly `text` (line breaks kept, no HTML, no links)."""
    out = []
    for ch in text or "":
        if ch in _PUNCT:
            out.append("\\" + ch)
        elif ch == "\r":
            continue
        else:
            out.append(ch)
    s = "".join(out)
    # A single newline is a soft break in Markdown: make it a hard one so lines stay lines.
    return re.sub(r"(?<!\n)\n(?!\n)", "  \n", s)


def answer_markdown(text: str) -> str:
    """An answer (lines that start with "- " are bullets, [n] are citation markers) as safe
    Markdown: everything escaped except the bullet syntax itself."""
    out = ""
    prev_bullet = False
    for i, line in enumerate((text or "").split("\n")):
        m = _BULLET.match(line)
        if i:
            # Bullet lines are joined by plain newlines (a list); other lines by hard breaks.
            out += "\n" if (m or prev_bullet) else "  \n"
        out += (m.group(1) + "- " + escape_markdown(line[m.end():])) if m else escape_markdown(line)
        prev_bullet = m is not None
    return out


def _merge(spans: Iterable[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    clean = sorted((max(0, int(a)), min(n, int(b))) for a, b in spans if int(b) > int(a))
    merged: list[tuple[int, int]] = []
    for a, b in clean:
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _bold(segment: str) -> str:
    """Bold every non-blank line of `segment`; emphasis may not start or end with whitespace."""
    parts = re.split(r"(\n+)", segment)
    out = []
    for part in parts:
        if not part or part.startswith("\n"):
            out.append("  \n" if part == "\n" else part)
            continue
        lead = part[: len(part) - len(part.lstrip())]
        trail = part[len(part.rstrip()):]
        core = part.strip()
        out.append(lead + (f"**{escape_markdown(core)}**" if core else "") + trail)
    return "".join(out)


def highlight_markdown(passage: str, spans: Iterable[tuple[int, int]]) -> str:
    """The passage as safe Markdown with the supporting sentences (offsets) in bold."""
    passage = passage or ""
    pieces, pos = [], 0
    for a, b in _merge(spans, len(passage)):
        pieces.append(escape_markdown(passage[pos:a]))
        pieces.append(_bold(passage[a:b]))
        pos = b
    pieces.append(escape_markdown(passage[pos:]))
    return "".join(pieces)


def safe_url(url: str | None) -> str | None:
    """The URL if its scheme is http or https (normalised for a Markdown link target), else None."""
    if not url or not isinstance(url, str):
        return None
    url = url.strip()
    if any(ord(c) < 32 or c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # Percent-encode what could end a Markdown link target or open markup.
    return quote(url, safe=":/?#@!$&'*+,;=%~-._[]").replace("(", "%28").replace(")", "%29")


def link_markdown(url: str | None) -> str:
    """A Markdown link for an http(s) URL; any other URL as escaped plain text."""
    good = safe_url(url)
    if good:
        return f"[{escape_markdown(url.strip())}]({good})"  # type: ignore[union-attr]
    if url:
        return escape_markdown(url) + " (not a web link; shown as text)"
    return ""


def source_label(c: Mapping) -> str:
    """The expander title of a citation: "[n] title — section/page" (plain text)."""
    where = " / ".join(x for x in (c.get("section") or "", f"page {c['page']}" if c.get("page") else "") if x)
    return f"[{c.get('n')}] {c.get('title') or c.get('source') or ''}" + (f" — {where}" if where else "")


def _as_dict(obj) -> dict:
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return dict(obj)


def to_markdown(messages: Iterable[Mapping], title: str = "psyqa conversation") -> str:
    """The conversation as a Markdown document: questions, answers, sources and caveats.

    `messages` are {"role": "user", "content": str} and {"role": "assistant", "answer": Answer
    or its dict} (or {"role": "assistant", "content": str} for an error shown instead)."""
    out = [f"# {escape_markdown(title)}", ""]
    q = 0
    for msg in messages:
        if msg.get("role") == "user":
            q += 1
            out += [f"## Question {q}", "", escape_markdown(str(msg.get("content", ""))), ""]
            continue
        ans = msg.get("answer")
        if ans is None:
            out += ["### Answer", "", escape_markdown(str(msg.get("content", ""))), ""]
            continue
        a = _as_dict(ans)
        out += [f"### Answer ({a.get('status', '')})", ""]
        typed = msg.get("question")
        if a.get("standalone_question") and typed and a["standalone_question"] != typed:
            out += [f"_Interpreted as:_ {escape_markdown(a['standalone_question'])}", ""]
        out += [answer_markdown(a.get("answer", "")), ""]
        for heading, cites in (("Sources", a.get("citations") or []),
                               (RELATED_HEADING, a.get("related") or [])):
            if not cites:
                continue
            out += [f"#### {escape_markdown(heading)}", ""]
            for c in cites:
                c = _as_dict(c)
                line = f"- {escape_markdown(source_label(c))}"
                extra = ", ".join(x for x in (c.get("source_type") or "",
                                              f"as of {c['as_of']}" if c.get("as_of") else "") if x)
                if extra:
                    line += f" ({escape_markdown(extra)})"
                line += f" — {escape_markdown(c.get('source') or '')}"
                if c.get("url"):
                    line += f" — {link_markdown(c['url'])}"
                out.append(line)
            out.append("")
        for note in a.get("notes") or []:
            out += [f"_{escape_markdown(note)}_", ""]
        if a.get("caveat"):
            out += [f"> **Caveat:** {escape_markdown(a['caveat'])}", ""]
    return "\n".join(out).rstrip() + "\n"
