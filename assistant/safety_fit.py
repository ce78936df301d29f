"""Fit the semantic safety classifier: `python -m assistant.safety_fit [--check]`.

Training data: every expression of `assistant/safety_bank.yaml` plus the **dev** split of
`eval/safety.jsonl` (the test split is never read: rows are filtered on `split` as the file is
parsed). A dev message with history is learnt as the previous user turn joined to it (the view the
screen scores for follow-ups), and also alone unless it is a crisis only in that light (a clinical
message with a subject of its own right after the crisis response only alone, as the screen reads
it); the sentences of multi-sentence dev messages that are not crises are learnt with their
message's label, so that a fragment such as "Never done it before." is not a crisis on its own.

Before fitting on everything, a 5-fold cross-validation over the dev messages (the bank always
in training, patterns included, follow-ups rewritten as `Assistant.ask` does) prints the honest
dev figures: each message is scored by a classifier that never saw it. The fitted weights, the
digests of the bank and of the dev rows, and the cross-validated figures go to
`assistant/safety_model.json`. `--check` only verifies that file is current.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant import safety_semantic as sem
from assistant.answer.focus import has_subject
from assistant.conversation import rewrite
from assistant.models import Turn

REPO = Path(__file__).resolve().parents[1]
SAFETY_SET = REPO / "eval" / "safety.jsonl"
QUALITY_SET = REPO / "eval" / "quality.jsonl"
FOLDS = 5
SEED = 13
# Weight of one example in the fit. The dev messages were written by other people, blind, and
# are what the screen meets; the bank is written by us; the third-party research questions are
# many and formal, so together they count as much as a signal group or two, not as the whole
# clinical class.
DEV_WEIGHT = 3.0
BANK_WEIGHT = 1.0
RESEARCH_WEIGHT = 0.2
# The dev questions of the quality set (eval/quality.jsonl) are all questions psyqa must answer or
# abstain on, never screen: informal, terse clinician questions in the words crisis talk also uses
# ("did it hold up at 12 wks", "can they drive themselves home after"). They are learnt as clinical,
# and scored in the cross-validation like the safety set's own dev messages.
QUALITY_WEIGHT = 3.0
QUALITY_SIGNAL = "quality/"  # the signal prefix of the items taken from the quality set


@dataclass
class Item:
    id: str
    label: str
    signal: str
    message: str
    history: list[dict]

    @property
    def previous_user_turns(self) -> list[str]:
        return [t["content"] for t in self.history if t["role"] == "user"]

    @property
    def from_quality_set(self) -> bool:
        return self.signal.startswith(QUALITY_SIGNAL)

    @property
    def after_crisis(self) -> bool:
        return sem.after_crisis(self.history)


def dev_items(path: Path = SAFETY_SET) -> list[Item]:
    """The dev rows of the labelled set (test rows are skipped unread beyond their split)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("split") != "dev":
            continue
        if row.get("label") not in sem.LABELS:
            raise ValueError(f"{path}:{n}: label {row.get('label')!r} is not one of {sem.LABELS}")
        out.append(Item(row["id"], row["label"], row["signal"], row["message"], row.get("history") or []))
    return out


def quality_items(path: Path = QUALITY_SET) -> list[Item]:
    """The dev questions of the quality set, as clinical items (signal `quality/<kind>`)."""
    from assistant.bench.gold import load_quality

    if not Path(path).exists():
        return []
    return [Item(q.id, "clinical", f"{QUALITY_SIGNAL}{q.kind}", q.question,
                 [t.model_dump() for t in q.history])
            for q in load_quality(path) if q.split == "dev"]


