"""Outbound webhooks: signatures, delivery with retries against a real loopback receiver,
the delivery log, the admin endpoints and the CLI, and claims that never send twice."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import ADMIN_TOKEN, Backend, auth, make_agent
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from assistant.cli import app
from assistant.config import Settings, get_settings
from assistant.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from assistant.runtime import Runtime
from assistant.storage.db import make_engine, migrate
from assistant.storage.webhook_repo import MAX_ERROR_CHARS, WebhookStore
from assistant.webhooks import (
    MAX_BACKOFF_SECONDS,
    USER_AGENT,
    WebhookSender,
    WebhookWorker,
    backoff_seconds,
    retry_after_seconds,
    sign,
    verify,
)

SECRET = "whsec_test_secret"


# -- a real receiver on loopback -----------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 answering each path from a script of responses.

    A script entry is a status code, ``(status, headers)`` or ``"hang"`` (answer nothing
    until the test ends); when a path's script runs out it answers 200.
    """

    server: ThreadingHTTPServer
    thread: threading.Thread
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    delay: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def script(self, path: str, *responses: Any) -> str:
        self.scripts[path] = list(responses)
        return self.url(path)

    def next_response(self, path: str) -> Any:
        with self.lock:
            script = self.scripts.get(path) or []
            return script.pop(0) if script else 200

    def ids(self) -> list[str]:
        return [r.headers["X-Assistant-Delivery"] for r in self.received]


def _handler(receiver_ref: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = receiver_ref[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
            if receiver.delay:
                time.sleep(receiver.delay)
            action = receiver.next_response(self.path)
            if action == "hang":
                receiver.release.wait(10)
                return
            status, headers = action if isinstance(action, tuple) else (action, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, *_: Any) -> None:
        pass  # a hung request's client went away; nothing to report


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    ref: list[Receiver] = []
    server = _QuietServer(("127.0.0.1", 0), _handler(ref))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    rec = Receiver(server=server, thread=thread)
    ref.append(rec)
    thread.start()
    yield rec
    rec.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def store(backend: Backend) -> WebhookStore:
    return WebhookStore(backend.engine)


@pytest.fixture
def senders() -> Iterator[list[WebhookSender]]:
    made: list[WebhookSender] = []
    yield made
    for sender in made:
        sender.close()


@pytest.fixture
def make_sender(senders: list[WebhookSender]):
    def make(store: WebhookStore, **kwargs: Any) -> WebhookSender:
        options: dict[str, Any] = {"secret": SECRET, "max_attempts": 8, "timeout": 5.0,
                                   "rng": random.Random(7), **kwargs}
        sender = WebhookSender(store, **options)
        senders.append(sender)
        return sender

    return make


def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def payload(event: str = "customer.at_risk", **data: Any) -> dict[str, Any]:
    return {"type": event, "created_at": "2026-03-01T10:00:00+00:00",
            "data": {"customer_id": "c1", **data}}


# -- signatures ----------------------------------------------------------------------------


def test_sign_known_answer() -> None:
    # Computed independently: printf '1700000000.{"id":"abc","type":"webhook.test"}' |
    #   openssl dgst -sha256 -hmac whsec_test_secret
    body = b'{"id":"abc","type":"webhook.test"}'
    assert sign(SECRET, 1700000000, body) == (
        "a450bf43c3b0c9e5985f8cfc22bce35c734648d43e40fb2a8bb45d9141014824"
    )


def test_verify_accepts_only_the_exact_fresh_signed_body() -> None:
    body, ts = b'{"id":"d1","type":"churn.signal"}', 1_700_000_000
    signature = "sha256=" + sign(SECRET, ts, body)
    assert verify(SECRET, ts, body, signature, now=ts)
    assert verify(SECRET, str(ts), body, signature.removeprefix("sha256="), now=ts + 299)
    assert not verify("another-secret", ts, body, signature, now=ts)
    assert not verify(SECRET, ts, body.replace(b"churn", b"chorn"), signature, now=ts)
    assert not verify(SECRET, ts + 1, body, signature, now=ts + 1)  # timestamp is signed
    assert not verify(SECRET, ts, body, signature, now=ts + 301)  # stale: a replay
    assert not verify(SECRET, ts, body, signature, now=ts - 301)  # from the future
    assert not verify(SECRET, "yesterday", body, signature, now=ts)
    assert not verify(SECRET, ts, body, "sha256=" + "0" * 64, now=ts)
    assert not verify(SECRET, ts, body, "sha256=é", now=ts)


def test_backoff_schedule_and_retry_after() -> None:
    rng = random.Random(1)
    for attempt, base in [(1, 30), (2, 60), (3, 120), (8, 3840)]:
        waits = [backoff_seconds(attempt, rng) for _ in range(200)]
        assert base * 0.8 <= min(waits) and max(waits) <= base * 1.2
        assert max(waits) - min(waits) > base * 0.2  # jittered, not fixed
    assert backoff_seconds(30, rng) <= MAX_BACKOFF_SECONDS * 1.2
    now = t0()
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True),
                               now) == 90
    assert retry_after_seconds("999999999", now) == MAX_BACKOFF_SECONDS
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


