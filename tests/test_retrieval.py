"""Hybrid retrieval: fusion, modes, confidence, and audience restrictions."""

from __future__ import annotations

import pytest
from conftest import ROOT

from assistant.kb.audience import Audience
from assistant.kb.components import build_knowledge_base
from assistant.kb.retrieval import HybridRetriever, confidence


@pytest.fixture(params=["exact", "chroma"])
def retriever(runtime, request) -> HybridRetriever:
    """Both dense paths: exact in memory (small KBs) and Chroma's index (large ones)."""
    limit = 50_000 if request.param == "exact" else 0
    built = HybridRetriever(index=runtime.kb.index, embedder=runtime.kb.embedder,
                            exact_search_max_chunks=limit)
    assert built.exact is (request.param == "exact")
    return built


def test_exact_and_chroma_dense_search_agree(runtime) -> None:
    exact = HybridRetriever(index=runtime.kb.index, embedder=runtime.kb.embedder, mode="dense")
    chroma = HybridRetriever(index=runtime.kb.index, embedder=runtime.kb.embedder, mode="dense",
                             exact_search_max_chunks=0)
    for audience in (Audience.anonymous(), Audience(verified=True, plan="enterprise"),
                     Audience.operator()):
        a = exact.candidates("reset password via email link", audience=audience).dense
        b = chroma.candidates("reset password via email link", audience=audience).dense
        assert [pos for pos, _ in a] == [pos for pos, _ in b]
        assert [sim for _, sim in a] == pytest.approx([sim for _, sim in b], abs=1e-4)


def test_finds_the_right_article(retriever: HybridRetriever) -> None:
    result = retriever.search("I forgot my password, how do I reset it?", k=3)
    assert result.article_ids[0] == "account/reset-password.md"
    assert result.passages[0].dense_rank is not None
    assert result.passages[0].lexical_rank is not None


def test_fused_scores_are_reciprocal_rank_sums(retriever: HybridRetriever) -> None:
    for p in retriever.search("refund annual plan", k=5).passages:
        expected = sum(1 / (60 + r) for r in (p.dense_rank, p.lexical_rank) if r is not None)
        assert p.score == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_single_modes(runtime, mode: str) -> None:
    single = HybridRetriever(index=runtime.kb.index, embedder=runtime.kb.embedder, mode=mode)
    passage = single.search("connect slack channel alerts", k=1).passages[0]
    assert passage.article_id == "integrations/slack.md"
    if mode == "dense":
        assert passage.lexical_rank is None
    else:
        assert passage.dense_rank is None


def test_query_without_terms_returns_nothing_lexical(runtime) -> None:
    lexical = HybridRetriever(index=runtime.kb.index, embedder=runtime.kb.embedder, mode="lexical")
    assert lexical.search("?!", k=3).passages == []


def test_confidence_grows_with_similarity_and_margin() -> None:
    assert confidence(0.8, 0.2, True) > confidence(0.5, 0.2, True) > confidence(0.2, 0.2, True)
    assert confidence(0.6, 0.3, False) > confidence(0.6, 0.0, False)
    assert 0.0 < confidence(0.0, 0.0, False) < 0.01
    assert confidence(1.0, 1.0, True) > 0.99


def test_restricted_articles_are_hidden_from_anonymous(retriever: HybridRetriever) -> None:
    for audience in (Audience.anonymous(), Audience(verified=False, plan="enterprise")):
        ids = retriever.search("SCIM token base URL", k=10, audience=audience).article_ids
        assert "account/scim.md" not in ids
        assert "account/ownership.md" not in ids


def test_plan_articles_need_a_verified_customer_on_that_plan(retriever: HybridRetriever) -> None:
    enterprise = Audience(verified=True, plan="enterprise")
    pro = Audience(verified=True, plan="pro")
    assert retriever.search("SCIM token base URL", audience=enterprise).article_ids[0] == (
        "account/scim.md")
    assert "account/scim.md" not in retriever.search("SCIM token base URL", k=10,
                                                     audience=pro).article_ids


def test_verified_articles_need_verification(retriever: HybridRetriever) -> None:
    query = "transfer workspace ownership"
    assert "account/ownership.md" in retriever.search(
        query, audience=Audience(verified=True)).article_ids
    assert "account/ownership.md" not in retriever.search(
        query, k=10, audience=Audience.anonymous()).article_ids


def test_operator_sees_everything(retriever: HybridRetriever) -> None:
    assert "account/scim.md" in retriever.search("SCIM", audience=Audience.operator()).article_ids


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
@pytest.mark.parametrize("exact", [True, False])
def test_flagged_chunks_come_back_flagged(settings, embedder, chroma_client, mode: str,
                                          exact: bool) -> None:
    """The flag set at ingest survives Chroma's metadata, the BM25 rebuild and the search."""
    kb = build_knowledge_base(settings, embedder=embedder, client=chroma_client)
    kb.ingestor.ingest(ROOT / "tests" / "data" / "kb_injected")
    retriever = HybridRetriever(index=kb.index, embedder=embedder, mode=mode,
                                exact_search_max_chunks=50_000 if exact else 0)
    passages = retriever.search("rotate and revoke API keys note to AI assistants",
                                k=20).passages
    flags = {p.chunk.chunk_id: p.chunk.flagged for p in passages}
    assert flags["api/authentication.md#2"] == (
        "new_instructions,override_instructions,reveal_prompt,exfiltration_link")
    assert flags.get("api/authentication.md#1", "") == ""
    assert passages[0].as_dict()["flagged"] == passages[0].chunk.flagged
