"""The shipped intent taxonomy and its validation."""

from __future__ import annotations

import pytest

from assistant.understanding.taxonomy import load_taxonomy
from assistant.yaml_files import YamlFileError

REQUIRED = {"how_to", "login_access", "billing_question", "refund_request", "cancellation",
            "plan_pricing", "bug_report", "feature_request", "account_change",
            "data_export_deletion", "security_privacy", "complaint", "human_request", "greeting",
            "thanks_goodbye", "out_of_scope"}


def test_shipped_taxonomy_covers_the_support_intents() -> None:
    taxonomy = load_taxonomy()
    assert set(taxonomy.labels) >= REQUIRED
    texts, labels = taxonomy.training_data()
    assert len(texts) == len(labels) >= 10 * len(REQUIRED)
    assert all(labels.count(label) >= 10 for label in REQUIRED)
    assert taxonomy.describe("refund_request")


def test_fingerprint_follows_content(tmp_path) -> None:
    path = tmp_path / "intents.yaml"
    body = ("version: 1\nintents:\n  a:\n    description: A\n    examples: [x, y, z]\n"
            "  b:\n    description: B\n    examples: [p, q, r]\n")
    path.write_text(body)
    first = load_taxonomy(path).fingerprint
    path.write_text(body.replace("[p, q, r]", "[p, q, s]"))
    assert load_taxonomy(path).fingerprint != first


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("version: 1\nintents:\n  Bad-Name:\n    description: x\n    examples: [a, b, c]\n"
         "  ok:\n    description: y\n    examples: [a, b, c]\n", ":2: intents: Value error"),
        ("version: 1\nintents:\n  a:\n    description: x\n    examples: [a]\n"
         "  b:\n    description: y\n    examples: [a, b, c]\n",
         ":5: intents.a.examples: List should have at least 3 items"),
        ("version: 1\nintents:\n  a:\n    description: x\n    examples: [a, b, c]\n"
         "  b:\n    description: y\n    examples:\n      - p\n      - 'q: r'\n      - {s: t}\n",
         ":11: intents.b.examples[2]: Input should be a valid string"),
    ],
)
def test_bad_taxonomy_files_name_the_line(tmp_path, body, needle) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text(body)
    with pytest.raises(YamlFileError, match="intents") as caught:
        load_taxonomy(path)
    assert needle in str(caught.value)
