"""Property-based tests (hypothesis) of the parts that take arbitrary input: the front-matter parser,
the chunker at the real 256 word-piece window with its title/section prefix, and the follow-up
rewriter fed through the same cleaning `Assistant.ask` applies.

What is already covered elsewhere is not repeated: tests/test_chunking.py checks random documents
at a 128-piece window, tests/test_conversation.py checks that `rewrite` keeps the raw question.
Only the real tokenizer is loaded (no model weights), so this file is fast.
"""

from __future__ import annotations

import datetime as dt
import json
import string

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from assistant.conversation import rewrite
from assistant.errors import DocumentError
from assistant.models import DocMeta, Turn
from assistant.text import clean_user_text
from assistant.settings import Settings
from ingest.schema import parse_front_matter, split_front_matter

from test_chunking import WORDS, assert_invariants, chunks_of

PATH = "corpus/odd folder/doc ü.md"

# ------------------------------------------------------------------ front matter

FIELDS = ["title", "id", "authors", "publisher", "published", "url", "doi", "source_type",
          "substances", "conditions", "jurisdictions", "as_of", "reviewed", "license", "sources",
          "facts"]
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=40), st.dates(), st.sampled_from(["mdma", "trial", "F12", "US-OR", "2024-05-01"]),
)
_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
_mapping = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=12)), _value, max_size=8)

# Text that looks like YAML: key/value lines, dates that do not exist, flow collections, anchors,
# tags, tabs and odd indentation.
_yamlish_token = st.sampled_from([
    "title:", "title: A title", "id: ../../x", "published:", " 2024-13-45", " 2023-02-30", " 2024-05-01",
    "authors:", "- a", "  - b", "[", "]", "{", "}", ",", ":", "&a", "*a", "!!str", "!!binary", "!!timestamp",
    "? ", "|", ">", "\t", "  ", "'", '"', "#", "...", "---", "\n", "\n", "\n", "%YAML 1.1", "~", "null",
])
_yamlish = st.lists(st.one_of(_yamlish_token, st.text(max_size=10)), max_size=40).map("".join)


def _parse(raw: str) -> DocMeta | None:
    """parse_front_matter's contract: a DocMeta, or a DocumentError naming the path."""
    try:
        meta = parse_front_matter(raw, PATH)
    except DocumentError as exc:
        assert exc.path == PATH and str(exc).startswith(PATH + ": "), str(exc)
        assert exc.problem and exc.fix
        return None
    assert isinstance(meta, DocMeta)
    assert meta.title
    return meta


@settings(max_examples=60, deadline=None)
@given(data=_mapping)
def test_front_matter_mapping_gives_docmeta_or_document_error(data):
    try:
        raw = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return
    _parse(raw)


@settings(max_examples=60, deadline=None)
@given(raw=st.one_of(_yamlish, st.text(max_size=200)))
@example(raw="title: A title\npublished: 2024-13-45\n")     # a date that does not exist
@example(raw="title: A title\nreviewed: 2023-02-30\n")
@example(raw="title: " + "[" * 3000)                          # deeply nested flow sequence
@example(raw="title: !!python/object/apply:os.system ['true']\n")
def test_front_matter_garbage_gives_docmeta_or_document_error(raw):
    _parse(raw)


@settings(max_examples=60, deadline=None)
# YAML folds its own line breaks (NEL, LS, PS) inside a quoted scalar: PyYAML dumps "0\x85" and
# reads back "0 ". That is YAML, not our parser, so titles are drawn without them.
@given(title=st.text(st.characters(blacklist_characters="\x85\u2028\u2029"), min_size=1,
                     max_size=40).filter(lambda s: s.strip()),
       published=st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)),
       substances=st.lists(st.sampled_from(["mdma", "psilocybin", "ketamine"]), max_size=3, unique=True))
def test_valid_front_matter_round_trips(title, published, substances):
    raw = yaml.safe_dump({"title": title, "published": published, "substances": substances},
                         allow_unicode=True)
    meta = _parse(raw)
    assert meta is not None and meta.title == title and meta.published == published
    assert list(meta.substances) == substances


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300), fm=st.one_of(st.none(), _yamlish))
@example(text="", fm="!!timestamp")  # crashed PyYAML itself (AttributeError)
def test_split_front_matter_offsets(text, fm):
    doc = text if fm is None else f"---\n{fm}\n---\n{text}"
    raw, body, offset = split_front_matter(doc)
    assert doc[offset:] == body
    if raw is not None:
        _parse(raw)


# ------------------------------------------------------------------ chunker at the real window

_word = st.one_of(st.sampled_from(WORDS),
                  st.text(alphabet=string.ascii_letters + string.digits + "éßµ–-/%", min_size=1, max_size=30),
                  st.text(min_size=1, max_size=6).filter(lambda s: s.strip()))
_sentence = st.builds(lambda ws, end: " ".join(ws) + end, st.lists(_word, min_size=1, max_size=80),
                      st.sampled_from([".", "?", "", "。", " (n = 12)."]))
_para = st.builds(" ".join, st.lists(_sentence, min_size=1, max_size=20))
_heading = st.builds(lambda lvl, ws: "#" * lvl + " " + " ".join(ws), st.integers(1, 4),
                     st.lists(_word, min_size=1, max_size=30))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.one_of(_para, _heading, _para), min_size=1, max_size=10),
       title=st.lists(_word, min_size=1, max_size=40))
def test_chunks_fit_256_pieces_with_prefix_and_map_back(tokenizer, blocks, title):
    """Default settings (256 pieces, 1 overlap sentence), long titles and headings included."""
    if not any(not b.startswith("#") and b.strip() for b in blocks):
        blocks = blocks + ["Closing sentence."]
    # ensure_ascii=False: a JSON surrogate-pair escape is two lone surrogates to YAML (covered
    # by test_hostile.py's odd front matter), not what this property is about.
    md = "---\ntitle: " + json.dumps(" ".join(title), ensure_ascii=False) + "\n---\n\n" + "\n\n".join(blocks) + "\n"
    try:
        doc, chunks = chunks_of(md)
    except DocumentError:
        return  # e.g. a body that is only markup: refused with a message, which is fine
    if not doc.segments:
        return
    assert_invariants(tokenizer, doc, chunks, limit=Settings().max_tokens)


# ------------------------------------------------------------------ rewriter after cleaning

_q = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(["what", "about", "it", "its", "dose", "side", "effects", "\u202e", "\x00",
                              "\u200b", "ＭＤＭＡ", "molly", "Oregon", "🍄", "ما", "?"]), max_size=10).map(" ".join),
)
_turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": _q})


@settings(max_examples=60, deadline=None)
@given(question=_q, history=st.lists(_turn, max_size=5))
def test_rewriter_never_drops_the_users_words_after_cleaning(question, history):
    """What ask() does: clean the question, then rewrite it with the history (given as dicts)."""
    q = clean_user_text(question)
    turns = [Turn.model_validate(t) for t in history]
    out = rewrite(q, turns)
    for word in q.split():
        assert word in out, (word, out)
