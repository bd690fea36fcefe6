"""CLI groups for the understanding layer: ``assistant intents``, ``sentiment``, ``policy``.

They need the embedder and the YAML files, not the database or Chroma, so they start fast
and work before anything is ingested.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from assistant.cli_console import err, out
from assistant.config import Settings, get_settings
from assistant.errors import AssistantError

if TYPE_CHECKING:
    from assistant.policy import EscalationPolicy
    from assistant.understanding.taxonomy import Taxonomy

intents_app = typer.Typer(help="Train and evaluate the intent classifier.", no_args_is_help=True)
sentiment_app = typer.Typer(help="Evaluate the sentiment model.", no_args_is_help=True)
policy_app = typer.Typer(help="Check the escalation policy file.", no_args_is_help=True)


DataOption = Annotated[
    Path, typer.Option("--data", exists=False, help="CSV with a header and columns text,label.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _taxonomy_and_policy(settings: Settings) -> tuple[Taxonomy, EscalationPolicy]:
    from assistant.policy import load_policy
    from assistant.understanding.taxonomy import load_taxonomy

    try:
        taxonomy = load_taxonomy(settings.taxonomy_file)
        return taxonomy, load_policy(settings.policy_file, intents=taxonomy.labels)
    except AssistantError as exc:
        raise _fail(str(exc)) from exc


@intents_app.command("list")
def intents_list() -> None:
    """The intent taxonomy: labels, descriptions and example counts."""
    taxonomy, _ = _taxonomy_and_policy(get_settings())
    table = Table(title=f"intents ({taxonomy.source})")
    for column in ("label", "examples", "description"):
        table.add_column(column, overflow="fold")
    for intent in taxonomy.intents:
        table.add_row(intent.label, str(len(intent.examples)), intent.description)
    out.print(table)


@intents_app.command("train")
def intents_train(
    data: DataOption,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Model directory (default: DATA_DIR/models/intents-custom)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic).")] = 0,
) -> None:
    """Train the intent classifier on your labelled messages (a text,label CSV)."""
    from assistant.embeddings import build_embedder
    from assistant.understanding.datasets import read_labelled_csv
    from assistant.understanding.intent import IntentClassifier

    settings = get_settings()
    try:
        texts, labels = read_labelled_csv(data)
        if len(set(labels)) < 2:
            raise _fail(f"{data}: need at least two different labels to train")
        embedder = build_embedder(settings)
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        embedded = time.perf_counter()
        classifier = IntentClassifier.train(
            texts, labels, vectors, seed=seed, embedder_model_id=embedder.model_id
        )
        trained = time.perf_counter()
        target = out_dir or settings.data_dir / "models" / "intents-custom"
        classifier.save(target)
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    err.print(
        f"trained on {len(texts)} messages, {len(classifier.labels)} intents "
        f"(embedding {embedded - started:.1f}s, training {trained - embedded:.1f}s)"
    )
    out.print(f"saved to {target}")
    out.print(f"use it: export ASSISTANT_INTENT_MODEL_DIR={target.resolve()}")


@intents_app.command("eval")
def intents_eval(
    data: DataOption,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model directory; default ASSISTANT_INTENT_MODEL_DIR or the taxonomy model.",
        ),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Unknown below this (default: the policy's threshold)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Accuracy, macro-F1 and a per-label table on a labelled CSV (oos = out of scope)."""
    from assistant.embeddings import build_embedder
    from assistant.understanding.components import load_intent_classifier
    from assistant.understanding.datasets import read_labelled_csv
    from assistant.understanding.intent import IntentClassifier, evaluate

    settings = get_settings()
    taxonomy, policy = _taxonomy_and_policy(settings)
    try:
        texts, labels = read_labelled_csv(data)
        embedder = build_embedder(settings)
        if model is not None:
            classifier = IntentClassifier.load(model, embedder_model_id=embedder.model_id)
        else:
            classifier = load_intent_classifier(settings, taxonomy, embedder)
        classifier.min_confidence = (
            policy.intent_min_confidence if min_confidence is None else min_confidence
        )
        report = evaluate(classifier, texts, labels, embedder.embed(texts))
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_report(report, f"intents on {data} ({len(texts)} messages)")


@sentiment_app.command("eval")
def sentiment_eval(data: DataOption, as_json: JsonFlag = False) -> None:
    """Accuracy, macro-F1 and macro-recall on a text,label CSV (negative/neutral/positive)."""
    from assistant.embeddings import build_embedder
    from assistant.understanding.datasets import read_labelled_csv
    from assistant.understanding.sentiment import EMBEDDER_MODEL_ID as SENTIMENT_EMBEDDER_ID
    from assistant.understanding.sentiment import SentimentAnalyzer
    from assistant.understanding.sentiment import evaluate as evaluate_sentiment

    settings = get_settings()
    try:
        texts, labels = read_labelled_csv(
            data, allowed_labels={"negative", "neutral", "positive"}
        )
        analyzer = SentimentAnalyzer.default()
        embedder = build_embedder(settings)
        # The model reads MiniLM vectors; other embedders get its lexicon-only head.
        vectors = embedder.embed(texts) if embedder.model_id == SENTIMENT_EMBEDDER_ID else None
        report = evaluate_sentiment(analyzer, texts, labels, vectors)
    except AssistantError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_report(report, f"sentiment on {data} ({len(texts)} messages)")


@policy_app.command("check")
def policy_check(
    file: Annotated[
        Path | None,
        typer.Argument(help="Policy YAML (default: ASSISTANT_POLICY_FILE or the shipped one)."),
    ] = None,
) -> None:
    """Validate a policy file against the taxonomy and show its rules."""
    settings = get_settings()
    if file is not None:
        settings = settings.model_copy(update={"policy_file": file})
    _, policy = _taxonomy_and_policy(settings)
    # The path can be long; soft_wrap keeps it on one line so scripts can grep it.
    out.print(f"escalation policy {policy.source} is valid", soft_wrap=True)
    table = Table()
    table.add_column("rule", no_wrap=True)
    for column in ("when", "action", "priority", "team"):
        table.add_column(column, overflow="fold")
    for rule in policy.config.rules:
        when = ", ".join(
            f"{key}={value}" for key, value in rule.when.model_dump(exclude_none=True).items()
        )
        table.add_row(rule.name, when, str(rule.action), str(rule.priority), rule.team or "")
    out.print(table)


def _print_report(report: dict[str, Any], title: str) -> None:
    headline = ", ".join(
        f"{key} {value:.4f}"
        for key, value in report.items()
        if isinstance(value, float) and key != "unknown_rate"
    )
    out.print(f"[bold]{title}[/bold]: {headline}")
    per_label = report.get("per_label") or {}
    table = Table()
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right" if column != "label" else "left",
                         no_wrap=column == "label")
    for label, row in sorted(per_label.items()):
        table.add_row(
            label,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(table)
