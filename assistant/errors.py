"""The assistant's exception tree. One place (``web/errors.py``) maps it to HTTP.

::

    AssistantError
    ├── ConfigurationError        settings or installed files are unusable
    │   └── ModelFileError         an embedding model/tokenizer file is missing or corrupt
    ├── IngestError               one KB file could not be ingested (per file, never fatal)
    ├── EmbeddingError            the embedding backend failed
    ├── InvalidInput              a request is well-formed but its content is not acceptable
    ├── NotFound                  the thing asked for does not exist (or is not yours)
    ├── Unauthorized              no or wrong credentials
    ├── Forbidden                 known caller, not allowed to do this (403)
    ├── RateLimited               too many attempts; try again later (429)
    └── Conflict                  the request collides with the current state
        ├── IdempotencyMismatch    same Idempotency-Key, different body (422)
        └── IdempotencyInProgress  same Idempotency-Key, first request still running (409)
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base of every error the assistant raises on purpose."""


class ConfigurationError(AssistantError):
    """Settings or installed files are unusable."""


class ModelFileError(ConfigurationError):
    """An embedding model or tokenizer file is missing or fails its checksum."""


class IngestError(AssistantError):
    """One knowledge-base file could not be ingested."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EmbeddingError(AssistantError):
    """The embedding backend failed."""


class InvalidInput(AssistantError):
    """Content that cannot be accepted (empty, too long, wrong shape)."""


class NotFound(AssistantError):
    """The thing asked for does not exist, or the caller may not know it exists."""


class Unauthorized(AssistantError):
    """Missing or wrong credentials."""


class Forbidden(AssistantError):
    """The caller is known but may not do this."""


class RateLimited(AssistantError):
    """Too many attempts; the message says when to try again."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(AssistantError):
    """The request collides with the current state."""


class IdempotencyMismatch(Conflict):
    """The Idempotency-Key was used before with a different request body."""


class IdempotencyInProgress(Conflict):
    """The first request with this Idempotency-Key is still being processed."""
