"""``assistant eval``: run eval suites and write the reports a KB writer and CI read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from assistant.cli_console import err, out
from assistant.config import get_settings
from assistant.errors import AssistantError

DEFAULT_PATHS = [Path("evals")]


def eval_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Suite files or directories (default: evals/).", show_default=False),
    ] = None,
    kb: Annotated[
        Path | None, typer.Option(help="Knowledge base for every suite (overrides theirs).")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Only cases with this tag (repeatable).")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write the HTML report.")] = None,
    junit_path: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML.")] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="An earlier --json report to compare with.")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Allowed drop of a metric vs the baseline.")
    ] = 0.02,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Cases run at once.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed, recorded in the report.")] = 0,
    judge: Annotated[
        bool,
        typer.Option("--judge", help="Also ask the configured LLM whether each answer is "
                     "supported by the passages it cites (reported separately)."),
    ] = False,
) -> None:
    """Run eval suites through the engine; exit 1 when a threshold is missed, a case of a
    suite without thresholds fails, or a metric drops below the baseline by more than the
    tolerance; exit 2 on an invalid suite file."""
    from assistant.evaluation.metrics import compare
    from assistant.evaluation.reports import (
        build_report,
        print_terminal,
        read_json,
        write_html,
        write_json,
        write_junit,
    )
    from assistant.evaluation.runner import SuiteReport, eval_runner
    from assistant.evaluation.suites import Suite, discover, load_suite
    from assistant.llm import build_chat_model

    try:
        files = discover(paths or DEFAULT_PATHS)
        suites: list[Suite] = [load_suite(f).filtered(set(tag or [])) for f in files]
        previous = read_json(baseline) if baseline else None
    except (AssistantError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    suites = [s for s in suites if s.cases]
    if not suites:
        err.print("[red]error:[/red] no cases to run (check --tag)")
        raise typer.Exit(2)
    total = sum(len(s.cases) for s in suites)
    reports: list[SuiteReport] = []
    settings = get_settings()
    judge_model = build_chat_model(settings) if judge else None
    if judge and judge_model is None:
        err.print("[red]error:[/red] --judge needs a model: set ASSISTANT_LLM_BASE_URL "
                  "(and OPENAI_API_KEY if the endpoint wants one)")
        raise typer.Exit(2)
    with eval_runner(settings, workers=workers, seed=seed, judge=judge_model) as runner, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("eval", total=total)
        for suite in suites:
            progress.update(task, description=suite.name)
            reports.append(runner.run(suite, kb_dir=kb.resolve() if kb else None,
                                      progress=lambda _r: progress.advance(task)))
    comparison = compare(build_report(reports, seed=seed), previous, tolerance) \
        if previous else None
    report = build_report(reports, seed=seed, comparison=comparison)
    print_terminal(report, out)
    for path, writer in ((json_path, write_json), (html_path, write_html),
                         (junit_path, write_junit)):
        if path is not None:
            writer(report, path)
            err.print(f"wrote {path}")
    failed = not all(r.passed for r in reports) or bool(comparison and comparison.regressions)
    raise typer.Exit(1 if failed else 0)
