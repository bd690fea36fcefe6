"""Boundaries from ARCHITECTURE.md, enforced: who may import FastAPI, SQL, os.environ."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "assistant"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_boundaries(path: Path) -> None:
    rel = path.relative_to(PACKAGE).as_posix()
    imported = imports_of(path)
    tops = {name.split(".")[0] for name in imported}
    if not rel.startswith("web/"):
        assert not tops & {"fastapi", "starlette"}, f"{rel} imports the web framework"
    if not rel.startswith("storage/"):
        assert "sqlalchemy" not in tops and "alembic" not in tops, f"{rel} imports SQL"
    if rel in {"engine.py", "policy.py"} or rel.startswith(("kb/", "answer/")):
        assert not any(n.startswith("assistant.storage") for n in imported), f"{rel} uses storage"
    if rel != "config.py":
        assert "os.environ" not in path.read_text(), f"{rel} reads the environment"
    if rel != "cli.py":
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
        assert not any(isinstance(c.func, ast.Name) and c.func.id == "print" for c in calls), (
            f"{rel} prints")
