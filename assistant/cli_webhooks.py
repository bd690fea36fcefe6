"""``assistant webhooks``: the outbound-signal delivery log, manual passes, retries, tests.

Needs only the database (no model, no Chroma), so it works on a server's data directory
while the server runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from assistant.cli_console import err, out
from assistant.config import Settings, get_settings
from assistant.errors import AssistantError

if TYPE_CHECKING:
    from assistant.storage.webhook_repo import DeliveryRecord, WebhookStore
    from assistant.webhooks import WebhookSender

webhooks_app = typer.Typer(
    help="Outbound webhooks: the delivery log, delivery passes, retries and test sends.",
    no_args_is_help=True,
)

TEST_EVENT = "webhook.test"


class DeliveryStatus(StrEnum):
    """The statuses ``list --status`` accepts."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"


@contextmanager
def _store() -> Iterator[WebhookStore]:
    from assistant.storage.db import make_engine, migrate
    from assistant.storage.webhook_repo import WebhookStore

    engine = make_engine(get_settings().resolved_database_url)
    try:
        migrate(engine)
        yield WebhookStore(engine)
    finally:
        engine.dispose()


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def _sender(store: WebhookStore, settings: Settings, **kwargs: Any) -> WebhookSender:
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise _fail(
            "set ASSISTANT_WEBHOOK_SECRET first: signals carry customer data and are only "
            "sent signed"
        )
    from assistant.webhooks import WebhookSender

    return WebhookSender.from_settings(store, settings, **kwargs)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _status(record: DeliveryRecord) -> str:
    if record.status == "delivered":
        return f"delivered {_when(record.delivered_at)}"
    if record.status == "pending" and record.attempts:
        return f"pending, next {_when(record.next_attempt_at)}"
    return record.status


def _last(record: DeliveryRecord) -> str:
    if record.last_error:
        return record.last_error if len(record.last_error) <= 60 else record.last_error[:59] + "…"
    return str(record.last_status) if record.last_status is not None else ""


def delivery_json(record: DeliveryRecord) -> dict[str, Any]:
    """A delivery as a JSON-ready dict (``list --json``)."""
    return {
        "id": record.id,
        "event": record.event,
        "url": record.url,
        "status": record.status,
        "attempts": record.attempts,
        "last_status": record.last_status,
        "last_error": record.last_error,
        "next_attempt_at": record.next_attempt_at.isoformat(),
        "created_at": record.created_at.isoformat(),
        "delivered_at": record.delivered_at.isoformat() if record.delivered_at else None,
        "payload": record.payload,
    }


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[
        DeliveryStatus | None, typer.Option("--status", help="Only deliveries in this status.")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Only this event, e.g. customer.at_risk.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Newest N.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """The delivery log, newest first: status, attempts, last answer or error."""
    with _store() as store:
        records = store.list_deliveries(
            status=status.value if status else None, event=event, limit=limit
        )
    if as_json:
        typer.echo(json.dumps([delivery_json(r) for r in records], indent=2))
        return
    table = Table(title=f"webhook deliveries ({len(records)}, newest first, times in UTC)")
    # Whole ids (for `webhooks retry`); the other columns fold on narrow terminals.
    table.add_column("id", no_wrap=True)
    for column in ("event", "status", "tries", "last answer", "created", "url"):
        table.add_column(column, overflow="fold")
    for r in records:
        # Text cells: URLs and receivers' errors are data, never Rich markup.
        table.add_row(
            r.id, Text(r.event), _status(r), str(r.attempts), Text(_last(r)),
            _when(r.created_at), Text(r.url),
        )
    out.print(table)


@webhooks_app.command("deliver")
def webhooks_deliver(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most N.")] = 50,
) -> None:
    """Run one delivery pass now (what the server does every few seconds)."""
    settings = get_settings()
    with _store() as store, _sender(store, settings) as sender:
        report = sender.deliver_due(limit)
    out.print(f"sent {report.sent}, retried {report.retried}, failed {report.failed}")


@webhooks_app.command("retry")
def webhooks_retry(
    delivery_id: Annotated[str, typer.Argument(help="The id of a failed delivery.")],
) -> None:
    """Put a failed delivery back in the outbox, due now, with a fresh set of attempts."""
    with _store() as store:
        try:
            record = store.retry(delivery_id)
        except AssistantError as exc:
            raise _fail(str(exc)) from exc
    out.print(f"delivery {record.id} ({escape(record.event)}) is pending again; the next "
              "delivery pass sends it")


@webhooks_app.command("test")
def webhooks_test(
    url: Annotated[str, typer.Argument(help="The receiver's http(s) URL.")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=120, help="Seconds.")] = 10,
) -> None:
    """Send a signed `webhook.test` delivery to URL now and print the answer's status.

    The delivery is tried once and appears in the log like any other.
    """
    settings = get_settings()
    with _store() as store, _sender(store, settings, timeout=timeout) as sender:
        try:
            record = store.enqueue(TEST_EVENT, url, {
                "type": TEST_EVENT,
                "created_at": datetime.now().astimezone().isoformat(),
                "data": {"message": "A test delivery from `assistant webhooks test`."},
            })
            attempt = sender.deliver(record.id, final=True)
        except AssistantError as exc:
            raise _fail(str(exc)) from exc
    if attempt.ok:
        out.print(f"delivered {record.id}: HTTP {attempt.status_code}")
        return
    err.print(f"[red]not delivered[/red] {record.id}: {escape(attempt.error or 'failed')}")
    raise typer.Exit(1)
