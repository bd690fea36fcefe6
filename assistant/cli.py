"""The ``assistant`` command line: serve, ingest, search, ask and chat.

Every command reads settings from the environment (``ASSISTANT_*``, ``.env``); options
override the few that matter per command.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assistant.cli_agents import agents_app
from assistant.cli_console import err, out
from assistant.cli_doctor import doctor_command
from assistant.cli_eval import eval_command
from assistant.cli_export import export_command
from assistant.cli_privacy import audit_app, customers_app, retention_app
from assistant.cli_understanding import intents_app, policy_app, sentiment_app
from assistant.cli_webhooks import webhooks_app
from assistant.config import Settings, export_to_environment, get_settings
from assistant.errors import AssistantError
from assistant.redaction import install_log_redaction

# Heavy imports (the runtime, models, Chroma, the database) live inside the commands that
# use them: they take seconds to import, and `--help` and light commands should not wait.
if TYPE_CHECKING:
    from assistant.kb.audience import Audience
    from assistant.kb.ingest import IngestReport
    from assistant.runtime import Runtime

app = typer.Typer(
    help="Offline-first AI customer-support assistant.", no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kb_app = typer.Typer(help="Inspect the knowledge base.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(intents_app, name="intents")
app.add_typer(sentiment_app, name="sentiment")
app.add_typer(policy_app, name="policy")
app.add_typer(agents_app, name="agents")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(customers_app, name="customers")
app.add_typer(retention_app, name="retention")
app.add_typer(audit_app, name="audit")
app.command("eval")(eval_command)
app.command("doctor")(doctor_command)
app.command("export")(export_command)

KbOption = Annotated[
    Path | None, typer.Option("--kb", help="Knowledge-base directory (ASSISTANT_KB_DIR).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PlanOption = Annotated[
    str | None,
    typer.Option("--plan", help="Answer as a verified customer on this plan (sees plan articles)."),
]


def _settings(kb: Path | None = None) -> Settings:
    settings = get_settings()
    if kb is not None:
        settings = settings.model_copy(update={"kb_dir": kb})
    return settings


def _runtime(settings: Settings, *, quiet: bool = False) -> Runtime:
    from assistant.runtime import build_runtime

    try:
        runtime = build_runtime(settings)
    except AssistantError as exc:
        _fail(str(exc))
    if runtime.kb.index.count() == 0 and not quiet:
        err.print(f"first run: ingesting the knowledge base in {settings.kb_dir} ...")
    report = runtime.ensure_ingested()
    if report is not None and not quiet:
        err.print(f"ingested {report.added} articles ({report.chunks_written} chunks) "
                  f"in {report.seconds:.0f}s; {report.failed} failed")
        for problem in report.errors:
            err.print(f"[red]  {problem.article_id}:[/red] {problem.reason}")
    return runtime


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _audience(plan: str | None) -> Audience:
    from assistant.kb.audience import Audience

    return Audience(verified=True, plan=plan) if plan else Audience.anonymous()


# uvicorn's default parser (httptools) accepts any amount of headers; h11 refuses a
# request whose headers pass this size with a 400.
HTTP_LIMITS: dict[str, Any] = {"http": "h11", "h11_max_incomplete_event_size": 64 * 1024}


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (ASSISTANT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ASSISTANT_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    kb: KbOption = None,
) -> None:
    """Run the API (OpenAPI docs at /docs); ingests the KB first if the index is empty."""
    import uvicorn

    from assistant.web.app import create_app

    settings = _settings(kb)
    runtime = _runtime(settings)
    host = host or settings.host
    port = port or settings.port
    err.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if workers == 1:
        uvicorn.run(create_app(settings, runtime=runtime), host=host, port=port, log_level="info",
                    **HTTP_LIMITS)
        runtime.close()
        return
    runtime.close()
    # Worker processes rebuild their settings from the environment; pass the options on.
    export_to_environment(settings, "kb_dir")
    uvicorn.run(
        "assistant.web.app:app_from_environment", factory=True, host=host, port=port,
        workers=workers, log_level="info", **HTTP_LIMITS,
        # Each worker loads the embedding model and the KB before it answers uvicorn's
        # health pings; on a busy host that can take longer than the 5 s default, and
        # uvicorn would kill and restart a worker that is only starting.
        timeout_worker_healthcheck=60,
    )


@app.command()
def ingest(
    kb: KbOption = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the index first.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Ingest the knowledge base incrementally (only new or changed articles are embedded)."""
    from assistant.runtime import build_runtime

    settings = _settings(kb)
    try:
        runtime = build_runtime(settings)
        total = runtime.kb.ingestor.plan_size(settings.kb_dir) if settings.kb_dir.is_dir() else 0
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err, disable=as_json or not err.is_terminal,
        ) as progress:
            task = progress.add_task("ingesting", total=total)
            report = runtime.kb.ingestor.ingest(
                settings.kb_dir, rebuild=rebuild,
                on_file=lambda article_id: progress.update(task, advance=1, description=article_id),
            )
        runtime.kb.retriever.refresh()
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_ingest(report)
    runtime.close()
    if report.failed:
        raise typer.Exit(2)


