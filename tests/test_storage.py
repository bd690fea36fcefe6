"""Storage layer tests, on SQLite always and on PostgreSQL when
``ASSISTANT_TEST_DATABASE_URL`` names a database (each test gets its own schema)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import Backend
from sqlalchemy import inspect, text

from assistant.errors import (
    Conflict,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
)
from assistant.storage.db import make_engine, migrate
from assistant.storage.repos import Store
from assistant.storage.tables import Base, IdempotencyKey

STALE = timedelta(seconds=60)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def _conversation(store: Store, customer_id: str | None = None) -> str:
    token_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    return store.create_conversation(customer_id=customer_id, token_hash=token_hash).id


def _begin(store: Store, conversation_id: str, text_: str = "hello", key: str | None = "k1"):
    return store.begin_customer_message(
        conversation_id=conversation_id,
        text=text_,
        idempotency_key=key,
        request_hash=hashlib.sha256(text_.encode()).hexdigest(),
        stale_after=STALE,
    )


# -- schema -----------------------------------------------------------------------------


def test_migrations_match_models(backend: Backend):
    with backend.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
    tables = set(inspect(backend.engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_migrate_is_idempotent(backend: Backend):
    migrate(backend.engine)
    with backend.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"


def test_sqlite_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert (tmp_path / "a" / "b" / "x.db").exists()
    finally:
        engine.dispose()


def test_sqlite_writers_queue_in_process_and_always_release(tmp_path):
    from assistant.storage.db import session_factory

    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    write = session_factory(engine)
    try:
        with write.begin() as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
        with pytest.raises(ZeroDivisionError), write.begin() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
            1 / 0  # noqa: B018 - a failing transaction must give the lock back
        inside = threading.Event()
        release = threading.Event()
        order: list[str] = []

        def holder() -> None:
            with write.begin() as session:
                session.execute(text("INSERT INTO t VALUES (2)"))
                inside.set()
                release.wait(5)
                order.append("holder commits")

        def waiter() -> None:
            with write.begin() as session:
                session.execute(text("INSERT INTO t VALUES (3)"))  # BEGIN IMMEDIATE here
                order.append("waiter wrote")

        first = threading.Thread(target=holder)
        first.start()
        assert inside.wait(5)
        second = threading.Thread(target=waiter)
        second.start()
        second.join(0.2)
        assert second.is_alive()  # queued behind the open write transaction
        release.set()
        first.join(5)
        second.join(5)
        assert order == ["holder commits", "waiter wrote"]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [2, 3]
    finally:
        engine.dispose()


def test_sqlite_in_memory_migrates_and_works():
    engine = make_engine("sqlite://")
    try:
        migrate(engine)
        store = Store(engine)
        conversation_id = _conversation(store)
        store.add_message(conversation_id=conversation_id, role="system", text="hi")
        assert store.count_messages() == 1
    finally:
        engine.dispose()


def test_timestamps_are_utc_aware(store: Store):
    customer = store.create_customer(
        external_id=None, email=None, name=None, plan=None, verified=False
    )
    loaded = store.get_customer(customer.id)
    assert loaded is not None
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert abs(loaded.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_integrity_ok(store: Store):
    assert store.integrity_ok() is True


# -- customers and conversations ------------------------------------------------------


def test_customer_upsert(store: Store):
    first = store.upsert_customer(
        external_id="ext-1", email="a@example.com", name="Ann", plan="free", verified=False
    )
    second = store.upsert_customer(
        external_id="ext-1", email="b@example.com", name="Ann B", plan="pro", verified=True
    )
    assert second.id == first.id
    assert (second.email, second.name, second.plan, second.verified) == (
        "b@example.com",
        "Ann B",
        "pro",
        True,
    )
    assert store.get_customer(first.id) == second
    other = store.upsert_customer(
        external_id="ext-2", email=None, name=None, plan=None, verified=False
    )
    assert other.id != first.id
    anon_a = store.upsert_customer(
        external_id=None, email=None, name=None, plan=None, verified=False
    )
    anon_b = store.upsert_customer(
        external_id=None, email=None, name=None, plan=None, verified=False
    )
    assert anon_a.id != anon_b.id
    assert len(first.id) == 32
    assert store.get_customer("missing") is None


def test_create_customer_duplicate_external_id(store: Store):
    store.create_customer(external_id="dup", email=None, name=None, plan=None, verified=False)
    with pytest.raises(Conflict):
        store.create_customer(external_id="dup", email=None, name=None, plan=None, verified=True)


def test_concurrent_upserts_create_one_customer(store: Store):
    barrier = threading.Barrier(8)
    ids: list[str] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            record = store.upsert_customer(
                external_id="same", email=f"{i}@example.com", name=None, plan=None, verified=False
            )
            ids.append(record.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1


def test_conversation_and_token_hash(store: Store):
    customer = store.create_customer(
        external_id=None, email=None, name=None, plan=None, verified=False
    )
    token_hash = hashlib.sha256(b"secret-token").hexdigest()
    conversation = store.create_conversation(customer_id=customer.id, token_hash=token_hash)
    assert conversation.status == "bot"
    assert conversation.customer_id == customer.id
    assert store.get_conversation(conversation.id) == conversation
    assert store.conversation_and_token_hash(conversation.id) == (conversation, token_hash)
    assert store.conversation_and_token_hash("missing") is None
    assert store.get_conversation("missing") is None
    anonymous = store.create_conversation(customer_id=None, token_hash=token_hash)
    assert anonymous.customer_id is None
    with pytest.raises(NotFound):
        store.create_conversation(customer_id="nobody", token_hash=token_hash)


# -- messages and events ---------------------------------------------------------------


def test_message_order_and_after(store: Store):
    a = _conversation(store)
    b = _conversation(store)
    ids_a = []
    for i in range(5):
        ids_a.append(store.add_message(conversation_id=a, role="customer", text=f"a{i}").id)
        store.add_message(conversation_id=b, role="agent", text=f"b{i}", annotations={"i": i})
    messages = store.list_messages(conversation_id=a)
    assert [m.id for m in messages] == ids_a == sorted(ids_a)
    assert [m.text for m in messages] == [f"a{i}" for i in range(5)]
    assert messages[0].annotations == {}
    assert [m.text for m in store.list_messages(conversation_id=a, after=ids_a[2])] == ["a3", "a4"]
    assert store.list_messages(conversation_id=a, after=ids_a[-1]) == []
    assert [m.text for m in store.list_messages(conversation_id=a, limit=2)] == ["a0", "a1"]
    assert store.list_messages(conversation_id=b)[3].annotations == {"i": 3}
    assert store.count_messages(conversation_id=a) == 5
    assert store.count_messages() == 10
    conversation = store.get_conversation(a)
    assert conversation is not None
    assert conversation.updated_at >= conversation.created_at


def test_add_message_validation(store: Store):
    conversation_id = _conversation(store)
    with pytest.raises(InvalidInput):
        store.add_message(conversation_id=conversation_id, role="robot", text="x")
    with pytest.raises(NotFound):
        store.add_message(conversation_id="missing", role="agent", text="x")


def test_events_append_and_list(store: Store):
    conversation_id = _conversation(store)
    first = store.append_event(type="handoff.requested", conversation_id=conversation_id)
    second = store.append_event(
        type="feedback", conversation_id=conversation_id, customer_id="c1", payload={"up": True}
    )
    third = store.append_event(type="feedback", payload={"up": False})
    assert first < second < third
    events = store.list_events()
    assert [e.id for e in events] == [first, second, third]
    assert events[0].payload == {}
    assert events[1].customer_id == "c1"
    assert [e.id for e in store.list_events(type="feedback")] == [second, third]
    assert [e.id for e in store.list_events(conversation_id=conversation_id)] == [first, second]
    assert [e.id for e in store.list_events(conversation_id=conversation_id, type="feedback")] == [
        second
    ]
    assert [e.id for e in store.list_events(limit=1)] == [first]
    assert events[2].created_at.tzinfo is not None


# -- idempotent messages ---------------------------------------------------------------


def test_begin_without_key_always_new(store: Store):
    conversation_id = _conversation(store)
    one = _begin(store, conversation_id, key=None)
    two = _begin(store, conversation_id, key=None)
    assert one.kind == two.kind == "new"
    assert one.customer_message.id != two.customer_message.id
    assert one.customer_message.role == "customer"
    assert one.reply_message is None
    events = store.list_events(conversation_id=conversation_id, type="message.received")
    assert [e.payload for e in events] == [
        {"message_id": one.customer_message.id, "chars": 5},
        {"message_id": two.customer_message.id, "chars": 5},
    ]


def test_begin_new_then_in_progress_then_mismatch(store: Store):
    conversation_id = _conversation(store)
    first = _begin(store, conversation_id, "hello", key="k1")
    assert first.kind == "new"
    assert first.customer_message.text == "hello"
    with pytest.raises(IdempotencyInProgress):
        _begin(store, conversation_id, "hello", key="k1")
    with pytest.raises(IdempotencyMismatch, match="different"):
        _begin(store, conversation_id, "other body", key="k1")
    # Keys are scoped to a conversation.
    elsewhere = _begin(store, _conversation(store), "hello", key="k1")
    assert elsewhere.kind == "new"
    assert store.count_messages(conversation_id=conversation_id) == 1


def test_begin_key_validation(store: Store):
    conversation_id = _conversation(store)
    with pytest.raises(InvalidInput):
        _begin(store, conversation_id, key="")
    with pytest.raises(InvalidInput):
        _begin(store, conversation_id, key="x" * 256)
    assert _begin(store, conversation_id, key="x" * 255).kind == "new"
    with pytest.raises(NotFound):
        _begin(store, "missing", key="k")


def test_resume_after_stale(backend: Backend):
    store = backend.store
    conversation_id = _conversation(store)
    first = _begin(store, conversation_id, key="k1")
    # Age the pending row past the stale limit, as if its worker had died.
    with backend.engine.begin() as conn:
        conn.execute(
            IdempotencyKey.__table__.update().values(
                updated_at=datetime.now(UTC) - timedelta(minutes=5)
            )
        )
    resumed = _begin(store, conversation_id, key="k1")
    assert resumed.kind == "resume"
    assert resumed.customer_message == first.customer_message
    assert resumed.reply_message is None
    # Resuming refreshed the row: a second caller now sees it in progress.
    with pytest.raises(IdempotencyInProgress):
        _begin(store, conversation_id, key="k1")
    assert store.count_messages(conversation_id=conversation_id) == 1


def test_record_reply_then_replay(store: Store):
    conversation_id = _conversation(store)
    begun = _begin(store, conversation_id, key="k1")
    reply = store.record_reply(
        conversation_id=conversation_id,
        text="an answer",
        annotations={"sources": ["kb/a.md"], "confidence": 0.9},
        idempotency_key="k1",
        customer_message_id=begun.customer_message.id,
    )
    assert reply.role == "assistant"
    assert reply.annotations == {"sources": ["kb/a.md"], "confidence": 0.9}
    replay = _begin(store, conversation_id, key="k1")
    assert replay.kind == "replay"
    assert replay.customer_message == begun.customer_message
    assert replay.reply_message == reply
    with pytest.raises(IdempotencyMismatch):
        _begin(store, conversation_id, "changed", key="k1")
    (event,) = store.list_events(conversation_id=conversation_id, type="answer.sent")
    assert event.payload == {"message_id": reply.id, "reply_to": begun.customer_message.id,
                             "conversation_status": "bot"}
    # A late duplicate reply (a stale attempt finishing) stores nothing new.
    again = store.record_reply(
        conversation_id=conversation_id,
        text="second answer",
        annotations={},
        idempotency_key="k1",
        customer_message_id=begun.customer_message.id,
    )
    assert again == reply
    assert [m.role for m in store.list_messages(conversation_id=conversation_id)] == [
        "customer",
        "assistant",
    ]


def test_record_reply_without_key(store: Store):
    conversation_id = _conversation(store)
    begun = _begin(store, conversation_id, key=None)
    reply = store.record_reply(
        conversation_id=conversation_id,
        text="ok",
        annotations={},
        idempotency_key=None,
        customer_message_id=begun.customer_message.id,
    )
    assert [m.id for m in store.list_messages(conversation_id=conversation_id)] == [
        begun.customer_message.id,
        reply.id,
    ]
    with pytest.raises(NotFound):
        store.record_reply(
            conversation_id=conversation_id,
            text="ok",
            annotations={},
            idempotency_key="never-begun",
            customer_message_id=begun.customer_message.id,
        )


def test_concurrent_same_key_yields_one_new(store: Store):
    conversation_id = _conversation(store)
    workers = 16
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        try:
            kind = _begin(store, conversation_id, "same body", key="same-key").kind
            with lock:
                outcomes.append(kind)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["new"]
    assert len(errors) == workers - 1
    assert all(isinstance(e, IdempotencyInProgress) for e in errors), errors
    assert store.count_messages(conversation_id=conversation_id) == 1
    assert len(store.list_events(conversation_id=conversation_id)) == 1


def test_concurrent_writers_do_not_fail(store: Store):
    conversation_ids = [_conversation(store) for _ in range(4)]
    workers = 16
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            for j in range(5):
                _begin(store, conversation_ids[i % 4], f"m{i}-{j}", key=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_messages() == workers * 5
    assert store.integrity_ok()


def test_messages_are_held_while_a_person_owns_the_conversation(backend: Backend):
    store = backend.store
    conversation_id = _conversation(store)
    hold = frozenset({"waiting", "agent"})
    kwargs = {"request_hash": "h", "stale_after": STALE, "hold_when": hold}
    assert store.begin_customer_message(conversation_id=conversation_id, text="hi",
                                        idempotency_key="a", **kwargs).kind == "new"
    with backend.engine.begin() as conn:
        conn.execute(text("UPDATE conversations SET status = 'waiting' WHERE id = :id"),
                     {"id": conversation_id})
    held = store.begin_customer_message(conversation_id=conversation_id, text="still there?",
                                        idempotency_key="b", **kwargs)
    assert held.kind == "held" and held.reply_message is None
    replay = store.begin_customer_message(conversation_id=conversation_id, text="still there?",
                                          idempotency_key="b", **kwargs)
    assert (replay.kind, replay.reply_message) == ("replay", None)
    assert replay.customer_message.id == held.customer_message.id
    assert store.count_messages(conversation_id=conversation_id) == 2
