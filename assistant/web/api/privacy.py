"""Admin endpoints for privacy: erase a customer, read the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from assistant.web.deps import AdminDep, RuntimeDep
from assistant.web.schemas import MAX_EVENT_ID, ErrorBody

router = APIRouter(tags=["privacy"],
                   responses={code: {"model": ErrorBody} for code in (401, 403, 404, 422)})


@router.delete("/v1/customers/{customer_id}")
def erase_customer(
    request: Request,
    admin: AdminDep,
    runtime: RuntimeDep,
    customer_id: Annotated[str, Path(min_length=1, max_length=255,
                                     description="Internal id, or the host app's id.")],
) -> dict[str, Any]:
    """Erase the customer everywhere: conversations, messages, events, health, webhook
    payloads, vectors. The audit entry names them only by the sha256 of ``customer_id``."""
    # The service writes its own audit entry (hashed target); the middleware's would
    # carry the id in clear.
    request.state.audited = True
    return runtime.privacy.erase_customer(customer_id, actor=admin.actor).as_dict()


@router.get("/v1/audit")
def audit_log(
    _admin: AdminDep,
    runtime: RuntimeDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_EVENT_ID, description="Only entries with a larger id.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Audit entries oldest first; page with ``after`` = the last id seen."""
    entries = runtime.privacy.audit_log(after=after, limit=limit, action=action, actor=actor)
    return {"entries": [e.as_dict() for e in entries],
            "next_after": entries[-1].id if entries else after}
