"""Documentation is part of the feature: every setting and command is in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from assistant.cli import app
from assistant.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    env = "OPENAI_API_KEY" if name == "openai_api_key" else f"ASSISTANT_{name.upper()}"
    assert env in README, f"{env} is not documented in README.md"


def commands() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        names.extend(f"assistant {name} {s}" for s in sub) if sub else names.append(
            f"assistant {name}")
    return names


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented(command: str) -> None:
    assert command in README, f"`{command}` is not documented in README.md"
