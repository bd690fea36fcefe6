"""Eval suite files: YAML suites with expectations, and bulk retrieval-only CSV/JSONL.

A KB writer who mistypes a field reads ``evals/answers.yaml:42: cases[7] (reset-password):
expect.intnet: Extra inputs are not permitted`` — the file, the line, the case and the
field — not a stack trace. See ``evals/example.yaml`` for the commented format.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from assistant.errors import InvalidInput
from assistant.yaml_files import YamlFileError, load_yaml_model

METRICS = (
    "hit_at_1",
    "hit_at_k",
    "mrr",
    "intent_accuracy",
    "sentiment_accuracy",
    "escalation_precision",
    "escalation_recall",
    "escalation_f1",
    "answer_pass_rate",
    "case_pass_rate",
)
SUITE_SUFFIXES = (".yaml", ".yml", ".csv", ".jsonl")
MAX_BULK_ROWS = 100_000
_CASE_INDEX = re.compile(r"cases\[(\d+)\]\.?")


class Expectation(BaseModel):
    """What the reply to a case's last turn must show; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retrieved: tuple[str, ...] = ()
    cited: tuple[str, ...] = ()
    intent: str | None = None
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    escalate: bool | None = None
    reasons: tuple[str, ...] = ()
    offer_human: bool | None = None
    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _something_expected(self) -> Expectation:
        if self == Expectation.model_construct():
            raise ValueError("expect needs at least one expectation")
        if self.reasons and self.escalate is False:
            raise ValueError("reasons are expected only with escalate: true (or unset)")
        return self


class CaseSpec(BaseModel):
    """One case: customer turns and the expectations for the last reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")
    tags: tuple[str, ...] = ()
    plan: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,100}$")
    question: str | None = Field(None, min_length=1, max_length=4000)
    turns: tuple[str, ...] = ()
    expect: Expectation

    @model_validator(mode="after")
    def _has_turns(self) -> CaseSpec:
        if self.question is not None and self.turns:
            raise ValueError("give either question or turns, not both")
        if self.question is None and not self.turns:
            raise ValueError("a case needs question or turns")
        if any(not t.strip() for t in self.turns):
            raise ValueError("turns must not be empty")
        return self

    @property
    def messages(self) -> tuple[str, ...]:
        """The customer's messages in order."""
        return (self.question,) if self.question is not None else self.turns


class SuiteSpec(BaseModel):
    """The content of a suite file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    description: str = ""
    kb: str | None = None
    k: int = Field(5, ge=1, le=50)
    thresholds: dict[str, float] = Field(default_factory=dict)
    cases: tuple[CaseSpec, ...] = Field(min_length=1)

    @field_validator("thresholds")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; use one of {', '.join(METRICS)}")
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold of {name} must be between 0 and 1")
        return value

    @field_validator("cases")
    @classmethod
    def _unique_ids(cls, value: tuple[CaseSpec, ...]) -> tuple[CaseSpec, ...]:
        seen: set[str] = set()
        for case in value:
            if case.id in seen:
                raise ValueError(f"case id {case.id!r} is used twice")
            seen.add(case.id)
        return value


@dataclass(frozen=True)
class Case:
    """A case ready to run: its suite, where it is defined, turns and expectations."""

    suite: str
    id: str
    turns: tuple[str, ...]
    expect: Expectation
    tags: tuple[str, ...] = ()
    plan: str | None = None
    source: str = ""

    @property
    def key(self) -> str:
        """Unique across suites: ``suite/case``."""
        return f"{self.suite}/{self.id}"


@dataclass(frozen=True)
class Suite:
    """A loaded suite."""

    name: str
    path: Path
    cases: tuple[Case, ...]
    k: int = 5
    kb_dir: Path | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    description: str = ""

    def filtered(self, tags: set[str]) -> Suite:
        """Only the cases carrying one of ``tags`` (all cases when ``tags`` is empty)."""
        if not tags:
            return self
        kept = tuple(c for c in self.cases if tags & set(c.tags))
        return Suite(self.name, self.path, kept, self.k, self.kb_dir, self.thresholds,
                     self.description)


def discover(paths: list[Path]) -> list[Path]:
    """Suite files in ``paths`` (files as given, directories searched recursively).

    Raises:
        InvalidInput: A path does not exist, or a directory holds no suite files.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix in SUITE_SUFFIXES
                            and p.is_file() and "data" not in p.relative_to(path).parts[:-1])
            if not inside:
                raise InvalidInput(f"{path}: no suite files (*.yaml, *.csv, *.jsonl) in it")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or directory")
    return found