# -- delivery against the receiver ---------------------------------------------------------


def test_delivery_is_signed_with_the_documented_headers(
    store: WebhookStore, receiver: Receiver, make_sender
) -> None:
    now = t0()
    record = store.enqueue("customer.at_risk", receiver.url(), payload(score=31), now=now)
    report = make_sender(store).deliver_due(now=now)
    assert (report.sent, report.failed, report.retried) == (1, 0, 0)
    [got] = receiver.received
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    assert headers["x-assistant-event"] == "customer.at_risk"
    assert headers["x-assistant-delivery"] == record.id
    assert headers["x-assistant-timestamp"] == str(int(now.timestamp()))
    assert headers["x-assistant-signature"].startswith("sha256=")
    assert verify(SECRET, headers["x-assistant-timestamp"], got.body,
                  headers["x-assistant-signature"], now=now.timestamp())
    assert got.json == {"id": record.id, **payload(score=31)}
    stored = store.get(record.id)
    assert stored is not None and stored.status == "delivered"
    assert (stored.attempts, stored.last_status, stored.last_error) == (1, 200, None)
    assert stored.delivered_at == now


def test_500_then_200_is_retried_with_backoff_and_delivered(
    store: WebhookStore, receiver: Receiver, make_sender
) -> None:
    now = t0()
    url = receiver.script("/flaky", 500, 200)
    record = store.enqueue("churn.signal", url, payload("churn.signal"), now=now)
    sender = make_sender(store)
    first = sender.deliver_due(now=now)
    assert (first.sent, first.retried) == (0, 1)
    after_first = store.get(record.id)
    assert after_first is not None and after_first.status == "pending"
    assert (after_first.attempts, after_first.last_status) == (1, 500)
    assert after_first.last_error == "HTTP 500 Internal Server Error"
    wait = (after_first.next_attempt_at - now).total_seconds()
    assert 24 <= wait <= 36  # 30 s ± 20%
    assert sender.deliver_due(now=now + timedelta(seconds=20)).attempted == 0  # not due yet
    second = sender.deliver_due(now=now + timedelta(seconds=40))
    assert second.sent == 1
    done = store.get(record.id)
    assert done is not None and done.status == "delivered" and done.attempts == 2
    assert done.last_status == 200 and done.last_error is None
    assert receiver.ids() == [record.id, record.id]  # same id: receivers deduplicate on it


def test_always_500_fails_after_max_attempts(
    store: WebhookStore, receiver: Receiver, make_sender
) -> None:
    now = t0()
    url = receiver.script("/down", *[500] * 10)
    record = store.enqueue("conversation.handed_off", url, payload(), now=now)
    sender = make_sender(store, max_attempts=3)
    reports = [sender.deliver_due(now=now + timedelta(hours=hour)) for hour in range(5)]
    assert [(r.sent, r.retried, r.failed) for r in reports] == [
        (0, 1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0), (0, 0, 0)]
    failed = store.get(record.id)
    assert failed is not None and failed.status == "failed"
    assert (failed.attempts, failed.last_status) == (3, 500)
    assert len(receiver.received) == 3


def test_timeout_is_retried(store: WebhookStore, receiver: Receiver, make_sender) -> None:
    now = t0()
    url = receiver.script("/slow", "hang", 200)
    record = store.enqueue("churn.signal", url, payload(), now=now)
    sender = make_sender(store, timeout=0.3)
    started = time.monotonic()
    report = sender.deliver_due(now=now)
    assert time.monotonic() - started < 5
    assert report.retried == 1
    pending = store.get(record.id)
    assert pending is not None and pending.status == "pending"
    assert pending.last_status is None and "timeout" in (pending.last_error or "")
    assert sender.deliver_due(now=now + timedelta(minutes=1)).sent == 1


