"""The eval runner over the real engine, its reports, and `assistant eval` exit codes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from conftest import write_kb
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import get_settings
from assistant.embeddings import HashingEmbedder
from assistant.evaluation.reports import build_report, write_html, write_json, write_junit
from assistant.evaluation.runner import eval_runner
from assistant.evaluation.suites import load_suite

SUITE = """\
name: tiny
kb: kb
thresholds: {hit_at_k: 0.5}
cases:
  - id: reset
    tags: [account]
    question: How do I reset my password? I forgot it.
    expect: {retrieved: [account/reset-password.md], escalate: false}
  - id: person
    turns: ["hello", "I want to talk to a human please"]
    expect: {escalate: true, reasons: [human_requested]}
  - id: impossible
    question: "<script>alert(1)</script> how do refunds work?"
    expect: {contains: [zebra]}
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    write_kb(tmp_path / "kb")
    path = tmp_path / "tiny.yaml"
    path.write_text(SUITE, encoding="utf-8")
    return path


def test_the_runner_measures_cases_through_the_engine(settings, suite_file, tmp_path) -> None:
    suite = load_suite(suite_file)
    with eval_runner(settings, embedder=HashingEmbedder(), workers=2) as runner:
        report = runner.run(suite)
        again = runner.run(suite)
    by_id = {r.case.id: r for r in report.results}
    assert by_id["reset"].passed, by_id["reset"].failures
    assert by_id["person"].passed, by_id["person"].failures
    assert by_id["impossible"].failures == ("contains: the answer does not contain 'zebra'",)
    assert report.metrics["hit_at_k"] == 1.0 and report.metrics["escalation_recall"] == 1.0
    assert report.passed  # the thresholds hold even though a case failed
    # Same inputs, same results.
    assert [r.failures for r in again.results] == [r.failures for r in report.results]
    assert [r.observed.answer for r in again.results] == [r.observed.answer
                                                          for r in report.results]
    # Evals never write into the real conversation database.
    assert not (settings.data_dir / "assistant.db").exists()

    document = build_report([report], seed=0)
    write_json(document, tmp_path / "r.json")
    write_junit(document, tmp_path / "r.xml")
    write_html(document, tmp_path / "r.html")
    stored = json.loads((tmp_path / "r.json").read_text())
    assert stored["schema"] == "assistant-eval/1" and stored["summary"]["failed"] == 1
    junit = ET.parse(tmp_path / "r.xml").getroot()
    (suite_element,) = junit.findall("testsuite")
    assert suite_element.get("failures") == "1" and suite_element.get("tests") == "4"
    html = (tmp_path / "r.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "impossible" in html and "<svg" in html and "http" not in html.split("<body>")[0]


runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.model
def test_eval_command_exit_codes_and_baseline(cli_env, suite_file: Path, tmp_path) -> None:
    first = runner.invoke(app, ["eval", str(suite_file), "--json", str(tmp_path / "a.json"),
                                "--junit", str(tmp_path / "a.xml")])
    assert first.exit_code == 0, first.output
    assert "FAIL tiny/impossible" in first.stdout and "2/3 cases passed" in first.stdout
    # A stricter suite misses its threshold: exit 1.
    strict = tmp_path / "strict.yaml"
    strict.write_text(SUITE.replace("{hit_at_k: 0.5}", "{case_pass_rate: 0.9}"))
    missed = runner.invoke(app, ["eval", str(strict)])
    assert missed.exit_code == 1 and "case_pass_rate" in missed.stdout
    # Against a baseline where every case passed, the drop is a regression: exit 1.
    baseline = json.loads((tmp_path / "a.json").read_text())
    for case in baseline["suites"][0]["cases"]:
        case["passed"] = True
    baseline["suites"][0]["metrics"]["case_pass_rate"] = 1.0
    (tmp_path / "base.json").write_text(json.dumps(baseline))
    compared = runner.invoke(app, ["eval", str(suite_file), "--baseline",
                                   str(tmp_path / "base.json")])
    assert compared.exit_code == 1
    assert "newly failing: tiny/impossible" in compared.stdout
    assert "case_pass_rate dropped" in compared.stdout
    # Tags filter; an invalid suite file is exit 2 with the line.
    tagged = runner.invoke(app, ["eval", str(suite_file), "--tag", "account"])
    assert tagged.exit_code == 0 and "1/1 cases passed" in tagged.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(textwrap.dedent("""\
        name: broken
        cases:
          - id: x
            question: hi
            expect: {escalte: true}
        """))
    bad = runner.invoke(app, ["eval", str(broken)])
    assert bad.exit_code == 2
    assert "broken.yaml:5: cases[0] (id x) expect.escalte" in " ".join(bad.output.split())


def test_the_optional_llm_judge_is_reported_separately(settings, suite_file) -> None:
    from fake_openai import fake_openai

    from assistant.llm import build_chat_model

    with fake_openai() as llm:
        llm.replies = ['{"supported": false, "reason": "the 30 minutes are not in the passage"}']
        model = build_chat_model(settings.model_copy(update={"llm_base_url": llm.url}))
        suite = load_suite(suite_file)
        with eval_runner(settings, embedder=HashingEmbedder(), workers=1, judge=model) as run:
            report = run.run(suite)
    judged = {r.case.id: r.faithfulness for r in report.results}
    assert judged["reset"] == {"supported": False,
                               "reason": "the 30 minutes are not in the passage"}
    assert judged["person"] is None  # no cited answer to judge
    assert report.metrics["faithfulness"] == 0.0
    assert report.results[0].passed  # the judge never changes pass/fail
    prompt = llm.requests[0]["messages"][1]["content"]
    assert "<passage id=\"1\" article=\"account/reset-password.md\">" in prompt
    assert "<answer>" in prompt and "Forgot password" in prompt


def test_with_a_model_configured_the_eval_measures_the_llm_answerer(settings, suite_file) -> None:
    from fake_openai import fake_openai, user_prompt

    def cite_first(body: dict) -> str:
        prompt = user_prompt(body)
        first = prompt.split('<passage id="', 1)[1].split('"', 1)[0]
        return f"Click Forgot password on the sign-in page to reset your password [{first}]."

    with fake_openai() as llm:
        llm.responder = cite_first
        configured = settings.model_copy(update={"llm_base_url": llm.url})
        with eval_runner(configured, embedder=HashingEmbedder(), workers=1) as run:
            report = run.run(load_suite(suite_file))
    by_id = {r.case.id: r.observed for r in report.results}
    assert by_id["reset"].answered_by == "llm" and by_id["reset"].model_tokens == 15
    assert "Forgot password" in (by_id["reset"].answer or "")
    assert report.metrics["answered_by"]["llm"] >= 1 and report.metrics["model_tokens"] >= 15


@pytest.mark.parametrize(("text", "supported"), [
    ('Sure: {"supported": true, "reason": "all stated"}', True),
    ("No, the refund window is not mentioned.", False),
    ("I cannot tell.", None),
])
def test_verdicts_are_read_leniently(text: str, supported) -> None:
    from assistant.evaluation.runner import parse_verdict

    assert parse_verdict(text)["supported"] is supported


def test_the_judge_needs_a_configured_model(cli_env, suite_file: Path) -> None:
    result = runner.invoke(app, ["eval", str(suite_file), "--judge"])
    assert result.exit_code == 2 and "ASSISTANT_LLM_BASE_URL" in result.output
