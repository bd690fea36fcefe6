"""Erasure of a customer, retention windows, and the audit log of staff actions.

Erasure removes a customer's rows from every table that can hold their data, any vector
of theirs from Chroma, and (on SQLite) compacts the write-ahead log, then writes an audit
entry that names the customer only by a sha256 of the id it was asked for, so the record
proves the erasure without keeping who it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from assistant.config import Settings
from assistant.errors import NotFound
from assistant.storage.privacy_repo import AuditRecord, PrivacyStore
from assistant.storage.tables import utcnow

if TYPE_CHECKING:  # Chroma is slow to import; `retention run` and `audit list` need none
    from assistant.kb.vectors import ChromaIndex


def subject_hash(ref: str) -> str:
    """How the audit log names an erased customer: sha256 of the id, in hex."""
    return hashlib.sha256(ref.encode()).hexdigest()


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure removed."""

    subject: str  # sha256 of the id asked for
    removed: dict[str, int]
    vectors_removed: int
    compacted: bool
    audit_id: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"subject": self.subject, "removed": self.removed,
                "vectors_removed": self.vectors_removed, "compacted": self.compacted,
                "audit_id": self.audit_id}


@dataclass(frozen=True)
class RetentionReport:
    """What a retention run removed (or, dry, would remove), and the cutoffs it used."""

    cutoffs: dict[str, str | None]
    removed: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"cutoffs": self.cutoffs, "removed": self.removed, "dry_run": self.dry_run}


class PrivacyService:
    """Erases customers, applies retention windows, and writes the audit log."""

    def __init__(self, *, store: PrivacyStore, index: ChromaIndex | None = None) -> None:
        self._store = store
        self._index = index

    def audit(self, actor: str, action: str, *, target: str | None = None,
              outcome: str = "ok", details: dict[str, Any] | None = None) -> int:
        """Append an entry to the audit log (never pass personal data in ``details``)."""
        return self._store.audit(actor=actor, action=action, target=target, outcome=outcome,
                                 details=details)

    def audit_log(self, *, after: int = 0, limit: int = 100, action: str | None = None,
                  actor: str | None = None) -> list[AuditRecord]:
        """Audit entries after id ``after``, oldest first."""
        return self._store.audit_log(after=after, limit=limit, action=action, actor=actor)

    def erase_customer(self, ref: str, *, actor: str) -> ErasureReport:
        """Erase the customer ``ref`` names (internal or external id) everywhere.

        Raises :class:`NotFound` (and audits the attempt) when no customer matches.
        """
        subject = subject_hash(ref)
        customer_id = self._store.find_customer(ref)
        if customer_id is None:
            self._store.audit(actor=actor, action="customer.erase", target=f"sha256:{subject}",
                              outcome="failed", details={"reason": "no such customer"})
            raise NotFound("no customer with that id or external id")
        removed = self._store.erase_customer(customer_id)
        vectors = self._index.delete_customer(customer_id) if self._index else 0
        compacted = self._store.compact()
        audit_id = self._store.audit(
            actor=actor, action="customer.erase", target=f"sha256:{subject}",
            details={"removed": removed, "vectors_removed": vectors},
        )
        return ErasureReport(subject=subject, removed=removed, vectors_removed=vectors,
                             compacted=compacted, audit_id=audit_id)

    def apply_retention(self, settings: Settings, *, actor: str, dry_run: bool = False,
                        now: datetime | None = None) -> RetentionReport:
        """Delete what the configured retention windows say is too old."""
        now = now or utcnow()

        def cutoff(days: int | None) -> datetime | None:
            return now - timedelta(days=days) if days else None

        cutoffs = {
            "messages_before": cutoff(settings.retention_messages_days),
            "events_before": cutoff(settings.retention_events_days),
            "audit_before": cutoff(settings.retention_audit_days),
        }
        customers_before = cutoff(settings.retention_customers_days)
        removed: dict[str, int] = {}
        if customers_before is not None:
            # First, so the erasures' own rows are not counted again by the windows below.
            removed["inactive_customers"] = self._erase_inactive(customers_before, dry_run)
        removed.update(self._store.apply_retention(**cutoffs, dry_run=dry_run))
        if not dry_run:
            self._store.compact()
        shown = {k: v.isoformat() if v else None
                 for k, v in {**cutoffs, "customers_inactive_before": customers_before}.items()}
        self._store.audit(actor=actor, action="retention.run", outcome="ok",
                          details={"removed": removed, "cutoffs": shown, "dry_run": dry_run})
        return RetentionReport(cutoffs=shown, removed=removed, dry_run=dry_run)

    def _erase_inactive(self, before: datetime, dry_run: bool) -> int:
        """Erase every customer inactive since ``before`` (each in its own transaction, as
        ``erase_customer`` does); how many."""
        inactive = self._store.inactive_customers(before)
        if dry_run:
            return len(inactive)
        for customer_id in inactive:
            self._store.erase_customer(customer_id)
            if self._index is not None:
                self._index.delete_customer(customer_id)
        return len(inactive)