def test_connection_refused_is_retried(store: WebhookStore, make_sender) -> None:
    now = t0()
    record = store.enqueue("churn.signal", "http://127.0.0.1:9/nothing", payload(), now=now)
    assert make_sender(store).deliver_due(now=now).retried == 1
    pending = store.get(record.id)
    assert pending is not None and pending.attempts == 1 and pending.last_status is None
    assert "Connect" in (pending.last_error or "")


def test_429_retry_after_is_honoured(store: WebhookStore, receiver: Receiver, make_sender) -> None:
    now = t0()
    url = receiver.script("/busy", (429, {"Retry-After": "120"}), (500, {"Retry-After": "5"}))
    record = store.enqueue("churn.signal", url, payload(), now=now)
    sender = make_sender(store)
    sender.deliver_due(now=now)
    limited = store.get(record.id)
    assert limited is not None and limited.last_status == 429
    assert limited.next_attempt_at == now + timedelta(seconds=120)
    assert sender.deliver_due(now=now + timedelta(seconds=119)).attempted == 0
    later = now + timedelta(seconds=120)
    sender.deliver_due(now=later)
    # Retry-After only counts on 429 and 503; a 500 gets the backoff (60 s ± 20% now).
    errored = store.get(record.id)
    assert errored is not None and errored.attempts == 2
    assert 48 <= (errored.next_attempt_at - later).total_seconds() <= 72


def test_redirects_are_not_followed(store: WebhookStore, receiver: Receiver, make_sender) -> None:
    now = t0()
    url = receiver.script("/moved", (302, {"Location": receiver.url("/elsewhere")}))
    record = store.enqueue("churn.signal", url, payload(), now=now)
    assert make_sender(store).deliver_due(now=now).retried == 1
    assert [r.path for r in receiver.received] == ["/moved"]
    assert store.get(record.id).last_status == 302  # type: ignore[union-attr]


def test_without_a_secret_nothing_is_sent(
    store: WebhookStore, receiver: Receiver, make_sender, caplog: pytest.LogCaptureFixture
) -> None:
    now = t0()
    record = store.enqueue("customer.at_risk", receiver.url(), payload(), now=now)
    sender = make_sender(store, secret=None)
    with caplog.at_level(logging.ERROR, logger="assistant.webhooks"):
        assert sender.deliver_due(now=now).attempted == 0
        assert sender.deliver_due(now=now).attempted == 0
    assert receiver.received == []
    assert [r.message for r in caplog.records if "ASSISTANT_WEBHOOK_SECRET" in r.message]
    assert len(caplog.records) == 1  # logged once, not every pass
    assert store.get(record.id).status == "pending"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError):
        sender.deliver(record.id)


# -- the outbox itself ---------------------------------------------------------------------


def test_delivery_log_filters_and_retry(store: WebhookStore) -> None:
    now = t0()
    a = store.enqueue("customer.at_risk", "https://crm.example.test/a", payload(), now=now)
    b = store.enqueue("churn.signal", "https://crm.example.test/b", payload(),
                      now=now + timedelta(seconds=1))
    c = store.enqueue("churn.signal", "https://crm.example.test/c", payload(),
                      now=now + timedelta(seconds=2))
    store.claim_due(now + timedelta(seconds=5), 10)
    store.record_attempt(a.id, ok=True, status_code=204, error=None, next_attempt_at=None)
    store.record_attempt(b.id, ok=False, status_code=None, error="x" * 2000,
                         next_attempt_at=None)
    assert [r.id for r in store.list_deliveries()] == [c.id, b.id, a.id]
    assert [r.id for r in store.list_deliveries(status="failed")] == [b.id]
    assert [r.id for r in store.list_deliveries(event="churn.signal")] == [c.id, b.id]
    assert [r.id for r in store.list_deliveries(limit=1)] == [c.id]
    assert store.count_by_status() == {"pending": 1, "delivered": 1, "failed": 1}
    failed = store.get(b.id)
    assert failed is not None and len(failed.last_error or "") == MAX_ERROR_CHARS
    with pytest.raises(InvalidInput):
        store.list_deliveries(status="lost")

    retried = store.retry(b.id, now=now + timedelta(minutes=1))
    assert (retried.status, retried.attempts) == ("pending", 0)
    assert retried.next_attempt_at == now + timedelta(minutes=1)
    with pytest.raises(Conflict):
        store.retry(b.id)  # pending now
    with pytest.raises(Conflict):
        store.retry(a.id)  # delivered
    with pytest.raises(NotFound):
        store.retry("0" * 32)
    with pytest.raises(InvalidInput):
        store.enqueue("churn.signal", "ftp://example.test/x", payload())


