"""Structure- and sentence-aware chunks that fit the model's word-piece window.

A chunk never crosses a section (or page) boundary, ends at a sentence boundary, carries the last
sentence(s) of its predecessor as overlap, and together with its title/section prefix fits in
`max_tokens` word pieces as counted by the model's own tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assistant import index
from assistant.models import Chunk, DocMeta, embed_text
from assistant.settings import Settings
from assistant.text import sentence_spans
from ingest.loaders import LoadedDoc

# [CLS] and [SEP] take two of the model's positions.
SPECIAL_TOKENS = 2

TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class ChunkParams:
    """What shapes the chunks (and so the vectors); the values are the settings'."""

    max_tokens: int
    overlap_sentences: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkParams:
        return cls(settings.max_tokens, settings.overlap_sentences)


def hf_counter(tokenizer) -> TokenCounter:
    """Word pieces per text, without special tokens, from a HuggingFace tokenizer."""

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    return count


def chunk_document(doc: LoadedDoc, doc_id: str, source: str, params: ChunkParams,
                   count: TokenCounter, extra_meta: dict | None = None) -> list[Chunk]:
    """Split a loaded document into chunks with ids, offsets and flat metadata.

    Besides the document's metadata, a chunk carries the footnote numbers the loader took out of
    its sentences and its document's reference list (`index.footnotes`, `index.references`).
    """
    meta = flat_meta(doc.meta) | index.reference_meta(doc.references)
    meta.update(extra_meta or {})
    text = doc.text
    authors = doc.meta.authors
    # The title/section prefix may take at most a quarter of the window; longer titles and
    # headings are shortened (on the chunk too, so what is stored is what was embedded).
    head_limit = params.max_tokens // 4
    title = _fit(doc.meta.title, head_limit // 2, count)
    sections = {s.section: _fit(s.section, head_limit // 2, count) for s in doc.segments}
    pieces: list[tuple[int, int, str, int | None]] = []  # (start, end, section, page)
    prefix_tokens = dict(zip(sections, count([embed_text(title, sections[s], "", authors) for s in sections])))
    for seg in doc.segments:
        budget = params.max_tokens - SPECIAL_TOKENS - prefix_tokens[seg.section]
        spans = sentence_spans(text, seg.start, seg.end)
        spans = _split_long(text, spans, budget, count)
        sizes = count([text[s:e] for s, e in spans])
        for s, e in _pack(spans, sizes, budget, params.overlap_sentences):
            pieces.append((s, e, sections[seg.section], seg.page))
    # Verify with the real tokenizer on the final strings: whitespace joins can (rarely) differ.
    full = count([embed_text(title, sec, text[s:e], authors) for s, e, sec, _ in pieces])
    checked: list[tuple[int, int, str, int | None]] = []
    for (s, e, sec, page), n in zip(pieces, full):
        if n + SPECIAL_TOKENS <= params.max_tokens:
            checked.append((s, e, sec, page))
        else:
            checked.extend(_halve(text, s, e, sec, page, title, params, count, authors))
    seen: Counter[str] = Counter()
    chunks = []
    for ordinal, (s, e, sec, page) in enumerate(checked):
        body = text[s:e]
        key = embed_text(title, sec, body, authors)
        seen[key] += 1
        cid = chunk_id(doc_id, key, page, seen[key])
        # The answerer quotes whole sentences: record them as this splitter sees them.
        sents = [(a - s, b - s) for a, b in sentence_spans(text, s, e)]
        cmeta = meta | index.footnote_meta([(off - s, n) for off, n in doc.footnotes if s <= off <= e])
        chunks.append(Chunk(chunk_id=cid, doc_id=doc_id, source=source, title=title, section=sec,
                            page=page, start=s, end=e, text=body, ordinal=ordinal, metadata=cmeta,
                            sentences=sents))
    return chunks


def _fit(head: str, limit: int, count: TokenCounter) -> str:
    """`head` cut at a word boundary to at most `limit` word pieces (with an ellipsis); the kept
    part is an exact prefix of `head`."""
    if not head or count([head])[0] <= limit:
        return head
    ends = [m.end() for m in _WORDS.finditer(head)]
    lo, hi = 0, len(ends)
    while lo < hi:  # the most words that fit
        mid = (lo + hi + 1) // 2
        if count([head[:ends[mid - 1]] + " …"])[0] <= limit:
            lo = mid
        else:
            hi = mid - 1
    return (head[:ends[lo - 1]] + " …") if lo else head[: max(1, limit)]


def chunk_id(doc_id: str, embedded: str, page: int | None, occurrence: int) -> str:
    """Deterministic: the same document text always gives the same ids."""
    h = hashlib.sha1(f"{doc_id}\x1f{page}\x1f{occurrence}\x1f{embedded}".encode()).hexdigest()
    return f"{h[:24]}"


def _pack(spans: list[tuple[int, int]], sizes: list[int], budget: int,
          overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of sentences; each new chunk starts with the previous chunk's tail."""
    out: list[tuple[int, int]] = []
    i = 0
    n = len(spans)
    while i < n:
        j, used = i, 0
        while j < n and (used + sizes[j] <= budget or j == i):
            used += sizes[j]
            j += 1
        out.append((spans[i][0], spans[j - 1][1]))
        if j >= n:
            break
        # Overlap: step back up to `overlap` sentences, but always make progress and keep the
        # overlap to at most a third of the budget.
        back = 0
        while (back < overlap and j - back - 1 > i
               and sum(sizes[j - back - 1:j]) <= budget // 3):
            back += 1
        i = j - back
    return out


def _split_long(text: str, spans: list[tuple[int, int]], budget: int,
                count: TokenCounter) -> list[tuple[int, int]]:
    """Cut sentences longer than the budget at word boundaries."""
    sizes = count([text[s:e] for s, e in spans])
    out: list[tuple[int, int]] = []
    for (s, e), n in zip(spans, sizes):
        if n <= budget:
            out.append((s, e))
            continue
        words = [(m.start() + s, m.end() + s) for m in _WORDS.finditer(text[s:e])]
        wsizes = count([text[a:b] for a, b in words])
        cur_start, used = words[0][0], 0
        prev_end = words[0][1]
        for (a, b), w in zip(words, wsizes):
            w = max(w, 1)
            if used + w > budget and used > 0:
                out.append((cur_start, prev_end))
                cur_start, used = a, 0
            if w > budget:  # a single "word" longer than the window (e.g. a base64 blob)
                step = max(1, (b - a) * budget // (w + 1))
                for k in range(a, b, step):
                    out.append((k, min(b, k + step)))
                cur_start, used = b, 0
                prev_end = b
                continue
            used += w
            prev_end = b
        if used > 0 and prev_end > cur_start:
            out.append((cur_start, prev_end))
    return [(a, b) for a, b in out if b > a]


def _halve(text, s, e, sec, page, title, params, count, authors=()):
    mid_candidates = [i for i in range(s + (e - s) // 2, e) if text[i].isspace()]
    mid = mid_candidates[0] if mid_candidates else s + (e - s) // 2
    out = []
    for a, b in ((s, mid), (mid, e)):
        while a < b and text[a].isspace():
            a += 1
        if b <= a:
            continue
        n = count([embed_text(title, sec, text[a:b], authors)])[0]
        if n + SPECIAL_TOKENS <= params.max_tokens or b - a < 8:
            out.append((a, b, sec, page))
        else:
            out.extend(_halve(text, a, b, sec, page, title, params, count, authors))
    return out


_WORDS = re.compile(r"\S+")


def flat_meta(meta: DocMeta) -> dict[str, str | int | float | bool]:
    """Chroma metadata is flat scalars: lists become joined strings, and substances and
    conditions also one flag per value (`index.topic_flags`), which metadata filters match."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in meta.model_dump(exclude_none=True).items():
        if key in ("title", "id"):
            continue
        if isinstance(value, list):
            if not value:
                continue
            out[key] = json.dumps(value, ensure_ascii=False) if key in ("sources", "authors") \
                else ",".join(str(v) for v in value)
        else:
            out[key] = str(value) if not isinstance(value, (int, float, bool)) else value
    out.update(index.topic_flags(meta.substances, meta.conditions))
    return out
