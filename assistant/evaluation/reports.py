"""Eval reports: the terminal table, JSON (stable schema), self-contained HTML, JUnit XML.

The JSON schema (``"schema": "assistant-eval/1"``) is what ``--baseline`` reads back; its
fields are documented in ``evals/README.md``. Change it only with a new schema version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from jinja2 import Environment, PackageLoader, select_autoescape
from rich.console import Console
from rich.table import Table

from assistant.evaluation.metrics import RATE_METRICS, Comparison
from assistant.evaluation.runner import REPORT_SCHEMA, SuiteReport


def build_report(
    reports: list[SuiteReport], *, seed: int, comparison: Comparison | None = None
) -> dict[str, Any]:
    """The whole run as one JSON-serialisable document."""
    suites = [r.as_dict() for r in reports]
    cases = sum(s["metrics"]["cases"] for s in suites)
    passed = sum(s["metrics"]["passed"] for s in suites)
    return {
        "schema": REPORT_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "summary": {
            "suites": len(suites),
            "cases": cases,
            "passed": passed,
            "failed": cases - passed,
            "threshold_failures": [f"{s['name']}: {f}" for s in suites
                                   for f in s["threshold_failures"]],
        },
        "suites": suites,
        "baseline": comparison.as_dict() if comparison is not None else None,
    }


# Short headers, so the table fits an 80-column terminal.
_COLUMNS = {
    "hit_at_1": "hit@1",
    "hit_at_k": "hit@k",
    "mrr": "MRR",
    "intent_accuracy": "intent",
    "escalation_f1": "esc F1",
    "answer_pass_rate": "answers",
    "latency_p50_ms": "p50 ms",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def print_terminal(report: dict[str, Any], console: Console) -> None:
    """Per suite: the metrics against their thresholds, then every failing case."""
    table = Table(title="eval suites")
    table.add_column("suite", no_wrap=True)
    table.add_column("passed", justify="right", no_wrap=True)
    for header in _COLUMNS.values():
        table.add_column(header, justify="right", no_wrap=True)
    for suite in report["suites"]:
        m = suite["metrics"]
        cells = []
        for metric in _COLUMNS:
            text = _fmt(m.get(metric))
            if metric in suite["thresholds"] and m.get(metric) is not None \
                    and m[metric] < suite["thresholds"][metric]:
                text = f"[red]{text}[/red]"
            cells.append(text)
        table.add_row(suite["name"], f"{m['passed']}/{m['cases']}", *cells)
    console.print(table)
    for suite in report["suites"]:
        reasons = suite["metrics"].get("escalation_by_reason") or {}
        if reasons:
            confusion = Table(title=f"{suite['name']}: escalation by reason")
            for column in ("reason", "expected", "matched", "missed", "false alarms"):
                confusion.add_column(column, justify="left" if column == "reason" else "right")
            for reason, row in reasons.items():
                confusion.add_row(reason, str(row["expected"]), str(row["matched"]),
                                  str(row["missed"]), str(row["false_alarms"]))
            console.print(confusion)
        answered_by = suite["metrics"].get("answered_by") or {}
        if any(name != "extractive" and name != "fixed_reply" for name in answered_by):
            console.print(
                f"{suite['name']}: answered by "
                + ", ".join(f"{name} {count}" for name, count in answered_by.items())
                + f"; {suite['metrics'].get('model_tokens', 0)} model tokens", markup=False)
        if suite["metrics"].get("faithfulness") is not None:
            judged = [c for c in suite["cases"] if c.get("faithfulness")]
            console.print(f"{suite['name']}: faithfulness {suite['metrics']['faithfulness']:.2f} "
                          f"(LLM judge, {len(judged)} answers; not part of pass/fail)")
            for case in judged:
                if case["faithfulness"]["supported"] is False:
                    console.print(f"  unsupported: {case['key']}: "
                                  f"{case['faithfulness']['reason']}", markup=False)
        for failure in suite["threshold_failures"]:
            console.print(f"[red]{suite['name']}: threshold missed: {failure}[/red]")
        for case in suite["cases"]:
            if case["passed"]:
                continue
            console.print(f"[bold red]FAIL[/bold red] {case['key']}  [dim]{case['source']}[/dim]")
            console.print(f"  asked: {case['turns'][-1]}", markup=False)
            for failure in case["failures"]:
                console.print(f"  - {failure}", markup=False)
    baseline = report.get("baseline")
    if baseline:
        for line in baseline["regressions"]:
            console.print(f"[red]regression: {line}[/red]")
        for key in baseline["newly_failing"]:
            console.print(f"[red]newly failing: {key}[/red]")
        for key in baseline["newly_passing"]:
            console.print(f"[green]newly passing: {key}[/green]")
    summary = report["summary"]
    console.print(f"{summary['passed']}/{summary['cases']} cases passed in "
                  f"{summary['suites']} suite(s)")


def write_json(report: dict[str, Any], path: Path) -> None:
    """The report as JSON (what ``--baseline`` reads)."""
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """A report written by :func:`write_json`.

    Raises:
        ValueError: Not a report of this schema.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
        raise ValueError(f"{path} is not an eval report ({REPORT_SCHEMA})")
    return data


def write_junit(report: dict[str, Any], path: Path) -> None:
    """JUnit XML: a testsuite per suite, a testcase per case, thresholds as testcases."""
    root = ET.Element("testsuites", name="assistant-eval")
    for suite in report["suites"]:
        cases = suite["cases"]
        failures = sum(1 for c in cases if not c["passed"]) + len(suite["threshold_failures"])
        element = ET.SubElement(root, "testsuite", name=suite["name"],
                                tests=str(len(cases) + len(suite["thresholds"])),
                                failures=str(failures))
        for case in cases:
            testcase = ET.SubElement(element, "testcase", classname=suite["name"],
                                     name=case["id"],
                                     time=f"{(case['got']['latency_ms'] or 0) / 1000:.3f}")
            if not case["passed"]:
                failure = ET.SubElement(testcase, "failure", message=case["failures"][0])
                failure.text = "\n".join([f"asked: {case['turns'][-1]}", *case["failures"]])
        for metric, threshold in suite["thresholds"].items():
            testcase = ET.SubElement(element, "testcase", classname=f"{suite['name']}.thresholds",
                                     name=metric)
            missed = [f for f in suite["threshold_failures"] if f.startswith(f"{metric}:")]
            if missed:
                ET.SubElement(testcase, "failure", message=missed[0])
            else:
                value = suite["metrics"].get(metric)
                testcase.set("value", f"{value} >= {threshold}")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_html(report: dict[str, Any], path: Path) -> None:
    """A self-contained HTML page (inline CSS and SVG charts, no scripts, no CDN)."""
    env = Environment(
        loader=PackageLoader("assistant", "evaluation/templates"),
        autoescape=select_autoescape(["html"], default=True),
    )
    env.filters["fmt"] = _fmt
    page = env.get_template("report.html").render(
        report=report, rate_metrics=RATE_METRICS, bars=_bars(report)
    )
    path.write_text(page, encoding="utf-8")


def _bars(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per suite, one bar per rate metric that has a value (width in percent)."""
    charts = {}
    for suite in report["suites"]:
        rows = []
        for metric in RATE_METRICS:
            value = suite["metrics"].get(metric)
            if value is None:
                continue
            threshold = suite["thresholds"].get(metric)
            rows.append({
                "metric": metric, "value": value, "width": round(value * 100, 1),
                "threshold": threshold,
                "ok": threshold is None or value >= threshold,
            })
        charts[suite["name"]] = rows
    return charts
