"""The shipped demo knowledge base with the real model: it parses, and the bot answers it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.kb.articles import iter_kb_files, load_article
from assistant.kb.audience import Audience
from assistant.runtime import Runtime, build_runtime
from assistant.understanding.datasets import read_labelled_csv
from assistant.understanding.intent import evaluate

KB = Path(__file__).resolve().parent.parent / "knowledge_base"


def test_demo_kb_is_complete_and_valid() -> None:
    articles = [load_article(path, KB) for path in iter_kb_files(KB)]
    assert len(articles) >= 40
    for article in articles:
        assert article.url.startswith("https://help.tallyboard.example/"), article.article_id
        assert article.updated and article.tags
    areas = {a.article_id.split("/")[0] for a in articles}
    assert {"account", "billing", "plans", "integrations", "api", "data", "security",
            "troubleshooting", "getting-started"} <= areas
    assert any(a.audience != ("public",) for a in articles)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = tmp_path_factory.mktemp("demo")
    runtime = build_runtime(Settings(data_dir=data, kb_dir=KB, _env_file=None))  # type: ignore[call-arg]
    runtime.ingest()
    yield runtime
    runtime.close()


ANSWERABLE = [
    ("How do I reset my password?", "account/reset-password.md"),
    ("I lost the phone with my authenticator app", "account/lost-2fa-device.md"),
    ("my payment failed, what happens now?", "billing/failed-payments.md"),
    ("I want to cancel my subscription", "billing/cancel-subscription.md"),
    ("how do I connect Slack", "integrations/slack.md"),
    ("how many API requests per minute can I make", "api/rate-limits.md"),
    ("how do I verify webhook signatures", "api/webhooks.md"),
    ("how do I download an invoice", "billing/invoices.md"),
]


@pytest.mark.model
@pytest.mark.parametrize(("question", "article"), ANSWERABLE)
def test_answers_cite_the_right_article(demo: Runtime, question: str, article: str) -> None:
    turn = demo.engine.handle_turn(text=question, audience=Audience.anonymous())
    assert not turn.answer.abstained, (question, turn.retrieval.confidence)
    assert turn.answer.citations[0].article_id == article
    assert f"[{turn.answer.citations[0].n}]" in turn.answer.text


@pytest.mark.model
@pytest.mark.parametrize("question", ["what's the weather in Paris tomorrow",
                                      "write me a poem about cats", "who won the world cup"])
def test_unrelated_questions_get_the_out_of_scope_reply(demo: Runtime, question: str) -> None:
    turn = demo.engine.handle_turn(text=question, audience=Audience.anonymous())
    assert turn.classification.intent.label == "out_of_scope"
    assert turn.retrieval is None and not turn.answer.citations  # no article pasted
    assert turn.reply_text == demo.engine.policy.replies["out_of_scope"]


@pytest.mark.model
@pytest.mark.parametrize("question", ["Can I print boards on A3 paper with a watermark?",
                                      "Is there a Tallyboard user conference this year?"])
def test_unanswerable_questions_abstain_and_offer_a_person(demo: Runtime, question: str) -> None:
    turn = demo.engine.handle_turn(text=question, audience=Audience.anonymous())
    if turn.classification.intent_label in demo.engine.policy.replies:
        pytest.fail(f"{question!r} was classified {turn.classification.intent.label}")
    assert turn.answer.abstained and not turn.answer.citations
    assert turn.decision.action == "answer_and_offer_human"


@pytest.mark.model
def test_enterprise_article_only_for_verified_enterprise(demo: Runtime) -> None:
    query = "SCIM base URL and bearer token"
    anonymous = demo.kb.retriever.search(query, k=10, audience=Audience.anonymous())
    enterprise = demo.kb.retriever.search(query, audience=Audience(verified=True,
                                                                   plan="enterprise"))
    assert "account/scim-provisioning.md" not in anonymous.article_ids
    assert enterprise.article_ids[0] == "account/scim-provisioning.md"


@pytest.mark.model
def test_taxonomy_intents_on_held_out_support_messages(demo: Runtime) -> None:
    texts, labels = read_labelled_csv(KB.parent / "evals" / "data" / "support_intents.csv")
    vectors = demo.kb.embedder.embed(texts)
    report = evaluate(demo.engine.classifier.intents, texts, labels, vectors)
    assert report["accuracy"] >= 0.9, report


@pytest.mark.model
def test_leaving_for_a_competitor_goes_to_retention(demo: Runtime) -> None:
    turn = demo.engine.handle_turn(
        text="This is the third time I ask. Cancel my subscription, we're moving to Asana.",
        audience=Audience.anonymous())
    assert turn.decision.action == "handoff" and turn.decision.team == "retention"
    assert {"churn_risk", "very_frustrated"} <= set(turn.decision.reasons)
    assert turn.classification.intent.label == "cancellation"
    assert {c.name for c in turn.classification.frustration.cues} >= {"repeated_contact"}
