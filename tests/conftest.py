"""Shared fixtures: real SQLite and Chroma in temp dirs, a deterministic embedder, a tiny KB."""

from __future__ import annotations

import os
import socket
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import chromadb
import pytest
import uvicorn
from chromadb.config import Settings as ChromaSettings
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine

from assistant.config import Settings
from assistant.embeddings import HashingEmbedder
from assistant.runtime import Runtime, build_runtime
from assistant.storage.db import make_engine, migrate
from assistant.storage.handoff_repo import HandoffStore
from assistant.storage.repos import Store
from assistant.understanding.components import train_on_taxonomy
from assistant.understanding.taxonomy import load_taxonomy
from assistant.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

ARTICLES = {
    "account/reset-password.md": """\
        ---
        title: Reset your password
        url: https://help.example.test/account/reset-password
        tags: [account, password]
        updated: 2026-01-10
        audience: public
        ---
        # Reset your password

        If you forgot your password, you can reset it from the sign-in page.

        ## Steps

        1. Open the sign-in page and click **Forgot password**.
        2. Enter the email address of your account.
        3. Open the reset link we email you within 30 minutes.
        4. Choose a new password of at least 12 characters.

        ## Still no email?

        Check your spam folder. Reset links expire after 30 minutes.
        """,
    "billing/refunds.md": """\
        ---
        title: Refunds
        url: https://help.example.test/billing/refunds
        tags: [billing, refund]
        updated: 2026-02-01
        ---
        # Refunds

        Annual plans can be refunded in full within 14 days of purchase.
        Monthly plans are not refunded, but you keep access until the end of the period.
        To request a refund, write to billing with your invoice number.
        """,
    "integrations/slack.md": """\
        ---
        title: Connect Slack
        url: https://help.example.test/integrations/slack
        tags: [integrations, slack]
        ---
        # Connect Slack

        Send dashboard alerts to a Slack channel.

        1. Go to **Settings > Integrations > Slack**.
        2. Click **Connect** and approve the Slack permissions.
        3. Pick the channel that should receive alerts.
        """,
    "account/scim.md": """\
        ---
        title: SCIM provisioning
        url: https://help.example.test/account/scim
        audience: [enterprise]
        ---
        # SCIM provisioning

        The SCIM base URL is https://scim.example.test/v2 and tokens start with scim_.
        Create the SCIM token under Settings > Security > SCIM.
        """,
    "account/ownership.md": """\
        ---
        title: Transfer workspace ownership
        url: https://help.example.test/account/ownership
        audience: verified
        ---
        # Transfer workspace ownership

        The owner opens Settings > General > Transfer ownership and picks the new owner.
        """,
}


def write_kb(directory: Path, articles: dict[str, str] | None = None) -> Path:
    """Write articles (path -> dedented text) under ``directory``."""
    for rel, text in (articles or ARTICLES).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    return write_kb(tmp_path / "kb")


ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def intent_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The taxonomy's intent model for the hashing embedder, trained once per session."""
    directory = tmp_path_factory.mktemp("intent-model")
    train_on_taxonomy(load_taxonomy(), HashingEmbedder()).save(directory)
    return directory


@pytest.fixture
def settings(tmp_path: Path, kb_dir: Path, intent_model_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", kb_dir=kb_dir, answer_min_confidence=0.0,
        intent_model_dir=intent_model_dir, admin_token=ADMIN_TOKEN,
        # One test client makes hundreds of requests from one address in well under a
        # minute; test_rate_limits.py checks the limits with small budgets.
        ip_rate_limit_per_minute=1_000_000,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def chroma_client(tmp_path: Path) -> chromadb.api.ClientAPI:
    return chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )


@pytest.fixture
def runtime(settings: Settings, embedder: HashingEmbedder, chroma_client) -> Iterator[Runtime]:
    rt = build_runtime(settings, embedder=embedder, chroma_client=chroma_client)
    rt.ingest()
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


@pytest.fixture
def conversation(client: TestClient) -> dict[str, str]:
    """A started anonymous conversation: {id, token}."""
    response = client.post("/v1/conversations", json={})
    assert response.status_code == 201, response.text
    return response.json()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


AGENT_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class TestAgent:
    __test__ = False  # a helper record, not a test class

    id: str
    name: str
    email: str
    token: str  # an API token
    password: str = AGENT_PASSWORD


def make_agent(runtime: Runtime, name: str = "Alex Agent", *, teams: tuple[str, ...] = (
        "support", "billing", "retention"), role: str = "agent", online: bool = True,
        capacity: int = 5) -> TestAgent:
    """An agent account with an API token, created through the same store the CLI uses."""
    from assistant.identity import hash_token, new_conversation_token
    from assistant.passwords import hash_password

    email = f"{name.split()[0].lower()}-{uuid.uuid4().hex[:6]}@example.com"
    record = runtime.handoffs.create_agent(
        email=email, name=name, role=role, password_hash=hash_password(AGENT_PASSWORD),
        teams=list(teams), capacity=capacity,
    )
    if online:
        runtime.handoffs.set_online(record.id, True)
    token = new_conversation_token()
    runtime.handoffs.add_token(record.id, hash_token(token), "tests")
    return TestAgent(id=record.id, name=name, email=email, token=token)


@pytest.fixture
def agent(runtime: Runtime) -> TestAgent:
    """An online agent of every team, with an API token."""
    return make_agent(runtime)


@dataclass
class LiveServer:
    """A real uvicorn server on loopback serving the test runtime (for SSE and browsers)."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(runtime=runtime), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(500):
        if server.started:
            started.set()
            break
        started.wait(0.01)
    assert server.started, "uvicorn did not start"
    yield LiveServer(url=f"http://127.0.0.1:{port}", server=server, thread=thread)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def postgres_url() -> str | None:
    return os.environ.get("ASSISTANT_TEST_DATABASE_URL")


# -- storage backends: every storage test runs on SQLite, and on PostgreSQL when
# ASSISTANT_TEST_DATABASE_URL is set (each test in a fresh schema) -------------------------


@dataclass
class Backend:
    name: str
    engine: Engine
    store: Store
    handoffs: HandoffStore
    url: str
    connect_args: dict

    def new_engine(self) -> Engine:
        """Another engine on the same database, as a second process would have."""
        return make_engine(self.url, connect_args=self.connect_args)


def sqlite_backend(tmp_path: Path) -> Iterator[Backend]:
    url = f"sqlite:///{tmp_path / 'nested' / 'assistant.db'}"
    engine = make_engine(url)
    migrate(engine)
    yield Backend("sqlite", engine, Store(engine), HandoffStore(engine), url, {})
    engine.dispose()


def _postgres_backend() -> Iterator[Backend]:
    url = postgres_url()
    if not url:
        pytest.skip("set ASSISTANT_TEST_DATABASE_URL to a PostgreSQL URL to run these")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        connect_args = {"options": f"-csearch_path={schema}"}
        engine = make_engine(url, connect_args=connect_args)
        try:
            migrate(engine)
            yield Backend(
                "postgresql", engine, Store(engine), HandoffStore(engine), url, connect_args
            )
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield from sqlite_backend(tmp_path)
    else:
        yield from _postgres_backend()
