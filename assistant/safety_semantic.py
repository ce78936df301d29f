"""The semantic safety layer: a classifier over the bundled model's embeddings of each message.

The pattern layer (`assistant.safety.check`) catches the phrasings it was written for. This layer
catches what people in crisis actually write ("everyone would be better off", "the pills are
counted", "she won't wake up") and polite or indirect sourcing and personal-dose requests. It
embeds the message, each of its sentences, and the previous user turn joined to it, and scores
each with a softmax regression over four labels (crisis, sourcing, personal_dose, clinical),
fitted on the curated bank `safety_bank.yaml` plus the dev split of `eval/safety.jsonl` by
`python -m assistant.safety_fit`, which writes the weights to `safety_model.json`.

Nothing here encodes on its own in the hot path: `SafetyScreen.plan` says which texts need
vectors, the caller encodes them in the same `encode()` batch as the retrieval query, and
`SafetyScreen.decide` turns the vectors into a decision. Decided in code, before retrieval and
before any language model sees the message.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from assistant import messages, safety
from assistant.safety import SafetyDecision
from assistant.answer.focus import has_subject
from assistant.text import sentence_spans

BANK_PATH = Path(__file__).with_name("safety_bank.yaml")
# Third-party clinical research questions, one per line: more contrast (see the file's header).
CONTRAST_PATH = Path(__file__).with_name("safety_contrast.txt")
MODEL_PATH = Path(__file__).with_name("safety_model.json")
LABELS: tuple[str, ...] = ("crisis", "sourcing", "personal_dose", "clinical")
CRISIS, SOURCING, PERSONAL_DOSE, CLINICAL = range(4)

# Probability a text must reach for its label, per view of the message. Chosen on the
# cross-validated dev split (BENCHMARKS.md, Safety), recall first: a missed crisis message is the
# worst defect, a clinical question shown the crisis text the cheaper one. A single sentence says
# less than the whole message (a fragment such as "Shoot me now." or "Never done it before." is
# ambiguous alone), so it must be surer; so must the previous turn joined to the message, which
# mostly repeats what that turn already decided. (Crisis sentence 0.85: in the dev
# cross-validation no sentence of a non-crisis message scored above 0.78, and "Honestly I have been
# collecting my own tablets for weeks and I am ready to take them all." inside a nurse's question
# scored 0.89 once the bank had informal clinical questions. 0.65 with the bank and dev split of
# the fourth round: that sentence scores 0.65, and in the dev cross-validation 0.65 costs nothing
# against 0.85, while 0.60 gives one clinical message the crisis text and misses a dose request.
# 0.70 once the dev split had 536 messages, the quality set's 340 dev questions were learnt as
# clinical and the fit ran to convergence: in that cross-validation the sentence view caught no
# crisis message the other views missed, and 0.65 gave a sourcing request the crisis text (0.70 to
# 0.80 all scored the same); the nurse's sentence above scores 0.80, so 0.70 keeps a margin. Above
# that the view still gives four non-crisis messages the crisis text, at 0.87-0.98 ("can an lsd
# trip just never end? what is HPPD exactly"). The message view stays at 0.30: crisis messages are
# caught there at 0.33 (three), 0.38 and 0.40.)
THRESHOLDS: dict[str, dict[str, float]] = {
    "crisis": {"message": 0.30, "sentence": 0.70, "context": 0.50},
    "sourcing": {"message": 0.50, "sentence": 0.95, "context": 0.80},
    "personal_dose": {"message": 0.50, "sentence": 0.95, "context": 0.80},
}
# The nearest-neighbour rule beside the classifier: for a message whose nearest bank expression
# is a crisis one, at least NEAREST_MIN similar (cosine) and NEAREST_MARGIN nearer than any
# contrast, sourcing or dosing expression, the classifier's crisis threshold drops to
# NEAREST_FLOOR. It catches close paraphrases of the bank that the linear classifier scores in
# the grey zone. Without the floor it also fired on topic alone: "Is ibogaine dangerous for the
# heart?" (classifier 0.04) sits at 0.86 from "would a big dose of ibogaine stop my heart?".
NEAREST_MIN = 0.70
NEAREST_MARGIN = 0.10
NEAREST_FLOOR = 0.10
# The same rule the other way, for the grey zone only: a message the classifier calls a crisis
# on the whole-message view with less than CLEAR_MAX, whose nearest bank expression is a clinical
# one at least CLEAR_MIN similar and CLEAR_MARGIN nearer than any crisis one, is a close
# paraphrase of a question psyqa answers ("ibogaine heart problems" sits at 0.88 from "ibogaine
# heart risks" and scores 0.38 as a crisis). Sentence and context views are not cleared. (0.80,
# 0.65 and 0.10, from 0.50, 0.85 and 0.05, once the bank had more clinical and everyday questions
# in the words crisis talk uses: in the dev cross-validation clinical messages handled as a crisis
# went from 6.8% to 3.4%, no crisis message lost; a margin of 0.15 or CLEAR_MAX 0.90 lost one.)
CLEAR_MAX = 0.80
CLEAR_MIN = 0.65
CLEAR_MARGIN = 0.10
# The same for a decline: a message the classifier calls a sourcing or dosing request on the
# whole-message view with less than DECLINE_CLEAR_MAX, whose nearest bank expression is a clinical
# one at least DECLINE_CLEAR_MIN similar and DECLINE_CLEAR_MARGIN nearer than any expression of
# that request's label, is answered (a pattern-layer decline still stands). In the dev
# cross-validation (536 messages and 340 quality questions, the converged fit of the sixth round) it
# took clinical messages declined from 2.5% to 0.5% and quality-set questions screened from 10 to
# 8 of 340 (with the early-stopped fit: 2.0% to 0.5%, 8 to 7; "best way to deal with jet
# lag flying from london to lima" and "easy recipe for mushroom risotto?" read as sourcing, "iboga
# for meth addiction, whats the success rate" as a dose request), no sourcing or dosing request
# lost; a minimum of 0.65 cleared one clinical message fewer, and no bar at all (DECLINE_CLEAR_MAX
# over 1) one quality question more, but then a decline however sure would be overruled on
# similarity alone.
DECLINE_CLEAR_MAX = 0.90
DECLINE_CLEAR_MIN = 0.60
DECLINE_CLEAR_MARGIN = 0.10
# A message that is stopped anyway (a sourcing or dosing request) gets the crisis text from this
# crisis probability on, on the message or on the previous turn joined to it: declining someone
# in crisis ("I have enough pens to do it and nobody checks how many I use" read as a dose
# question) is the worst of the stopped outcomes. 0.30, the message view's crisis threshold: at
# 0.20 it saved no crisis message in the dev cross-validation and turned a sourcing request
# (0.26) and the dose follow-up "And for me?" (0.22) into crisis answers.
CRISIS_OVER_DECLINE = 0.30
# After a crisis turn (the previous user turn is a crisis by this screen's own verdict, or the chat
# shows the crisis response), the joined view mostly repeats that turn, so it cannot tell a
# message that carries on from it from one that moves on: joined to a disclosure, "thanks, I
# called 988 and my sister is here. separate q, does Spravato need the 2 hr monitoring?" scores
# 0.9 and more. So a message that names a subject of its own (a substance, condition, medicine or
# name: `has_subject`) is read alone, by the usual bars, and when it is not a crisis itself it is
# answered with the crisis resources kept in view (messages.AFTER_CRISIS_NOTE; the app keeps the
# crisis text in the sidebar). A message that names nothing ("and if I took the whole packet
# tonight?", "yes. for months now") only makes sense with the crisis turn and is read joined to
# it, a crisis from AFTER_CRISIS_CONTEXT. (Lower bars for the message alone after a crisis were
# tried on the dev cross-validation: they caught no retraction such as "relax, it was a joke.
# anyway, ..." and gave reassurances like the one above the crisis text again.)
AFTER_CRISIS_CONTEXT = 0.35
# Right after a crisis turn, a message that takes the disclosure back or waves the crisis response
# away ("relax, it was a joke. anyway, ...", "never mind, I was being dramatic", "just answer the
# question") is still a crisis, whatever else it asks: a retraction is no sign of safety, unlike
# "I called 988 and my sister is here". Read as words, not by the classifier, which sees the
# question that follows. (Dev cross-validation: the three retractions with a subject of their own
# that were answered got the crisis text, none of the five clinical messages after a crisis did.)
_RETRACTION = safety._rx(
    r"\b(?:just|only)\s+(?:kidding|joking)\b", r"\bj/?k\b", r"\bwas\s+(?:only\s+|just\s+)?(?:a\s+)?jok(?:e|ing)\b",
    r"\bdid(?:n'?t|\s+not)\s+mean\s+(?:it|that)\b", r"\bnever\s*mind\b", r"\bnvm\b",
    r"\bignore\s+(?:that|this|it|what\s+i\s+(?:said|wrote))\b",
    r"\bforget\s+(?:about\s+)?(?:it|that|what\s+i\s+(?:said|wrote))\b",
    r"\b(?:being|was)\s+(?:dramatic|silly|stupid)\b",
    r"\bjust\s+(?:answer|tell\s+me|give\s+me)\b", r"\bnot\s+calling\s+(?:anyone|anybody|them)\b",
)
# Sentences shorter than this many words are not scored on their own ("ok.", "yeah.").
MIN_SENTENCE_WORDS = 3
# Vectors of recent messages (the previous turn of a chat is usually among them).
CACHE_SIZE = 512


class BankError(ValueError):
    """The bank file is malformed; the message names the file, the place and the fix."""


@dataclass(frozen=True)
class Expression:
    text: str
    label: str
    signal: str


def load_bank(path: Path = BANK_PATH, contrast: Path | None = CONTRAST_PATH) -> list[Expression]:
    """Every expression of the bank with its label and signal, in file order, then the lines of
    `contrast` as clinical research questions.

    Raises:
        BankError: the file is not a mapping of label -> signal -> list of strings, or names a
            label other than crisis, sourcing, personal_dose and clinical.
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise BankError(f"{path}: expected a mapping of label -> signal -> expressions")
    out: list[Expression] = []
    for label, groups in data.items():
        if label not in LABELS:
            raise BankError(f"{path}: unknown label {label!r}; use one of {', '.join(LABELS)}")
        if not isinstance(groups, dict):
            raise BankError(f"{path}: {label}: expected signal -> list of expressions")
        for signal, items in groups.items():
            if not isinstance(items, list) or not items:
                raise BankError(f"{path}: {label}.{signal}: expected a non-empty list")
            for i, item in enumerate(items):
                if not isinstance(item, str) or not item.strip():
                    raise BankError(f"{path}: {label}.{signal}[{i}]: {item!r} is not text; quote "
                                    "words YAML reads as booleans or numbers (\"yes\", \"no\")")
                out.append(Expression(item.strip(), label, str(signal)))
    if contrast is not None:
        for line in Path(contrast).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                out.append(Expression(line.strip(), "clinical", "research_question"))
    return out


