"""Helpers shared by the benchmark scripts: data paths, tables, JSON output."""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import Any

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
