"""The eval suites shipped in evals/ pass on the demo KB (the gate a KB edit must keep)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from assistant.config import Settings
from assistant.evaluation.runner import eval_runner
from assistant.evaluation.suites import discover, load_suite
from assistant.policy import load_policy
from assistant.understanding.taxonomy import load_taxonomy


@pytest.mark.model
def test_the_shipped_suites_pass_on_the_demo_kb(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", kb_dir=ROOT / "knowledge_base",
                        _env_file=None)  # type: ignore[call-arg]
    suites = [load_suite(path) for path in discover([ROOT / "evals"])]
    assert sum(len(s.cases) for s in suites if s.path.suffix == ".yaml") >= 80
    with eval_runner(settings, workers=2) as runner:
        reports = [runner.run(suite, kb_dir=ROOT / "knowledge_base") for suite in suites]
    failing = [f"{r.case.key}: {r.failures}" for report in reports for r in report.results
               if not r.passed]
    assert failing == []
    assert all(report.passed for report in reports), [r.threshold_failures for r in reports]


def test_the_shipped_suites_cover_every_intent_and_policy_rule() -> None:
    cases = [c for path in discover([ROOT / "evals"]) for c in load_suite(path).cases]
    intents = {c.expect.intent for c in cases if c.expect.intent}
    assert set(load_taxonomy().labels) <= intents
    reasons = {r for c in cases for r in c.expect.reasons}
    rules = {rule.name for rule in load_policy().config.rules}
    assert rules <= reasons
    assert any(len(c.turns) > 1 for c in cases)
    assert any(c.expect.escalate is False for c in cases)
