"""The intent taxonomy, shipped as data (``data/intents.yaml``) and replaceable by a team's own.

The taxonomy names the intents the product knows, describes them for agents, and gives
the example utterances the built-in classifier is trained on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant.yaml_files import load_yaml_model

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "data" / "intents.yaml"

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _IntentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1)
    examples: list[str] = Field(min_length=3)

    @field_validator("examples")
    @classmethod
    def _no_blank_examples(cls, value: list[str]) -> list[str]:
        if any(not example.strip() for example in value):
            raise ValueError("examples must not be blank")
        return value


class _TaxonomyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    intents: dict[str, _IntentSpec] = Field(min_length=2)

    @field_validator("intents")
    @classmethod
    def _labels_are_identifiers(cls, value: dict[str, _IntentSpec]) -> dict[str, _IntentSpec]:
        for label in value:
            if not _LABEL.match(label):
                raise ValueError(
                    f"intent name {label!r} must be lower case letters, digits and underscores"
                )
        return value


@dataclass(frozen=True)
class Intent:
    """One intent of the taxonomy."""

    label: str
    description: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    """The intents, in file order, and a fingerprint of their content."""

    intents: tuple[Intent, ...]
    fingerprint: str
    source: Path

    @property
    def labels(self) -> list[str]:
        """Every intent label, in file order."""
        return [intent.label for intent in self.intents]

    def training_data(self) -> tuple[list[str], list[str]]:
        """(texts, labels) of every example utterance."""
        texts = [example for intent in self.intents for example in intent.examples]
        labels = [intent.label for intent in self.intents for _ in intent.examples]
        return texts, labels

    def describe(self, label: str) -> str:
        """The description of ``label`` ("" when unknown)."""
        return next((i.description for i in self.intents if i.label == label), "")


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy file (default: the one shipped with the package).

    Raises:
        YamlFileError: The file is missing or invalid; the message names the line.
    """
    source = path or DEFAULT_TAXONOMY
    parsed = load_yaml_model(source, _TaxonomyFile)
    intents = tuple(
        Intent(label=label, description=spec.description, examples=tuple(spec.examples))
        for label, spec in parsed.intents.items()
    )
    digest = hashlib.sha256()
    for intent in intents:
        digest.update(intent.label.encode())
        for example in intent.examples:
            digest.update(b"\0" + example.encode())
        digest.update(b"\1")
    return Taxonomy(intents=intents, fingerprint=digest.hexdigest()[:16], source=source)
