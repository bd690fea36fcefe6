"""``assistant customers erase``, ``assistant retention run`` and ``assistant audit``.

Erasure builds the whole runtime (it must reach Chroma too); retention and the audit log
need only the database, so they start fast enough for cron.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from assistant.cli_console import err, out
from assistant.config import Settings, get_settings
from assistant.errors import AssistantError, NotFound

if TYPE_CHECKING:
    from assistant.privacy import PrivacyService

customers_app = typer.Typer(help="Customers' personal data: erasure on request.",
                            no_args_is_help=True)
retention_app = typer.Typer(help="Retention windows (ASSISTANT_RETENTION_*_DAYS).",
                            no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of staff and operator actions.",
                        no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def cli_actor() -> str:
    """How the audit log names whoever ran the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


def _privacy(settings: Settings) -> PrivacyService:
    from assistant.privacy import PrivacyService
    from assistant.storage.db import make_command_engine, migrate
    from assistant.storage.privacy_repo import PrivacyStore

    engine = make_command_engine(settings.resolved_database_url)
    migrate(engine)
    return PrivacyService(store=PrivacyStore(engine))


@customers_app.command("erase")
def erase(
    customer: Annotated[str, typer.Argument(help="The customer's internal id or external id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase a customer everywhere (messages, events, health, webhooks, vectors); audited."""
    if not yes and not typer.confirm(f"Erase customer {customer!r} and all their data?"):
        raise typer.Exit(1)
    from assistant.runtime import build_runtime

    try:
        runtime = build_runtime(get_settings())
    except AssistantError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    try:
        report = runtime.privacy.erase_customer(customer, actor=cli_actor())
    except NotFound as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    removed = ", ".join(f"{n} {k}" for k, n in report.removed.items() if n)
    out.print(f"erased: {removed or 'no rows'}; {report.vectors_removed} vectors")
    out.print(f"audit entry {report.audit_id} (subject sha256:{report.subject[:16]}...)")


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; delete nothing.")]
    = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete what is older than the retention windows; safe to run from cron.

    ASSISTANT_RETENTION_MESSAGES_DAYS, ..._EVENTS_DAYS and ..._AUDIT_DAYS set the windows;
    ..._CUSTOMERS_DAYS erases customers with no conversation activity for that long. An
    unset window keeps that data forever.
    """
    settings = get_settings()
    if settings.retention_customers_days and not dry_run:
        # Erasing customers reaches Chroma too, like `customers erase`: the whole runtime.
        from assistant.runtime import build_runtime

        try:
            runtime = build_runtime(settings)
        except AssistantError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        try:
            report = runtime.privacy.apply_retention(settings, actor=cli_actor())
        finally:
            runtime.close()
    else:
        report = _privacy(settings).apply_retention(settings, actor=cli_actor(),
                                                    dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    if not any(report.cutoffs.values()):
        err.print("no retention window is set (ASSISTANT_RETENTION_*_DAYS): nothing to do")
    verb = "would delete" if dry_run else "deleted"
    for name, count in report.removed.items():
        out.print(f"{verb} {count} {name}")


@audit_app.command("list")
def audit_list(
    after: Annotated[int, typer.Option(min=0, help="Only entries with a larger id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Audit entries oldest first (who did what, to which target, with what outcome)."""
    entries = _privacy(get_settings()).audit_log(after=after, limit=limit, action=action)
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    table = Table(title="audit log")
    for column in ("id", "at", "actor", "action", "target", "outcome"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(str(e.id), e.at.isoformat(timespec="seconds"), e.actor, e.action,
                      e.target or "", e.outcome)
    out.print(table)
