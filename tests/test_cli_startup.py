"""The command line starts fast: importing it (and printing help) loads no heavy module.

Timing asserts are flaky, so the deterministic proxy is checked instead: the modules that
cost seconds to import (models, Chroma, the database, the runtime) stay out of
``sys.modules`` until a command that needs them runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from assistant.cli import app

ROOT = Path(__file__).resolve().parent.parent

HEAVY = (
    "sklearn", "scipy", "numpy", "onnxruntime", "chromadb", "langchain_text_splitters",
    "alembic", "sqlalchemy", "redis", "uvicorn", "fastapi", "assistant.runtime",
)

GROUPS = ("kb", "intents", "sentiment", "policy", "agents", "webhooks", "customers",
          "retention", "audit")
COMMANDS = ("serve", "ingest", "ask", "chat", "eval", "doctor", "export")


def heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy modules it left imported."""
    script = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert heavy_modules_after("import assistant.cli") == []


def test_help_of_every_group_loads_no_heavy_module() -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from assistant.cli import app\n"
        "runner = CliRunner()\n"
        f"for args in [['--help'], *[[g, '--help'] for g in {GROUPS!r}]]:\n"
        "    assert runner.invoke(app, args).exit_code == 0, args\n"
    )
    assert heavy_modules_after(code) == []


def test_help_lists_the_commands_and_groups() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    # The first word of each line inside Rich's panels (its box may be ASCII or Unicode).
    listed = {words[0] for line in result.output.splitlines()
              if (words := line.strip("│| ").split())}
    assert set(GROUPS) | set(COMMANDS) <= listed, result.output
