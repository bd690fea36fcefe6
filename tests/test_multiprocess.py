"""Two `assistant serve` processes sharing one database (and, on PostgreSQL, a Chroma
server started here with `chroma run`) behave as one: a conversation moves between them
from request to request, a claim has exactly one winner, an agent's reply on one process
reaches a customer listening on the other, and a KB ingested through one is searched by
both. Run on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN_TOKEN, Backend, auth, sqlite_backend, write_kb
from conftest import _postgres_backend as postgres_backend
from servers import ServerProcess, database_url, free_port, start_server, wait_until_up
from test_live_stream import parse, take

from assistant.identity import hash_token, new_conversation_token
from assistant.passwords import hash_password

CHROMA = Path(sys.executable).parent / "chroma"
CLAIMERS = 50
ROUNDS = 8


@dataclass(frozen=True)
class Cluster:
    urls: list[str]
    backend: Backend
    kb: Path
    shared_chroma: bool


def start_chroma(path: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`chroma run` (from the chromadb package) on a free loopback port."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process, log, path="/api/v2/heartbeat")
    return process, url


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two servers on one database. On PostgreSQL they also share a Chroma server: the
    production topology. On SQLite each keeps its embedded Chroma."""
    # Starting servers costs seconds (model load, first ingest): the tests share them.
    tmp_path = tmp_path_factory.mktemp("cluster")
    backends = sqlite_backend(tmp_path) if request.param == "sqlite" else postgres_backend()
    backend = next(backends)
    kb = write_kb(tmp_path / "kb")
    servers: list[ServerProcess] = []
    chroma: subprocess.Popen | None = None
    env = {"ASSISTANT_DATABASE_URL": database_url(backend.url, backend.connect_args),
           "ASSISTANT_KB_DIR": str(kb), "ASSISTANT_ADMIN_TOKEN": ADMIN_TOKEN,
           "ASSISTANT_LIVE_POLL_SECONDS": "0.1", "ASSISTANT_KB_REFRESH_SECONDS": "0.5",
           "ASSISTANT_IP_RATE_LIMIT_PER_MINUTE": "100000"}
    try:
        if request.param == "postgresql":
            chroma, env["ASSISTANT_CHROMA_URL"] = start_chroma(tmp_path / "chroma",
                                                               tmp_path / "chroma.log")
        # Started together, as a deployment would: both may find the index empty and
        # ingest at once (chunk ids are deterministic, so that only repeats work).
        for n in range(2):
            servers.append(start_server({**env, "ASSISTANT_DATA_DIR": str(tmp_path / f"data{n}")},
                                        tmp_path / f"server{n}.log", wait=False))
        for server in servers:
            wait_until_up(server.url, server.process, server.log)
        yield Cluster([s.url for s in servers], backend, kb, chroma is not None)
    finally:
        for server in servers:
            server.stop()
        if chroma is not None:
            chroma.terminate()
            chroma.wait(timeout=30)
        next(backends, None)


def agents(backend: Backend, count: int) -> list[str]:
    tokens = []
    password = hash_password("a long enough password")
    for i in range(count):
        record = backend.handoffs.create_agent(
            email=f"racer{i}-{uuid.uuid4().hex[:6]}@example.com", name=f"Racer {i}",
            role="agent", password_hash=password, teams=["support"], capacity=ROUNDS + 1)
        backend.handoffs.set_online(record.id, True)
        token = new_conversation_token()
        backend.handoffs.add_token(record.id, hash_token(token), "race")
        tokens.append(token)
    return tokens


def handed_off(url: str) -> dict[str, str]:
    chat = httpx.post(url + "/v1/conversations", json={}, timeout=30).json()
    response = httpx.post(f"{url}/v1/conversations/{chat['id']}/handoff",
                          headers=auth(chat["token"]), timeout=30)
    assert response.status_code == 200, response.text
    return chat


def test_claims_have_exactly_one_winner_across_processes(cluster: Cluster) -> None:
    tokens = agents(cluster.backend, CLAIMERS)
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=CLAIMERS)) as client, \
            ThreadPoolExecutor(max_workers=CLAIMERS) as pool:
        for round_ in range(ROUNDS):
            chat = handed_off(cluster.urls[round_ % 2])
            (item,) = [i for i in client.get(cluster.urls[1] + "/v1/agent/queue",
                                             headers=auth(tokens[0])).json()["items"]
                       if i["handoff"]["conversation_id"] == chat["id"]]
            path = f"/v1/agent/handoffs/{item['handoff']['id']}/claim"

            def claim(n: int, path: str = path) -> int:
                url = cluster.urls[n % 2]
                return client.post(url + path, headers=auth(tokens[n])).status_code

            codes = list(pool.map(claim, range(CLAIMERS)))
            assert sorted(codes) == [200] + [409] * (CLAIMERS - 1), (round_, codes)
    claimed = cluster.backend.store.list_events(type="handoff.claimed", limit=10_000)
    assert len(claimed) == ROUNDS  # no double owners, not even briefly


