"""The command line, as a user runs it (real model, temporary data dir, tiny KB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import get_settings

runner = CliRunner()
pytestmark = pytest.mark.model


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path) -> None:
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSISTANT_KB_DIR", str(kb_dir))
    monkeypatch.setenv("ASSISTANT_EMBED_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_ingest_json_then_incremental(kb_dir: Path) -> None:
    first = runner.invoke(app, ["ingest", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["added"] == 5
    (kb_dir / "billing/refunds.md").write_text("---\ntitle: Refunds\n---\nNo refunds.\n")
    second = json.loads(runner.invoke(app, ["ingest", "--json"]).stdout)
    assert (second["updated"], second["unchanged"]) == (1, 4)


def test_ingest_reports_bad_files_with_exit_code_2(kb_dir: Path) -> None:
    (kb_dir / "bad.md").write_bytes(b"\x00\x01")
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 2
    assert "bad.md" in result.output and "binary" in result.output
    assert "added 5" in result.output


def test_kb_search_json() -> None:
    result = runner.invoke(app, ["kb", "search", "connect slack alerts", "--k", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["article_id"] == "integrations/slack.md"
    assert set(rows[0]) >= {"article_id", "title", "url", "score", "text"}


def test_ask_json_has_answer_citations_and_decision() -> None:
    result = runner.invoke(app, ["ask", "How do I connect Slack alerts?", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["citations"][0]["article_id"] == "integrations/slack.md"
    assert data["decision"]["action"] in {"answer", "answer_and_offer_human"}
    assert "Connect" in data["answer"]


def test_ask_rejects_empty_question() -> None:
    result = runner.invoke(app, ["ask", "   "])
    assert result.exit_code == 1 and "empty" in result.output


def test_chat_stores_the_conversation() -> None:
    result = runner.invoke(app, ["chat"], input="How do I connect Slack?\n")
    assert result.exit_code == 0, result.output
    assert "Slack" in result.output
