"""Hybrid retrieval over the real corpus: lay names, filters, spread over documents, the dense and
lexical modes on their own, the LangChain retriever, and BM25 staying in step with Chroma."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from helpers import write_doc
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from assistant.retrieve import Filters, HybridSearch, PsyqaRetriever
from assistant.services import Services, build_services
from assistant.settings import Settings

pytestmark = pytest.mark.slow


def doc_ids(hits) -> list[str]:
    return [h.chunk.doc_id for h in hits]


# ------------------------------------------------------------------------------ lay names

def _mentions(word: str):
    return lambda h: word.lower() in (h.chunk.title + " " + h.chunk.text).lower()


LAY = [
    # (question, the lay name, what a hit near the top must be)
    ("What did trials find about molly for PTSD?", "molly",
     lambda h: h.chunk.metadata.get("sub_mdma") is True and "MDMA" in h.chunk.text),
    ("Is Spravato approved for depression?", "spravato", lambda h: h.chunk.doc_id == "esketamine-spravato"),
    ("Do magic mushrooms help with depression?", "magic mushrooms",
     lambda h: h.chunk.doc_id.startswith("psilocybin-")),
    ("Is iboga used for opioid addiction?", "iboga", lambda h: h.chunk.doc_id.startswith("ibogaine-")),
    ("Was ayahuasca tested for depression?", "ayahuasca", lambda h: h.chunk.doc_id == "ayahuasca-dmt"),
]


@pytest.mark.parametrize("question,lay,wanted", LAY, ids=[x[1] for x in LAY])
def test_hybrid_finds_the_right_document_for_lay_names(qa, question, lay, wanted):
    hits = qa.retrieve(question)
    assert len(hits) == qa.settings.top_k
    assert any(wanted(h) for h in hits[:3]), f"{lay}: top 3 were {doc_ids(hits)[:3]}"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))


@pytest.mark.parametrize("lay,canonical", [("molly", "MDMA"), ("magic mushrooms", "psilocybin")])
def test_lexical_side_also_expands_lay_names(qa, lay, canonical):
    # Neither lay name occurs in corpus/: BM25 can only find anything through the lexicon.
    corpus_text = " ".join(p.read_text(encoding="utf-8").lower() for p in Path("corpus").glob("*.md"))
    assert lay not in corpus_text
    hits = qa.search.search(lay, 6, mode="lexical")
    assert len(hits) == 6
    assert all(_mentions(canonical)(h) for h in hits), [h.chunk.doc_id for h in hits]


# -------------------------------------------------------------------------------- filters

FILTERS = [
    Filters(substances=["mescaline"]),
    Filters(conditions=["alcohol-use-disorder"]),
    Filters(substances=["lsd"], conditions=["ptsd"]),
    Filters(substances=["ibogaine", "dmt"], source_types=["summary"]),
]


def _matches(f: Filters, meta: dict) -> bool:
    subs = not f.substances or any(meta.get(f"sub_{s}") is True for s in f.substances)
    conds = not f.conditions or any(meta.get(f"cond_{c}") is True for c in f.conditions)
    types = not f.source_types or meta.get("source_type") in f.source_types
    return subs and conds and types


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: f.model_dump_json(exclude_defaults=True))
def test_filters_restrict_every_hit(qa, flt):
    modes = ("hybrid", "dense", "lexical") if flt is FILTERS[2] else ("hybrid",)
    for mode in modes:
        hits = qa.search.search("What are the risks and the evidence for this treatment?", 6, flt, mode=mode)
        assert hits, f"{mode}: a filter that matches documents must still return passages"
        for h in hits:
            assert _matches(flt, h.chunk.metadata), (mode, h.chunk.doc_id, flt)


def test_filter_with_no_matching_document_returns_nothing(qa):
    flt = Filters(substances=["mescaline"], source_types=["label"])
    col = qa.services.collection()
    # The premise, read from the index itself: no chunk carries both.
    assert col.get(where={"sub_mescaline": True}, limit=1)["ids"], "mescaline documents exist"
    none = [m for m in col.get(include=["metadatas"])["metadatas"] if _matches(flt, m)]
    assert none == []
    for mode in ("hybrid", "dense", "lexical"):
        assert qa.search.search("Is mescaline legal?", 6, flt, mode=mode) == []
    assert qa.retrieve("Is mescaline legal?", Filters(source_types=["no-such-type"])) == []


# ------------------------------------------------------------------------- spread and modes

@pytest.mark.parametrize("question,mode", [
    ("What did the MAPP1 trial of MDMA for PTSD find?", "hybrid"),
    ("What are the cardiac risks of ibogaine?", "dense"),
    ("Is psilocybin legal in Oregon?", "lexical"),
])
def test_results_spread_over_documents(qa, question, mode):
    hits = qa.search.search(question, 10, mode=mode)
    assert len(hits) == 10
    counts = Counter(doc_ids(hits))
    # The cap is reached (the best document had more to give) and never exceeded.
    assert max(counts.values()) == qa.settings.max_per_doc, counts
    assert len({h.chunk.chunk_id for h in hits}) == len(hits)


def test_max_per_doc_setting_is_obeyed(index_settings, qa):
    one = Services(settings=index_settings.model_copy(update={"max_per_doc": 1}),
                   embedder=qa.services.embedder)
    hits = HybridSearch(one).search("What did the MAPP1 trial of MDMA for PTSD find?", 8)
    assert len(hits) == 8
    assert len(set(doc_ids(hits))) == 8


def test_dense_only_mode(qa):
    hits = qa.search.search("What psilocybin dose was used in Goodwin 2022?", 6, mode="dense")
    assert hits and hits[0].chunk.doc_id == "psilocybin-treatment-resistant-depression"
    assert all(h.lexical == 0.0 for h in hits)
    assert all(0.0 < h.dense <= 1.0 for h in hits)
    sims = [h.dense for h in hits]
    assert sims == sorted(sims, reverse=True)


def test_lexical_only_mode(qa):
    hits = qa.search.search("Goodwin 2022 COMP360 psilocybin", 6, mode="lexical")
    assert hits and hits[0].chunk.doc_id == "psilocybin-treatment-resistant-depression"
    assert all(h.lexical > 0.0 for h in hits)
    scores = [h.lexical for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert "Goodwin" in hits[0].chunk.text or "COMP360" in hits[0].chunk.text


def test_hits_carry_their_provenance(qa):
    for h in qa.retrieve("Is psilocybin legal in Oregon?"):
        c = h.chunk
        assert c.chunk_id and c.doc_id and c.title and c.source
        assert c.metadata["doc_id"] == c.doc_id
        assert 0 <= c.start < c.end
        assert c.text.strip()


# ------------------------------------------------------------------------------ LangChain

def test_psyqa_retriever_composes_with_langchain(qa):
    retriever = PsyqaRetriever(search=qa.search, k=4)
    chain = retriever | RunnableLambda(lambda docs: [d.metadata["doc_id"] for d in docs])
    ids = chain.invoke("Is Spravato approved for depression?")
    assert isinstance(ids, list) and len(ids) == 4
    assert "esketamine-spravato" in ids[:2]

    docs = retriever.invoke("What are the cardiac risks of ibogaine?")
    assert len(docs) == 4
    for d in docs:
        assert isinstance(d, Document)
        assert d.page_content.strip()
        assert d.metadata["chunk_id"] and d.id == d.metadata["chunk_id"]
        assert d.metadata["doc_id"]
    assert docs[0].metadata["doc_id"].startswith("ibogaine-")
    same = [h.chunk.chunk_id for h in qa.search.search("What are the cardiac risks of ibogaine?", 4)]
    assert [d.metadata["chunk_id"] for d in docs] == same


def test_psyqa_retriever_applies_its_filters(qa):
    flt = Filters(substances=["lsd"])
    docs = PsyqaRetriever(search=qa.search, k=5, filters=flt).invoke("What are the risks?")
    assert docs
    assert all(d.metadata.get("sub_lsd") is True for d in docs)
    batch = PsyqaRetriever(search=qa.search, k=2).batch(["Is psilocybin legal in Oregon?",
                                                         "Is Spravato approved for depression?"])
    assert [len(b) for b in batch] == [2, 2]


# ---------------------------------------------------------------------- BM25 in step with Chroma

def _ids_of(services: Services, doc_id: str) -> set[str]:
    return set(services.collection().get(where={"doc_id": doc_id})["ids"])


def _all_hits(search: HybridSearch, queries: list[str]) -> list:
    out = []
    for q in queries:
        for mode in ("hybrid", "dense", "lexical"):
            out += search.search(q, 10, mode=mode)
    return out


SMALL_META = dict(source_type="summary", substances=["psilocybin"])


def _small_corpus(tmp_path: Path) -> tuple[Path, Settings]:
    """A corpus folder with two made-up studies (alpha: quokka, beta: narwhal), and its settings."""
    corpus = tmp_path / "corpus"
    write_doc(corpus / "alpha.md", "Alpha", "The quokka study followed forty adults for a year. "
              "Quokka participants kept a sleep diary every morning.", id="alpha", **SMALL_META)
    write_doc(corpus / "beta.md", "Beta", "The narwhal cohort reported fewer headaches after the "
              "second session. Narwhal sessions lasted six hours.", id="beta", **SMALL_META)
    return corpus, Settings(data_dir=tmp_path / "data", corpus_dir=corpus)


def test_bm25_stays_in_step_with_chroma_after_change_add_and_remove(tmp_path, embedder):
    from ingest.pipeline import run

    corpus, settings = _small_corpus(tmp_path)
    meta = SMALL_META
    write_doc(corpus / "gamma.md", "Gamma", "Psilocybin sessions in the gamma protocol were held "
              "in a quiet room with two facilitators present.", id="gamma", **meta)
    first = run(None, settings, embedder=embedder)
    assert not first.failed and first.added == 3

    services = Services(settings=settings, embedder=embedder)
    search = HybridSearch(services)
    assert search.search("quokka sleep diary", 3, mode="lexical")[0].chunk.doc_id == "alpha"
    before = {d: _ids_of(services, d) for d in ("alpha", "beta", "gamma")}
    assert all(before.values())

    # Change alpha's text, remove beta, add delta.
    write_doc(corpus / "alpha.md", "Alpha", "The axolotl study followed forty adults for a year. "
              "Axolotl participants kept a mood diary every evening.", id="alpha", **meta)
    (corpus / "beta.md").unlink()
    write_doc(corpus / "delta.md", "Delta", "The pangolin extension enrolled twelve more adults "
              "and repeated the pangolin sessions at six months.", id="delta", **meta)
    second = run(None, settings, embedder=embedder)
    assert not second.failed
    assert (second.updated, second.added, second.removed) == (1, 1, 1)

    after = {d: _ids_of(services, d) for d in ("alpha", "beta", "gamma", "delta")}
    assert after["beta"] == set() and after["delta"]
    assert after["gamma"] == before["gamma"]
    removed = (before["alpha"] | before["beta"]) - after["alpha"] - after["gamma"] - after["delta"]
    assert before["beta"] <= removed and removed

    # The same Services object: it must notice the new generation on its own.
    hits = _all_hits(search, ["quokka sleep diary", "narwhal headaches", "axolotl mood diary",
                              "pangolin extension"])
    assert hits
    assert not {h.chunk.chunk_id for h in hits} & removed
    assert all("quokka" not in h.chunk.text.lower() and "narwhal" not in h.chunk.text.lower()
               for h in hits)
    for query, doc, word in (("axolotl mood diary", "alpha", "axolotl"),
                             ("pangolin extension", "delta", "pangolin")):
        for mode in ("hybrid", "lexical"):
            top = search.search(query, 3, mode=mode)[0]
            assert (top.chunk.doc_id, mode) == (doc, mode)
            assert word in top.chunk.text.lower()

    # Derived state lost (a crash, another machine's ingest): new services rebuild BM25 from Chroma.
    bm25 = settings.index_dir / "bm25"
    assert bm25.is_dir()
    shutil.rmtree(bm25)
    fresh = HybridSearch(build_services(settings))
    top = fresh.search("pangolin extension", 3, mode="lexical")
    assert top and top[0].chunk.doc_id == "delta"
    assert not {h.chunk.chunk_id for h in fresh.search("quokka narwhal", 10, mode="lexical")} & removed
    assert any(p.name == "ids.json" for p in bm25.rglob("ids.json")), "the rebuilt BM25 index was not saved"


# ------------------------------------------------------------- what a reader of a generation sees

class _CountingCollection:
    """The real collection, with its `query` calls recorded (to see which path a search took)."""

    def __init__(self, col) -> None:
        self._col, self.wheres = col, []

    def query(self, **kw):
        self.wheres.append(kw.get("where"))
        return self._col.query(**kw)

    def __getattr__(self, name):
        return getattr(self._col, name)


def test_uncommitted_and_deleted_chunks_stay_invisible_on_the_fast_path(tmp_path, embedder):
    """The dense search runs without a `where` clause while every hit is visible, and falls back
    to the generation rule as soon as one is not: chunks of a sync in progress (gen G+1) and chunks
    deleted by generation G (dead <= G, not yet cleaned up) never reach an answer."""
    from assistant.index import NEVER
    from ingest.pipeline import run

    corpus, settings = _small_corpus(tmp_path)
    meta = SMALL_META
    write_doc(corpus / "gamma.md", "Gamma", "The quokka sleep diary was also kept in the gamma "
              "protocol, every morning for a year.", id="gamma", **meta)
    write_doc(corpus / "delta.md", "Delta", "Ketamine clinic patients kept a quokka sleep diary "
              "too.", id="delta", source_type="summary", substances=["ketamine"])
    assert run(None, settings, embedder=embedder).added == 4

    services = Services(settings=settings, embedder=embedder)
    col = services.collection()
    counting = _CountingCollection(col)
    services.collection = lambda: counting  # the real collection, counted
    search = HybridSearch(services)
    query = "quokka sleep diary"
    first = {mode: search.search(query, 5, mode=mode) for mode in ("hybrid", "dense")}
    assert counting.wheres == [None, None], "a clean index should be searched without a where clause"
    for mode, hits in first.items():  # both documents found, so hiding them below is a real test
        assert {"alpha", "gamma"} <= {h.chunk.doc_id for h in hits}, mode
    clean = {mode: [h.chunk.chunk_id for h in hits] for mode, hits in first.items()}
    # A user filter is applied in Python to an over-fetched unfiltered result while enough pass.
    counting.wheres.clear()
    only = Filters(substances=["ketamine"])
    assert {h.chunk.doc_id for h in search.search(query, 5, only, mode="dense")} == {"delta"}
    assert counting.wheres == [None]

    gen = int(col.metadata["generation"])
    alpha = col.get(where={"doc_id": "alpha"}, include=["documents", "metadatas", "embeddings"])
    gamma = col.get(where={"doc_id": "gamma"}, include=["metadatas"])
    # A sync in progress: alpha's next version, written with the same vectors (so it ties the top).
    col.add(ids=[f"next-{i}" for i in alpha["ids"]],
            documents=[d + " UNCOMMITTED" for d in alpha["documents"]],
            metadatas=[dict(m, doc_id="alpha-next", gen=gen + 1, dead=NEVER) for m in alpha["metadatas"]],
            embeddings=alpha["embeddings"])
    # Gamma deleted by the committed generation, its chunks not cleaned up yet.
    col.update(ids=gamma["ids"], metadatas=[dict(m, dead=gen) for m in gamma["metadatas"]])

    counting.wheres.clear()
    for mode in ("hybrid", "dense"):
        hits = search.search(query, 5, mode=mode)
        got = {h.chunk.doc_id for h in hits}
        assert "alpha" in got, (mode, got)
        assert not got & {"alpha-next", "gamma"}, (mode, got)
        assert not any("UNCOMMITTED" in h.chunk.text for h in hits)
    assert counting.wheres[0] is None and counting.wheres[1] is not None, counting.wheres
    assert len(counting.wheres) == 4, "each search should have fallen back to the where clause once"
    # With a filter too: the over-fetch holds the uncommitted copies, so it falls back as well.
    counting.wheres.clear()
    got = search.search(query, 5, Filters(substances=["psilocybin"]), mode="dense")
    assert {h.chunk.doc_id for h in got} == {"alpha", "beta"}
    assert counting.wheres[0] is None and counting.wheres[1] is not None, counting.wheres

    # The leftovers gone again: back to one unfiltered query per search, same results as before.
    col.delete(ids=[f"next-{i}" for i in alpha["ids"]])
    col.update(ids=gamma["ids"], metadatas=gamma["metadatas"])
    counting.wheres.clear()
    again = {mode: [h.chunk.chunk_id for h in search.search(query, 5, mode=mode)] for mode in ("hybrid", "dense")}
    assert again == clean
    assert counting.wheres == [None, None]


# ----------------------------------------------------------------- fusion steps, without the model

def test_fuse_adds_weighted_normalised_bm25_to_the_cosine():
    import numpy as np  # noqa: F401  (the pure steps take plain dicts and arrays)

    from assistant.retrieve import fuse, normalise_lexical

    cands = ["a", "b", "c"]
    lex = normalise_lexical({"b": 8.0, "c": 2.0}, cands)
    assert lex == {"a": 0.0, "b": 1.0, "c": 0.25}
    dense = {"a": 0.5, "b": 0.2, "c": 0.4}
    assert fuse(cands, dense, lex, 0.4) == pytest.approx({"a": 0.5, "b": 0.6, "c": 0.5})
    assert fuse(cands, dense, lex, 0.4, mode="dense") == dense
    assert fuse(cands, dense, lex, 0.4, mode="lexical") == lex
    assert normalise_lexical({}, cands) == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_prf_moves_the_query_towards_its_best_candidates():
    import numpy as np

    from assistant.retrieve import prf

    q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    vectors = {"a": np.array([0.0, 1.0, 0.0], dtype=np.float32),
               "b": np.array([0.0, 1.0, 0.0], dtype=np.float32),
               "c": np.array([0.0, 0.0, 1.0], dtype=np.float32)}
    fused = {"a": 0.9, "b": 0.8, "c": 0.1}
    q2 = prf(q, fused, vectors, weight=1.0, docs=2)
    assert np.linalg.norm(q2) == pytest.approx(1.0)
    assert q2[1] > 0.7 and q2[2] == 0.0, "moved towards a and b only (the two best)"


def test_cap_per_doc_keeps_order_and_spreads_documents():
    from assistant.retrieve import cap_per_doc

    doc = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}.__getitem__
    assert cap_per_doc(["a1", "a2", "a3", "b1", "c1"], doc, max_per_doc=2, k=10) == ["a1", "a2", "b1", "c1"]
    assert cap_per_doc(["a1", "a2", "a3", "b1", "c1"], doc, max_per_doc=2, k=3) == ["a1", "a2", "b1"]


def test_sentence_vectors_round_trip_through_metadata():
    import numpy as np

    from assistant import index

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    meta = index.sentence_meta([(0, 10), (11, 40), (41, 80)], vecs)
    assert all(isinstance(v, str) for v in meta.values())  # Chroma metadata is flat scalars
    spans, back = index.sentences(meta)
    assert spans == [(0, 10), (11, 40), (41, 80)]
    assert np.abs(back @ vecs.T - vecs @ vecs.T).max() < 0.01  # int8 keeps cosines to 0.01
    assert index.sentences({}) is None
    assert index.sentences({index.SENTENCE_SPANS: "[[0, 1]]", index.SENTENCE_VECTORS: "x:garbage"}) is None


def test_trial_codes_in_a_query_are_read_as_codes():
    from assistant.retrieve import _TRIAL_CODE

    assert set(_TRIAL_CODE.findall("how did the mdma arm do in mapp2 and comp005, gh001-trd-201?")) >= {
        "mapp2", "comp005", "gh001"}
    assert _TRIAL_CODE.findall("the 5-meo-dmt phase 2b trial at 6 months") == []


def test_a_name_is_about_the_substance_its_sentences_name():
    from assistant.bm25 import name_subjects

    texts = [
        "Bogenschutz et al. randomised 95 adults to psilocybin. Bogenschutz 2022 gave psilocybin twice. "
        "In Bogenschutz 2022, psilocybin cut heavy drinking days.",
        "The FDA reviewed MDMA. The FDA approved Spravato. The FDA has not approved psilocybin. "
        "Trials by Bogenschutz, Noller and others tested ibogaine and psilocybin.",
        "Noller followed ibogaine patients. Noller 2018 gave ibogaine once. Noller saw ibogaine work.",
    ]
    got = name_subjects(texts, ["bogenschutz", "noller", "fda", "nobody"])
    # a passing mention in a list of trials does not change what a name is about
    assert got == {"bogenschutz": "psilocybin", "noller": "ibogaine"}