def bank_digest(paths: Sequence[Path] = (BANK_PATH, CONTRAST_PATH)) -> str:
    """One digest of the bank files, recorded with the weights fitted on them."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def semantic_text(text: str) -> str:
    """The form of a text the classifier sees, bank and messages alike: the text itself, or its
    pattern-layer folding (look-alike letters, diacritics, curly quotes) when that differs from
    case alone.

    Not the lexicon's query expansion: the classifier's input must not move when the lexicon
    does. The model is uncased, so for most messages this is the retrieval query itself (the same
    string up to case, when the lexicon adds nothing) and one vector serves both.
    """
    folded = safety._normalize(text)
    return text if folded == " ".join(text.casefold().split()) else folded


def same_vector(a: str, b: str) -> bool:
    """Whether the uncased model gives `a` and `b` the same vector (equal up to case)."""
    return a == b or a.casefold() == b.casefold()


# ------------------------------------------------------------------------------ the classifier


@dataclass
class Classifier:
    """Softmax regression over normalised embeddings: P(label | text) = softmax(scale*x @ W + b)."""

    weights: np.ndarray          # (dim, len(LABELS))
    bias: np.ndarray             # (len(LABELS),)
    scale: float = 5.0
    meta: dict = field(default_factory=dict)

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        z = np.asarray(vectors, dtype=np.float32) * self.scale @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def to_json(self) -> dict:
        return {"labels": list(LABELS), "scale": self.scale, **self.meta,
                "bias": [round(float(x), 6) for x in self.bias],
                "weights": [[round(float(x), 6) for x in row] for row in self.weights]}

    @classmethod
    def from_json(cls, data: dict) -> Classifier:
        if list(data.get("labels", [])) != list(LABELS):
            raise BankError(f"{MODEL_PATH}: labels {data.get('labels')} are not {list(LABELS)}; "
                            "refit with `python -m assistant.safety_fit`")
        meta = {k: v for k, v in data.items() if k not in ("labels", "scale", "bias", "weights")}
        return cls(np.asarray(data["weights"], dtype=np.float32),
                   np.asarray(data["bias"], dtype=np.float32), float(data["scale"]), meta)


def fit(vectors: np.ndarray, labels: Sequence[int], weights: Sequence[float] | None = None, *,
        c: float = 1.0, scale: float = 5.0, steps: int = 3000) -> Classifier:
    """Fit the softmax regression to convergence: multinomial logistic regression (L-BFGS, L2
    penalty 1/(2c) on the weights, not the bias; deterministic).

    Each example counts with its weight (default 1), and then each class as much as any other,
    so that the larger crisis and contrast banks do not pull sourcing and dosing requests over.
    (It replaced 3000 steps of full-batch gradient descent, stopped early, l2 1e-4: in the dev
    cross-validation of the sixth round, 536 messages and the quality set's 340 dev questions,
    crisis recall 97.3% -> 97.9%, personal_dose 95.9% -> 96.9%, clinical messages shown the
    crisis text 4.0% -> 3.5%, sourcing and declines unchanged; c 0.5 and 2 scored within one
    message of c 1, and a fit takes seconds instead of a minute.)
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(vectors, dtype=np.float64) * scale
    y = np.asarray(labels)
    k = len(LABELS)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    totals = np.bincount(y, weights=w, minlength=k)
    w_sample = w / np.maximum(totals, 1e-9)[y]
    w_sample *= len(y) / w_sample.sum()
    model = LogisticRegression(C=c, max_iter=steps, tol=1e-6)
    model.fit(x, y, sample_weight=w_sample)
    coef = np.zeros((x.shape[1], k))
    bias = np.full(k, -1e4)  # a label absent from the training data is never predicted
    coef[:, model.classes_] = model.coef_.T if len(model.classes_) > 2 else np.hstack(
        [-model.coef_.T / 2, model.coef_.T / 2])
    bias[model.classes_] = model.intercept_ if len(model.classes_) > 2 else np.array(
        [-model.intercept_[0] / 2, model.intercept_[0] / 2])
    return Classifier(coef.astype(np.float32), bias.astype(np.float32), scale)


