"""`assistant doctor`: every configured component checked, failures named, exit 1 on error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai import fake_openai
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ASSISTANT_LLM_BASE_URL", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def doctor() -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.model
def test_offline_defaults_are_healthy_and_say_so() -> None:
    code, found = doctor()
    assert code == 0, found
    assert found["database"]["status"] == "ok" and "sqlite" in found["database"]["details"]
    assert found["chat model"]["status"] == "off"
    assert "384 dimensions" in found["embeddings"]["details"]
    assert found["knowledge base"]["status"] == "ok"


@pytest.mark.model
def test_the_chat_model_is_called_and_its_failure_is_named(env) -> None:
    with fake_openai() as llm:
        env.setenv("ASSISTANT_LLM_BASE_URL", llm.url)
        env.setenv("ASSISTANT_LLM_MODEL", "tiny-model")
        get_settings.cache_clear()
        code, found = doctor()
        assert code == 0 and found["chat model"]["status"] == "ok"
        assert "tiny-model answered in" in found["chat model"]["details"]
        assert "streams (" in found["chat model"]["details"]
        assert "reports token usage" in found["chat model"]["details"]
        assert llm.requests[0]["model"] == "tiny-model" and llm.requests[1]["stream"] is True
        llm.status = 503
        code, found = doctor()
    assert code == 1 and found["chat model"]["status"] == "error"
    assert "tiny-model" in found["chat model"]["details"]
    assert "the endpoint failed (503)" in found["chat model"]["details"]


@pytest.mark.model
def test_a_database_password_is_never_printed(env) -> None:
    env.setenv("ASSISTANT_DATABASE_URL",
               "postgresql+psycopg://user:s3cret@127.0.0.1:1/nowhere?connect_timeout=1")
    get_settings.cache_clear()
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "s3cret" not in result.output and "127.0.0.1:1/nowhere" in result.output


@pytest.mark.model
def test_an_unreachable_chroma_server_is_named(env) -> None:
    env.setenv("ASSISTANT_CHROMA_URL", "http://127.0.0.1:1")
    get_settings.cache_clear()
    code, found = doctor()
    assert code == 1 and found["vectors"]["status"] == "error"
    assert found["vectors"]["details"].startswith("http://127.0.0.1:1: ")