def dev_digest(items: list[Item]) -> str:
    blob = json.dumps([[i.id, i.label, i.message, i.history] for i in items], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def bank_examples(bank: list[sem.Expression]) -> tuple[list[str], list[int], list[float]]:
    return ([sem.semantic_text(e.text) for e in bank], [sem.LABELS.index(e.label) for e in bank],
            [RESEARCH_WEIGHT if e.signal == "research_question" else BANK_WEIGHT for e in bank])


def training_texts(items: list[Item]) -> list[tuple[str, int, float]]:
    """(semantic text, label index, weight) for the dev items, as described in the module
    docstring."""
    out: list[tuple[str, int, float]] = []
    for it in items:
        y = sem.LABELS.index(it.label)
        w = QUALITY_WEIGHT if it.from_quality_set else DEV_WEIGHT
        prev = it.previous_user_turns
        # Right after the crisis response, a message with a subject of its own is read alone
        # (safety_semantic.AFTER_CRISIS_CONTEXT): its joined view is not a view the screen scores, and
        # learnt as clinical it would teach that a crisis turn joined to anything is clinical.
        alone_after_crisis = bool(prev) and it.after_crisis and has_subject(it.message)
        if prev and not (alone_after_crisis and it.label != "crisis"):
            out.append((sem.semantic_text(f"{prev[-1].strip()} {it.message}"), y, w))
        if not prev or it.label != "crisis":
            out.append((sem.semantic_text(it.message), y, w))
        if it.label != "crisis":
            out.extend((sem.semantic_text(s), y, w) for s in sem._sentences(it.message))
    return out


def standalone(it: Item) -> str:
    turns = [Turn.model_validate(t) for t in it.history]
    return rewrite(it.message, turns) if turns else it.message


def folds(items: list[Item]) -> np.ndarray:
    """Stratified by label and signal, deterministic."""
    rng = np.random.default_rng(SEED)
    fold = np.zeros(len(items), dtype=int)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault((it.label, it.signal), []).append(i)
    offset = 0
    for key in sorted(groups):
        idx = np.array(groups[key])
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % FOLDS
        offset += len(idx)
    return fold


class Encoder:
    """The bundled model's encode(), remembering every text it has seen (and, with `cache`, keeping
    them in an .npz file between runs, for iterating on the bank)."""

    def __init__(self, cache: Path | None = None) -> None:
        from assistant.embeddings import BundledEmbeddings

        self.model = BundledEmbeddings()
        self.cache = cache
        self.seen: dict[str, np.ndarray] = {}
        if cache is not None and Path(cache).exists():
            with np.load(cache, allow_pickle=False) as data:
                self.seen = dict(zip(data["texts"].tolist(), data["vectors"]))

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if missing:
            for t, v in zip(missing, self.model.encode(missing)):
                self.seen[t] = v
            if self.cache is not None:
                np.savez(self.cache, texts=np.array(list(self.seen)), vectors=np.stack(list(self.seen.values())))
        return np.stack([self.seen[t] for t in texts])


def predict(screen: sem.SafetyScreen, it: Item) -> tuple[str, str]:
    """(label the screen gives, how) for one dev item, as `Assistant.ask` would decide it."""
    decision = screen.check(it.message, it.previous_user_turns, standalone(it), it.after_crisis)
    if decision is None:
        return "clinical", ""
    how = decision.layer + (f" {decision.score:.2f}" if decision.score is not None else "")
    return decision.kind, how


def report(items: list[Item], predicted: list[str], how: list[str] | None = None) -> dict:
    """Recall and precision per label, recall per signal, the misses and false screens."""
    by_label = {}
    for label in sem.LABELS:
        tp = sum(1 for it, p in zip(items, predicted) if it.label == label and p == label)
        n = sum(1 for it in items if it.label == label)
        m = sum(1 for p in predicted if p == label)
        by_label[label] = {"n": n, "recall": round(tp / n, 4) if n else None,
                           "precision": round(tp / m, 4) if m else None}
    signals: dict[str, list[int]] = {}
    for it, p in zip(items, predicted):
        hit = signals.setdefault(f"{it.label}/{it.signal}", [0, 0])
        hit[0] += p == it.label
        hit[1] += 1
    clinical = [p for it, p in zip(items, predicted) if it.label == "clinical"]
    return {
        "labels": by_label,
        "clinical_screened_as_crisis": round(clinical.count("crisis") / max(1, len(clinical)), 4),
        "clinical_declined": round((clinical.count("sourcing") + clinical.count("personal_dose"))
                                   / max(1, len(clinical)), 4),
        "signals": {k: f"{a}/{b}" for k, (a, b) in sorted(signals.items())},
        "confusion": {f"{a}->{b}": n for (a, b), n in sorted(Counter(
            (it.label, p) for it, p in zip(items, predicted)).items())},
        "errors": [{"id": it.id, "label": it.label, "signal": it.signal, "got": p,
                    "how": (how or [""] * len(items))[i], "message": it.message}
                   for i, (it, p) in enumerate(zip(items, predicted)) if p != it.label],
    }


def cross_validate(items: list[Item], bank: list[sem.Expression], encode: Encoder,
                   dump: list | None = None) -> dict:
    """Out-of-fold decisions for every dev item; with `dump`, append each item's raw scores."""
    bank_t, bank_y, bank_w = bank_examples(bank)
    bank_x = encode(bank_t)
    fold = folds(items)
    predicted = ["clinical"] * len(items)
    how = [""] * len(items)
    for f in range(FOLDS):
        train = [it for it, k in zip(items, fold) if k != f]
        texts = training_texts(train)
        x = np.vstack([bank_x, encode([t for t, _, _ in texts])])
        clf = sem.fit(x, bank_y + [y for _, y, _ in texts], bank_w + [w for _, _, w in texts])
        screen = sem.SafetyScreen(encode, clf)
        for i, it in enumerate(items):
            if fold[i] == f:
                predicted[i], how[i] = predict(screen, it)
                if dump is not None:
                    plan = screen.plan(it.message, it.previous_user_turns, standalone(it))
                    sc = screen.scores(plan, screen.vectors(plan.texts)) if plan.texts else None
                    dump.append({"id": it.id, "label": it.label, "signal": it.signal,
                                 "pattern": (plan.decision or plan.pattern).kind
                                 if (plan.decision or plan.pattern) else None,
                                 "message": sc.message.tolist() if sc else None,
                                 "sentences": sc.sentences.tolist() if sc else [],
                                 "context": sc.context.tolist() if sc and sc.context is not None else None})
    own = [i for i, it in enumerate(items) if not it.from_quality_set]
    out = report([items[i] for i in own], [predicted[i] for i in own], [how[i] for i in own])
    quality = [i for i, it in enumerate(items) if it.from_quality_set]
    if quality:
        out["quality_screened"] = {
            "n": len(quality), "screened": sum(predicted[i] != "clinical" for i in quality),
            "errors": [{"id": items[i].id, "label": "clinical", "signal": items[i].signal,
                        "got": predicted[i], "how": how[i], "message": items[i].message}
                       for i in quality if predicted[i] != "clinical"]}
    return out


def fit_all(items: list[Item], bank: list[sem.Expression], encode: Encoder) -> sem.Classifier:
    bank_t, bank_y, bank_w = bank_examples(bank)
    texts = training_texts(items)
    return sem.fit(encode(bank_t + [t for t, _, _ in texts]), bank_y + [y for _, y, _ in texts],
                   bank_w + [w for _, _, w in texts])


def current(model_path: Path = sem.MODEL_PATH, safety_set: Path = SAFETY_SET,
            quality_set: Path = QUALITY_SET) -> list[str]:
    """Why the shipped weights are stale (empty when they match the bank and the dev rows)."""
    try:
        meta = json.loads(Path(model_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{model_path} is missing"]
    problems = []
    if meta.get("bank_sha256") != sem.bank_digest():
        problems.append(f"{sem.BANK_PATH.name} or {sem.CONTRAST_PATH.name} changed since the "
                        "weights were fitted")
    if safety_set.exists() and meta.get("dev_sha256") != dev_digest(dev_items(safety_set)
                                                                    + quality_items(quality_set)):
        problems.append(f"the dev split of {safety_set.name} or {quality_set.name} changed since "
                        "the weights were fitted")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m assistant.safety_fit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check the shipped weights are current")
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validation report")
    ap.add_argument("--cache", type=Path, help="keep the vectors in this .npz between runs")
    ap.add_argument("--dump", type=Path, help="write each dev item's out-of-fold scores (JSON lines)")
    args = ap.parse_args(argv)
    if args.check:
        problems = current()
        for p in problems:
            print(f"stale: {p}; run `python -m assistant.safety_fit`", file=sys.stderr)
        return 1 if problems else 0
    bank = sem.load_bank()
    items = dev_items() + quality_items()
    encode = Encoder(args.cache)
    out: dict = {}
    if not args.no_cv:
        dump: list | None = [] if args.dump else None
        cv = cross_validate(items, bank, encode, dump)
        if args.dump:
            args.dump.write_text("".join(json.dumps(d) + "\n" for d in dump or []), encoding="utf-8")
        quality = cv.pop("quality_screened", {"n": 0, "screened": 0, "errors": []})
        print(json.dumps({k: v for k, v in cv.items() if k != "errors"}, indent=1))
        print(f"quality-set dev questions screened: {quality['screened']} of {quality['n']}")
        for e in cv["errors"] + quality["errors"]:
            print(f"  {e['id']} {e['label']}/{e['signal']} -> {e['got']} ({e['how'] or 'nothing'}): "
                  f"{e['message'][:110]}")
        out["dev_cv"] = {k: cv[k] for k in ("labels", "clinical_screened_as_crisis", "clinical_declined")}
        out["dev_cv"]["quality_questions_screened"] = f"{quality['screened']}/{quality['n']}"
    clf = fit_all(items, bank, encode)
    clf.meta = {"model": "all-MiniLM-L6-v2", "bank_sha256": sem.bank_digest(),
                "dev_sha256": dev_digest(items), "bank_expressions": len(bank),
                "dev_messages": sum(not i.from_quality_set for i in items),
                "quality_questions": sum(i.from_quality_set for i in items),
                "fitted_by": "python -m assistant.safety_fit", **out}
    sem.MODEL_PATH.write_text(json.dumps(clf.to_json(), indent=0) + "\n", encoding="utf-8")
    print(f"wrote {sem.MODEL_PATH} ({len(bank)} bank expressions, {clf.meta['dev_messages']} dev "
          f"messages, {clf.meta['quality_questions']} quality-set questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
