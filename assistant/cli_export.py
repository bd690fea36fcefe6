"""``assistant export``: the interaction log (or the messages) as JSONL or CSV, redacted.

Rows are streamed from the database in id order, a batch at a time, so a log of millions
of events is exported in constant memory. Every payload and message text goes through
:func:`assistant.redaction.redact_value` first; there is deliberately no option to turn
that off (SECURITY.md #21). Only data goes to stdout, so it can be piped; the summary goes
to stderr.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from assistant.cli_console import err
from assistant.config import get_settings
from assistant.redaction import redact, redact_value

if TYPE_CHECKING:
    from assistant.storage.records import EventRecord, MessageRecord

EVENT_COLUMNS = ("id", "type", "created_at", "conversation_id", "customer_id", "payload")
MESSAGE_COLUMNS = ("id", "conversation_id", "role", "text", "created_at")
BATCH = 5000

# A spreadsheet runs a cell starting with one of these as a formula; customer text is
# untrusted, so such cells get a leading apostrophe in CSV (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    """Output formats of ``assistant export``."""

    jsonl = "jsonl"
    csv = "csv"


def parse_when(value: str | None, option: str) -> datetime | None:
    """Parse an ISO 8601 date or date-time option; naive values are taken as UTC.

    Args:
        value: ``2024-05-01``, ``2024-05-01T09:30``, ``2024-05-01T09:30:00+02:00``, ``...Z``
            or None.
        option: The option's name, for the error message.

    Returns:
        A timezone-aware datetime, or None when ``value`` is None.

    Raises:
        typer.BadParameter: Not an ISO 8601 date or date-time.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01 or "
            f"2024-05-01T09:30:00Z)", param_hint=option,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_row(event: EventRecord) -> dict[str, Any]:
    """An event as exported: the payload redacted, the time in ISO 8601 UTC."""
    return {
        "id": event.id,
        "type": event.type,
        "created_at": _iso(event.created_at),
        "conversation_id": event.conversation_id,
        "customer_id": event.customer_id,
        "payload": redact_value(event.payload),
    }


def message_row(message: MessageRecord) -> dict[str, Any]:
    """A message as exported: its text redacted, the time in ISO 8601 UTC."""
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "text": redact(message.text),
        "created_at": _iso(message.created_at),
    }


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_rows(rows: Iterable[dict[str, Any]], stream: IO[str], fmt: ExportFormat,
               columns: tuple[str, ...]) -> int:
    """Write rows as JSONL (one object per line) or CSV (with a header); return the count."""
    count = 0
    if fmt is ExportFormat.jsonl:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
        return count
    writer = csv.writer(stream)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row[column]) for column in columns])
        count += 1
    return count


def _counted(rows: Iterator[dict[str, Any]], progress: Progress) -> Iterator[dict[str, Any]]:
    task = progress.add_task("exporting", total=None)
    for n, row in enumerate(rows, start=1):
        if n % 1000 == 0:
            progress.update(task, completed=n)
        yield row


def export_command(
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl: one JSON object per line; csv.")
    ] = ExportFormat.jsonl,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only rows created at or after this ISO 8601 date/time (UTC if "
                     "no offset)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only rows created before this ISO 8601 date/time (exclusive)."),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only events of this type, e.g. handoff.enqueued "
                     "(repeatable)."),
    ] = None,
    messages: Annotated[
        bool,
        typer.Option("--messages", help="Export messages (id, conversation_id, role, text, "
                     "created_at) instead of events."),
    ] = False,
) -> None:
    """Export the interaction log (events) or the messages as JSONL or CSV, oldest first.

    Emails, phone numbers, card numbers, IBANs and secrets are always redacted.
    """
    from assistant.cli_privacy import cli_actor
    from assistant.storage.db import make_engine, migrate
    from assistant.storage.privacy_repo import PrivacyStore
    from assistant.storage.repos import Store

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter("--since must be earlier than --until", param_hint="--since")
    if messages and types:
        raise typer.BadParameter("--type filters events; it cannot be used with --messages",
                                 param_hint="--type")
    engine = make_engine(get_settings().resolved_database_url)
    migrate(engine)
    store = Store(engine)
    what = "messages" if messages else "events"
    rows: Iterator[dict[str, Any]]
    columns: tuple[str, ...]
    if messages:
        rows = map(message_row, store.iter_messages(since=start, until=end, batch=BATCH))
        columns = MESSAGE_COLUMNS
    else:
        rows = map(event_row, store.iter_events(
            since=start, until=end, types=tuple(types or ()), batch=BATCH))
        columns = EVENT_COLUMNS
    try:
        with Progress(TextColumn("{task.description} {task.completed} rows"),
                      TimeElapsedColumn(), console=err, transient=True,
                      disable=not err.is_terminal) as progress:
            rows = _counted(rows, progress)
            count = _write(rows, out_path, fmt, columns)
    except BrokenPipeError:
        # The reader (head, a closed pager) went away: stop quietly, without a traceback
        # when Python flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    finally:
        store.dispose()
    PrivacyStore(engine).audit(actor=cli_actor(), action="export", details={
        "what": what, "rows": count, "since": since, "until": until, "format": str(fmt)})
    engine.dispose()
    err.print(f"exported {count} {what}" + (f" to {out_path}" if out_path else ""))


def _write(rows: Iterator[dict[str, Any]], out_path: Path | None, fmt: ExportFormat,
           columns: tuple[str, ...]) -> int:
    if out_path is None:
        return write_rows(rows, sys.stdout, fmt, columns)
    # Written next to the target and renamed at the end: an interrupted export never
    # leaves a truncated file that looks complete.
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            count = write_rows(rows, stream, fmt, columns)
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    return count
