"""Settings: environment round trip for worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import Settings, export_to_environment


def test_exported_settings_reach_a_fresh_settings_object(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSISTANT_KB_DIR", raising=False)
    chosen = Settings(kb_dir=tmp_path / "my-kb", data_dir=tmp_path)
    export_to_environment(chosen, "kb_dir")
    try:
        assert Settings().kb_dir == tmp_path / "my-kb"  # what a worker process would build
    finally:
        monkeypatch.delenv("ASSISTANT_KB_DIR", raising=False)
