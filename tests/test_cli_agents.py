"""`assistant agents`: create accounts, list them, issue API tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import get_settings
from assistant.identity import hash_token
from assistant.passwords import verify_password
from assistant.storage.db import make_engine
from assistant.storage.handoff_repo import HandoffStore

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def store() -> HandoffStore:
    return HandoffStore(make_engine(get_settings().resolved_database_url))


def create(email: str = "ana@example.test", *extra: str, password: str = "a long passphrase"):
    return runner.invoke(app, ["agents", "create", "Ana", "--email", email,
                               "--password-stdin", *extra], input=password + "\n")


def test_create_list_and_token() -> None:
    created = create("Ana@Example.test", "--team", "billing", "--team", "support",
                     "--role", "admin")
    assert created.exit_code == 0, created.output
    agent = store().agent_by_email("ana@example.test")
    assert agent is not None and agent.role == "admin"
    assert agent.teams == ("billing", "support")
    assert verify_password("a long passphrase", agent.password_hash)
    listed = json.loads(runner.invoke(app, ["agents", "list", "--json"]).stdout)
    assert [a["email"] for a in listed] == ["ana@example.test"]
    assert "password" not in json.dumps(listed)
    issued = runner.invoke(app, ["agents", "token", "--email", "ana@example.test",
                                 "--name", "zapier"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    assert store().agent_for_token(hash_token(token)).email == "ana@example.test"


def test_bad_input_is_refused_clearly() -> None:
    assert "at least 10" in create(password="short").output
    assert create().exit_code == 0
    duplicate = create()
    assert duplicate.exit_code == 1 and "exists" in duplicate.output
    assert "agent or admin" in create("b@example.test", "--role", "boss").output
    missing = runner.invoke(app, ["agents", "token", "--email", "nobody@example.test"])
    assert missing.exit_code == 1 and "no active account" in missing.output


def test_create_without_a_password_prints_a_one_time_password() -> None:
    created = runner.invoke(app, ["agents", "create", "Bo Diaz", "--email", "bo@example.test",
                                  "--role", "agent"])
    assert created.exit_code == 0, created.output
    password = created.stdout.strip().splitlines()[-1]
    agent = store().agent_by_email("bo@example.test")
    assert agent is not None and agent.name == "Bo Diaz"
    assert verify_password(password, agent.password_hash)


def test_password_change_signs_out_every_session() -> None:
    from datetime import UTC, datetime, timedelta

    assert create().exit_code == 0
    agent = store().agent_by_email("ana@example.test")
    store().create_session(agent.id, hash_token("session-1"),
                           datetime.now(UTC) + timedelta(hours=1))
    changed = runner.invoke(app, ["agents", "password", "ana@example.test"])
    assert changed.exit_code == 0, changed.output
    assert "1 session(s) signed out" in changed.stdout
    new_password = changed.stdout.strip().splitlines()[-1]
    agent = store().agent_by_email("ana@example.test")
    assert verify_password(new_password, agent.password_hash)
    assert store().agent_for_session(hash_token("session-1"), datetime.now(UTC)) is None
    missing = runner.invoke(app, ["agents", "password", "nobody@example.test"])
    assert missing.exit_code == 1 and "no account" in missing.output


def test_demo_creates_the_demo_admin_once() -> None:
    first = runner.invoke(app, ["agents", "demo"])
    assert first.exit_code == 0 and "demo@example.com / " in first.output
    password = first.output.split("demo@example.com / ")[1].split()[0]
    agent = store().agent_by_email("demo@example.com")
    assert agent.role == "admin" and verify_password(password, agent.password_hash)
    second = runner.invoke(app, ["agents", "demo"])
    assert second.exit_code == 0 and "exists" in second.output
