"""``assistant agents``: accounts for the people who take over conversations.

Needs only the database (no model, no Chroma), so it works before anything is ingested.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from assistant.cli_console import err, out
from assistant.config import get_settings
from assistant.errors import AssistantError
from assistant.identity import hash_token, new_conversation_token
from assistant.passwords import hash_password
from assistant.storage.db import make_engine, migrate
from assistant.storage.handoff_repo import HandoffStore

agents_app = typer.Typer(help="Manage agent and admin accounts.", no_args_is_help=True)


def _store() -> HandoffStore:
    engine = make_engine(get_settings().resolved_database_url)
    migrate(engine)
    return HandoffStore(engine)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@agents_app.command("create")
def agents_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    name: Annotated[str, typer.Option(help="Name shown to customers.")],
    role: Annotated[str, typer.Option(help="agent or admin.")] = "agent",
    team: Annotated[
        list[str] | None, typer.Option(help="A team the agent works for (repeatable).")
    ] = None,
    capacity: Annotated[int, typer.Option(min=0, help="Conversations at once.")] = 3,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an account; the password is prompted for (or read with --password-stdin)."""
    if role not in {"agent", "admin"}:
        raise _fail("--role must be agent or admin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
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
    out.print(f"created {agent.role} {agent.email} ({agent.id}), teams {', '.join(agent.teams)}")


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
    err.print(f"API token for {agent.email} ({name}); shown once, keep it secret:")
    out.print(token)
