"""Customer conversations: store first, then think, then store the reply.

:class:`ConversationService` is the one place that orders the work of a turn: the
customer's message is committed (with its idempotency key) before the engine runs, and the
reply is committed with the key marked done in one transaction. It talks to storage through
:class:`Store` methods and to the engine through plain data; it knows nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from assistant.answer.llm import ReplyStream
from assistant.engine import Engine, TurnResult
from assistant.errors import Conflict, InvalidInput, NotFound, Unauthorized
from assistant.events import Event, EventBus
from assistant.handoff import HUMAN_OWNED, Availability, HandoffService
from assistant.identity import hash_token, new_conversation_token, token_matches, verify_user_hash
from assistant.kb.audience import Audience
from assistant.storage.records import (
    ConversationRecord,
    CustomerRecord,
    HandoffRecord,
    MessageRecord,
)
from assistant.storage.repos import Store
from assistant.token_budget import TokenBudget, identity_for
from assistant.understanding.history import PriorTurn

logger = logging.getLogger(__name__)

FALLBACK_TEXT = (
    "Sorry, something went wrong on our side while answering. Your message is saved; "
    "you can try again or ask to talk to a person."
)


@dataclass(frozen=True)
class CustomerClaim:
    """Who the widget says the customer is; trusted only with a valid ``user_hash``."""

    external_id: str | None = None
    email: str | None = None
    name: str | None = None
    plan: str | None = None


@dataclass(frozen=True)
class StartedConversation:
    """A new conversation and its bearer token (returned once, stored hashed)."""

    conversation: ConversationRecord
    token: str
    customer: CustomerRecord | None


@dataclass(frozen=True)
class PostedMessage:
    """The stored customer message, the bot's reply (none while a person owns the
    conversation) and the open hand-off, if any."""

    message: MessageRecord
    reply: MessageRecord | None
    replayed: bool
    handoff: HandoffRecord | None = None


MAX_CSAT_COMMENT_CHARS = 2000
HISTORY_MESSAGES = 20  # enough for streaks and repeats; bounded so long chats stay cheap


@dataclass(frozen=True)
class _Turn:
    text: str
    annotations: dict[str, Any]
    message_annotations: dict[str, Any]
    events: tuple[Event, ...]


def request_fingerprint(text: str) -> str:
    """What identifies a message body for idempotency (same key + other body = 422)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ConversationService:
    """Starts conversations, takes customer messages, returns replies."""

    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        bus: EventBus | None = None,
        handoffs: HandoffService | None = None,
        widget_secret: str | None,
        max_message_chars: int,
        idempotency_stale_after: timedelta,
        budget: TokenBudget | None = None,
    ) -> None:
        self._store = store
        self._budget = budget
        self._engine = engine
        self._bus = bus or EventBus()
        self._handoffs = handoffs
        self._widget_secret = widget_secret
        self._max_chars = max_message_chars
        self._stale_after = idempotency_stale_after

    def start(self, *, claim: CustomerClaim | None, user_hash: str | None) -> StartedConversation:
        """Open a conversation; verifies the customer's identity when a secret is configured."""
        customer = None
        if claim is not None and claim.external_id:
            verified = False
            if user_hash is not None or self._widget_secret:
                if not self._widget_secret:
                    raise InvalidInput(
                        "user_hash was sent but identity verification is not configured "
                        "(set ASSISTANT_WIDGET_SECRET on the server)"
                    )
                if user_hash is None or not verify_user_hash(
                    self._widget_secret, claim.external_id, user_hash
                ):
                    raise Unauthorized(
                        "user_hash does not match customer.id: sign the id with the widget "
                        "secret (hex HMAC-SHA256) on your server"
                    )
                verified = True
            customer = self._store.upsert_customer(
                external_id=claim.external_id if verified else None,
                email=claim.email,
                name=claim.name,
                # An unverified visitor's plan is not evidence of anything.
                plan=claim.plan if verified else None,
                verified=verified,
            )
        token = new_conversation_token()
        conversation = self._store.create_conversation(
            customer_id=customer.id if customer else None, token_hash=hash_token(token)
        )
        self._store.append_event(
            type="conversation.started",
            conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            payload={"verified": bool(customer and customer.verified)},
        )
        return StartedConversation(conversation=conversation, token=token, customer=customer)

    def authorize(self, conversation_id: str, token: str) -> ConversationRecord:
        """The conversation, if ``token`` opens it; otherwise :class:`NotFound`.

        A wrong token and an unknown id get the same answer, so ids cannot be probed.
        """
        found = self._store.conversation_and_token_hash(conversation_id)
        if found is None or not token_matches(token, found[1]):
            raise NotFound("conversation not found, or the token does not open it")
        return found[0]

    def post_message(
        self,
        conversation: ConversationRecord,
        *,
        text: str,
        idempotency_key: str | None,
        on_stored: Callable[[MessageRecord], None] | None = None,
        stream: ReplyStream | None = None,
        client_address: str | None = None,
    ) -> PostedMessage:
        """Store the customer's message, answer it, store the answer.

        ``on_stored`` is called with the customer's message as soon as it is committed,
        before the engine runs (a streaming client can show it as delivered at once);
        ``stream`` receives a generated reply's text as the model writes it.
        ``client_address`` is who an unverified visitor's model tokens are charged to.
        """
        text = self.validate_text(text)
        outcome = self._store.begin_customer_message(
            conversation_id=conversation.id,
            text=text,
            idempotency_key=idempotency_key,
            request_hash=request_fingerprint(text),
            stale_after=self._stale_after,
            hold_when=HUMAN_OWNED if self._handoffs is not None else frozenset(),
        )
        if on_stored is not None:
            on_stored(outcome.customer_message)
        if outcome.kind == "held":
            self._understand_held(conversation, outcome.customer_message)
        if outcome.kind == "replay" and outcome.reply_message is not None:
            # The first attempt may have died between storing "a person is coming" and
            # queueing the hand-off: the retry keeps that promise.
            self._keep_handoff_promise(outcome.reply_message)
        if outcome.kind in {"replay", "held"}:
            return PostedMessage(
                outcome.customer_message,
                outcome.reply_message,
                replayed=outcome.kind == "replay",
                handoff=self._open_handoff(conversation.id),
            )
        customer = (
            self._store.get_customer(conversation.customer_id) if conversation.customer_id else None
        )
        history = self._history(conversation.id, before=outcome.customer_message.id)
        returned = (
            self._handoffs.returned_reasons(conversation.id) if self._handoffs else frozenset()
        )
        turn = self._answer(
            conversation, customer, text, history, returned, stream, client_address
        )
        available = self._availability_if_handing_off(turn.annotations)
        if available is not None:
            # The customer learns in the same reply whether a person is coming, and when.
            turn = _Turn(
                text=f"{turn.text}\n\n{available.notice}",
                annotations={**turn.annotations, "availability": available.as_dict()},
                message_annotations=turn.message_annotations,
                events=turn.events,
            )
        reply = self._store.record_reply(
            conversation_id=conversation.id,
            text=turn.text,
            annotations=turn.annotations,
            idempotency_key=idempotency_key,
            customer_message_id=outcome.customer_message.id,
            events=[(event.type, event.payload()) for event in turn.events],
            customer_annotations=turn.message_annotations,
            hold_when=HUMAN_OWNED if self._handoffs is not None else frozenset(),
        )
        if reply is None:
            # A hand-off happened while the bot was thinking: it stays silent.
            return PostedMessage(
                outcome.customer_message, None, replayed=False,
                handoff=self._open_handoff(conversation.id),
            )
        events = turn.events
        # Subscribers (metrics, health, webhooks) hear only about turns that were stored.
        for event in events:
            self._bus.publish(event)
        handoff = self._enqueue_if_handed_off(conversation.id, turn.annotations)
        return PostedMessage(outcome.customer_message, reply, replayed=False, handoff=handoff)

    def _understand_held(self, conversation: ConversationRecord, message: MessageRecord) -> None:
        """Classify a message the bot must not answer: agents see the customer's mood
        change live, and health scores keep their signal while a person handles it."""
        try:
            understood, event = self._engine.understand(
                message.text,
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
            )
            self._store.annotate_message(
                conversation_id=conversation.id,
                message_id=message.id,
                annotations=understood.as_dict(),
                events=[(event.type, event.payload())],
            )
        except Exception:
            # The message is stored; a missing classification must not fail the request.
            logger.exception("could not classify held message %s", message.id)
            return
        self._bus.publish(event)

    def _open_handoff(self, conversation_id: str) -> HandoffRecord | None:
        if self._handoffs is None:
            return None
        return self._handoffs.open_handoff(conversation_id)

    def _availability_if_handing_off(self, annotations: dict[str, Any]) -> Availability | None:
        decision = annotations.get("decision") or {}
        if self._handoffs is None or decision.get("action") != "handoff":
            return None
        return self._handoffs.availability(
            decision.get("team") or "support", int(decision.get("priority") or 0)
        )

    def repair_promised_handoffs(self, *, since: timedelta = timedelta(days=2)) -> int:
        """Queue every hand-off a stored bot reply promised but nothing queued; how many.

        A reply is committed before its hand-off is queued (in a second transaction); a
        crash in between, or a failed enqueue, would leave the customer told that a person
        is coming while none is. Servers run this at start-up.
        """
        if self._handoffs is None:
            return 0
        repaired = 0
        for reply in self._store.latest_bot_replies(since=datetime.now(UTC) - since):
            if self._keep_handoff_promise(reply) is not None:
                repaired += 1
        return repaired

    def _keep_handoff_promise(self, reply: MessageRecord) -> HandoffRecord | None:
        """Queue the hand-off ``reply`` decided on, unless one was queued since it."""
        decision = reply.annotations.get("decision") or {}
        if self._handoffs is None or decision.get("action") != "handoff":
            return None
        last = self._handoffs.handoffs.last_for_conversation(reply.conversation_id)
        if last is not None and last.created_at >= reply.created_at:
            return None
        conversation = self._store.get_conversation(reply.conversation_id)
        if conversation is None or conversation.status != "bot":
            return None
        logger.warning("queueing the hand-off reply %s promised in %s", reply.id,
                       reply.conversation_id)
        return self._enqueue_if_handed_off(reply.conversation_id, reply.annotations)

    def _enqueue_if_handed_off(
        self, conversation_id: str, annotations: dict[str, Any]
    ) -> HandoffRecord | None:
        """Queue the conversation for a person when the policy decided to hand off."""
        decision = annotations.get("decision") or {}
        if self._handoffs is None or decision.get("action") != "handoff":
            return None
        try:
            return self._handoffs.enqueue(
                conversation_id,
                team=decision.get("team"),
                priority=int(decision.get("priority") or 0),
                reasons=list(decision.get("reasons") or []),
                evidence=dict(decision.get("evidence") or {}),
            )
        except Exception:
            # The reply is stored either way; a failed enqueue is logged, and the next
            # message (still "bot"-owned) can hand off again.
            logger.exception("could not queue a hand-off for %s", conversation_id)
            return None

    def rate(
        self, conversation: ConversationRecord, *, score: int, comment: str | None
    ) -> dict[str, Any]:
        """Store the customer's satisfaction rating (CSAT) for the conversation, once.

        ``handled_by`` says whether a person took part, so CSAT can be split bot vs person.

        Raises:
            InvalidInput: Score outside 1-5, comment too long, or a person is still on it.
            Conflict: The conversation was rated already.
        """
        if isinstance(score, bool) or not 1 <= score <= 5:
            raise InvalidInput("score must be 1 to 5")
        comment = (comment or "").strip() or None
        if comment is not None and len(comment) > MAX_CSAT_COMMENT_CHARS:
            raise InvalidInput(f"comment is longer than {MAX_CSAT_COMMENT_CHARS} characters")
        if conversation.status in HUMAN_OWNED:
            raise InvalidInput("rate the conversation once the person has resolved it")
        if self.rated(conversation):
            raise Conflict("this conversation was rated already")
        person = self._store.has_event(conversation.id, "handoff.claimed")
        rating = {"score": score, "comment": comment, "handled_by": "person" if person else "bot"}
        self._store.append_event(
            type="csat.submitted",
            conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            payload=rating,
        )
        return rating

    def feedback(self, conversation: ConversationRecord, *, message_id: int,
                 helpful: bool) -> None:
        """Record whether one of the bot's answers helped ("That helped" / "Didn't help").

        It is the customer's own confirmation that the bot resolved their question, the
        strictest of the three bot-resolution measures.

        Raises:
            NotFound: No such bot answer in this conversation.
            Conflict: That answer was rated already.
        """
        found = self._store.messages_by_ids([message_id]).get(message_id)
        if found is None or found.conversation_id != conversation.id or (
                found.role != "assistant"):
            raise NotFound(f"no answer {message_id} of the bot in this conversation")
        if any(e.payload.get("message_id") == message_id
               for e in self._store.list_events(conversation_id=conversation.id,
                                                type="answer.feedback")):
            raise Conflict("this answer was rated already")
        self._store.append_event(
            type="answer.feedback", conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            payload={"message_id": message_id, "helpful": helpful},
        )

    def rated(self, conversation: ConversationRecord) -> bool:
        """Whether the customer rated the conversation already."""
        return self._store.has_event(conversation.id, "csat.submitted")

    def messages(
        self, conversation: ConversationRecord, *, after: int | None
    ) -> list[MessageRecord]:
        """The conversation's messages after id ``after``, oldest first."""
        return self._store.list_messages(conversation_id=conversation.id, after=after)

    def validate_text(self, text: str) -> str:
        """Trimmed message text, or :class:`InvalidInput` saying what is wrong."""
        cleaned = text.strip()
        if not cleaned:
            raise InvalidInput("message text is empty")
        if len(cleaned) > self._max_chars:
            raise InvalidInput(
                f"message is {len(cleaned)} characters; the limit is {self._max_chars}"
            )
        if "\x00" in cleaned:
            raise InvalidInput("message text contains a NUL character")
        return cleaned

    def _history(self, conversation_id: str, *, before: int) -> list[PriorTurn]:
        """The earlier customer turns, with how they were understood and answered."""
        messages = self._store.recent_messages(
            conversation_id=conversation_id, before=before, limit=HISTORY_MESSAGES
        )
        turns: list[PriorTurn] = []
        for i, message in enumerate(messages):
            if message.role != "customer":
                continue
            reply = next((m for m in messages[i + 1 :] if m.role != "customer"), None)
            notes = message.annotations
            turns.append(
                PriorTurn(
                    text=message.text,
                    intent=(notes.get("intent") or {}).get("label"),
                    sentiment=(notes.get("sentiment") or {}).get("label"),
                    bot_failed=bool(
                        reply is not None
                        and reply.role == "assistant"
                        and reply.annotations.get("abstained")
                    ),
                )
            )
        return turns

    def _answer(
        self,
        conversation: ConversationRecord,
        customer: CustomerRecord | None,
        text: str,
        history: list[PriorTurn],
        returned_reasons: frozenset[str] = frozenset(),
        stream: ReplyStream | None = None,
        client_address: str | None = None,
    ) -> _Turn:
        audience = Audience(
            verified=bool(customer and customer.verified), plan=customer.plan if customer else None
        )
        identity = identity_for(
            conversation_id=conversation.id,
            customer_id=customer.id if customer else None,
            verified=audience.verified,
            client_address=client_address,
        )
        try:
            turn: TurnResult = self._engine.handle_turn(
                text=text,
                audience=audience,
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
                history=history,
                returned_reasons=returned_reasons,
                stream=stream,
                allow_model=self._model_allowed(identity),
            )
        except Exception as exc:
            if stream is not None:
                stream.reset()
            # The customer's message is already stored; they get an honest reply and the
            # failure is in the log for the team, never a lost conversation.
            logger.exception("turn failed for conversation %s", conversation.id)
            self._store.append_event(
                type="turn.failed",
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
                payload={"error": type(exc).__name__},
            )
            return _Turn(
                text=FALLBACK_TEXT,
                annotations={
                    "answerer": "fallback",
                    "abstained": True,
                    "citations": [],
                    "decision": {
                        "action": "answer_and_offer_human",
                        "reasons": ["bot_failure"],
                        "priority": 2,
                        "evidence": {"bot_failure": type(exc).__name__},
                        "team": None,
                    },
                },
                message_annotations={},
                events=(),
            )
        self._charge(identity, turn.answer.model_calls)
        return _Turn(
            text=turn.reply_text,
            annotations=turn.annotations(),
            message_annotations=turn.message_annotations(),
            events=turn.events,
        )

    def _model_allowed(self, identity: str) -> bool:
        # Only asked when a model is configured: the offline path makes no extra query.
        if self._budget is None or self._engine.generator is None:
            return True
        try:
            return self._budget.allows(identity)
        except Exception:
            # A ledger that cannot be read must not cost the customer their answer.
            logger.exception("could not read the token budget of %s", identity)
            return True

    def _charge(self, identity: str, calls: tuple[dict[str, Any], ...]) -> None:
        if self._budget is None or not calls:
            return
        try:
            self._budget.charge(identity, calls)
        except Exception:
            logger.exception("could not charge %s for its model tokens", identity)
