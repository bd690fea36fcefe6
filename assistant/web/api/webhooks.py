"""Admin endpoints of outbound webhooks: the delivery log and manual retries.

Only admins (the bootstrap admin token, or an agent account with the admin role) may
call them: deliveries carry customer data and receivers' URLs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from assistant.errors import Forbidden, NotFound
from assistant.storage.webhook_repo import DeliveryRecord, WebhookStore
from assistant.web.deps import Principal, RuntimeDep, StaffDep
from assistant.web.schemas import ErrorBody

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)
}
DeliveryId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


def require_admin(principal: StaffDep) -> Principal:
    """The caller, if it is an admin."""
    if principal.role != "admin":
        raise Forbidden("webhook deliveries are visible to admins only")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def webhook_store(_admin: AdminDep, runtime: RuntimeDep) -> WebhookStore:
    """The outbox; the admin check runs first."""
    return runtime.webhooks


WebhookStoreDep = Annotated[WebhookStore, Depends(webhook_store)]


class DeliveryPublic(BaseModel):
    """One webhook delivery and the state of its attempts."""

    id: str
    event: str = Field(description="customer.at_risk, churn.signal, conversation.handed_off "
                                   "or webhook.test")
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = Field(description="HTTP status of the latest attempt")
    last_error: str | None = Field(description="Why the latest attempt failed")
    next_attempt_at: datetime = Field(description="When a pending delivery is tried next")
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The body sent, without its id")

    @classmethod
    def of(cls, record: DeliveryRecord) -> DeliveryPublic:
        """From a stored record."""
        return cls(
            id=record.id, event=record.event, url=record.url,
            status=record.status,  # checked by the table's constraint
            attempts=record.attempts, last_status=record.last_status,
            last_error=record.last_error, next_attempt_at=record.next_attempt_at,
            created_at=record.created_at, delivered_at=record.delivered_at,
            payload=record.payload,
        )


class DeliveryList(BaseModel):
    """The delivery log, newest first, and how many deliveries are in each status."""

    deliveries: list[DeliveryPublic]
    counts: dict[str, int]


@router.get("/deliveries", response_model=DeliveryList, responses=_ERRORS)
def list_deliveries(
    store: WebhookStoreDep,
    status: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(description="Only this status.")
    ] = None,
    event: Annotated[
        str | None,
        Query(max_length=100, pattern=r"^[a-z][a-z0-9_.]*$", description="Only this event."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """The delivery log (admins only)."""
    records = store.list_deliveries(status=status, event=event, limit=limit)
    return DeliveryList(
        deliveries=[DeliveryPublic.of(r) for r in records], counts=store.count_by_status()
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryPublic, responses=_ERRORS)
def get_delivery(delivery_id: DeliveryId, store: WebhookStoreDep) -> DeliveryPublic:
    """One delivery (admins only)."""
    record = store.get(delivery_id)
    if record is None:
        raise NotFound(f"no webhook delivery {delivery_id!r}")
    return DeliveryPublic.of(record)


@router.post(
    "/deliveries/{delivery_id}/retry", response_model=DeliveryPublic, responses=_ERRORS
)
def retry_delivery(delivery_id: DeliveryId, store: WebhookStoreDep) -> DeliveryPublic:
    """Put a failed delivery back in the outbox, due now, with a fresh set of attempts.

    404 for an unknown id; 409 when the delivery is not failed.
    """
    return DeliveryPublic.of(store.retry(delivery_id))
