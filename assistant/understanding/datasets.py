"""Labelled CSV files (``text,label``) for training and evaluating classifiers."""

from __future__ import annotations

import csv
from pathlib import Path

from assistant.errors import InvalidInput

MAX_ROWS = 1_000_000


def read_labelled_csv(path: Path, *, allowed_labels: set[str] | None = None) -> tuple[
    list[str], list[str]
]:
    """Read ``text,label`` rows (header required; other columns are ignored).

    Raises:
        InvalidInput: The file is missing, not UTF-8, lacks the columns, has an empty text
            or label, a label outside ``allowed_labels``, or no rows; the message names
            the line.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from exc
    texts: list[str] = []
    labels: list[str] = []
    with handle:
        try:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in ("text", "label") if c not in columns]
            if missing:
                raise InvalidInput(
                    f"{path}:1: the header must have columns text and label "
                    f"(missing {', '.join(missing)}; found {', '.join(columns) or 'none'})"
                )
            for row in reader:
                line = reader.line_num
                text = (row.get("text") or "").strip()
                label = (row.get("label") or "").strip()
                if not text or not label:
                    raise InvalidInput(f"{path}:{line}: empty text or label")
                if allowed_labels is not None and label not in allowed_labels:
                    raise InvalidInput(
                        f"{path}:{line}: label {label!r} is not one of "
                        f"{', '.join(sorted(allowed_labels))}"
                    )
                texts.append(text)
                labels.append(label)
                if len(texts) > MAX_ROWS:
                    raise InvalidInput(f"{path}: more than {MAX_ROWS} rows")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{path}: the file is not UTF-8") from exc
        except csv.Error as exc:
            raise InvalidInput(f"{path}:{reader.line_num}: {exc}") from exc
    if not texts:
        raise InvalidInput(f"{path}: no rows after the header")
    return texts, labels
