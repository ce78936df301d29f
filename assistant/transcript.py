"""Safe Markdown for the chat app, and a conversation as a Markdown or JSON file (pure functions).

Corpus text is data, never markup. In the app every ASCII punctuation character is
backslash-escaped (CommonMark renders `\\x` as a literal `x` for any punctuation), so `<script>`,
`[x](javascript:..)`, `*`, `$` (LaTeX) and Streamlit's `:color[...]` / `:emoji:` directives come
out as the characters typed. A downloaded file is read by other Markdown tools, which know no
directives: there `md_text` escapes only what Markdown itself would read as markup, so the file
stays readable as plain text. Links are made only from http(s) URLs.
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


def badges_markdown(source_type: str | None, as_of: str | None) -> str:
    """The source type and "as of" date of a citation as Streamlit badges ("" when neither). A
    document indexed without a source_type (ingest/loaders.py) gets a red "unreviewed" badge."""
    if source_type == "unreviewed":
        badges = [":red-badge[:material/warning: unreviewed]"]
    else:
        badges = [f":blue-badge[{escape_markdown(source_type)}]"] if source_type else []
    if as_of:
        badges.append(f":orange-badge[as of {escape_markdown(as_of)}]")
    return " ".join(badges)


def source_markdown(c) -> str:
    """A citation's expander body as one Markdown element: badges, the passage with its
    supporting sentences in bold, the file (and page) in small type, and the link."""
    parts = [badges_markdown(c.source_type, c.as_of), highlight_markdown(c.passage, c.highlight),
             ":small[" + escape_markdown(c.source) + (f" · page {c.page}" if c.page else "") + "]",
             link_markdown(c.url) if c.url else ""]
    return "\n\n".join(p for p in parts if p)


def source_label(c: Mapping) -> str:
    """The expander title of a citation: "[n] title — section/page" (plain text)."""
    where = " / ".join(x for x in (c.get("section") or "", f"page {c['page']}" if c.get("page") else "") if x)
    return f"[{c.get('n')}] {c.get('title') or c.get('source') or ''}" + (f" — {where}" if where else "")


def _as_dict(obj) -> dict:
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return dict(obj)


# ----------------------------------------------------------------------------- the export

# In a downloaded file only Markdown itself needs escaping (no Streamlit directives, no LaTeX):
# characters that open inline markup, and block markers at the start of a line. Citation markers
# such as [1] stay as typed: without a link target or definition they are plain text.
_INLINE = frozenset("\\`*_[]|~")
_MARKER = re.compile(r"\[\d{1,3}\](?![(\[:])")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?\w+;)")
_BLOCK = re.compile(r"^( {0,3})(#{1,6}(?=\s|$)|>|[-+*](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))|=+\s*$|-+\s*$)")
_STATUS_LABELS = {"no_evidence": "not covered by the sources", "declined": "declined",
                  "crisis": "crisis resources"}


def md_text(text: str) -> str:
    """`text` as Markdown that renders as exactly `text`, escaping only what Markdown would read
    as markup ("find?", "MDMA-AT," and "1:1" stay as they are). Line breaks are kept."""
    lines = []
    for line in (text or "").replace("\r", "").split("\n"):
        out, i = [], 0
        dollars = line.count("$") >= 2  # a pair could open inline maths in some renderers
        while i < len(line):
            m = _MARKER.match(line, i)
            if m:
                out.append(m.group(0))
                i = m.end()
                continue
            ch = line[i]
            if (ch in _INLINE or (ch == "$" and dollars) or (ch == "<" and _TAG_START.match(line, i))
                    or (ch == "&" and _ENTITY.match(line, i))):
                out.append("\\" + ch)
            else:
                out.append(ch)
            i += 1
        escaped = "".join(out)
        b = _BLOCK.match(escaped)
        if b:  # "# x", "> x", "- x", "1. x", "===": backslash the marker's last character
            pos = b.end(2) if b.group(2)[0].isdigit() else b.start(2)
            escaped = escaped[:pos] + "\\" + escaped[pos:]
        lines.append(escaped)
    # A single newline is a soft break in Markdown: make it a hard one so lines stay lines.
    return re.sub(r"(?<!\n)\n(?!\n)", "  \n", "\n".join(lines))


def _answer_md(text: str) -> str:
    """An answer for the file: its "- " bullets stay a list, everything else is `md_text`."""
    out = []
    for line in (text or "").split("\n"):
        m = _BULLET.match(line)
        out.append(m.group(1) + "- " + md_text(line[m.end():]) if m else md_text(line))
    return "\n".join(out)


def _passage_md(passage: str, spans) -> str:
    """A cited passage as a quote, its supporting sentences in bold."""
    pieces, pos = [], 0
    for a, b in _merge(spans or [], len(passage or "")):
        pieces.append(md_text(passage[pos:a]))
        core = passage[a:b].strip()
        if core:
            lead = passage[a:b][: len(passage[a:b]) - len(passage[a:b].lstrip())]
            pieces.append(lead + "**" + md_text(core).replace("  \n", "**  \n**") + "**")
        pos = b
    pieces.append(md_text((passage or "")[pos:]))
    return "\n".join("> " + ln if ln else ">" for ln in "".join(pieces).split("\n"))


def _human(iso: str | None) -> str:
    from assistant.chat import human_time

    return human_time(iso)


def _filters_text(filters) -> str:
    from assistant.chat import summary

    return summary(filters or {}) or "none"


def to_markdown(messages: Iterable[Mapping], meta: Mapping | None = None,
                title: str = "psyqa conversation") -> str:
    """The conversation as a clean Markdown document: when it was exported, from which corpus
    version and with which filters; each question with the time and filters it was asked with;
    each answer with its cited passages (supporting sentences in bold) and the caveat.

    `messages` are {"role": "user", "content": str} and {"role": "assistant", "answer": Answer
    or its dict, "question", "asked_at", "filters", "filter_note"} (or {"role": "assistant",
    "error": str} for an error shown instead). `meta` may give "exported_at", "documents",
    "corpus_hash" and "filters" (those set when exporting)."""
    meta = meta or {}
    corpus = f"{meta['documents']} documents" if meta.get("documents") is not None else "unknown"
    if meta.get("corpus_hash"):
        corpus += f", version {meta['corpus_hash']}"
    out = [f"# {md_text(title)}", "",
           f"Exported {_human(meta.get('exported_at'))} · corpus: {md_text(corpus)} · "
           f"filters now: {md_text(_filters_text(meta.get('filters')))}", ""]
    q = 0
    for msg in messages:
        if msg.get("role") == "user":
            q += 1
            out += [f"## Question {q}", "", md_text(str(msg.get("content", ""))), ""]
            continue
        ans = msg.get("answer")
        if ans is None:
            out += ["### Answer", "", md_text(str(msg.get("error") or msg.get("content", ""))), ""]
            continue
        a = _as_dict(ans)
        label = _STATUS_LABELS.get(a.get("status", ""))
        out += [f"### Answer ({label})" if label else "### Answer", ""]
        asked = [f"asked {_human(msg['asked_at'])}"] if msg.get("asked_at") else []
        asked.append(f"filters: {_filters_text(msg.get('filters'))}")
        if msg.get("corpus_hash"):
            asked.append(f"corpus version {msg['corpus_hash']}")
        out += ["_" + md_text(", ".join(asked)) + "_", ""]
        typed = msg.get("question")
        if a.get("standalone_question") and typed and a["standalone_question"].strip() != typed.strip():
            out += [f"_Interpreted as:_ {md_text(a['standalone_question'])}", ""]
        out += [_answer_md(a.get("answer", "")), ""]
        if msg.get("filter_note"):
            out += [f"_{md_text(msg['filter_note'])}_", ""]
        for heading, cites in (("Sources", a.get("citations") or []),
                               (RELATED_HEADING, a.get("related") or [])):
            if not cites:
                continue
            out += [f"#### {md_text(heading)}", ""]
            for c in cites:
                c = _as_dict(c)
                head = f"**{md_text(source_label(c))}**"
                extra = [x for x in (c.get("source_type") or "",
                                     f"as of {c['as_of']}" if c.get("as_of") else "",
                                     c.get("source") or "") if x]
                line = head + "".join(f" · {md_text(x)}" for x in extra)
                if c.get("url") and safe_url(c["url"]):
                    line += f" · <{safe_url(c['url'])}>"
                elif c.get("url"):
                    line += f" · {md_text(c['url'])} (not a web link)"
                out += [line, "", _passage_md(c.get("passage", ""), c.get("highlight")), ""]
        for note in a.get("notes") or []:
            out += [f"_{md_text(note)}_", ""]
        if a.get("caveat"):
            out += [f"**Caveat:** {md_text(a['caveat'])}", ""]
    return "\n".join(out).rstrip() + "\n"


def to_json(messages: list[dict], meta: Mapping | None = None) -> str:
    """The conversation as JSON: `meta` (export time, corpus, filters) and every message with its
    full Answer (citations with passages and highlights, caveat, status)."""
    import json

    from assistant.saved import to_records

    return json.dumps({"psyqa_conversation": 1, **dict(meta or {}), "messages": to_records(messages)},
                      ensure_ascii=False, indent=1)