def load_suite(path: Path) -> Suite:
    """Load a YAML suite or a bulk CSV/JSONL retrieval suite.

    Raises:
        YamlFileError: An invalid YAML suite (every problem with its line, case and field).
        InvalidInput: An unreadable or invalid bulk file (with the line).
    """
    if path.suffix in (".csv", ".jsonl"):
        return _load_bulk(path)
    try:
        spec = load_yaml_model(path, SuiteSpec)
    except YamlFileError as exc:
        raise _with_case_ids(path, exc) from None
    lines = _case_lines(path)
    cases = tuple(
        Case(
            suite=spec.name,
            id=case.id,
            turns=case.messages,
            expect=case.expect,
            tags=case.tags,
            plan=case.plan,
            source=f"{path}:{lines.get(i, 0)}",
        )
        for i, case in enumerate(spec.cases)
    )
    kb_dir = (path.parent / spec.kb).resolve() if spec.kb else None
    return Suite(spec.name, path, cases, spec.k, kb_dir, dict(spec.thresholds), spec.description)


def _load_bulk(path: Path) -> Suite:
    """``question,expected_article`` rows (CSV with a header, or JSON lines)."""
    rows: list[tuple[int, str, str]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the file as UTF-8 ({exc})") from exc
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = {"question", "expected_article"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidInput(
                f"{path}:1: the header must have question and expected_article "
                f"(missing {', '.join(sorted(missing))})"
            )
        for row in reader:
            rows.append((reader.line_num, (row["question"] or "").strip(),
                         (row["expected_article"] or "").strip()))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(item, dict):
                raise InvalidInput(f"{path}:{number}: each line must be a JSON object")
            rows.append((number, str(item.get("question") or "").strip(),
                         str(item.get("expected_article") or "").strip()))
    if not rows:
        raise InvalidInput(f"{path}: no rows")
    if len(rows) > MAX_BULK_ROWS:
        raise InvalidInput(f"{path}: more than {MAX_BULK_ROWS} rows")
    cases = []
    for number, question, article in rows:
        if not question or not article:
            raise InvalidInput(f"{path}:{number}: question and expected_article are both needed")
        cases.append(Case(
            suite=path.stem, id=f"row-{number}", turns=(question,),
            expect=Expectation(retrieved=(article,)), tags=("retrieval",),
            source=f"{path}:{number}",
        ))
    return Suite(path.stem, path, tuple(cases), thresholds={})


def _case_lines(path: Path) -> dict[int, int]:
    """Line of each case in a YAML suite, by index."""
    node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    lines: dict[int, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "cases" and isinstance(value, yaml.SequenceNode):
                for i, item in enumerate(value.value):
                    lines[i] = item.start_mark.line + 1
    return lines


def _with_case_ids(path: Path, exc: YamlFileError) -> YamlFileError:
    """Name the case (by id) in each problem about ``cases[i]``."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw_cases = data.get("cases") if isinstance(data, dict) else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return exc
    if not isinstance(raw_cases, list):
        return exc

    def name(match: re.Match[str]) -> str:
        index = int(match.group(1))
        item = raw_cases[index] if index < len(raw_cases) else None
        case_id = item.get("id") if isinstance(item, dict) else None
        rest = " " if match.group(0).endswith(".") else ""
        label = f"cases[{index}] (id {case_id})" if case_id else f"cases[{index}]"
        return label + rest

    return YamlFileError(path, [(line, _CASE_INDEX.sub(name, msg, count=1))
                                for line, msg in exc.problems])
