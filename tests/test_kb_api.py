"""The staff KB endpoints, article-id hygiene, and ingestion seen by other processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, auth, make_agent, write_kb
from fastapi.testclient import TestClient

from assistant.kb.articles import MAX_FILE_BYTES
from assistant.runtime import Runtime, build_runtime

ADMIN = auth(ADMIN_TOKEN)

TRAVERSALS = [
    "../secrets.md", "billing/../../etc/passwd", "/etc/passwd", "..", "./x.md",
    "billing//refunds.md", "billing\\..\\x.md", "C:/Windows/win.ini", "billing/%00.md",
    "%2e%2e/%2e%2e/etc/passwd",
]


@pytest.mark.parametrize("article_id", TRAVERSALS)
def test_article_ids_that_leave_the_kb_are_refused(client: TestClient, agent,
                                                   article_id: str) -> None:
    response = client.get(f"/v1/kb/articles/{article_id}", headers=auth(agent.token))
    # 422 when the id is malformed; some spellings are normalised away by the URL layer
    # first and then simply name no article. Never a file's content, never a 5xx.
    assert response.status_code in (404, 422), (article_id, response.text)
    assert "root:" not in response.text
    if response.status_code == 422:
        # A NUL is refused for every route before routing; the rest by the KB's own check.
        expected = "NUL characters" if "%00" in article_id else "relative to the KB dir"
        assert expected in response.json()["error"]["message"]


def test_staff_read_an_indexed_article_and_search(client: TestClient, agent) -> None:
    found = client.get("/v1/kb/articles/billing/refunds.md", headers=auth(agent.token))
    assert found.status_code == 200, found.text
    assert found.json()["title"] and found.json()["sections"]
    assert client.get("/v1/kb/articles/billing/nope.md",
                      headers=auth(agent.token)).status_code == 404
    hits = client.get("/v1/kb/search", params={"q": "refund"}, headers=auth(agent.token)).json()
    assert hits["passages"][0]["article_id"] == "billing/refunds.md"
    assert client.get("/v1/kb/search", params={"q": ""},
                      headers=auth(agent.token)).status_code == 422


def test_admin_ingests_over_the_api(client: TestClient, runtime: Runtime, agent) -> None:
    write_kb(runtime.settings.kb_dir, {"howto/new-feature.md": """\
        ---
        title: Schedule a dashboard snapshot
        url: https://help.example.com/snapshots
        ---
        # Schedule a snapshot

        Open the dashboard menu and choose Schedule snapshot, then pick a weekday.
        """})
    assert client.post("/v1/kb/ingest", headers=auth(agent.token)).status_code == 403
    report = client.post("/v1/kb/ingest", headers=ADMIN, json={})
    assert report.status_code == 200, report.text
    assert report.json()["added"] == 1 and report.json()["failed"] == 0
    hits = client.get("/v1/kb/search", params={"q": "schedule snapshot weekday"},
                      headers=ADMIN).json()["passages"]
    assert hits[0]["article_id"] == "howto/new-feature.md"


def test_an_ingest_by_another_process_is_picked_up(runtime: Runtime, settings, embedder,
                                                   chroma_client) -> None:
    # A second runtime on the same Chroma stands in for another worker; it checks for a
    # new KB generation on every search here (refresh 0 s).
    other = build_runtime(settings.model_copy(update={"kb_refresh_seconds": 0.0}),
                          embedder=embedder, chroma_client=chroma_client)
    try:
        before = other.kb.retriever.search("schedule snapshot weekday", k=1)
        assert before.passages[0].article_id != "howto/new-feature.md"
        write_kb(settings.kb_dir, {"howto/new-feature.md": """\
            ---
            title: Schedule a dashboard snapshot
            ---
            Open the dashboard menu and choose Schedule snapshot, then pick a weekday.
            """})
        generation = runtime.kb.index.generation()
        runtime.ingest()
        assert runtime.kb.index.generation() == generation + 1
        after = other.kb.retriever.search("schedule snapshot weekday", k=1)
        assert after.passages[0].article_id == "howto/new-feature.md"
        # Nothing changed: no new generation, no reload.
        runtime.ingest()
        assert runtime.kb.index.generation() == generation + 1
        assert other.kb.retriever.refresh_if_changed() is False
    finally:
        other.close()


def test_huge_and_escaping_kb_files_are_per_file_errors(runtime: Runtime, tmp_path: Path) -> None:
    kb = runtime.settings.kb_dir
    huge = kb / "huge.md"
    with huge.open("wb") as out:  # sparse: the size is checked before anything is read
        out.truncate(MAX_FILE_BYTES * 50)
    outside = tmp_path / "outside-secret.md"
    outside.write_text("---\ntitle: Secret\n---\nThe root password is hunter2.\n")
    os.symlink(outside, kb / "linked.md")
    report = runtime.ingest()
    errors = {e.article_id: e.reason for e in report.errors}
    assert "limit" in errors["huge.md"]
    assert "outside the knowledge-base directory" in errors["linked.md"]
    assert report.failed == 2 and report.unchanged > 0  # the rest went on
    hits = runtime.kb.retriever.search("root password hunter2", k=5)
    assert all("hunter2" not in p.chunk.text for p in hits.passages)


def test_agents_cannot_ingest_but_can_search(client: TestClient, runtime: Runtime) -> None:
    admin_agent = make_agent(runtime, "Ada Admin", role="admin")
    assert client.post("/v1/kb/ingest", headers=auth(admin_agent.token)).status_code == 200
    assert client.post("/v1/kb/ingest").status_code == 401