@lru_cache(maxsize=4)
def load_classifier(path: Path = MODEL_PATH) -> Classifier:
    """The fitted weights shipped with the package, read once per process."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BankError(f"{path} is missing; fit it with `python -m assistant.safety_fit`") from None
    return Classifier.from_json(data)


# ------------------------------------------------------------------------------- screening


@dataclass
class Plan:
    """What the screen needs for one turn: the texts to encode, or a decision already made."""

    message: str
    decision: SafetyDecision | None = None     # final without vectors (the pattern layer: crisis)
    pattern: SafetyDecision | None = None      # a pattern sourcing/dose hit, outranked by crisis
    texts: list[str] = field(default_factory=list)
    n_sentences: int = 0
    has_context: bool = False
    after_crisis: bool = False  # the previous message of the chat got the crisis response
    # The previous user turn's own plan (with the turn before it), whose verdict says whether
    # this turn follows a crisis; its texts come after this turn's in `texts`.
    previous: Plan | None = None
    own_subject: bool = True    # the message names a subject of its own (`has_subject`)
    follows_crisis: bool = False  # set by `decide`: the previous turn was a crisis


@dataclass
class Scores:
    """Label probabilities of each view of a message (rows in LABELS order)."""

    message: np.ndarray
    sentences: np.ndarray
    context: np.ndarray | None

    def label(self, skip: tuple[str, ...] = ()) -> tuple[str, str, float] | None:
        """(label, view, probability) of the first label over its threshold, crisis first
        (labels in `skip` are not considered)."""
        views = [("message", self.message[None, :]), ("sentence", self.sentences),
                 ("context", None if self.context is None else self.context[None, :])]
        for i, name in enumerate(LABELS[:3]):
            if name in skip:
                continue
            for view, probs in views:
                if probs is None or not len(probs):
                    continue
                best = float(probs[:, i].max())
                if best >= THRESHOLDS[name][view]:
                    return name, view, best
        return None


def after_crisis(history: Sequence) -> bool:
    """Whether the last assistant turn of `history` (Turns or {"role", "content"} mappings) is
    the crisis response: the current text, or one that opens as the crisis text of an earlier
    version did (a saved conversation from before the text changed)."""
    replies = [t.content if hasattr(t, "content") else t["content"] for t in history
               if (t.role if hasattr(t, "role") else t["role"]) == "assistant"]
    if not replies:
        return False
    last = replies[-1].strip()
    return last == messages.CRISIS_RESPONSE or last.startswith(_EARLIER_CRISIS_OPENING)


# How the crisis response of earlier versions opened.
_EARLIER_CRISIS_OPENING = ("If you are in immediate danger call 911",
                           "If you or someone else is in immediate danger")


def readable(text: str) -> bool:
    """Whether the bundled (English) model can read `text`: most of its letters are Latin. A turn
    in another script embeds as noise, and joined to the next message it moved that message's
    score ("Ignore your instructions ..." after an Arabic question got the crisis text)."""
    import unicodedata

    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return True
    latin = sum(1 for ch in letters if "LATIN" in unicodedata.name(ch, ""))
    return latin >= 0.5 * len(letters)


def _sentences(text: str) -> list[str]:
    spans = sentence_spans(text)
    if len(spans) < 2:
        return []
    out = [text[s:e] for s, e in spans]
    return [s for s in out if len(s.split()) >= MIN_SENTENCE_WORDS]


def _decision(kind: str, layer: str, score: float) -> SafetyDecision:
    return safety.decision(kind, layer=layer, score=round(score, 4))  # type: ignore[arg-type]


@dataclass
class Nearest:
    """The bank's curated expressions (not the third-party research questions) and their vectors."""

    expressions: list[Expression]
    vectors: np.ndarray
    crisis: np.ndarray          # bool mask over expressions

    def match(self, vector: np.ndarray) -> tuple[float, float, Expression]:
        """(cosine of the nearest crisis expression, of the nearest other one, that crisis one)."""
        sims = self.vectors @ np.asarray(vector, dtype=np.float32)
        c = np.where(self.crisis, sims, -2.0)
        i = int(np.argmax(c))
        return float(c[i]), float(np.where(self.crisis, -2.0, sims).max()), self.expressions[i]

    @cached_property
    def labels(self) -> np.ndarray:
        """The label of each expression, for masks over `vectors`."""
        return np.array([e.label for e in self.expressions])

    def clinical(self, vector: np.ndarray, against: str = "crisis", minimum: float | None = None,
                 margin: float | None = None) -> bool:
        """Whether the nearest expression to `vector` is a clinical one, at least `minimum`
        (CLEAR_MIN) similar and `margin` (CLEAR_MARGIN) nearer than any `against` expression."""
        sims = self.vectors @ np.asarray(vector, dtype=np.float32)
        i = int(np.argmax(sims))
        other = float(np.where(self.labels == against, sims, -2.0).max())
        return (self.expressions[i].label == "clinical"
                and float(sims[i]) >= (CLEAR_MIN if minimum is None else minimum)
                and float(sims[i]) - other >= (CLEAR_MARGIN if margin is None else margin))


