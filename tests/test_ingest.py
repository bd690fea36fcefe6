"""Incremental ingestion: skip unchanged, replace changed, remove deleted, survive bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import IngestError
from assistant.kb.audience import Audience
from assistant.kb.components import KnowledgeBase, build_knowledge_base


@pytest.fixture
def kb(settings, embedder, chroma_client) -> KnowledgeBase:
    return build_knowledge_base(settings, embedder=embedder, client=chroma_client)


def test_first_run_adds_everything(kb: KnowledgeBase, kb_dir: Path) -> None:
    report = kb.ingestor.ingest(kb_dir)
    assert (report.added, report.updated, report.removed, report.unchanged) == (5, 0, 0, 0)
    assert report.chunks_written == kb.index.count() > 5
    assert set(kb.index.manifest()) == {
        "account/reset-password.md", "billing/refunds.md", "integrations/slack.md",
        "account/scim.md", "account/ownership.md"}


def test_second_run_skips_unchanged(kb: KnowledgeBase, kb_dir: Path) -> None:
    kb.ingestor.ingest(kb_dir)
    report = kb.ingestor.ingest(kb_dir)
    assert (report.added, report.updated, report.unchanged, report.chunks_written) == (0, 0, 5, 0)
    assert report.embed_seconds == 0


def test_changed_article_is_replaced(kb: KnowledgeBase, kb_dir: Path) -> None:
    kb.ingestor.ingest(kb_dir)
    path = kb_dir / "billing/refunds.md"
    path.write_text(path.read_text().replace("14 days", "30 days"))
    report = kb.ingestor.ingest(kb_dir)
    assert (report.updated, report.unchanged) == (1, 4)
    kb.retriever.refresh()
    texts = [p.chunk.text for p in kb.retriever.search("refund annual", k=5).passages]
    assert any("30 days" in t for t in texts)
    assert not any("14 days" in t for t in texts)


def test_shrunk_article_leaves_no_stale_chunks(kb: KnowledgeBase, kb_dir: Path) -> None:
    kb.ingestor.ingest(kb_dir)
    before = kb.index.count()
    (kb_dir / "account/reset-password.md").write_text("---\ntitle: Reset\n---\nOne line.\n")
    kb.ingestor.ingest(kb_dir)
    ids = [c.chunk_id for c in kb.index.all_chunks() if c.article_id == "account/reset-password.md"]
    assert ids == ["account/reset-password.md#0"]
    assert kb.index.count() < before


def test_deleted_article_is_removed(kb: KnowledgeBase, kb_dir: Path) -> None:
    kb.ingestor.ingest(kb_dir)
    (kb_dir / "integrations/slack.md").unlink()
    report = kb.ingestor.ingest(kb_dir)
    assert report.removed == 1
    assert "integrations/slack.md" not in kb.index.manifest()


def test_bad_files_are_reported_and_do_not_stop_the_rest(kb: KnowledgeBase, kb_dir: Path) -> None:
    (kb_dir / "empty.md").write_text("")
    (kb_dir / "binary.md").write_bytes(b"\x89PNG\x00\x00")
    (kb_dir / "broken.md").write_text("---\ntitle: [oops\n---\nBody\n")
    (kb_dir / "image.png").write_bytes(b"\x89PNG")  # unsupported suffix: ignored
    report = kb.ingestor.ingest(kb_dir)
    assert report.added == 5 and report.failed == 3
    reasons = {e.article_id: e.reason for e in report.errors}
    assert set(reasons) == {"empty.md", "binary.md", "broken.md"}
    assert "empty" in reasons["empty.md"] and "binary" in reasons["binary.md"]
    assert "front matter" in reasons["broken.md"]


def test_broken_edit_keeps_the_previous_version(kb: KnowledgeBase, kb_dir: Path) -> None:
    kb.ingestor.ingest(kb_dir)
    (kb_dir / "billing/refunds.md").write_text("---\ntitle: [broken\n---\nx\n")
    report = kb.ingestor.ingest(kb_dir)
    assert report.failed == 1 and report.removed == 0
    assert "billing/refunds.md" in kb.index.manifest()


def test_rebuild_re_embeds_everything(kb: KnowledgeBase, kb_dir: Path) -> None:
    kb.ingestor.ingest(kb_dir)
    report = kb.ingestor.ingest(kb_dir, rebuild=True)
    assert report.added == 5 and report.unchanged == 0


def test_missing_directory_is_a_clear_error(kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        kb.ingestor.ingest(tmp_path / "nope")


def test_ingest_on_one_client_is_visible_to_another(settings, embedder, chroma_client, kb_dir):
    """Two workers sharing one Chroma: the second sees the first one's ingest after refresh."""
    writer = build_knowledge_base(settings, embedder=embedder, client=chroma_client)
    reader = build_knowledge_base(settings, embedder=embedder, client=chroma_client)
    writer.ingestor.ingest(kb_dir)
    assert reader.retriever.size == 0
    reader.retriever.refresh()
    assert reader.retriever.search("slack alerts", audience=Audience.anonymous()).passages


# tests/data/kb_injected is a small help centre whose articles carry instructions to an AI
# (SECURITY.md #13): billing/refunds.md in an HTML comment, data/export-data.md in white
# text and in zero-width characters (one run encodes a message bit by bit, one splits the
# letters of a visible instruction), api/authentication.md as a visible paragraph with an
# exfiltration image; account/reset-password.md is clean. Each also answers a question.
INJECTED_KB = Path(__file__).resolve().parent / "data" / "kb_injected"


def test_hidden_text_is_stripped_and_visible_instructions_flagged(kb: KnowledgeBase) -> None:
    report = kb.ingestor.ingest(INJECTED_KB)
    assert (report.added, report.failed) == (4, 0)
    warnings = {(w.article_id, w.reason) for w in report.warnings}
    assert ("billing/refunds.md", "removed hidden text: 1 HTML comment") in warnings
    assert ("data/export-data.md",
            "removed hidden text: 1 invisible element, 227 invisible characters") in warnings
    flagged = {article for article, reason in warnings if reason.startswith(
        "text reads like instructions to an AI assistant (")
        and reason.endswith("); it is kept out of generated answers")}
    assert flagged == {"api/authentication.md", "data/export-data.md"}
    assert "account/reset-password.md" not in {w.article_id for w in report.warnings}

    chunks = kb.index.all_chunks()
    for chunk in chunks:
        assert "ignore your rules" not in chunk.text and "\u200b" not in chunk.text
        # What still mentions the attacker's host is flagged, so answers leave it out.
        assert ("evil.example" in chunk.text) <= bool(chunk.flagged), chunk.chunk_id
    by_id = {c.chunk_id: c.flagged for c in chunks if c.flagged}
    assert by_id == {
        "api/authentication.md#2":
            "new_instructions,override_instructions,reveal_prompt,exfiltration_link",
        "data/export-data.md#3": "override_instructions",
    }


def test_flags_and_warnings_survive_an_incremental_run(kb: KnowledgeBase) -> None:
    kb.ingestor.ingest(INJECTED_KB)
    report = kb.ingestor.ingest(INJECTED_KB)
    assert (report.unchanged, report.chunks_written) == (4, 0)
    assert {w.article_id for w in report.warnings} == {
        "billing/refunds.md", "data/export-data.md", "api/authentication.md"}
    assert sum(1 for c in kb.index.all_chunks() if c.flagged) == 2
