"""Fit the retrieval-confidence calibration on StackFAQ and report how well it is calibrated.

For every question two samples are drawn from the same real retrieval run: the KB as it is
(label 1 when the best passage is from the gold article) and the KB with the gold article
held out (label 0: nothing answers). A logistic regression over (top similarity, margin to
the second hit, dense/BM25 agreement) gives P(best passage answers). Odd questions train,
even ones test. Paste the printed coefficients into ``CALIBRATION`` in
``assistant/kb/retrieval.py``.

    python benchmarks/calibrate_confidence.py [--json results/calibration.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import SHARED_DATA, console, require, show_table, write_json
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from assistant.config import Settings
from assistant.kb.audience import Audience
from assistant.kb.components import build_knowledge_base
from assistant.kb.retrieval import Candidates, confidence


def samples(found: Candidates, gold: str) -> list[tuple[list[float], int]]:
    """One positive-or-negative sample with the KB as is, one negative with gold held out."""
    out = []
    for cand, held_out in ((found, False), (found.without_article(gold), True)):
        if not cand.dense:
            continue
        top, margin, agree = cand.features()
        correct = not held_out and cand.chunks[cand.dense[0][0]].article_id == gold
        out.append(([top, margin, float(agree)], int(correct)))
    return out


def main() -> None:
    """Fit, evaluate on held-out questions, print coefficients."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    args = parser.parse_args()
    data = require(SHARED_DATA / "stackfaq")
    questions = [json.loads(x) for x in (data / "questions.jsonl").read_text().splitlines() if x]
    train: list[tuple[list[float], int]] = []
    test: list[tuple[list[float], int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), kb_dir=data / "docs")
        kb = build_knowledge_base(settings)
        kb.ingestor.ingest(settings.kb_dir)
        kb.retriever.refresh()
        for i, q in enumerate(questions):
            found = kb.retriever.candidates(q["question"], audience=Audience.operator())
            (train if i % 2 else test).extend(samples(found, q["gold_doc"]))
    x_train, y_train = np.array([s[0] for s in train]), np.array([s[1] for s in train])
    x_test, y_test = np.array([s[0] for s in test]), np.array([s[1] for s in test])
    model = LogisticRegression(C=10.0).fit(x_train, y_train)
    fitted = {
        "intercept": float(model.intercept_[0]),
        **dict(
            zip(["top_similarity", "margin", "agreement"], map(float, model.coef_[0]), strict=True)
        ),
    }
    shipped = np.array([confidence(*row[:2], bool(row[2])) for row in x_test])
    refit = model.predict_proba(x_test)[:, 1]
    rows = []
    for name, probs in (("shipped CALIBRATION", shipped), ("fitted now", refit)):
        rows.append(
            [
                name,
                roc_auc_score(y_test, probs),
                brier_score_loss(y_test, probs),
                float(np.mean((probs >= 0.5) == y_test)),
            ]
        )
    show_table(
        "Retrieval confidence on held-out StackFAQ questions",
        ["coefficients", "ROC AUC", "Brier", "accuracy@0.5"],
        rows,
    )
    bins = np.linspace(0, 1, 6)
    reliability = []
    for lo, hi in itertools.pairwise(bins):
        sel = (shipped >= lo) & (shipped < hi if hi < 1 else shipped <= hi)
        if sel.any():
            reliability.append(
                [
                    f"{lo:.1f}-{hi:.1f}",
                    int(sel.sum()),
                    float(shipped[sel].mean()),
                    float(y_test[sel].mean()),
                ]
            )
    show_table(
        "Reliability of the shipped calibration", ["bin", "n", "predicted", "observed"], reliability
    )
    console.print("CALIBRATION = " + json.dumps({k: round(v, 2) for k, v in fitted.items()}))
    write_json(
        args.json,
        {
            "benchmark": "calibrate_confidence",
            "fitted": fitted,
            "rows": rows,
            "reliability": reliability,
        },
    )


if __name__ == "__main__":
    main()