def _print_ingest(report: IngestReport) -> None:
    out.print(
        f"added {report.added}, updated {report.updated}, removed {report.removed}, "
        f"unchanged {report.unchanged}, failed {report.failed} "
        f"({report.chunks_written} chunks in {report.seconds:.1f}s)"
    )
    for problem in report.errors:
        err.print(f"[red]  {problem.article_id}:[/red] {problem.reason}")
    for warning in report.warnings:
        err.print(f"[yellow]  {warning.article_id}:[/yellow] {warning.reason}")


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("--k", min=1, max=50, help="Passages to show.")] = 5,
    plan: PlanOption = None,
    customer_view: Annotated[
        bool, typer.Option("--customer", help="Search as an anonymous customer would.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Hybrid search; shows scored passages with their article ids."""
    from assistant.kb.audience import Audience

    runtime = _runtime(_settings(), quiet=as_json)
    audience = _audience(plan) if plan or customer_view else Audience.operator()
    result = runtime.kb.retriever.search(query, k=k, audience=audience)
    runtime.close()
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in result.passages], indent=2))
        return
    table = Table(title=f"{query!r}  (confidence {result.confidence:.2f})")
    for column in ("#", "score", "article", "section", "text"):
        table.add_column(column, overflow="fold")
    for i, p in enumerate(result.passages, start=1):
        text = p.chunk.text if len(p.chunk.text) < 160 else p.chunk.text[:157] + "..."
        table.add_row(str(i), f"{p.score:.4f}", p.article_id, p.chunk.section, text)
    out.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    plan: PlanOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One turn through the full engine: answer, citations, intent, sentiment, decision."""
    from rich.markdown import Markdown

    runtime = _runtime(_settings(), quiet=as_json)
    try:
        text = runtime.conversations.validate_text(question)
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    turn = runtime.engine.handle_turn(text=text, audience=_audience(plan))
    runtime.close()
    if as_json:
        typer.echo(json.dumps({"question": text, "answer": turn.reply_text,
                               **turn.annotations()}, indent=2))
        return
    out.print(Markdown(turn.reply_text))
    _print_sources(turn.annotations())
    understood = turn.classification
    cues = ", ".join(understood.frustration.cue_names)
    churn = ", ".join(f'{s.kind} "{s.text}"' for s in understood.churn)
    out.print(f"[dim]intent: {understood.intent.label} ({understood.intent.confidence:.2f}) · "
              f"sentiment: {understood.sentiment.label} · frustration "
              f"{understood.frustration.score:.2f}{f' ({cues})' if cues else ''}"
              f"{f' · churn: {churn}' if churn else ''}[/dim]")
    decision = turn.decision
    confidence = (f" · retrieval confidence {turn.retrieval.confidence:.2f}"
                  if turn.retrieval else "")
    out.print(f"[dim]decision: {decision.action} (priority {decision.priority}"
              f"{f', team {decision.team}' if decision.team else ''}){confidence} · "
              f"{turn.timings_ms['total']:.0f} ms[/dim]")
    for reason, why in decision.evidence.items():
        out.print(f"[dim]  {reason}: {why}[/dim]")


def _print_sources(annotations: dict[str, Any]) -> None:
    for c in annotations.get("citations", []):
        out.print(f"  [{c['n']}] {c['title']} — {c['url']}")


@app.command()
def chat(plan: PlanOption = None) -> None:
    """Talk to the assistant in the terminal (stored like any conversation). Ctrl-D quits."""
    from rich.markdown import Markdown

    from assistant.conversations import CustomerClaim

    runtime = _runtime(_settings())
    claim = None
    if plan:
        # A terminal user is trusted: mark the session verified by signing its own id.
        claim = CustomerClaim(external_id="terminal-user", plan=plan)
    secret = runtime.settings.widget_secret
    user_hash = None
    if claim and secret:
        from assistant.identity import user_hash as sign

        user_hash = sign(secret.get_secret_value(), "terminal-user")
    started = runtime.conversations.start(claim=claim if user_hash else None, user_hash=user_hash)
    out.print(f"[dim]conversation {started.conversation.id} · Ctrl-D to quit[/dim]")
    while True:
        try:
            line = out.input("[bold]you>[/bold] ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            break
        if not line.strip():
            continue
        try:
            posted = runtime.conversations.post_message(
                started.conversation, text=line, idempotency_key=None
            )
        except AssistantError as exc:
            err.print(f"[red]{exc}[/red]")
            continue
        if posted.reply is None:
            out.print("[dim](a person from the team has this conversation; the bot is quiet)[/dim]")
            continue
        out.print(Markdown(posted.reply.text))
        _print_sources(posted.reply.annotations)
    runtime.close()


def main() -> None:
    """Entry point with logging set up."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    install_log_redaction()  # every command, and the server, logs redacted text
    app()


if __name__ == "__main__":
    main()
