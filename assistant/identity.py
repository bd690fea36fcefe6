"""Identity verification of signed-in customers (Intercom-style HMAC ``user_hash``).

The host application signs its customer id with the widget secret on its server:
``user_hash = hex(HMAC-SHA256(secret, customer_id))``. Only then is the customer's claim
(id, plan) trusted; without a valid hash the visitor is anonymous.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def user_hash(secret: str, customer_id: str) -> str:
    """The hex HMAC-SHA256 of ``customer_id`` under ``secret``."""
    return hmac.new(secret.encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def verify_user_hash(secret: str, customer_id: str, candidate: str) -> bool:
    """Constant-time check of a customer's ``user_hash``."""
    return hmac.compare_digest(user_hash(secret, customer_id), candidate.strip().lower())


def new_conversation_token() -> str:
    """A random bearer token for one conversation (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored instead of the token: its sha256 hex digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token with the stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)
