"""Fit the answerability model of assistant/answer/extractive.py on the dev split (never test).

For every dev item of eval/quality.jsonl (and every part of a multi-part one) the question goes
through the product's own steps (rewrite of follow-ups, `Assistant.gather`, the focus gates);
the lead sentence's features are the input, the item's expected status the label. A logistic
regression with an L2 penalty is fitted by gradient descent (numpy), and the script prints the
coefficients to paste into `ANSWERABILITY` plus the dev table of answer rate against precision
over the threshold. Usage (with an index of corpus/ built):

    PSYQA_DATA_DIR=... .venv/bin/python scripts/fit_answerability.py [--l2 0.01]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rows(split: str = "dev"):
    from assistant.answer import extractive
    from assistant.assistant import Assistant
    from assistant.conversation import needs_context, rewrite
    from assistant.models import Turn
    from assistant.settings import Settings

    qa = Assistant.from_settings(Settings())
    items = [json.loads(line) for line in (REPO / "eval" / "quality.jsonl").read_text().splitlines()
             if line.strip()]
    out = []
    for it in (i for i in items if i["split"] == split):
        turns = [Turn.model_validate(t) for t in it["history"]]
        q = rewrite(it["question"], turns) if turns else it["question"]
        prev = next((t.content for t in reversed(turns) if t.role == "user"), None) if turns and needs_context(it["question"]) else None
        ev = qa.gather(q, None, prev)
        evs = ev.parts if ev.focus.multi and ev.parts else [ev]
        for part in evs:
            c = extractive.lead(extractive.candidates(part.hits, part.vector), part.focus, ev.names)
            out.append((it["id"], it["kind"], int(it["expected_status"] == "answered"),
                        None if c is None else extractive.features(c)))
    return out


def fit(X: np.ndarray, y: np.ndarray, l2: float, steps: int = 20000, lr: float = 0.5) -> np.ndarray:
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd
    w = np.zeros(Z.shape[1] + 1)
    A = np.hstack([np.ones((len(Z), 1)), Z])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-A @ w))
        grad = A.T @ (p - y) / len(y) + l2 * np.r_[0, w[1:]]
        w -= lr * grad
    # Back to the raw feature scale.
    raw = np.r_[w[0] - np.sum(w[1:] * mu / sd), w[1:] / sd]
    return raw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--l2", type=float, default=0.01)
    args = ap.parse_args()
    data = rows("dev")
    usable = [(i, k, y, f) for i, k, y, f in data if f is not None]
    X = np.array([f for *_, f in usable], dtype=float)
    y = np.array([y for _, _, y, _ in usable], dtype=float)
    w = fit(X, y, args.l2)
    print("ANSWERABILITY = (" + ", ".join(f"{v:.3f}" for v in w) + ")")
    p = 1 / (1 + np.exp(-(np.hstack([np.ones((len(X), 1)), X]) @ w)))
    print(f"rows {len(data)} (no gated sentence: {len(data) - len(usable)}), positives {int(y.sum())}")
    print("threshold  answered  precision(answerable among answered)  false answers on unanswerable")
    neg = (y == 0).sum()
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        ans = p >= t
        prec = (y[ans].sum() / ans.sum()) if ans.sum() else float("nan")
        print(f"{t:9.1f}  {ans.mean():8.3f}  {prec:10.3f}  {((ans) & (y == 0)).sum() / max(1, neg):10.3f}")


if __name__ == "__main__":
    main()
