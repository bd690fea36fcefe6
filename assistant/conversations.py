"""Customer conversations: store first, then think, then store the reply.

:class:`ConversationService` is the one place that orders the work of a turn: the
customer's message is committed (with its idempotency key) before the engine runs, and the
reply is committed with the key marked done in one transaction. It talks to storage through
:class:`Store` methods and to the engine through plain data; it knows nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from assistant.answer.types import Answer
from assistant.engine import Engine, TurnResult
from assistant.errors import InvalidInput, NotFound, Unauthorized
from assistant.events import Event
from assistant.identity import hash_token, new_conversation_token, token_matches, verify_user_hash
from assistant.kb.audience import Audience
from assistant.storage.records import ConversationRecord, CustomerRecord, MessageRecord
from assistant.storage.repos import Store

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
    """The stored customer message and the stored reply."""

    message: MessageRecord
    reply: MessageRecord
    replayed: bool


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
        widget_secret: str | None,
        max_message_chars: int,
        idempotency_stale_after: timedelta,
    ) -> None:
        self._store = store
        self._engine = engine
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
        stored = self._store.conversation_token_hash(conversation_id)
        if stored is None or not token_matches(token, stored):
            raise NotFound("conversation not found, or the token does not open it")
        conversation = self._store.get_conversation(conversation_id)
        if conversation is None:  # deleted between the two reads
            raise NotFound("conversation not found, or the token does not open it")
        return conversation

    def post_message(
        self, conversation: ConversationRecord, *, text: str, idempotency_key: str | None
    ) -> PostedMessage:
        """Store the customer's message, answer it, store the answer."""
        text = self.validate_text(text)
        outcome = self._store.begin_customer_message(
            conversation_id=conversation.id,
            text=text,
            idempotency_key=idempotency_key,
            request_hash=request_fingerprint(text),
            stale_after=self._stale_after,
        )
        if outcome.kind == "replay" and outcome.reply_message is not None:
            return PostedMessage(outcome.customer_message, outcome.reply_message, replayed=True)
        customer = (
            self._store.get_customer(conversation.customer_id) if conversation.customer_id else None
        )
        reply_text, annotations = self._answer(conversation, customer, text)
        reply = self._store.record_reply(
            conversation_id=conversation.id,
            text=reply_text,
            annotations=annotations,
            idempotency_key=idempotency_key,
            customer_message_id=outcome.customer_message.id,
        )
        return PostedMessage(outcome.customer_message, reply, replayed=False)

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

    def _answer(
        self, conversation: ConversationRecord, customer: CustomerRecord | None, text: str
    ) -> tuple[str, dict[str, Any]]:
        audience = Audience(
            verified=bool(customer and customer.verified), plan=customer.plan if customer else None
        )
        try:
            turn: TurnResult = self._engine.handle_turn(
                text=text,
                audience=audience,
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
            )
        except Exception as exc:
            # The customer's message is already stored; they get an honest reply and the
            # failure is in the log for the team, never a lost conversation.
            logger.exception("turn failed for conversation %s", conversation.id)
            self._store.append_event(
                type="turn.failed",
                conversation_id=conversation.id,
                customer_id=conversation.customer_id,
                payload={"error": type(exc).__name__},
            )
            fallback = Answer(text=FALLBACK_TEXT, abstained=True, answerer="fallback")
            return fallback.text, {
                "answerer": "fallback",
                "abstained": True,
                "citations": [],
                "decision": {
                    "action": "answer_and_offer_human",
                    "reasons": ["bot_failure"],
                    "priority": 2,
                },
            }
        return turn.answer.text, turn.annotations()


def event_logger(store: Store) -> Any:
    """A bus subscriber that appends every event to the interaction log."""

    def write(event: Event) -> None:
        store.append_event(
            type=event.type,
            conversation_id=event.conversation_id,
            customer_id=event.customer_id,
            payload=event.payload(),
        )

    return write
