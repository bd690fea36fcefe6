"""Helpers shared by the benchmark scripts: data paths, tables, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
console = Console()


def require(path: Path) -> Path:
    """Exit with a clear message when a benchmark's data set is missing."""
    if not path.exists():
        raise SystemExit(f"data not found: {path} (benchmarks read ../shared/data)")
    return path


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def mean(values: list[float]) -> float:
    """Arithmetic mean, NaN for no values."""
    return statistics.fmean(values) if values else float("nan")


def show_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a Rich table."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col != columns[0] else "left")
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    """Write results with machine facts, when ``--json`` was given."""
    if not path:
        return
    payload = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        **payload,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {path}")


@contextlib.contextmanager
def fresh_pg_schema(url: str, prefix: str = "bench") -> Iterator[tuple[str, str]]:
    """A new schema in a PostgreSQL database, dropped afterwards, so a shared database is
    left as it was; yields ``(URL whose search_path is the schema, schema name)``."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool,
                             connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False), schema
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def env_setting(text: str) -> tuple[str, str]:
    """``"LIVE_POLL_SECONDS=1"`` -> ``("ASSISTANT_LIVE_POLL_SECONDS", "1")``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=VALUE")
    name = name.strip().upper()
    return (name if name.startswith("ASSISTANT_") else f"ASSISTANT_{name}"), value
