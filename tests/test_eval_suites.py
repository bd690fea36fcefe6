"""Suite files: the YAML format, bulk CSV/JSONL, and errors that name file, line, case, field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from assistant.errors import InvalidInput
from assistant.evaluation.suites import discover, load_suite
from assistant.yaml_files import YamlFileError


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_yaml_suite_loads_with_defaults_and_sources(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path / "s.yaml", """\
        name: demo
        kb: kb
        thresholds: {hit_at_k: 0.9}
        cases:
          - id: reset
            tags: [account]
            question: How do I reset my password?
            expect: {retrieved: [account/reset-password.md], escalate: false}
          - id: two-turns
            turns: [hi, I want a human]
            expect: {escalate: true, reasons: [human_requested]}
        """))
    assert suite.name == "demo" and suite.k == 5 and suite.kb_dir == (tmp_path / "kb").resolve()
    reset, two = suite.cases
    assert reset.turns == ("How do I reset my password?",) and reset.key == "demo/reset"
    assert reset.source == f"{tmp_path / 's.yaml'}:5"
    assert two.turns == ("hi", "I want a human") and two.expect.reasons == ("human_requested",)
    assert [c.id for c in suite.filtered({"account"}).cases] == ["reset"]


@pytest.mark.parametrize(("body", "expected"), [
    ("    expect: {intnet: how_to}\n", ":8: cases[1] (id broken) expect.intnet: Extra inputs"),
    ("    expect: {}\n", ":8: cases[1] (id broken) expect: Value error, expect needs at least"),
    ("    expect: {sentiment: angry}\n", ":8: cases[1] (id broken) expect.sentiment: Input should"),
])
def test_errors_name_the_file_line_case_and_field(tmp_path: Path, body: str,
                                                  expected: str) -> None:
    path = write(tmp_path / "bad.yaml", """\
        name: demo
        cases:
          - id: fine
            question: hello
            expect: {escalate: false}
          - id: broken
            question: hello
        """ + body)
    with pytest.raises(YamlFileError) as caught:
        load_suite(path)
    assert f"{path}{expected}" in str(caught.value)


def test_suite_level_mistakes_are_refused(tmp_path: Path) -> None:
    duplicate = write(tmp_path / "dup.yaml", """\
        name: demo
        thresholds: {recall: 0.3}
        cases:
          - {id: a, question: x, expect: {escalate: false}}
          - {id: a, question: y, turns: [z], expect: {escalate: false}}
        """)
    with pytest.raises(YamlFileError) as caught:
        load_suite(duplicate)
    message = str(caught.value)
    assert ":2: thresholds: Value error, unknown metric 'recall'" in message
    assert ":5: cases[1] (id a): Value error, give either question or turns" in message


def test_bulk_csv_and_jsonl_are_retrieval_suites(tmp_path: Path) -> None:
    csv_suite = load_suite(write(tmp_path / "bulk.csv", """\
        question,expected_article
        How do I reset my password?,account/reset-password.md
        "Refund, please",billing/refunds.md
        """))
    assert csv_suite.name == "bulk" and len(csv_suite.cases) == 2
    assert csv_suite.cases[1].expect.retrieved == ("billing/refunds.md",)
    assert csv_suite.cases[1].source.endswith("bulk.csv:3")
    line = '{"question": "Slack?", "expected_article": "integrations/slack.md"}\n'
    jsonl = load_suite(write(tmp_path / "more.jsonl", line))
    assert jsonl.cases[0].turns == ("Slack?",)
    with pytest.raises(InvalidInput, match=r"bad.csv:1: the header must have"):
        load_suite(write(tmp_path / "bad.csv", "text,label\nx,y\n"))
    with pytest.raises(InvalidInput, match=r"gap.csv:3: question and expected_article"):
        load_suite(write(tmp_path / "gap.csv", "question,expected_article\na,b\n,c\n"))
    with pytest.raises(InvalidInput, match=r"broken.jsonl:1: not valid JSON"):
        load_suite(write(tmp_path / "broken.jsonl", "{nope\n"))


def test_discover_finds_suites_but_not_labelled_data(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "intents.csv", "text,label\nhi,greeting\n")
    suite = write(tmp_path / "a.yaml", "name: a\ncases: []\n")
    assert discover([tmp_path]) == [suite]
    with pytest.raises(InvalidInput, match="no such file"):
        discover([tmp_path / "missing"])