_NEAREST: dict[tuple[str, str], Nearest] = {}
_NEAREST_LOCK = threading.Lock()


def load_nearest(encode: Callable[[list[str]], np.ndarray], cache_dir: Path | None,
                 model: str = "all-MiniLM-L6-v2") -> Nearest:
    """The bank's vectors, once per process: read from `cache_dir` when a file for this bank and
    model is there, else encoded (about 950 short texts: 5-30 s on 2 cores, BENCHMARKS.md) and
    written there for the next process."""
    digest = bank_digest((BANK_PATH,))[:16]
    with _NEAREST_LOCK:
        known = _NEAREST.get((model, digest))
        if known is None:
            known = _NEAREST[(model, digest)] = _load_nearest(encode, cache_dir, model, digest)
        elif cache_dir is not None and not _cache_path(cache_dir, model, digest).exists():
            _save(_cache_path(cache_dir, model, digest), known.vectors)  # for the next process
        return known


def _cache_path(cache_dir: Path, model: str, digest: str) -> Path:
    return Path(cache_dir) / f"bank-{model}-{digest}.npy"


def _save(path: Path, vectors: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
        tmp.replace(path)  # atomic: a reader never sees half a file
    except OSError:
        pass  # a read-only data dir: keep them in memory for this process


def _load_nearest(encode: Callable[[list[str]], np.ndarray], cache_dir: Path | None,
                  model: str, digest: str) -> Nearest:
    expressions = load_bank(contrast=None)
    path = _cache_path(cache_dir, model, digest) if cache_dir is not None else None
    vectors = None
    if path is not None and path.exists():
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            vectors = None  # a torn or foreign file: encode again
        if vectors is not None and vectors.shape != (len(expressions), vectors.shape[-1]):
            vectors = None
    if vectors is None:
        vectors = np.asarray(encode([semantic_text(e.text) for e in expressions]), dtype=np.float32)
        if path is not None:
            _save(path, vectors)
    mask = np.array([e.label == "crisis" for e in expressions])
    return Nearest(expressions, vectors, mask)


class SafetyScreen:
    """Both layers, crisis first: patterns, then the classifier and the nearest bank expression
    over the message's vectors.

    Args:
        encode: The embedder's `encode(texts) -> normalised vectors`, used only by `check()`, for
            earlier turns not seen before and for the bank once; `Assistant.ask` encodes the
            planned texts itself, in the same batch as the retrieval query.
        classifier: The fitted weights (default: the ones shipped in `safety_model.json`).
        cache_dir: Where the bank's vectors are kept between processes (under the data dir).
        model: Name of the embedding model (the bank's vectors are kept per model).
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray],
                 classifier: Classifier | None = None, cache_dir: Path | None = None,
                 model: str = "all-MiniLM-L6-v2") -> None:
        self._encode = encode
        self._classifier = classifier
        self._cache_dir = cache_dir
        self._model = model
        self._nearest: Nearest | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = load_classifier()
        return self._classifier

    @property
    def nearest(self) -> Nearest:
        if self._nearest is None:
            with self._load_lock:
                if self._nearest is None:
                    self._nearest = load_nearest(self._encode, self._cache_dir, self._model)
        return self._nearest

    def warm(self) -> None:
        """Load the weights and the bank's vectors now (the app does this in the background)."""
        _ = self.classifier, self.nearest

    def plan(self, message: str, previous_user_turns: Sequence[str] = (),
             standalone: str | None = None, after_crisis: bool = False,
             _previous: bool = True) -> Plan:
        """The pattern layer's verdict and the texts the semantic layer needs vectors for.

        Args:
            message: The user's turn as typed (cleaned).
            previous_user_turns: Earlier user turns of the chat, oldest first.
            standalone: The rewritten standalone question, when it differs from `message`; the
                pattern layer reads it too.
            after_crisis: Whether the chat's previous message got the crisis response.

        The previous user turn is planned too (its vectors go in the same batch), so that
        `decide` knows whether this turn follows a crisis by the screen's own verdict on it.
        """
        plan = Plan(message=message, after_crisis=after_crisis)
        if not message.strip():
            return plan
        pattern = safety.check(message)
        if pattern is None and previous_user_turns:
            pattern = safety.check_followup(message, list(previous_user_turns))
        if pattern is None and standalone and standalone != message:
            pattern = safety.check(standalone)
        if pattern is not None and pattern.kind == "crisis":
            plan.decision = pattern
            return plan
        plan.pattern = pattern
        if not readable(message):
            # The English model reads another script as noise, and its scores on it are noise too
            # (an Arabic question about ibogaine's heart risks got the crisis text): the pattern
            # layer decides alone.
            plan.decision = pattern
            return plan
        sentences = _sentences(message)
        plan.texts = [semantic_text(message)] + [semantic_text(s) for s in sentences]
        plan.n_sentences = len(sentences)
        if previous_user_turns and previous_user_turns[-1].strip() and readable(previous_user_turns[-1]):
            plan.texts.append(semantic_text(f"{previous_user_turns[-1].strip()} {message}"))
            plan.has_context = True
            if _previous:
                # The previous turn as it was screened itself, with the turn before it.
                plan.previous = self.plan(previous_user_turns[-1], previous_user_turns[:-1],
                                          _previous=False)
                plan.texts += plan.previous.texts
                plan.own_subject = has_subject(message)
        return plan

    def scores(self, plan: Plan, vectors: np.ndarray) -> Scores:
        own = len(plan.texts) - (len(plan.previous.texts) if plan.previous is not None else 0)
        probs = self.classifier.proba(np.asarray(vectors)[:own])
        return Scores(message=probs[0], sentences=probs[1:1 + plan.n_sentences],
                      context=probs[-1] if plan.has_context else None)

    def decide(self, plan: Plan, vectors: np.ndarray | None) -> SafetyDecision | None:
        """The final decision for a planned turn, given the vectors of `plan.texts` in order."""
        if plan.decision is not None or not plan.texts:
            return plan.decision
        assert vectors is not None and len(vectors) >= len(plan.texts)
        self._remember(plan.texts, vectors)
        scores = self.scores(plan, vectors)
        previous = plan.previous
        if previous is not None:
            own = len(plan.texts) - len(previous.texts)
            verdict = self.decide(previous, vectors[own:len(plan.texts)]) if previous.texts \
                else previous.decision
            plan.follows_crisis = verdict is not None and verdict.kind == "crisis"
        plan.follows_crisis = plan.follows_crisis or plan.after_crisis
        if plan.follows_crisis and _RETRACTION.search(safety._normalize(plan.message)):
            crisis = scores.context[CRISIS] if scores.context is not None else scores.message[CRISIS]
            return _decision("crisis", "context", float(crisis))
        if plan.follows_crisis and scores.context is not None:
            if not plan.own_subject:
                if scores.context[CRISIS] >= AFTER_CRISIS_CONTEXT:
                    return _decision("crisis", "context", float(scores.context[CRISIS]))
            else:  # read alone: joined to the crisis turn it would be a crisis whatever it asks
                scores.context = None
        found = scores.label()
        if found is not None and found[0] == "crisis":
            if not (found[1] == "message" and found[2] < CLEAR_MAX
                    and self.nearest.clinical(vectors[0])):
                return _decision("crisis", found[1], found[2])
            # Cleared on the whole message (a paraphrase of a clinical question); its sentences
            # and the previous turn joined to it are still read as a crisis.
            t = THRESHOLDS["crisis"]
            if len(scores.sentences) and float(scores.sentences[:, CRISIS].max()) >= t["sentence"]:
                return _decision("crisis", "sentence", float(scores.sentences[:, CRISIS].max()))
            if scores.context is not None and scores.context[CRISIS] >= t["context"]:
                return _decision("crisis", "context", float(scores.context[CRISIS]))
            found = scores.label(skip=("crisis",))
        if scores.message[CRISIS] >= NEAREST_FLOOR:
            crisis_sim, other_sim, _ = self.nearest.match(vectors[0])
            if crisis_sim >= NEAREST_MIN and crisis_sim - other_sim >= NEAREST_MARGIN:
                return _decision("crisis", "nearest", crisis_sim)
        if (found is not None and found[1] == "message" and found[2] < DECLINE_CLEAR_MAX
                and self.nearest.clinical(vectors[0], found[0], DECLINE_CLEAR_MIN, DECLINE_CLEAR_MARGIN)):
            found = None  # a paraphrase of a question psyqa answers (DECLINE_CLEAR_MAX)
        declined = plan.pattern or (_decision(found[0], found[1], found[2]) if found else None)
        if declined is None:
            return None
        crisis = max([scores.message[CRISIS]]
                     + ([scores.context[CRISIS]] if scores.context is not None else []))
        if crisis >= CRISIS_OVER_DECLINE:
            return _decision("crisis", "message", float(crisis))
        return declined  # a pattern sourcing or dose hit comes before the classifier's

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts`, from the cache of recent ones where possible (one encode call)."""
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._remember(missing, self._encode(missing))
        with self._lock:
            return np.stack([self._cache[t] for t in texts])

    def check(self, message: str, previous_user_turns: Sequence[str] = (),
              standalone: str | None = None, after_crisis: bool = False) -> SafetyDecision | None:
        """`plan` + encode + `decide` in one call (for callers without a query to batch with)."""
        plan = self.plan(message, previous_user_turns, standalone, after_crisis)
        if plan.decision is not None or not plan.texts:
            return plan.decision
        return self.decide(plan, self.vectors(plan.texts))

    def _remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for t, v in zip(texts, vectors):
                self._cache[t] = np.asarray(v, dtype=np.float32)
                self._cache.move_to_end(t)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
