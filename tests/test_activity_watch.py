"""The process-wide activity watch that tells open streams when to read."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from assistant.live import ActivityWatch
from assistant.runtime import Runtime
from assistant.storage.tables import Event, utcnow


def conversation(runtime: Runtime) -> str:
    return runtime.conversations.start(claim=None, user_hash=None).conversation.id


def test_it_reports_the_newest_event_of_each_active_conversation(runtime: Runtime) -> None:
    watch = ActivityWatch(runtime.store)
    first, second = conversation(runtime), conversation(runtime)
    watch.poll()
    seen = watch.latest(first)
    assert seen > 0 and watch.latest(second) > seen
    assert watch.latest("not-a-conversation") == 0
    runtime.store.append_event(type="agent.note", conversation_id=first, customer_id=None,
                               payload={})
    assert watch.latest(first) == seen  # not polled yet
    watch.poll(interval=60)
    assert watch.latest(first) == seen  # polled less than 60 s ago: skipped
    watch.poll()
    assert watch.latest(first) > watch.latest(second)


def test_old_activity_is_outside_the_window(runtime: Runtime) -> None:
    chat = conversation(runtime)
    with runtime.store._engine.begin() as conn:
        conn.execute(update(Event).values(created_at=utcnow() - timedelta(minutes=5)))
    watch = ActivityWatch(runtime.store, window_seconds=10)
    watch.poll()
    assert watch.latest(chat) == 0


def test_evicted_conversations_answer_with_a_safe_upper_bound(runtime: Runtime) -> None:
    watch = ActivityWatch(runtime.store, max_tracked=2)
    chats = [conversation(runtime) for _ in range(3)]
    watch.poll()
    newest_of_evicted = watch.latest(chats[0])
    # The first conversation was evicted: the bound is at least its newest event.
    assert newest_of_evicted >= 1
    assert newest_of_evicted < watch.latest(chats[2])
