"""``assistant doctor``: check every configured component and say what was found.

It connects to what the settings name (database, Chroma server, embeddings, the chat
model) without starting the server or ingesting, so it is the first thing to run after
changing configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from assistant.cli_console import out
from assistant.config import Settings, get_settings

Check = tuple[str, str]  # (status: ok | error | off, details)


def _database(settings: Settings) -> Check:
    from assistant.storage.db import make_engine
    from assistant.storage.repos import Store

    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        ok = Store(engine).integrity_ok()
    finally:
        engine.dispose()
    where = url.split("@")[-1] if "@" in url else url  # never print a password
    return ("ok", f"{engine.dialect.name} at {where}") if ok else (
        "error", f"cannot use {engine.dialect.name} at {where}")


def _chroma(settings: Settings) -> Check:
    if not settings.chroma_url:
        return "ok", f"embedded, stored in {settings.chroma_path}"
    from assistant.kb.vectors import make_chroma_client

    try:
        make_chroma_client(settings).heartbeat()
    except Exception as exc:  # any client or network failure is the finding
        return "error", f"{settings.chroma_url}: {type(exc).__name__}: {exc}"
    return "ok", f"server at {settings.chroma_url}"


def _embeddings(settings: Settings) -> Check:
    from assistant.embeddings import build_embedder

    embedder = build_embedder(settings)
    started = time.perf_counter()
    vector = embedder.embed(["doctor"])
    took = (time.perf_counter() - started) * 1000
    return "ok", f"{embedder.model_id}, {len(vector[0])} dimensions, {took:.0f} ms for one text"


def _llm(settings: Settings) -> Check:
    from assistant.llm import LLMError, build_chat_model, ping

    model = build_chat_model(settings)
    if model is None:
        return "off", "no ASSISTANT_LLM_BASE_URL: answers are extractive, fully offline"
    where = f"{settings.llm_base_url} model {settings.llm_model}"
    try:
        took = ping(model)
        # Answers stream: check that the endpoint streams and reports token usage too.
        pieces: list[str] = []
        streamed = model.complete("ping", "You are a health check.", "Count from 1 to 5.",
                                  max_tokens=20, on_text=pieces.append)
    except LLMError as exc:
        return "error", f"{where}: {exc}"
    finally:
        model.close()
    usage = "reports token usage" if streamed.completion_tokens is not None else (
        "reports no token usage")
    return "ok", (f"{where} answered in {took:.0f} ms; streams ({len(pieces)} pieces, "
                  f"{usage})")


def _kb(settings: Settings) -> Check:
    from assistant.kb.articles import iter_kb_files

    if not settings.kb_dir.is_dir():
        return "error", f"{settings.kb_dir} is not a directory"
    files = sum(1 for _ in iter_kb_files(settings.kb_dir))
    return ("ok" if files else "error"), f"{files} article files in {settings.kb_dir}"


def _shared_limits(settings: Settings) -> Check:
    if not settings.redis_url:
        return "off", "rate limits and sign-in lockouts count per process (ASSISTANT_REDIS_URL)"
    import redis

    where = settings.redis_url.split("@")[-1]  # never print a password
    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=2.0,
                             socket_connect_timeout=2.0).ping()
    except redis.RedisError as exc:
        return "error", f"{where}: {type(exc).__name__}: {exc}"
    return "ok", f"shared by every process through Redis at {where}"


CHECKS: dict[str, Callable[[Settings], Check]] = {
    "database": _database,
    "vectors": _chroma,
    "shared limits": _shared_limits,
    "embeddings": _embeddings,
    "chat model": _llm,
    "knowledge base": _kb,
}


def doctor_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Check the database, vectors, embeddings, chat model and KB the settings name;
    exit 1 if any of them fails."""
    settings = get_settings()
    results: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            status, details = check(settings)
        except Exception as exc:  # a broken component is a finding, not a crash
            status, details = "error", f"{type(exc).__name__}: {exc}"
        results[name] = {"status": status, "details": details}
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        table = Table(title="assistant doctor")
        for column in ("component", "status", "details"):
            table.add_column(column, no_wrap=column != "details")
        colour = {"ok": "green", "error": "red", "off": "yellow"}
        for name, row in results.items():
            table.add_row(name, f"[{colour[row['status']]}]{row['status']}[/]", row["details"])
        out.print(table)
    raise typer.Exit(1 if any(r["status"] == "error" for r in results.values()) else 0)
