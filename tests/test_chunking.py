"""Chunking against the model's own tokenizer: every embedded string fits the 256 word-piece window,
offsets index the document text, every sentence is covered, ids are deterministic, overlap exists.

These use the real tokenizer (not the weights), so they are fast and not marked slow.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from assistant.settings import Settings
from ingest.chunking import ChunkParams, chunk_document, hf_counter
from ingest.loaders import load

LIMIT = 256
WORDS = ("psilocybin therapy session depression remission trial placebo dose patient outcome "
         "integration preparation screening ketamine infusion response rate week follow-up "
         "clinician consent serotonin receptor blinded cohort adverse event").split()


def chunks_of(md: str, name: str = "doc.md", params: ChunkParams | None = None, counter=None):
    from assistant.embeddings import load_tokenizer

    doc = load(Path(name), name, md.encode("utf-8"))
    count = counter or hf_counter(load_tokenizer())
    return doc, chunk_document(doc, Path(name).stem, name, params or ChunkParams.from_settings(Settings()), count)


def n_pieces(tokenizer, text: str) -> int:
    """Word pieces the model sees, [CLS] and [SEP] included, nothing truncated."""
    return len(tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])


def assert_invariants(tokenizer, doc, chunks, limit: int = LIMIT) -> None:
    assert chunks, "no chunks"
    for c in chunks:
        n = n_pieces(tokenizer, c.embed_text())
        assert n <= limit, f"chunk {c.ordinal} has {n} word pieces (> {limit})"
        assert doc.text[c.start:c.end] == c.text, f"chunk {c.ordinal}: offsets do not map back"
        assert c.text.strip(), f"chunk {c.ordinal} is blank"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert len({c.chunk_id for c in chunks}) == len(chunks), "duplicate chunk ids"
    # Full coverage: every non-whitespace character of every segment lies in a chunk of that segment.
    for seg in doc.segments:
        own = [c for c in chunks if _same_section(c.section, seg.section) and c.page == seg.page
               and c.start >= seg.start and c.end <= seg.end]
        covered = bytearray(seg.end - seg.start)
        for c in own:
            covered[c.start - seg.start:c.end - seg.start] = b"\x01" * (c.end - c.start)
        missing = [i for i in range(seg.start, seg.end) if not doc.text[i].isspace() and not covered[i - seg.start]]
        assert not missing, (f"segment {seg.section!r}: {len(missing)} characters in no chunk, first at "
                             f"{missing[0]}: {doc.text[missing[0]:missing[0] + 40]!r}")
    # A chunk never crosses a segment boundary.
    for c in chunks:
        assert any(s.start <= c.start and c.end <= s.end and _same_section(c.section, s.section)
                   for s in doc.segments)


def _same_section(stored: str, section: str) -> bool:
    """A chunk stores its section, shortened with an ellipsis when it would crowd the window."""
    return stored == section or (stored.endswith(" …") and section.startswith(stored[:-2]))


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


@pytest.fixture(scope="module")
def normal_doc():
    rng = random.Random(7)
    parts = ["---", "title: Psilocybin for depression", "source_type: summary", "---", "",
             "# Psilocybin for depression", "", sentence(rng, 12), ""]
    for sec in ("Methods", "Results"):
        parts += [f"## {sec}", ""]
        for _ in range(6):
            parts += [" ".join(sentence(rng, rng.randint(8, 25)) for _ in range(rng.randint(3, 7))), ""]
        parts += ["### Subgroups", "", " ".join(sentence(rng, 15) for _ in range(30)), ""]
    return "\n".join(parts)


def test_normal_document_fits_window_and_maps_back(tokenizer, normal_doc):
    doc, chunks = chunks_of(normal_doc)
    assert_invariants(tokenizer, doc, chunks)
    sections = {c.section for c in chunks}
    assert {"Methods", "Results", "Methods > Subgroups", "Results > Subgroups"} <= sections
    assert len(chunks) > 4


def test_overlap_between_consecutive_chunks_of_a_long_section(tokenizer, normal_doc):
    doc, chunks = chunks_of(normal_doc)
    long_sec = [c for c in chunks if c.section == "Results > Subgroups"]
    assert len(long_sec) >= 2, "the 30-sentence section should need several chunks"
    for a, b in zip(long_sec, long_sec[1:]):
        assert b.start < a.end, f"no overlap between chunks {a.ordinal} and {b.ordinal}"
        assert b.start > a.start, "no progress"
        shared = doc.text[b.start:a.end]
        assert shared.strip().endswith("."), f"overlap is not whole sentences: {shared!r}"


def test_no_overlap_when_disabled(tokenizer, normal_doc):
    doc, chunks = chunks_of(normal_doc, params=ChunkParams.from_settings(Settings(overlap_sentences=0)))
    assert_invariants(tokenizer, doc, chunks)
    long_sec = [c for c in chunks if c.section == "Results > Subgroups"]
    assert all(b.start >= a.end for a, b in zip(long_sec, long_sec[1:]))


def test_chunk_ids_are_deterministic_across_runs(normal_doc):
    _, first = chunks_of(normal_doc)
    _, second = chunks_of(normal_doc)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in second]
    assert [(c.start, c.end) for c in first] == [(c.start, c.end) for c in second]
    # ...and they depend on the text: editing one sentence changes only the chunks that hold it.
    edited = normal_doc.replace("## Results", "## Results\n\nA brand new opening sentence.", 1)
    _, third = chunks_of(edited)
    assert {c.chunk_id for c in third} != {c.chunk_id for c in first}
    assert {c.chunk_id for c in third} & {c.chunk_id for c in first}, "unrelated chunks changed id"


def test_one_5000_word_sentence_without_punctuation(tokenizer):
    rng = random.Random(1)
    body = " ".join(rng.choice(WORDS) for _ in range(5000))
    doc, chunks = chunks_of(f"---\ntitle: Run-on\n---\n\n{body}\n")
    assert_invariants(tokenizer, doc, chunks)
    assert len(chunks) >= 5000 // 250


@pytest.mark.parametrize("word", ["x" * 3000, "ab," * 1000, "a1-" * 1000], ids=["letters", "comma-pieces", "dash-pieces"])
def test_a_3000_character_word(tokenizer, word):
    doc, chunks = chunks_of(f"---\ntitle: Blob\n---\n\nBefore the blob. {word} After the blob.\n")
    assert_invariants(tokenizer, doc, chunks)


def test_many_tiny_sections(tokenizer):
    parts = ["---", "title: Tiny sections", "---", ""]
    for i in range(300):
        parts += [f"## Section {i}", "", f"Tiny {i}.", ""]
    doc, chunks = chunks_of("\n".join(parts))
    assert_invariants(tokenizer, doc, chunks)
    assert len(chunks) == 300
    assert chunks[17].section == "Section 17" and chunks[17].text == "Tiny 17."


@pytest.mark.parametrize("words", [150, 400])
def test_very_long_title(tokenizer, words):
    rng = random.Random(words)
    title = " ".join(rng.choice(WORDS) for _ in range(words))
    body = " ".join(sentence(rng, 12) for _ in range(20))
    doc, chunks = chunks_of(f"---\ntitle: {title}\n---\n\n## Results\n\n{body}\n")
    assert_invariants(tokenizer, doc, chunks)
    assert len(chunks) < 60, f"{len(chunks)} chunks for 20 sentences: the chunker shreds the text"


def test_very_long_heading(tokenizer):
    rng = random.Random(3)
    heading = " ".join(rng.choice(WORDS) for _ in range(400))
    body = " ".join(sentence(rng, 12) for _ in range(20))
    doc, chunks = chunks_of(f"---\ntitle: Short title\n---\n\n## {heading}\n\n{body}\n")
    assert_invariants(tokenizer, doc, chunks)
    assert len(chunks) < 60, f"{len(chunks)} chunks for 20 sentences: the chunker shreds the text"


def test_pdf_pages_are_chunked_separately(tokenizer):
    from helpers import make_pdf

    data = make_pdf(["Page one says psilocybin. It has two sentences.", "Page two is about ketamine."], "Two pages")
    doc = load(Path("two.pdf"), "two.pdf", data)
    from assistant.embeddings import load_tokenizer

    chunks = chunk_document(doc, "two.pdf", "two.pdf", ChunkParams.from_settings(Settings()), hf_counter(load_tokenizer()))
    assert_invariants(tokenizer, doc, chunks)
    assert {c.page for c in chunks} == {1, 2}
    assert "ketamine" in next(c for c in chunks if c.page == 2).text


# ----------------------------------------------------------------------------- property test

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_word = st.one_of(st.sampled_from(WORDS), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-é", min_size=1, max_size=14))
_sentence = st.builds(lambda ws, end: " ".join(ws).capitalize() + end,
                      st.lists(_word, min_size=1, max_size=60), st.sampled_from([".", "!", "?", "", ";"]))
_paragraph = st.builds(" ".join, st.lists(_sentence, min_size=1, max_size=25))
_block = st.one_of(_paragraph, st.builds(lambda w, lvl: "#" * lvl + " " + w, _word, st.integers(1, 4)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(_block, min_size=1, max_size=12), title=st.lists(_word, min_size=1, max_size=12))
def test_property_random_documents(tokenizer, blocks, title):
    if not any(not b.startswith("#") and b.strip() for b in blocks):
        blocks = blocks + ["Closing sentence."]
    md = "---\ntitle: " + json.dumps(" ".join(title)) + "\n---\n\n" + "\n\n".join(blocks) + "\n"
    doc, chunks = chunks_of(md, params=ChunkParams.from_settings(Settings(max_tokens=128)))
    assert_invariants(tokenizer, doc, chunks, limit=128)
