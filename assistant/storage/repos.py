"""All database queries of the assistant, behind :class:`Store`.

Every public method is one short transaction and returns records from
:mod:`assistant.storage.records`, never ORM objects. Writers lock the conversation row
they touch (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so
per conversation message ids are assigned in commit order and idempotency decisions are
made one request at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, func, insert, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from assistant.errors import (
    Conflict,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
)
from assistant.storage.conversation_rows import add_conversation_event, lock_conversation
from assistant.storage.db import EngineStore
from assistant.storage.records import (
    BeginOutcome,
    ConversationRecord,
    CustomerRecord,
    EventRecord,
    MessageRecord,
)
from assistant.storage.tables import (
    Conversation,
    Customer,
    Event,
    IdempotencyKey,
    Message,
    new_id,
    utcnow,
)

MESSAGE_ROLES = frozenset({"customer", "assistant", "agent", "system"})
MAX_IDEMPOTENCY_KEY_CHARS = 255

# How often a write that lost a unique-constraint race is retried (it then reads the
# winner's row, so one retry is enough; the extra one covers a second unlucky race).
_RACE_RETRIES = 3


class _Keyed(Protocol):
    """A record with the id that keyset pagination orders by."""

    @property
    def id(self) -> int: ...


_R = TypeVar("_R", bound=_Keyed)


def _customer(row: Customer) -> CustomerRecord:
    return CustomerRecord(
        id=row.id,
        external_id=row.external_id,
        email=row.email,
        name=row.name,
        plan=row.plan,
        verified=row.verified,
        created_at=row.created_at,
    )


def _conversation(row: Conversation) -> ConversationRecord:
    return ConversationRecord(
        id=row.id,
        customer_id=row.customer_id,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _message(row: Message) -> MessageRecord:
    return MessageRecord(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        text=row.text,
        annotations=dict(row.annotations or {}),
        created_at=row.created_at,
    )


def _event(row: Event) -> EventRecord:
    return EventRecord(
        id=row.id,
        type=row.type,
        conversation_id=row.conversation_id,
        customer_id=row.customer_id,
        payload=dict(row.payload or {}),
        created_at=row.created_at,
    )


class Store(EngineStore):
    """The assistant's persistence API over one engine (SQLite or PostgreSQL).

    Args:
        engine: An engine from :func:`assistant.storage.db.make_engine`, already migrated.
    """

    # -- customers -------------------------------------------------------------------

    def create_customer(
        self,
        *,
        external_id: str | None,
        email: str | None,
        name: str | None,
        plan: str | None,
        verified: bool,
    ) -> CustomerRecord:
        """Insert a new customer.

        Args:
            external_id: The host application's id for the customer, if known.
            email: Email address.
            name: Display name.
            plan: The customer's plan or tier.
            verified: Whether the host application vouched for this identity.

        Returns:
            The stored customer.

        Raises:
            Conflict: A customer with this ``external_id`` already exists.
        """
        try:
            with self._write.begin() as session:
                row = Customer(
                    id=new_id(),
                    external_id=external_id,
                    email=email,
                    name=name,
                    plan=plan,
                    verified=verified,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                return _customer(row)
        except IntegrityError as exc:
            raise Conflict(f"a customer with external id {external_id!r} exists") from exc

    def upsert_customer(
        self,
        *,
        external_id: str | None,
        email: str | None,
        name: str | None,
        plan: str | None,
        verified: bool,
    ) -> CustomerRecord:
        """Create a customer, or update the one with the same ``external_id``.

        An existing customer gets ``email``, ``name``, ``plan`` and ``verified`` replaced
        by the given values (``None`` included: the host application is the source of
        truth). Without ``external_id`` this always creates a new customer.

        Args:
            external_id: The host application's id for the customer, if known.
            email: Email address.
            name: Display name.
            plan: The customer's plan or tier.
            verified: Whether the host application vouched for this identity.

        Returns:
            The stored customer.
        """
        if external_id is None:
            return self.create_customer(
                external_id=None, email=email, name=name, plan=plan, verified=verified
            )
        for attempt in range(_RACE_RETRIES):
            try:
                with self._write.begin() as session:
                    row = session.scalars(
                        select(Customer)
                        .where(Customer.external_id == external_id)
                        .with_for_update()
                    ).one_or_none()
                    if row is None:
                        row = Customer(id=new_id(), external_id=external_id, created_at=utcnow())
                        session.add(row)
                    row.email = email
                    row.name = name
                    row.plan = plan
                    row.verified = verified
                    session.flush()
                    return _customer(row)
            except IntegrityError:
                # A concurrent upsert inserted the same external_id first; the next
                # round finds its row and updates it.
                if attempt == _RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def get_customer(self, customer_id: str) -> CustomerRecord | None:
        """Load a customer by id.

        Args:
            customer_id: The customer's id.

        Returns:
            The customer, or ``None`` when there is none with that id.
        """
        with self._read() as session:
            row = session.get(Customer, customer_id)
            return _customer(row) if row is not None else None

    def customer_by_external_id(self, external_id: str) -> CustomerRecord | None:
        """Load a customer by the host application's id (``customer.id`` in the widget)."""
        with self._read() as session:
            row = session.scalars(
                select(Customer).where(Customer.external_id == external_id)
            ).one_or_none()
            return _customer(row) if row is not None else None

    # -- conversations ---------------------------------------------------------------

    def create_conversation(
        self, *, customer_id: str | None, token_hash: str
    ) -> ConversationRecord:
        """Start a conversation in status "bot".

        Args:
            customer_id: The customer it belongs to, if any.
            token_hash: sha256 hex digest of the conversation's access token.

        Returns:
            The stored conversation.

        Raises:
            NotFound: ``customer_id`` names no customer.
        """
        now = utcnow()
        try:
            with self._write.begin() as session:
                row = Conversation(
                    id=new_id(),
                    customer_id=customer_id,
                    token_hash=token_hash,
                    status="bot",
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                return _conversation(row)
        except IntegrityError as exc:
            raise NotFound(f"no customer {customer_id!r}") from exc

    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """Load a conversation by id.

        Args:
            conversation_id: The conversation's id.

        Returns:
            The conversation, or ``None`` when there is none with that id.
        """
        with self._read() as session:
            row = session.get(Conversation, conversation_id)
            return _conversation(row) if row is not None else None

    def conversation_and_token_hash(
        self, conversation_id: str
    ) -> tuple[ConversationRecord, str] | None:
        """A conversation and its stored token hash, in one read (for authorizing a request).

        Args:
            conversation_id: The conversation's id.

        Returns:
            The conversation and the sha256 hex digest of its token, or ``None`` when the
            conversation does not exist.
        """
        with self._read() as session:
            row = session.get(Conversation, conversation_id)
            return (_conversation(row), row.token_hash) if row is not None else None

    # -- messages --------------------------------------------------------------------

    def begin_customer_message(
        self,
        *,
        conversation_id: str,
        text: str,
        idempotency_key: str | None,
        request_hash: str,
        stale_after: timedelta,
        hold_when: frozenset[str] = frozenset(),
    ) -> BeginOutcome:
        """Store a customer's message, honouring the client's Idempotency-Key.

        When the conversation's status is in ``hold_when`` (a person owns it or is about
        to), the message is stored and the request completed with no reply, in the same
        transaction that read the status: the bot cannot slip an answer in while a hand-off
        is happening.

        Without a key the message is always stored. With a key seen before in this
        conversation: a different ``request_hash`` is refused, a finished request is
        replayed, a pending one younger than ``stale_after`` is reported as in progress,
        and an older pending one is handed back for resumption (its ``updated_at`` is
        refreshed so only one caller resumes it). Concurrent calls with one key yield a
        single "new".

        Args:
            conversation_id: The conversation receiving the message.
            text: The message text.
            idempotency_key: The client's Idempotency-Key (1-255 characters), if any.
            request_hash: sha256 hex digest of the request body, to detect key reuse.
            stale_after: How long a pending request may run before it may be resumed.
            hold_when: Conversation statuses in which the bot must not answer.

        Returns:
            What happened, with the stored message(s); kind "held" when no bot reply
            may follow.

        Raises:
            InvalidInput: The key is empty or too long.
            NotFound: The conversation does not exist.
            IdempotencyMismatch: The key was used with a different request body.
            IdempotencyInProgress: The first request with this key is still running.
        """
        if idempotency_key is not None and not (
            0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS
        ):
            raise InvalidInput(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
            )
        for attempt in range(_RACE_RETRIES):
            try:
                with self._write.begin() as session:
                    conversation = lock_conversation(session, conversation_id)
                    now = utcnow()
                    if idempotency_key is not None:
                        existing = session.get(IdempotencyKey, (conversation_id, idempotency_key))
                        if existing is not None:
                            return self._continue_key(
                                session, existing, request_hash, now - stale_after, now
                            )
                    message = self._insert_message(
                        session, conversation, role="customer", text=text, annotations={}, now=now
                    )
                    add_conversation_event(
                        session,
                        type="message.received",
                        conversation=conversation,
                        payload={"message_id": message.id, "chars": len(text)},
                        now=now,
                    )
                    held = conversation.status in hold_when
                    if idempotency_key is not None:
                        session.add(
                            IdempotencyKey(
                                conversation_id=conversation_id,
                                key=idempotency_key,
                                request_hash=request_hash,
                                status="done" if held else "pending",
                                customer_message_id=message.id,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        session.flush()
                    return BeginOutcome(
                        kind="held" if held else "new", customer_message=_message(message)
                    )
            except IntegrityError:
                # Only a same-key request committing first gets here (the conversation
                # lock normally prevents even that); re-reading classifies this one.
                if idempotency_key is None or attempt == _RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def record_reply(
        self,
        *,
        conversation_id: str,
        text: str,
        annotations: dict[str, Any],
        idempotency_key: str | None,
        customer_message_id: int,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        customer_annotations: dict[str, Any] | None = None,
        hold_when: frozenset[str] = frozenset(),
    ) -> MessageRecord | None:
        """Store the assistant's answer, its turn events, and complete the request, atomically.

        If the conversation's status is in ``hold_when`` by now (a hand-off happened while
        the bot was thinking), the answer is not stored: the request is completed without
        a reply, an ``answer.suppressed`` event is logged and ``None`` is returned. The
        bot never speaks while a person owns the conversation or is on the way.

        Writing the turn's events in the reply's transaction (rather than one transaction
        per event) keeps the log consistent with the messages and costs one write lock per
        turn instead of four, which is what limits throughput on SQLite.

        If the request was already completed (a stale attempt finishing after the one
        that resumed it), nothing is stored and the reply recorded first is returned, so
        a conversation never gets two answers to one idempotent request.

        Args:
            conversation_id: The conversation being answered.
            text: The answer text.
            annotations: Sources, confidence and similar metadata for the answer.
            idempotency_key: The key given to :meth:`begin_customer_message`, if any.
            customer_message_id: The id of the message being answered.
            events: ``(type, payload)`` of the events the turn produced, logged before
                ``answer.sent``.
            customer_annotations: Merged into the annotations of the message being
                answered (how it was classified), in the same transaction.
            hold_when: Conversation statuses in which the answer must be dropped.

        Returns:
            The stored assistant message, or ``None`` when it was suppressed.

        Raises:
            NotFound: The conversation, or the idempotency key in it, does not exist.
        """
        with self._write.begin() as session:
            conversation = lock_conversation(session, conversation_id)
            now = utcnow()
            key_row = None
            if idempotency_key is not None:
                key_row = session.get(IdempotencyKey, (conversation_id, idempotency_key))
                if key_row is None:
                    raise NotFound(f"no idempotency key {idempotency_key!r} in this conversation")
                if key_row.status == "done" and key_row.reply_message_id is not None:
                    return _message(session.get_one(Message, key_row.reply_message_id))
            if customer_annotations:
                asked = session.get(Message, customer_message_id)
                if asked is not None and asked.conversation_id == conversation_id:
                    asked.annotations = {**(asked.annotations or {}), **customer_annotations}
            if conversation.status in hold_when:
                add_conversation_event(
                    session,
                    type="answer.suppressed",
                    conversation=conversation,
                    payload={"reply_to": customer_message_id, "status": conversation.status},
                    now=now,
                )
                if key_row is not None:
                    key_row.status = "done"
                    key_row.updated_at = now
                return None
            message = self._insert_message(
                session, conversation, role="assistant", text=text, annotations=annotations, now=now
            )
            # The status at send time is logged so "bot messages while a person owned the
            # conversation" can be counted from the log (the target is zero).
            sent = ("answer.sent", {"message_id": message.id, "reply_to": customer_message_id,
                                    "conversation_status": conversation.status})
            # One executemany instead of one ORM object per event: a turn logs several.
            session.execute(
                insert(Event),
                [
                    {
                        "type": event_type,
                        "conversation_id": conversation.id,
                        "customer_id": conversation.customer_id,
                        "payload": payload,
                        "created_at": now,
                    }
                    for event_type, payload in [*events, sent]
                ],
            )
            if key_row is not None:
                key_row.status = "done"
                key_row.reply_message_id = message.id
                key_row.updated_at = now
            return _message(message)

    def add_message(
        self,
        *,
        conversation_id: str,
        role: str,
        text: str,
        annotations: dict[str, Any] | None = None,
        event_type: str | None = None,
    ) -> MessageRecord:
        """Append a message without idempotency handling (agents, system notices).

        Args:
            conversation_id: The conversation.
            role: One of "customer", "assistant", "agent", "system".
            text: The message text.
            annotations: Optional metadata stored with the message.
            event_type: Also log this event (payload ``{"message_id": id}``), in the same
                transaction, so live streams see the message.

        Returns:
            The stored message.

        Raises:
            InvalidInput: Unknown role.
            NotFound: The conversation does not exist.
        """
        if role not in MESSAGE_ROLES:
            raise InvalidInput(f"unknown message role {role!r}")
        with self._write.begin() as session:
            conversation = lock_conversation(session, conversation_id)
            message = self._insert_message(
                session,
                conversation,
                role=role,
                text=text,
                annotations=annotations or {},
                now=utcnow(),
            )
            if event_type is not None:
                add_conversation_event(
                    session,
                    type=event_type,
                    conversation=conversation,
                    payload={"message_id": message.id},
                    now=message.created_at,
                )
            return _message(message)

    def annotate_message(
        self,
        *,
        conversation_id: str,
        message_id: int,
        annotations: dict[str, Any],
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> None:
        """Merge ``annotations`` into a stored message and log ``events``, atomically.

        Raises:
            NotFound: No such conversation, or the message is not in it.
        """
        with self._write.begin() as session:
            conversation = lock_conversation(session, conversation_id)
            message = session.get(Message, message_id)
            if message is None or message.conversation_id != conversation_id:
                raise NotFound(f"no message {message_id} in conversation {conversation_id!r}")
            message.annotations = {**(message.annotations or {}), **annotations}
            now = utcnow()
            for event_type, payload in events:
                add_conversation_event(
                    session, type=event_type, conversation=conversation, payload=payload, now=now
                )

    def messages_by_ids(self, ids: Sequence[int]) -> dict[int, MessageRecord]:
        """The messages with these ids (missing ones are left out).

        Args:
            ids: Message ids.

        Returns:
            The messages, by id.
        """
        if not ids:
            return {}
        with self._read() as session:
            rows = session.scalars(select(Message).where(Message.id.in_(list(set(ids)))))
            return {row.id: _message(row) for row in rows}

    def customer_conversations(
        self, customer_id: str, *, exclude: str | None = None, limit: int = 10
    ) -> list[tuple[ConversationRecord, str | None, int]]:
        """A customer's conversations, newest first, for an agent's context.

        Args:
            customer_id: The customer.
            exclude: Leave out this conversation (the one being handled).
            limit: At most this many.

        Returns:
            ``(conversation, first customer message text or None, message count)``.
        """
        query = select(Conversation).where(Conversation.customer_id == customer_id)
        if exclude is not None:
            query = query.where(Conversation.id != exclude)
        query = query.order_by(Conversation.created_at.desc()).limit(max(limit, 0))
        with self._read() as session:
            found: list[tuple[ConversationRecord, str | None, int]] = []
            for row in session.scalars(query):
                first = session.scalar(
                    select(Message.text)
                    .where(Message.conversation_id == row.id, Message.role == "customer")
                    .order_by(Message.id)
                    .limit(1)
                )
                count = session.scalar(
                    select(func.count()).select_from(Message)
                    .where(Message.conversation_id == row.id)
                )
                found.append((_conversation(row), first, int(count or 0)))
            return found

    def latest_bot_replies(self, *, since: datetime, limit: int = 10_000) -> list[MessageRecord]:
        """Each bot-owned conversation's newest assistant message, if written after ``since``.

        The start-up repair of promised hand-offs reads these (see
        ``ConversationService.repair_promised_handoffs``).
        """
        newest = (
            select(func.max(Message.id))
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.role == "assistant", Message.created_at >= since,
                   Conversation.status == "bot")
            .group_by(Message.conversation_id)
        )
        with self._read() as session:
            rows = session.scalars(
                select(Message).where(Message.id.in_(newest)).order_by(Message.id).limit(limit)
            )
            return [_message(row) for row in rows]

    def list_messages(
        self, *, conversation_id: str, after: int | None = None, limit: int = 200
    ) -> list[MessageRecord]:
        """A conversation's messages in order.

        Args:
            conversation_id: The conversation.
            after: Only messages with an id greater than this one.
            limit: At most this many messages (the oldest first).

        Returns:
            The messages ordered by id.
        """
        query = select(Message).where(Message.conversation_id == conversation_id)
        if after is not None:
            query = query.where(Message.id > after)
        query = query.order_by(Message.id).limit(max(limit, 0))
        with self._read() as session:
            return [_message(row) for row in session.scalars(query)]

    def recent_messages(
        self, *, conversation_id: str, before: int, limit: int = 20
    ) -> list[MessageRecord]:
        """The last ``limit`` messages before message id ``before``, oldest first.

        Args:
            conversation_id: The conversation.
            before: Only messages with an id smaller than this one.
            limit: At most this many messages (the newest ones).

        Returns:
            The messages ordered by id.
        """
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.id < before)
            .order_by(Message.id.desc())
            .limit(max(limit, 0))
        )
        with self._read() as session:
            return [_message(row) for row in reversed(list(session.scalars(query)))]

    def count_messages(self, *, conversation_id: str | None = None) -> int:
        """Count messages, in one conversation or overall.

        Args:
            conversation_id: Restrict the count to this conversation.

        Returns:
            The number of messages.
        """
        query = select(func.count()).select_from(Message)
        if conversation_id is not None:
            query = query.where(Message.conversation_id == conversation_id)
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def iter_messages(
        self, *, since: datetime | None = None, until: datetime | None = None, batch: int = 5000
    ) -> Iterator[MessageRecord]:
        """Stream every message of every conversation in id order (see :meth:`iter_events`).

        Args:
            since: Only messages created at or after this (timezone-aware) time.
            until: Only messages created before this time.
            batch: Rows per query.

        Yields:
            The messages, ordered by id.
        """
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(Message.created_at >= since)
        if until is not None:
            conditions.append(Message.created_at < until)
        yield from self._keyset(Message, conditions, batch, _message)

    # -- events ----------------------------------------------------------------------

    def append_event(
        self,
        *,
        type: str,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> int:
        """Append an entry to the interaction log.

        Args:
            type: Dotted event name, e.g. "handoff.requested".
            conversation_id: The conversation it concerns, if any.
            customer_id: The customer it concerns, if any.
            payload: JSON-serialisable details.

        Returns:
            The event's id.
        """
        with self._write.begin() as session:
            row = Event(
                type=type,
                conversation_id=conversation_id,
                customer_id=customer_id,
                payload=payload or {},
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    def list_events(
        self, *, conversation_id: str | None = None, type: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Log entries in order, optionally filtered.

        Args:
            conversation_id: Only events of this conversation.
            type: Only events of this type.
            limit: At most this many events (the oldest first).

        Returns:
            The events ordered by id.
        """
        query = select(Event)
        if conversation_id is not None:
            query = query.where(Event.conversation_id == conversation_id)
        if type is not None:
            query = query.where(Event.type == type)
        query = query.order_by(Event.id).limit(max(limit, 0))
        with self._read() as session:
            return [_event(row) for row in session.scalars(query)]

    def iter_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] = (),
        batch: int = 5000,
    ) -> Iterator[EventRecord]:
        """Stream the whole interaction log in id order, one batch per short transaction.

        Keyset pagination (``id > last ORDER BY id LIMIT batch``) keeps every query an
        index range scan however far the export has got, and no transaction stays open
        between batches (a long read would hold back SQLite's WAL checkpoints). Rows
        appended while iterating are included if their id is beyond the cursor.

        Args:
            since: Only events created at or after this (timezone-aware) time.
            until: Only events created before this time.
            types: Only events of these types (all types when empty).
            batch: Rows per query.

        Yields:
            The events, ordered by id.
        """
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(Event.created_at >= since)
        if until is not None:
            conditions.append(Event.created_at < until)
        if types:
            conditions.append(Event.type.in_(list(types)))
        yield from self._keyset(Event, conditions, batch, _event)

    def _keyset(
        self,
        table: type[Event] | type[Message],
        conditions: Sequence[ColumnElement[bool]],
        batch: int,
        record: Callable[[Any], _R],
    ) -> Iterator[_R]:
        """Yield ``record(row)`` for the rows of ``table`` matching ``conditions`` by id."""
        batch = max(batch, 1)
        after = 0  # ids start at 1
        while True:
            query = (
                select(table).where(table.id > after, *conditions).order_by(table.id).limit(batch)
            )
            with self._read() as session:
                records = [record(row) for row in session.scalars(query)]
            yield from records
            if len(records) < batch:
                return
            after = records[-1].id

    def events_after(
        self,
        *,
        after: int,
        types: Sequence[str],
        conversation_id: str | None = None,
        limit: int = 200,
    ) -> list[EventRecord]:
        """Log entries of the given types with an id greater than ``after``, in order.

        This is what live streams poll. Within one conversation the ids grow in commit
        order (every writer of a conversation's visible events holds its row lock), so a
        reader that resumes from the last id it saw misses nothing.

        Args:
            after: Only events with an id greater than this one.
            types: Only these event types.
            conversation_id: Only events of this conversation.
            limit: At most this many (the oldest first).

        Returns:
            The events ordered by id.
        """
        query = select(Event).where(Event.id > after, Event.type.in_(list(types)))
        if conversation_id is not None:
            query = query.where(Event.conversation_id == conversation_id)
        query = query.order_by(Event.id).limit(max(limit, 0))
        with self._read() as session:
            return [_event(row) for row in session.scalars(query)]

    def count_bot_messages_while_owned(self, statuses: Sequence[str]) -> int:
        """Bot answers logged while the conversation had one of ``statuses`` (target: 0).

        ``answer.sent`` records the conversation's status at send time, so this counts
        from the log what the ownership rules promise never happens.
        """
        status = Event.payload["conversation_status"].as_string()
        with self._read() as session:
            found = session.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.type == "answer.sent", status.in_(list(statuses)))
            )
            return int(found or 0)

    def has_event(self, conversation_id: str, type: str) -> bool:
        """Whether the conversation's log holds an event of this type."""
        query = select(Event.id).where(
            Event.conversation_id == conversation_id, Event.type == type
        ).limit(1)
        with self._read() as session:
            return session.scalar(query) is not None

    def count_events(self, type: str) -> int:
        """How many events of this type the log holds."""
        with self._read() as session:
            found = session.scalar(
                select(func.count()).select_from(Event).where(Event.type == type)
            )
            return int(found or 0)

    def recent_activity(self, *, since: datetime) -> list[tuple[str, int]]:
        """``(conversation id, newest event id)`` of each conversation with an event
        written after ``since`` (what the live streams' shared watch polls)."""
        query = (
            select(Event.conversation_id, func.max(Event.id))
            .where(Event.created_at >= since, Event.conversation_id.is_not(None))
            .group_by(Event.conversation_id)
        )
        with self._read() as session:
            return [(str(cid), int(latest)) for cid, latest in session.execute(query)]

    def latest_event_id(self, types: Sequence[str], *, conversation_id: str | None = None) -> int:
        """The id of the newest event of these types (0 when there is none)."""
        query = select(func.max(Event.id)).where(Event.type.in_(list(types)))
        if conversation_id is not None:
            query = query.where(Event.conversation_id == conversation_id)
        with self._read() as session:
            return int(session.scalar(query) or 0)

    # -- health ----------------------------------------------------------------------

    def integrity_ok(self) -> bool:
        """Whether the database answers and (on SQLite) passes ``PRAGMA integrity_check``.

        Returns:
            ``True`` when healthy, ``False`` on a failed check or a database error.
        """
        try:
            with self._read() as session:
                if self._engine.dialect.name == "sqlite":
                    rows = session.execute(text("PRAGMA integrity_check")).scalars().all()
                    return rows == ["ok"]
                return session.execute(text("SELECT 1")).scalar() == 1
        except SQLAlchemyError:
            return False

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _insert_message(
        session: Session,
        conversation: Conversation,
        *,
        role: str,
        text: str,
        annotations: dict[str, Any],
        now: datetime,
    ) -> Message:
        message = Message(
            conversation_id=conversation.id,
            role=role,
            text=text,
            annotations=dict(annotations),
            created_at=now,
        )
        session.add(message)
        conversation.updated_at = now
        session.flush()
        return message

    @staticmethod
    def _continue_key(
        session: Session,
        row: IdempotencyKey,
        request_hash: str,
        fresh_since: datetime,
        now: datetime,
    ) -> BeginOutcome:
        if row.request_hash != request_hash:
            raise IdempotencyMismatch(
                "this Idempotency-Key was already used with a different request body"
            )
        customer_message = _message(session.get_one(Message, row.customer_message_id))
        if row.status == "done":
            reply = (
                _message(session.get_one(Message, row.reply_message_id))
                if row.reply_message_id is not None
                else None
            )
            return BeginOutcome(
                kind="replay", customer_message=customer_message, reply_message=reply
            )
        if row.updated_at > fresh_since:
            raise IdempotencyInProgress(
                "a request with this Idempotency-Key is still being processed"
            )
        # Refreshing the timestamp hands the resumption to this caller alone.
        row.updated_at = now
        return BeginOutcome(kind="resume", customer_message=customer_message)
