"""``assistant agents``: accounts for the people who take over conversations.

Needs only the database (no model, no Chroma), so it works before anything is ingested.
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from assistant.cli_console import err, out
from assistant.config import get_settings
from assistant.errors import AssistantError
from assistant.identity import hash_token, new_conversation_token
from assistant.passwords import hash_password

if TYPE_CHECKING:
    from assistant.storage.handoff_repo import HandoffStore

agents_app = typer.Typer(help="Manage agent and admin accounts.", no_args_is_help=True)


def _store() -> HandoffStore:
    from assistant.storage.db import make_command_engine, migrate
    from assistant.storage.handoff_repo import HandoffStore

    engine = make_command_engine(get_settings().resolved_database_url)
    migrate(engine)
    return HandoffStore(engine)


def _audit(action: str, agent_id: str, **details: str) -> None:
    """Record an account change in the audit log (ids only; never a password or token)."""
    from assistant.cli_privacy import cli_actor
    from assistant.storage.db import make_command_engine
    from assistant.storage.privacy_repo import PrivacyStore

    engine = make_command_engine(get_settings().resolved_database_url)
    try:
        PrivacyStore(engine).audit(actor=cli_actor(), action=action, target=f"agent:{agent_id}",
                                   details=dict(details))
    finally:
        engine.dispose()


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


DEMO_EMAIL = "demo@example.com"


def _new_password() -> str:
    # 18 random bytes: long enough to need no complexity rules, short enough to type.
    return secrets.token_urlsafe(18)


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password from stdin, or a generated one; and whether it was generated."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return _new_password(), True


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Argument(help="Name shown to customers, e.g. 'Alex Kim'.")],
    email: Annotated[str, typer.Option(help="Login email.")],
    role: Annotated[str, typer.Option(help="agent or admin.")] = "agent",
    team: Annotated[
        list[str] | None, typer.Option(help="A team the agent works for (repeatable).")
    ] = None,
    capacity: Annotated[int, typer.Option(min=0, help="Conversations at once.")] = 3,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin instead of "
                     "generating one."),
    ] = False,
) -> None:
    """Create an account and print its one-time password (or read it with --password-stdin).

    The password signs in at /console/login; `assistant agents token` issues API tokens.
    """
    if role not in {"agent", "admin"}:
        raise _fail("--role must be agent or admin")
    password, generated = _read_password(password_stdin)
    try:
        agent = _store().create_agent(
            email=email,
            name=name,
            role=role,
            password_hash=hash_password(password),
            teams=team or ["support"],
            capacity=capacity,
        )
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    _audit("agent.create", agent.id, role=agent.role)
    out.print(f"created {agent.role} {agent.email} ({agent.id}), teams {', '.join(agent.teams)}")
    if generated:
        err.print("one-time password (shown once; sign in at /console/login):")
        out.print(password)


@agents_app.command("password")
def agents_password(
    email: Annotated[str, typer.Argument(help="The account's login email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Set a new password (generated and printed once unless --password-stdin); every
    console session of the account is signed out."""
    store = _store()
    agent = store.agent_by_email(email)
    if agent is None:
        raise _fail(f"no account with email {email!r}")
    password, generated = _read_password(password_stdin)
    try:
        ended = store.set_password(agent.id, hash_password(password))
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    _audit("agent.password", agent.id)
    out.print(f"password changed for {agent.email}; {ended} session(s) signed out")
    if generated:
        err.print("new one-time password (shown once):")
        out.print(password)


@agents_app.command("demo")
def agents_demo() -> None:
    """Make sure the demo admin (demo@example.com, every team) exists; print its password
    when it is created. Used by `make run`."""
    store = _store()
    if store.agent_by_email(DEMO_EMAIL) is not None:
        err.print(f"demo agent {DEMO_EMAIL} exists (new password: "
                  f"`assistant agents password {DEMO_EMAIL}`)")
        return
    password = _new_password()
    store.create_agent(
        email=DEMO_EMAIL, name="Demo Agent", role="admin",
        password_hash=hash_password(password), teams=["support", "billing", "retention"],
        capacity=10,
    )
    err.print(f"demo console sign-in: {DEMO_EMAIL} / {password}  (shown once)")


@agents_app.command("list")
def agents_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Every account with its role, teams, capacity and state."""
    agents = _store().list_agents()
    if as_json:
        typer.echo(json.dumps([
            {"id": a.id, "email": a.email, "name": a.name, "role": a.role,
             "teams": list(a.teams), "capacity": a.capacity, "online": a.online,
             "active": a.active}
            for a in agents
        ], indent=2))
        return
    table = Table(title="agents")
    for column in ("email", "name", "role", "teams", "capacity", "online", "active"):
        table.add_column(column)
    for a in agents:
        table.add_row(a.email, a.name, a.role, ", ".join(a.teams), str(a.capacity),
                      "yes" if a.online else "no", "yes" if a.active else "no")
    out.print(table)


@agents_app.command("token")
def agents_token(
    email: Annotated[str, typer.Option(help="The account the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. zapier.")] = "api",
) -> None:
    """Issue an API token for automation; it is printed once and stored only as a hash."""
    store = _store()
    agent = store.agent_by_email(email)
    if agent is None or not agent.active:
        raise _fail(f"no active account with email {email!r}")
    token = new_conversation_token()
    try:
        store.add_token(agent.id, hash_token(token), name)
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    _audit("agent.token", agent.id, name=name)
    err.print(f"API token for {agent.email} ({name}); shown once, keep it secret:")
    out.print(token)
