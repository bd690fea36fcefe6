"""YAML files people edit (policy, intent taxonomy, eval suites), validated with line numbers.

A support lead who mistypes a threshold should read ``policy.yaml:14: rules[2].when.
frustration_at_least: Input should be less than or equal to 1`` at start-up, not a stack
trace. The file is parsed once into PyYAML nodes (which carry marks), so every pydantic
error can be pointed at the line of the value it is about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from assistant.errors import ConfigurationError

Model = TypeVar("Model", bound=BaseModel)

_MAX_BYTES = 2 * 1024 * 1024


class YamlFileError(ConfigurationError):
    """A YAML file is unreadable or invalid; ``problems`` are ``(line, message)`` pairs."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line}: {msg}" if line else f"{path}: {msg}" for line, msg in problems]
        super().__init__("\n".join(lines))


def load_yaml_model(
    path: Path, model: type[Model], *, context: dict[str, Any] | None = None
) -> Model:
    """Parse ``path`` and validate it as ``model``; every problem names its line.

    ``context`` reaches the model's validators (``info.context``), for checks against
    other configuration such as the intent labels a policy may name.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlFileError(path, [(None, f"cannot read the file ({exc.strerror})")]) from exc
    if len(raw) > _MAX_BYTES:
        raise YamlFileError(path, [(None, f"file is larger than {_MAX_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(path, [(None, "file is not UTF-8")]) from exc
    return parse_yaml_model(text, model, path=path, context=context)


def parse_yaml_model(
    text: str, model: type[Model], *, path: Path, context: dict[str, Any] | None = None
) -> Model:
    """Validate YAML ``text`` as ``model`` (``path`` is used in messages only)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark else None
        raise YamlFileError(path, [(line, f"not valid YAML: {problem}")]) from None
    if node is None:
        raise YamlFileError(path, [(None, "the file is empty")])
    lines: dict[tuple[Any, ...], int] = {}
    _index_lines(node, (), lines)
    data = yaml.safe_load(text)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            where = ".".join(_loc_part(p) for p in loc).replace(".[", "[")
            problems.append((_line_for(loc, lines), f"{where or 'file'}: {error['msg']}"))
        raise YamlFileError(path, problems) from None


def _loc_part(part: Any) -> str:
    return f"[{part}]" if isinstance(part, int) else str(part)


def _index_lines(
    node: yaml.Node, prefix: tuple[Any, ...], lines: dict[tuple[Any, ...], int]
) -> None:
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            lines[(*prefix, name)] = key.start_mark.line + 1
            _index_lines(value, (*prefix, name), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*prefix, i), lines)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    # pydantic may add segments YAML does not have (a union member's name, a missing
    # field): fall back to the nearest enclosing value that the file does have.
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
