"""Hand-off storage tests (agents, tokens, sessions, handoffs), on SQLite always and on
PostgreSQL when ``ASSISTANT_TEST_DATABASE_URL`` names a database (each test gets its own
schema)."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Backend, sqlite_backend
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from assistant.errors import Conflict, InvalidInput, NotFound
from assistant.storage.db import make_engine, migrate
from assistant.storage.handoff_repo import HandoffStore
from assistant.storage.records import HandoffRecord
from assistant.storage.repos import Store
from assistant.storage.tables import Handoff, new_id


@pytest.fixture
def hs(backend: Backend) -> HandoffStore:
    return backend.handoffs


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _conversation(store: Store) -> str:
    customer = store.create_customer(
        external_id=None, email=None, name=None, plan=None, verified=False
    )
    return store.create_conversation(customer_id=customer.id, token_hash=_sha(new_id())).id


def _agent(hs: HandoffStore, email: str = "ann@example.com", **kwargs):
    args = {
        "name": "Ann",
        "role": "agent",
        "password_hash": "hash",
        "teams": ["support"],
        "capacity": 3,
    }
    args.update(kwargs)
    return hs.create_agent(email=email, **args)


def _due(minutes: int = 10) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def _enqueue(hs: HandoffStore, conversation_id: str, **kwargs):
    args = {
        "team": "support",
        "priority": 2,
        "reasons": ["customer_asked"],
        "evidence": {"message_id": 1},
        "due_at": _due(),
    }
    args.update(kwargs)
    return hs.enqueue(conversation_id=conversation_id, **args)


def _status(backend: Backend, conversation_id: str) -> str:
    conversation = backend.store.get_conversation(conversation_id)
    assert conversation is not None
    return conversation.status


def _event_types(backend: Backend, conversation_id: str) -> list[str]:
    return [
        e.type
        for e in backend.store.list_events(conversation_id=conversation_id)
        if e.type.startswith("handoff.")
    ]


# -- agents -----------------------------------------------------------------------------


def test_create_and_load_agents(hs: HandoffStore):
    ann = _agent(hs, " Ann@Example.COM ", teams=["support", "billing", "support"])
    assert len(ann.id) == 32
    assert ann.email == "ann@example.com"
    assert ann.teams == ("support", "billing")
    assert (ann.role, ann.capacity, ann.online, ann.active) == ("agent", 3, False, True)
    assert ann.created_at.tzinfo is not None
    assert "hash" not in repr(ann)
    assert hs.get_agent(ann.id) == ann
    assert hs.agent_by_email("ANN@example.com") == ann
    assert hs.get_agent("missing") is None
    assert hs.agent_by_email("nobody@example.com") is None
    bob = _agent(hs, "bob@example.com", role="admin", teams=[], capacity=0)
    assert [a.id for a in hs.list_agents()] == [ann.id, bob.id]
    with pytest.raises(Conflict):
        _agent(hs, "ANN@example.com")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"email": "no-at-sign"},
        {"email": " "},
        {"name": ""},
        {"role": "boss"},
        {"password_hash": ""},
        {"teams": ["ok", " "]},
        {"teams": "support"},
        {"capacity": -1},
        {"capacity": True},
    ],
)
def test_create_agent_validation(hs: HandoffStore, kwargs):
    kwargs = dict(kwargs)
    email = kwargs.pop("email", "x@example.com")
    with pytest.raises(InvalidInput):
        _agent(hs, email, **kwargs)
    assert hs.list_agents() == []


def test_set_online(hs: HandoffStore):
    ann = _agent(hs)
    assert hs.set_online(ann.id, True).online is True
    assert hs.get_agent(ann.id).online is True
    assert hs.set_online(ann.id, False).online is False
    with pytest.raises(NotFound):
        hs.set_online("missing", True)


# -- tokens and sessions ----------------------------------------------------------------


def test_tokens(hs: HandoffStore):
    ann = _agent(hs)
    token = _sha("secret")
    hs.add_token(ann.id, token, "zapier")
    with pytest.raises(Conflict):
        hs.add_token(ann.id, token, "again")
    with pytest.raises(NotFound):
        hs.add_token("missing", _sha("other"), "x")
    with pytest.raises(InvalidInput):
        hs.add_token(ann.id, _sha("other"), " ")
    assert hs.agent_for_token(token) == ann
    assert hs.agent_for_token(_sha("unknown")) is None
    hs.revoke_token(token)
    hs.revoke_token(token)  # idempotent
    assert hs.agent_for_token(token) is None
    with pytest.raises(NotFound):
        hs.revoke_token(_sha("unknown"))


def test_token_records_last_use(backend: Backend, hs: HandoffStore):
    from assistant.storage.tables import AgentToken

    ann = _agent(hs)
    hs.add_token(ann.id, _sha("t"), "ci")
    with backend.engine.connect() as conn:
        assert conn.execute(AgentToken.__table__.select()).one().last_used_at is None
    before = datetime.now(UTC)
    hs.agent_for_token(_sha("t"))
    with backend.engine.connect() as conn:
        used = conn.execute(AgentToken.__table__.select()).one().last_used_at
    assert used is not None
    assert used >= before - timedelta(seconds=1)


def test_sessions(hs: HandoffStore):
    ann = _agent(hs)
    now = datetime.now(UTC)
    hs.create_session(ann.id, _sha("cookie"), now + timedelta(hours=8))
    assert hs.agent_for_session(_sha("cookie"), now) == ann
    assert hs.agent_for_session(_sha("cookie"), now + timedelta(hours=8)) is None  # expired
    assert hs.agent_for_session(_sha("other"), now) is None
    with pytest.raises(Conflict):
        hs.create_session(ann.id, _sha("cookie"), now + timedelta(hours=1))
    with pytest.raises(NotFound):
        hs.create_session("missing", _sha("x"), now + timedelta(hours=1))
    with pytest.raises(InvalidInput):
        hs.create_session(ann.id, _sha("naive"), datetime(2030, 1, 1))
    assert hs.delete_session(_sha("cookie")) is True
    assert hs.delete_session(_sha("cookie")) is False
    assert hs.agent_for_session(_sha("cookie"), now) is None


# -- enqueue ----------------------------------------------------------------------------


def test_enqueue_creates_handoff(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    due = _due(15)
    handoff = _enqueue(hs, conversation_id, priority=3, due_at=due, evidence={"score": 0.9})
    assert len(handoff.id) == 32
    assert (handoff.status, handoff.team, handoff.priority, handoff.version) == (
        "queued",
        "support",
        3,
        1,
    )
    assert handoff.reasons == ("customer_asked",)
    assert handoff.evidence == {"score": 0.9}
    assert handoff.due_at == due.replace(microsecond=due.microsecond)
    assert handoff.agent_id is None
    assert handoff.claimed_at is handoff.resolved_at is handoff.first_reply_at is None
    assert hs.get(handoff.id) == handoff
    assert hs.get("missing") is None
    assert hs.open_for_conversation(conversation_id) == handoff
    assert _status(backend, conversation_id) == "waiting"
    (event,) = backend.store.list_events(conversation_id=conversation_id, type="handoff.enqueued")
    assert event.payload["handoff_id"] == handoff.id
    assert event.payload["merged"] is False
    assert event.customer_id is not None


def test_enqueue_is_idempotent_per_conversation(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    first = _enqueue(hs, conversation_id, priority=1, reasons=["a"], evidence={"x": 1})
    later = _due(60)
    second = _enqueue(
        hs, conversation_id, priority=3, reasons=["b", "a"], evidence={"y": 2}, due_at=later
    )
    assert second.id == first.id
    assert second.priority == 3
    assert second.reasons == ("a", "b")
    assert second.evidence == {"x": 1, "y": 2}
    assert second.due_at == first.due_at  # the earlier deadline stays
    assert second.version == 2
    third = _enqueue(hs, conversation_id, priority=0, reasons=["a"], evidence={})
    assert (third.id, third.priority, third.version) == (first.id, 3, 2)  # nothing changed
    assert [h.id for h in hs.queue()] == [first.id]
    # An assigned handoff is still the open one; enqueueing again leaves it assigned.
    agent = _agent(hs)
    hs.claim(first.id, agent.id)
    again = _enqueue(hs, conversation_id, reasons=["c"])
    assert (again.id, again.status) == (first.id, "assigned")
    assert _status(backend, conversation_id) == "agent"
    events = backend.store.list_events(conversation_id=conversation_id, type="handoff.enqueued")
    assert [e.payload["merged"] for e in events] == [False, True, True, True]
    # Once closed, a new handoff can be opened.
    hs.resolve(first.id, agent.id, "done")
    fresh = _enqueue(hs, conversation_id)
    assert fresh.id != first.id
    assert fresh.status == "queued"


def test_enqueue_validation(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    for kwargs in (
        {"priority": 5},
        {"priority": -1},
        {"priority": True},
        {"team": ""},
        {"reasons": ["ok", ""]},
        {"reasons": "customer_asked"},
        {"due_at": datetime(2030, 1, 1)},
    ):
        with pytest.raises(InvalidInput):
            _enqueue(hs, conversation_id, **kwargs)
    with pytest.raises(NotFound):
        _enqueue(hs, "missing")
    assert hs.open_for_conversation(conversation_id) is None
    assert _status(backend, conversation_id) == "bot"


def test_db_allows_one_open_handoff_per_conversation(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    _enqueue(hs, conversation_id)
    now = datetime.now(UTC)
    row = {
        "conversation_id": conversation_id,
        "status": "queued",
        "team": "support",
        "priority": 1,
        "reasons": [],
        "evidence": {},
        "created_at": now,
        "due_at": now,
        "version": 1,
    }
    with pytest.raises(IntegrityError), backend.engine.begin() as conn:
        conn.execute(insert(Handoff), [{**row, "id": new_id()}])
    with pytest.raises(IntegrityError), backend.engine.begin() as conn:
        conn.execute(insert(Handoff), [{**row, "id": new_id(), "status": "assigned"}])
    # Closed handoffs do not count.
    with backend.engine.begin() as conn:
        conn.execute(
            insert(Handoff),
            [{**row, "id": new_id(), "status": s} for s in ("resolved", "returned", "resolved")],
        )
    # The check constraints hold too.
    with pytest.raises(IntegrityError), backend.engine.begin() as conn:
        conn.execute(insert(Handoff), [{**row, "id": new_id(), "status": "weird"}])


def test_concurrent_enqueues_make_one_handoff(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    workers = 8
    barrier = threading.Barrier(workers)
    ids: list[str] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            ids.append(_enqueue(hs, conversation_id, priority=i % 5, reasons=[f"r{i}"]).id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1
    handoff = hs.open_for_conversation(conversation_id)
    assert handoff is not None
    assert handoff.priority == 4
    assert sorted(handoff.reasons) == sorted(f"r{i}" for i in range(workers))


# -- queue ------------------------------------------------------------------------------


def test_queue_order_and_filters(backend: Backend, hs: HandoffStore):
    made = {}
    for label, team, priority in [
        ("low-old", "support", 1),
        ("high-old", "support", 4),
        ("mid", "billing", 2),
        ("high-new", "support", 4),
        ("low-new", "support", 1),
    ]:
        made[label] = _enqueue(hs, _conversation(backend.store), team=team, priority=priority).id
    order = [h.id for h in hs.queue()]
    assert order == [made[k] for k in ("high-old", "high-new", "mid", "low-old", "low-new")]
    assert [h.id for h in hs.queue(team="billing")] == [made["mid"]]
    assert hs.queue(team="nobody") == []
    assert [h.id for h in hs.queue(limit=2)] == [made["high-old"], made["high-new"]]
    agent = _agent(hs)
    hs.claim(made["high-old"], agent.id)
    assert made["high-old"] not in [h.id for h in hs.queue()]


# -- claim and the other transitions ----------------------------------------------------


def test_claim(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    handoff = _enqueue(hs, conversation_id)
    ann = _agent(hs)
    bob = _agent(hs, "bob@example.com")
    claimed = hs.claim(handoff.id, ann.id)
    assert (claimed.status, claimed.agent_id, claimed.version) == ("assigned", ann.id, 2)
    assert claimed.claimed_at is not None
    assert claimed.claimed_at >= claimed.created_at
    assert _status(backend, conversation_id) == "agent"
    assert hs.assigned_count(ann.id) == 1
    assert hs.assigned_count(bob.id) == 0
    with pytest.raises(Conflict, match=f"already claimed by agent {ann.id}"):
        hs.claim(handoff.id, bob.id)
    with pytest.raises(NotFound):
        hs.claim("missing", ann.id)
    with pytest.raises(NotFound):
        hs.claim(handoff.id, "no-agent")
    (event,) = backend.store.list_events(conversation_id=conversation_id, type="handoff.claimed")
    assert event.payload["handoff_id"] == handoff.id
    assert event.payload["agent_id"] == ann.id
    assert event.payload["wait_seconds"] >= 0
    assert event.payload["overdue"] is False


def test_claim_by_deactivated_agent(backend: Backend, hs: HandoffStore):
    from assistant.storage.tables import Agent

    handoff = _enqueue(hs, _conversation(backend.store))
    ann = _agent(hs)
    with backend.engine.begin() as conn:
        conn.execute(Agent.__table__.update().values(active=False))
    with pytest.raises(Conflict, match="deactivated"):
        hs.claim(handoff.id, ann.id)
    assert hs.get(handoff.id).status == "queued"


def test_claim_respects_capacity(backend: Backend, hs: HandoffStore):
    first, second = (_enqueue(hs, _conversation(backend.store)) for _ in range(2))
    ann = _agent(hs, capacity=1)
    hs.claim(first.id, ann.id)
    with pytest.raises(Conflict, match="capacity is 1"):
        hs.claim(second.id, ann.id)
    assert hs.get(second.id).status == "queued"
    hs.resolve(first.id, ann.id, "solved")
    assert hs.claim(second.id, ann.id).status == "assigned"


def test_concurrent_claims_by_one_agent_stay_within_capacity(backend: Backend):
    handoffs = [_enqueue(backend.handoffs, _conversation(backend.store)) for _ in range(6)]
    ann = _agent(backend.handoffs, capacity=2)
    won, errors = _claim_together(backend, [(handoff.id, ann.id) for handoff in handoffs])
    assert all(isinstance(error, Conflict) for error in errors), errors
    assert len(won) == 2
    assert backend.handoffs.assigned_count(ann.id) == 2


def test_release(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    handoff = _enqueue(hs, conversation_id)
    ann = _agent(hs)
    bob = _agent(hs, "bob@example.com")
    with pytest.raises(Conflict, match="queued"):
        hs.release(handoff.id, ann.id)
    hs.claim(handoff.id, ann.id)
    with pytest.raises(Conflict, match="another agent"):
        hs.release(handoff.id, bob.id)
    released = hs.release(handoff.id, ann.id)
    assert (released.status, released.agent_id, released.claimed_at) == ("queued", None, None)
    assert released.version == 3
    assert _status(backend, conversation_id) == "waiting"
    assert hs.assigned_count(ann.id) == 0
    assert hs.claim(handoff.id, bob.id).agent_id == bob.id
    with pytest.raises(NotFound):
        hs.release("missing", ann.id)
    assert _event_types(backend, conversation_id) == [
        "handoff.enqueued",
        "handoff.claimed",
        "handoff.released",
        "handoff.claimed",
    ]


def test_reassign(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    handoff = _enqueue(hs, conversation_id)
    ann = _agent(hs)
    bob = _agent(hs, "bob@example.com")
    to_ann = hs.reassign(handoff.id, ann.id)  # straight from the queue
    assert (to_ann.status, to_ann.agent_id) == ("assigned", ann.id)
    assert _status(backend, conversation_id) == "agent"
    with pytest.raises(Conflict, match="already assigned"):
        hs.reassign(handoff.id, ann.id)
    to_bob = hs.reassign(handoff.id, bob.id)
    assert to_bob.agent_id == bob.id
    assert to_bob.version == 3
    assert (hs.assigned_count(ann.id), hs.assigned_count(bob.id)) == (0, 1)
    with pytest.raises(NotFound):
        hs.reassign(handoff.id, "no-agent")
    with pytest.raises(NotFound):
        hs.reassign("missing", ann.id)
    events = backend.store.list_events(conversation_id=conversation_id, type="handoff.reassigned")
    assert [(e.payload["from_agent_id"], e.payload["agent_id"]) for e in events] == [
        (None, ann.id),
        (ann.id, bob.id),
    ]
    hs.resolve(handoff.id, bob.id, "done")
    with pytest.raises(Conflict, match="resolved"):
        hs.reassign(handoff.id, ann.id)


def test_resolve(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    handoff = _enqueue(hs, conversation_id)
    ann = _agent(hs)
    bob = _agent(hs, "bob@example.com")
    with pytest.raises(Conflict):
        hs.resolve(handoff.id, ann.id, "done")  # not claimed yet
    hs.claim(handoff.id, ann.id)
    with pytest.raises(Conflict, match="another agent"):
        hs.resolve(handoff.id, bob.id, "done")
    with pytest.raises(InvalidInput):
        hs.resolve(handoff.id, ann.id, " ")
    resolved = hs.resolve(handoff.id, ann.id, "refund_issued")
    assert (resolved.status, resolved.resolution_code, resolved.agent_id) == (
        "resolved",
        "refund_issued",
        ann.id,
    )
    assert resolved.resolved_at is not None
    assert resolved.returned_at is None
    assert _status(backend, conversation_id) == "resolved"
    assert hs.open_for_conversation(conversation_id) is None
    assert hs.assigned_count(ann.id) == 0
    with pytest.raises(Conflict, match="resolved"):
        hs.resolve(handoff.id, ann.id, "again")
    with pytest.raises(NotFound):
        hs.resolve("missing", ann.id, "done")
    (event,) = backend.store.list_events(conversation_id=conversation_id, type="handoff.resolved")
    payload = event.payload
    assert payload["resolution_code"] == "refund_issued"
    assert payload["agent_id"] == ann.id
    assert payload["total_seconds"] >= payload["handle_seconds"] >= 0
    assert payload["first_reply_seconds"] is None


def test_return_to_bot(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    handoff = _enqueue(hs, conversation_id)
    ann = _agent(hs)
    bob = _agent(hs, "bob@example.com")
    with pytest.raises(Conflict):
        hs.return_to_bot(handoff.id, ann.id)
    hs.claim(handoff.id, ann.id)
    with pytest.raises(Conflict):
        hs.return_to_bot(handoff.id, bob.id)
    returned = hs.return_to_bot(handoff.id, ann.id)
    assert returned.status == "returned"
    assert returned.returned_at is not None
    assert returned.resolution_code is None
    assert _status(backend, conversation_id) == "bot"
    assert hs.open_for_conversation(conversation_id) is None
    with pytest.raises(NotFound):
        hs.return_to_bot("missing", ann.id)
    assert _event_types(backend, conversation_id) == [
        "handoff.enqueued",
        "handoff.claimed",
        "handoff.returned",
    ]


def test_record_first_reply(backend: Backend, hs: HandoffStore):
    conversation_id = _conversation(backend.store)
    handoff = _enqueue(hs, conversation_id, due_at=_due(10))
    ann = _agent(hs)
    hs.claim(handoff.id, ann.id)
    at = datetime.now(UTC)
    assert hs.record_first_reply(handoff.id, at) is True
    assert hs.record_first_reply(handoff.id, at + timedelta(minutes=1)) is False
    loaded = hs.get(handoff.id)
    assert loaded.first_reply_at == at
    assert loaded.version == 3
    with pytest.raises(NotFound):
        hs.record_first_reply("missing", at)
    with pytest.raises(InvalidInput):
        hs.record_first_reply(handoff.id, datetime(2030, 1, 1))
    (event,) = backend.store.list_events(
        conversation_id=conversation_id, type="handoff.first_reply"
    )
    assert event.payload["agent_id"] == ann.id
    assert event.payload["within_sla"] is True
    hs.resolve(handoff.id, ann.id, "done")
    (resolved,) = backend.store.list_events(
        conversation_id=conversation_id, type="handoff.resolved"
    )
    assert resolved.payload["first_reply_seconds"] >= 0


# -- the claim race ---------------------------------------------------------------------


def _claim_together(
    backend: Backend, claims: list[tuple[str, str]]
) -> tuple[list[HandoffRecord], list[BaseException]]:
    """Run every (handoff id, agent id) claim at the same moment, each on its own engine
    (as if each were its own process); returns the successes and the errors."""
    stores = [HandoffStore(backend.new_engine()) for _ in claims]
    barrier = threading.Barrier(len(claims))
    won: list[HandoffRecord] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        barrier.wait()
        try:
            record = stores[i].claim(*claims[i])
            with lock:
                won.append(record)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(claims))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for store in stores:
            store.dispose()
    return won, errors


def _race(backend: Backend, workers: int) -> tuple[list[str], list[BaseException], str]:
    handoff = _enqueue(backend.handoffs, _conversation(backend.store))
    agents = [_agent(backend.handoffs, f"agent{i}@example.com").id for i in range(workers)]
    won, errors = _claim_together(backend, [(handoff.id, agent) for agent in agents])
    return [record.agent_id or "" for record in won], errors, handoff.id


def test_claim_race_has_exactly_one_winner(backend: Backend):
    winners, errors, handoff_id = _race(backend, 20)
    assert len(winners) == 1, errors
    assert len(errors) == 19
    assert all(isinstance(e, Conflict) for e in errors), errors
    assert all("already claimed by" in str(e) for e in errors)
    loaded = backend.handoffs.get(handoff_id)
    assert loaded is not None
    assert (loaded.status, loaded.agent_id, loaded.version) == ("assigned", winners[0], 2)
    events = backend.store.list_events(type="handoff.claimed")
    assert [e.payload["agent_id"] for e in events] == winners


def _claim_in_process(url: str, handoff_id: str, agent_id: str, barrier, results) -> None:
    store = HandoffStore(make_engine(url))
    barrier.wait()
    try:
        store.claim(handoff_id, agent_id)
        results.put("won")
    except Conflict:
        results.put("conflict")
    except BaseException as exc:
        results.put(f"error: {exc!r}")
    finally:
        store.dispose()


def test_claim_race_across_processes_sqlite(tmp_path):
    backend = next(sqlite_backend(tmp_path))
    workers = 6
    handoff = _enqueue(backend.handoffs, _conversation(backend.store))
    agents = [_agent(backend.handoffs, f"p{i}@example.com").id for i in range(workers)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(
            target=_claim_in_process, args=(backend.url, handoff.id, agents[i], barrier, results)
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=60) for _ in range(workers))
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    results.close()
    results.join_thread()
    backend.engine.dispose()
    assert outcomes == ["conflict"] * (workers - 1) + ["won"]
    loaded = backend.handoffs.get(handoff.id)
    assert loaded is not None
    assert loaded.status == "assigned"
    assert loaded.agent_id in agents


# -- migration ---------------------------------------------------------------------------


def test_migration_0002_downgrades_and_upgrades(backend: Backend):
    from alembic import command
    from sqlalchemy import inspect

    from assistant.storage.db import alembic_config

    new_tables = {"agents", "agent_tokens", "agent_sessions", "handoffs"}
    with backend.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    assert not new_tables & set(inspect(backend.engine).get_table_names())
    migrate(backend.engine)
    assert new_tables <= set(inspect(backend.engine).get_table_names())
