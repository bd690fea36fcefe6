"""Offline-first AI customer-support assistant."""

__version__ = "0.1.0"
