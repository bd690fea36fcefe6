"""``assistant export``: the interaction log and the messages, streamed and redacted."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from assistant.cli import app
from assistant.cli_export import EVENT_COLUMNS, MESSAGE_COLUMNS
from assistant.config import Settings, get_settings
from assistant.runtime import Runtime
from assistant.storage.db import make_engine
from assistant.storage.tables import Event

runner = CliRunner()

EMAIL = "jane.doe@example.com"
PHONE = "+44 7911 123456"
CARD = "4111 1111 1111 1111"
PII_TEXT = f"My email is {EMAIL}, call me on {PHONE}; my card {CARD} was charged twice."


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings) -> Iterator[None]:
    """Point the CLI at the database the ``runtime`` fixture writes to."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def logged(client: TestClient, conversation: dict[str, str], runtime: Runtime) -> Runtime:
    """A conversation with a PII-laden customer message and an event carrying PII."""
    response = client.post(
        f"/v1/conversations/{conversation['id']}/messages", json={"text": PII_TEXT},
        headers={**auth(conversation["token"]), "Idempotency-Key": "export-1"},
    )
    assert response.status_code == 200, response.text
    runtime.store.append_event(
        type="test.pii", conversation_id=conversation["id"],
        payload={"note": PII_TEXT, "nested": [{"iban": "DE89 3704 0044 0532 0130 00"}],
                 "card_as_number": 4111111111111111, "count": 2},
    )
    return runtime


def export(*args: str) -> Any:
    result = runner.invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    return result


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def assert_no_pii(text: str) -> None:
    for raw in (EMAIL, PHONE, CARD, CARD.replace(" ", ""), "7911 123456", "3704 0044"):
        assert raw not in text


def test_jsonl_export_is_redacted_complete_and_in_id_order(logged: Runtime) -> None:
    result = export()
    rows = jsonl(result.stdout)
    assert_no_pii(result.stdout)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert len(rows) == len(logged.store.list_events(limit=100_000))
    assert all(tuple(r) == EVENT_COLUMNS for r in rows)
    assert {"conversation.started", "message.received", "answer.sent"} <= {r["type"] for r in rows}
    pii = next(r for r in rows if r["type"] == "test.pii")
    assert pii["payload"] == {
        "note": "My email is [email], call me on [phone]; my card [card] was charged twice.",
        "nested": [{"iban": "[iban]"}], "card_as_number": "[card]", "count": 2,
    }
    assert pii["created_at"].endswith("Z") and datetime.fromisoformat(pii["created_at"])
    assert f"exported {len(rows)} events" in result.stderr


def test_csv_export_to_a_file(logged: Runtime, tmp_path: Path) -> None:
    target = tmp_path / "log.csv"
    result = export("--format", "csv", "--out", str(target))
    assert result.stdout == ""
    text = target.read_text(encoding="utf-8")
    assert_no_pii(text)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == EVENT_COLUMNS
    rows = list(reader)
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    pii = next(r for r in rows if r["type"] == "test.pii")
    assert json.loads(pii["payload"])["nested"] == [{"iban": "[iban]"}]
    assert f"exported {len(rows)} events to {target}" in result.stderr
    assert not (tmp_path / "log.csv.partial").exists()


def test_type_filter(logged: Runtime) -> None:
    rows = jsonl(export("--type", "test.pii", "--type", "message.received").stdout)
    assert sorted({r["type"] for r in rows}) == ["message.received", "test.pii"]
    assert len(rows) == 2


def test_since_is_inclusive_and_until_exclusive(logged: Runtime, settings: Settings) -> None:
    ids = [logged.store.append_event(type="test.time", payload={"n": n}) for n in range(3)]
    engine = make_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        for event_id, year in zip(ids, (2021, 2022, 2023), strict=True):
            connection.execute(update(Event).where(Event.id == event_id)
                               .values(created_at=datetime(year, 1, 1, tzinfo=UTC)))
    engine.dispose()

    def years(*args: str) -> list[int]:
        rows = jsonl(export("--type", "test.time", *args).stdout)
        return [int(r["created_at"][:4]) for r in rows]

    assert years("--since", "2022-01-01", "--until", "2023-01-01") == [2022]
    assert years("--since", "2022-01-01T00:00:00Z") == [2022, 2023]
    assert years("--until", "2022-01-01T00:30:00+01:00") == [2021]  # 23:30 UTC the day before
    assert years("--since", "2030-01-01") == []


def test_messages_export(logged: Runtime) -> None:
    result = export("--messages")
    rows = jsonl(result.stdout)
    assert_no_pii(result.stdout)
    assert all(tuple(r) == MESSAGE_COLUMNS for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    customer = next(r for r in rows if r["role"] == "customer")
    assert customer["text"] == (
        "My email is [email], call me on [phone]; my card [card] was charged twice.")
    assert "assistant" in {r["role"] for r in rows}
    assert f"exported {len(rows)} messages" in result.stderr

    result = export("--messages", "--format", "csv")
    csv_rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert [int(r["id"]) for r in csv_rows] == [r["id"] for r in rows]
    assert_no_pii(result.stdout)


def test_csv_cells_never_start_a_spreadsheet_formula(
    client: TestClient, conversation: dict[str, str]
) -> None:
    text = '=HYPERLINK("https://evil.example","refund")'
    response = client.post(f"/v1/conversations/{conversation['id']}/messages",
                           json={"text": text}, headers=auth(conversation["token"]))
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(export("--messages", "--format", "csv").stdout)))
    assert next(r for r in rows if r["role"] == "customer")["text"] == "'" + text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "ISO 8601"),
        (["--until", "2024-13-01"], "ISO 8601"),
        (["--since", "2024-02-01", "--until", "2024-01-01"], "earlier"),
        (["--messages", "--type", "message.received"], "--messages"),
        (["--format", "xml"], "xml"),
    ],
)
def test_invalid_options_exit_2(runtime: Runtime, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["export", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert result.stdout == ""


def test_store_iterators_page_by_id(logged: Runtime) -> None:
    store = logged.store
    everything = store.list_events(limit=100_000)
    assert [e.id for e in store.iter_events(batch=2)] == [e.id for e in everything]
    chosen = ("message.received", "test.pii")
    assert [e.id for e in store.iter_events(types=chosen, batch=1)] == [
        e.id for e in everything if e.type in chosen]
    messages = list(store.iter_messages(batch=1))
    assert len(messages) == store.count_messages() >= 2
    assert [m.id for m in messages] == sorted(m.id for m in messages)
    future = datetime(2100, 1, 1, tzinfo=UTC)
    assert list(store.iter_events(since=future)) == []
    assert list(store.iter_messages(until=datetime(2000, 1, 1, tzinfo=UTC))) == []
