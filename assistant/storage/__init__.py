"""Persistence: customers, conversations, messages, idempotency keys and the event log.

``db`` builds engines and runs migrations, ``tables`` holds the SQLAlchemy models,
``records`` the plain dataclasses handed to the rest of the assistant, and ``repos``
(:class:`~assistant.storage.repos.Store`) is the only module that issues queries.
"""
