"""The last gate before anything is shown: every sentence must be in the passage it cites."""

from __future__ import annotations

import re

from assistant.models import Citation

_MARKER = re.compile(r"\s*\[(\d+)\]")
_BULLET = re.compile(r"^\s*[-*•]\s+")


def split_marked(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, cited numbers) for each marked sentence of an answer."""
    out: list[tuple[str, list[int]]] = []
    for line in answer.split("\n"):
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        # A sentence ends with its markers: "text [1] next text [2][3]".
        pos = 0
        for m in re.finditer(r"((?:\s*\[\d+\])+)", line):
            text = line[pos:m.start()].strip()
            nums = [int(x) for x in re.findall(r"\d+", m.group(1))]
            if text:
                out.append((text, nums))
            pos = m.end()
        rest = line[pos:].strip()
        if rest:
            out.append((rest, []))
    return out


def unsupported(answer: str, citations: list[Citation]) -> list[str]:
    """Sentences that cite nothing, cite an unknown number, or are not in a cited passage."""
    by_n = {c.n: c for c in citations}
    bad = []
    for text, nums in split_marked(answer):
        if not nums or any(n not in by_n for n in nums):
            bad.append(text)
        elif not any(text in by_n[n].passage for n in nums):
            bad.append(text)
    return bad