def test_a_reply_on_one_process_reaches_a_customer_on_the_other(cluster: Cluster,
                                                                record_property) -> None:
    (token,) = agents(cluster.backend, 1)
    first, second = cluster.urls
    chat = handed_off(first)
    (item,) = [i for i in httpx.get(second + "/v1/agent/queue", headers=auth(token))
               .json()["items"] if i["handoff"]["conversation_id"] == chat["id"]]
    assert httpx.post(f"{second}/v1/agent/handoffs/{item['handoff']['id']}/claim",
                      headers=auth(token)).status_code == 200
    with httpx.Client(timeout=httpx.Timeout(5, read=10)) as client, client.stream(
            "GET", f"{first}/v1/conversations/{chat['id']}/events",
            headers=auth(chat["token"])) as response:
        events = parse(response.iter_lines())
        take(events, lambda e: e.data.get("status") == "agent")
        sent = httpx.post(f"{second}/v1/agent/conversations/{chat['id']}/messages",
                          json={"text": "Hello from the other process"}, headers=auth(token))
        assert sent.status_code == 201
        started = time.monotonic()
        got = take(events, lambda e: e.event == "message"
                   and e.data["message"]["role"] == "agent")
        elapsed = time.monotonic() - started
    assert got[-1].data["message"]["text"] == "Hello from the other process"
    # Reported, not asserted (machines here are noisy): the poll interval bounds it.
    record_property("cross_process_delivery_ms", round(elapsed * 1000))


def test_a_conversation_moves_between_processes(cluster: Cluster) -> None:
    first = cluster.urls[0]
    chat = httpx.post(first + "/v1/conversations", json={}, timeout=30).json()
    headers = auth(chat["token"])
    sent = []
    for n, question in enumerate(["How do I reset my password?", "Where are my invoices?",
                                  "How do I get a refund?", "Can I export my data?"]):
        url = cluster.urls[n % 2]
        response = httpx.post(f"{url}/v1/conversations/{chat['id']}/messages",
                              json={"text": question},
                              headers={**headers, "Idempotency-Key": f"move-{n}"}, timeout=60)
        assert response.status_code == 200, response.text
        sent.append(response.json())
    # A retry that lands on the other process replays the original, it never duplicates.
    replay = httpx.post(f"{first}/v1/conversations/{chat['id']}/messages",
                        json={"text": "Where are my invoices?"},
                        headers={**headers, "Idempotency-Key": "move-1"}, timeout=60)
    assert replay.json()["replayed"] is True
    assert replay.json()["message"]["id"] == sent[1]["message"]["id"]
    for url in cluster.urls:
        messages = httpx.get(f"{url}/v1/conversations/{chat['id']}/messages",
                             headers=headers, timeout=30).json()["messages"]
        customer = [m["text"] for m in messages if m["role"] == "customer"]
        assert customer == ["How do I reset my password?", "Where are my invoices?",
                            "How do I get a refund?", "Can I export my data?"]
        assert sum(m["role"] == "assistant" for m in messages) == 4


def test_an_ingest_on_one_process_is_searched_by_all(cluster: Cluster) -> None:
    if not cluster.shared_chroma:
        pytest.skip("each process has its own embedded Chroma; sharing needs a Chroma server")
    write_kb(cluster.kb, {"howto/snapshots.md": """\
        ---
        title: Schedule a dashboard snapshot
        url: https://help.example.com/snapshots
        ---
        # Schedule a snapshot

        Open the dashboard menu, choose Schedule snapshot and pick a weekday.
        """})
    admin = auth(ADMIN_TOKEN)
    report = httpx.post(cluster.urls[0] + "/v1/kb/ingest", headers=admin, timeout=120)
    assert report.status_code == 200 and report.json()["added"] == 1, report.text
    for url in cluster.urls:
        # The other process notices the new KB generation within its refresh interval
        # (0.5 s here); poll its search, the observable effect, for at most 30 s.
        deadline = time.monotonic() + 30
        while True:
            hits = httpx.get(url + "/v1/kb/search", params={"q": "schedule snapshot weekday"},
                             headers=admin, timeout=30).json()["passages"]
            if hits and hits[0]["article_id"] == "howto/snapshots.md":
                break
            assert time.monotonic() < deadline, f"{url} never saw the new article"
            time.sleep(0.2)
    # And a customer on the other process gets it as an answer.
    chat = httpx.post(cluster.urls[1] + "/v1/conversations", json={}, timeout=30).json()
    reply = httpx.post(f"{cluster.urls[1]}/v1/conversations/{chat['id']}/messages",
                       json={"text": "How do I schedule a dashboard snapshot?"},
                       headers=auth(chat["token"]), timeout=60).json()["reply"]
    assert any(c["article_id"] == "howto/snapshots.md" for c in reply["citations"])