def test_a_claim_is_leased_and_comes_back_when_the_lease_ends(store: WebhookStore) -> None:
    now = t0()
    ids = [store.enqueue("churn.signal", "https://crm.example.test/x", payload(),
                         now=now + timedelta(seconds=n)).id for n in range(3)]
    later = now + timedelta(seconds=10)
    assert [r.id for r in store.claim_due(later, 2)] == ids[:2]  # oldest first
    assert [r.id for r in store.claim_due(later, 5)] == ids[2:]
    assert store.claim_due(later, 5) == []  # all leased
    # A sender that died mid-batch: its deliveries are due again after the lease.
    assert store.claim_due(later + timedelta(seconds=59), 5) == []
    assert len(store.claim_due(later + timedelta(seconds=61), 5)) == 3
    with pytest.raises(Conflict):
        store.claim(ids[0], later + timedelta(seconds=62))  # leased again just now
    with pytest.raises(NotFound):
        store.claim("f" * 32, later)


def test_concurrent_claims_never_hand_out_a_delivery_twice(
    store: WebhookStore, backend: Backend
) -> None:
    now = t0()
    total = 60
    ids = {store.enqueue("churn.signal", "https://crm.example.test/x", payload(), now=now).id
           for _ in range(total)}
    stores = [WebhookStore(backend.new_engine()) for _ in range(4)] + [store] * 4
    barrier = threading.Barrier(len(stores))
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(own: WebhookStore) -> None:
        barrier.wait()
        while batch := own.claim_due(now, 3):
            with lock:
                claimed.extend(r.id for r in batch)

    threads = [threading.Thread(target=claimer, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for own in stores[:4]:
        own.dispose()
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == ids


def test_two_senders_at_once_never_send_a_delivery_twice(
    store: WebhookStore, backend: Backend, receiver: Receiver, make_sender
) -> None:
    now = t0()
    receiver.delay = 0.005  # requests overlap
    ids = {store.enqueue("churn.signal", receiver.url(), payload(), now=now).id
           for _ in range(40)}
    other = WebhookStore(backend.new_engine())  # as a second server process would have
    first, second = make_sender(store), make_sender(other)
    barrier = threading.Barrier(2)
    reports = []

    def run(sender: WebhookSender) -> None:
        barrier.wait()
        while (report := sender.deliver_due(limit=7, now=now)).attempted:
            reports.append(report)

    threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other.dispose()
    assert Counter(receiver.ids()).most_common(1)[0][1] == 1
    assert set(receiver.ids()) == ids
    assert sum(r.sent for r in reports) == 40
    assert store.count_by_status()["delivered"] == 40


def test_worker_delivers_in_the_background_and_stops(
    store: WebhookStore, receiver: Receiver, make_sender
) -> None:
    worker = WebhookWorker(make_sender(store), interval_seconds=0.05)
    worker.start()
    try:
        record = store.enqueue("conversation.handed_off", receiver.url(), payload())
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.ids() == [record.id]
    finally:
        started = time.monotonic()
        worker.stop()
    assert time.monotonic() - started < 2
    assert not worker.running
    with pytest.raises(RuntimeError):
        worker.start()


# -- admin endpoints -----------------------------------------------------------------------


@pytest.fixture
def outbox(settings: Settings) -> Iterator[WebhookStore]:
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    yield WebhookStore(engine)
    engine.dispose()


def test_admin_lists_deliveries_and_retries_failed_ones(
    client: TestClient, runtime: Runtime, outbox: WebhookStore
) -> None:
    now = t0()
    ok = outbox.enqueue("customer.at_risk", "https://crm.example.test/a", payload(), now=now)
    bad = outbox.enqueue("churn.signal", "https://crm.example.test/b", payload("churn.signal"),
                         now=now + timedelta(seconds=1))
    outbox.claim_due(now + timedelta(seconds=2), 10)
    outbox.record_attempt(ok.id, ok=True, status_code=200, error=None, next_attempt_at=None)
    outbox.record_attempt(bad.id, ok=False, status_code=500, error="HTTP 500",
                          next_attempt_at=None)

    listed = client.get("/v1/webhooks/deliveries", headers=auth(ADMIN_TOKEN))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [d["id"] for d in body["deliveries"]] == [bad.id, ok.id]
    assert body["counts"] == {"pending": 0, "delivered": 1, "failed": 1}
    first = body["deliveries"][0]
    assert (first["status"], first["attempts"], first["last_status"]) == ("failed", 1, 500)
    assert first["payload"]["type"] == "churn.signal"
    failed = client.get("/v1/webhooks/deliveries?status=failed&event=churn.signal",
                        headers=auth(ADMIN_TOKEN)).json()["deliveries"]
    assert [d["id"] for d in failed] == [bad.id]
    assert client.get("/v1/webhooks/deliveries?status=lost",
                      headers=auth(ADMIN_TOKEN)).status_code == 422

    retried = client.post(f"/v1/webhooks/deliveries/{bad.id}/retry", headers=auth(ADMIN_TOKEN))
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    again = client.post(f"/v1/webhooks/deliveries/{bad.id}/retry", headers=auth(ADMIN_TOKEN))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert client.post(f"/v1/webhooks/deliveries/{ok.id}/retry",
                       headers=auth(ADMIN_TOKEN)).status_code == 409
    assert client.post(f"/v1/webhooks/deliveries/{'0' * 32}/retry",
                       headers=auth(ADMIN_TOKEN)).status_code == 404
    assert client.get(f"/v1/webhooks/deliveries/{ok.id}",
                      headers=auth(ADMIN_TOKEN)).json()["status"] == "delivered"

    admin_agent = make_agent(runtime, "Ada Admin", role="admin")
    assert client.get("/v1/webhooks/deliveries",
                      headers=auth(admin_agent.token)).status_code == 200


def test_webhook_endpoints_are_admin_only(
    client: TestClient, runtime: Runtime, outbox: WebhookStore
) -> None:
    record = outbox.enqueue("churn.signal", "https://crm.example.test/b", payload())
    agent = make_agent(runtime)
    for method, path in [("GET", "/v1/webhooks/deliveries"),
                         ("GET", f"/v1/webhooks/deliveries/{record.id}"),
                         ("POST", f"/v1/webhooks/deliveries/{record.id}/retry")]:
        assert client.request(method, path).status_code == 401
        assert client.request(method, path, headers=auth(agent.token)).status_code == 403
        assert client.request(method, path, headers=auth("not-a-token")).status_code == 401


# -- the CLI -------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSISTANT_WEBHOOK_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("cli_env")
def test_cli_test_list_retry_and_deliver(receiver: Receiver) -> None:
    good = receiver.url("/good")
    sent = runner.invoke(app, ["webhooks", "test", good])
    assert sent.exit_code == 0, sent.output
    assert "HTTP 200" in sent.output
    [got] = receiver.received
    assert got.headers["X-Assistant-Event"] == "webhook.test"
    assert verify(SECRET, got.headers["X-Assistant-Timestamp"], got.body,
                  got.headers["X-Assistant-Signature"])

    bad = receiver.script("/bad", 500, 200)
    refused = runner.invoke(app, ["webhooks", "test", bad])
    assert refused.exit_code == 1
    assert "HTTP 500" in refused.output

    rows = json.loads(runner.invoke(app, ["webhooks", "list", "--json"]).stdout)
    assert [(r["url"], r["status"]) for r in rows] == [(bad, "failed"), (good, "delivered")]
    assert rows[0]["last_status"] == 500 and rows[0]["attempts"] == 1
    failed = json.loads(runner.invoke(app, ["webhooks", "list", "--status", "failed",
                                            "--json"]).stdout)
    assert [r["id"] for r in failed] == [rows[0]["id"]]
    table = runner.invoke(app, ["webhooks", "list"])
    assert table.exit_code == 0 and rows[0]["id"] in table.output

    retried = runner.invoke(app, ["webhooks", "retry", rows[0]["id"]])
    assert retried.exit_code == 0, retried.output
    assert runner.invoke(app, ["webhooks", "retry", rows[0]["id"]]).exit_code == 1  # pending
    assert "no webhook delivery" in runner.invoke(app, ["webhooks", "retry", "abc"]).output
    delivered = runner.invoke(app, ["webhooks", "deliver"])
    assert delivered.exit_code == 0, delivered.output
    assert "sent 1" in delivered.output
    assert [r.path for r in receiver.received] == ["/good", "/bad", "/bad"]


@pytest.mark.usefixtures("cli_env")
def test_cli_refuses_to_send_unsigned(monkeypatch: pytest.MonkeyPatch,
                                      receiver: Receiver) -> None:
    monkeypatch.delenv("ASSISTANT_WEBHOOK_SECRET")
    get_settings.cache_clear()
    for args in (["webhooks", "deliver"], ["webhooks", "test", receiver.url()]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert "ASSISTANT_WEBHOOK_SECRET" in result.output
    assert receiver.received == []
