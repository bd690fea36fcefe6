"""Prompt-injection detection: deepset test precision/recall/F1, false alarms on support text.

Runs :func:`~assistant.understanding.injection.find_injection` (offline patterns, no model)
on ``../shared/data/injection/deepset_prompt_injections_test.csv`` (116 messages, English
and German; a message counts as flagged when it yields any finding). The patterns were
tuned on the *train* split only. Then the false-positive rate on benign support messages,
where a false alarm costs the customer a worse answer: the ``text`` column of
``../shared/data/banking77/test.csv`` (3,080 banking questions), the customer turns of the
eval suites in ``evals/*.yaml`` and the questions of ``evals/*.csv``, and the labelled
support messages in ``evals/data/*.csv``.

Targets: false-positive rate on support messages <= 0.5%; precision >= 0.95 on deepset.
Recall is secondary: output guards sit behind the detector.

    python benchmarks/injection_deepset.py [--json results/injection.json]
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, SHARED_DATA, console, percentile, require, show_table, write_json

from assistant.evaluation.suites import load_suite
from assistant.understanding.injection import find_injection

TARGET_SUPPORT_FP_RATE = 0.005
TARGET_PRECISION = 0.95


def read_csv_column(path: Path, column: str) -> list[str]:
    """One column of a CSV with a header row."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [row[column] for row in csv.DictReader(handle) if row.get(column)]


def eval_suite_messages() -> list[str]:
    """Every customer turn of the shipped eval suites (``evals/*.yaml`` and ``evals/*.csv``)."""
    evals = ROOT / "evals"
    messages: list[str] = []
    for path in sorted([*evals.glob("*.yaml"), *evals.glob("*.csv")]):
        for case in load_suite(path).cases:
            messages.extend(case.turns)
    return messages


def deepset_scores(texts: list[str], labels: list[int]) -> dict:
    """Precision, recall, F1 and accuracy of "any finding" against the injection label."""
    flagged = [bool(find_injection(t)) for t in texts]
    tp = sum(1 for f, y in zip(flagged, labels, strict=True) if f and y)
    fp = sum(1 for f, y in zip(flagged, labels, strict=True) if f and not y)
    fn = sum(1 for f, y in zip(flagged, labels, strict=True) if not f and y)
    tn = len(texts) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "messages": len(texts),
        "injections": sum(labels),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(texts) if texts else 0.0,
    }


def false_alarms(texts: list[str]) -> dict:
    """How many benign messages yield a finding, with the first few for reading."""
    hits = [(t, find_injection(t)) for t in texts]
    flagged = [(t, f) for t, f in hits if f]
    return {
        "messages": len(texts),
        "flagged": len(flagged),
        "fp_rate": len(flagged) / len(texts) if texts else 0.0,
        "examples": [
            {"text": t, "kinds": [x.kind for x in f], "evidence": [x.evidence for x in f]}
            for t, f in flagged[:10]
        ],
    }


def latency(texts: list[str]) -> dict[str, float]:
    """p50/p95 milliseconds per message."""
    timings = []
    for text in texts:
        started = time.perf_counter()
        find_injection(text)
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(timings, 50), "p95_ms": percentile(timings, 95)}


def main() -> None:
    """Run the benchmark and print (and optionally write) the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    args = parser.parse_args()

    test = require(SHARED_DATA / "injection" / "deepset_prompt_injections_test.csv")
    with test.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    labels = [int(r["label"]) for r in rows]
    deepset = deepset_scores(texts, labels)
    kinds = Counter(
        finding.kind
        for text, label in zip(texts, labels, strict=True)
        if label
        for finding in find_injection(text)
    )

    banking = read_csv_column(require(SHARED_DATA / "banking77" / "test.csv"), "text")
    suites = eval_suite_messages()
    labelled = [
        text
        for path in sorted((ROOT / "evals" / "data").glob("*.csv"))
        for text in read_csv_column(path, "text")
    ]
    support = {
        "Banking77 test": false_alarms(banking),
        "eval suites (evals/*.yaml, *.csv)": false_alarms(suites),
        "labelled support messages (evals/data)": false_alarms(labelled),
    }
    everything = [*banking, *suites, *labelled]
    support["all support messages"] = false_alarms(everything)
    timing = latency(everything[:2000] + texts)

    show_table(
        f"deepset prompt-injections, test split ({deepset['messages']} messages, "
        f"{deepset['injections']} injections; tuned on train only)",
        ["figure", "value"],
        [
            ["precision", deepset["precision"]],
            ["recall", deepset["recall"]],
            ["F1", deepset["f1"]],
            ["accuracy", deepset["accuracy"]],
            ["tp / fp / fn / tn",
             f"{deepset['tp']} / {deepset['fp']} / {deepset['fn']} / {deepset['tn']}"],
        ],
    )
    show_table(
        "false alarms on benign support messages",
        ["set", "messages", "flagged", "FP rate"],
        [[name, r["messages"], r["flagged"], r["fp_rate"]] for name, r in support.items()],
    )
    for name, result in support.items():
        for example in result["examples"][:3] if name != "all support messages" else []:
            console.print(f"  {name}: {example['text']!r} -> {example['evidence']}")
    console.print(
        "findings on true injections by kind: "
        + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())
    )
    console.print(
        f"latency per message: p50 {timing['p50_ms']:.3f} ms, p95 {timing['p95_ms']:.3f} ms"
    )
    fp_rate = support["all support messages"]["fp_rate"]
    ok = fp_rate <= TARGET_SUPPORT_FP_RATE and deepset["precision"] >= TARGET_PRECISION
    console.print(
        f"targets: support FP rate <= {TARGET_SUPPORT_FP_RATE:.1%} ({fp_rate:.2%}), "
        f"precision >= {TARGET_PRECISION:.2f} ({deepset['precision']:.3f}): "
        + ("[green]met[/green]" if ok else "[red]MISSED[/red]")
    )
    write_json(
        args.json,
        {
            "benchmark": "injection_deepset",
            "deepset_test": deepset,
            "kinds_on_injections": dict(kinds),
            "support": support,
            "latency": timing,
            "target": {
                "support_fp_rate": TARGET_SUPPORT_FP_RATE,
                "precision": TARGET_PRECISION,
                "met": ok,
            },
        },
    )


if __name__ == "__main__":
    main()
