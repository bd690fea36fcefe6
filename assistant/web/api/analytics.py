"""Admin endpoints: customer health, the at-risk list, the support summary; and /metrics."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BeforeValidator

from assistant.errors import InvalidInput
from assistant.health.analytics import Window
from assistant.web.deps import AdminDep, RuntimeDep, metrics_reader
from assistant.web.schemas import ErrorBody

router = APIRouter(tags=["analytics"],
                   responses={code: {"model": ErrorBody} for code in (401, 403, 404, 422)})
# /metrics answers text/plain, but its refusals are the usual JSON error body.
_JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for code, description in ((401, "No valid credential"), (403, "Not an admin"),
                              (422, "A NUL byte in the query"))
}
DEFAULT_DAYS = 30
MAX_DAYS = 366


def window(since: date | None, until: date | None) -> Window:
    """``[since, until]`` as whole UTC days; the last 30 days by default."""
    today = datetime.now(UTC).date()
    until = until or today
    if until >= date.max or (since is None and until < date.min + timedelta(days=DEFAULT_DAYS)):
        raise InvalidInput(f"until ({until}) is outside the range this service counts in")
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise InvalidInput(f"since ({since}) is after until ({until})")
    if (until - since).days >= MAX_DAYS:
        raise InvalidInput(f"the range is longer than {MAX_DAYS} days")
    return Window(since=datetime.combine(since, time.min, UTC),
                  until=datetime.combine(until + timedelta(days=1), time.min, UTC))


def _iso_day(value: object) -> object:
    """Only YYYY-MM-DD: Pydantic would also take a number, as a Unix timestamp."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("use a date written YYYY-MM-DD")
    return value


SinceQuery = Annotated[date | None, BeforeValidator(_iso_day),
                       Query(description="First day (UTC), e.g. 2026-11-01.")]
UntilQuery = Annotated[date | None, BeforeValidator(_iso_day),
                       Query(description="Last day (UTC), inclusive.")]


@router.get("/v1/analytics/summary")
def analytics_summary(
    _admin: AdminDep, runtime: RuntimeDep, since: SinceQuery = None, until: UntilQuery = None
) -> dict[str, Any]:
    """Support metrics over conversations started in the range, each with its definition:
    conversations, bot resolution three ways, escalation rate by reason, CSAT bot vs
    person, response and resolution times, top intents and sentiment by day, and
    knowledge gaps grouped into topics."""
    return runtime.analytics.summary(window(since, until), now=datetime.now(UTC))


@router.get("/v1/customers/at-risk")
def customers_at_risk(
    _admin: AdminDep,
    runtime: RuntimeDep,
    band: Annotated[str, Query(pattern="^(at_risk|watch)$")] = "at_risk",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Customers in the band, lowest score first, with what moved them most recently."""
    rows = runtime.health.at_risk(limit=limit, bands=(band,))
    return {"customers": [
        {"id": r.customer_id, "external_id": r.external_id, "name": r.name, "email": r.email,
         "plan": r.plan, "score": r.score, "band": r.band,
         "updated_at": r.updated_at.isoformat(),
         "evidence": list(reversed(r.state.get("evidence", [])))[:3]}
        for r in rows
    ]}


@router.get("/v1/customers/{customer_id}/health")
def customer_health(
    customer_id: Annotated[str, Path(min_length=1, max_length=255)],
    _admin: AdminDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """A customer's health now (by internal id or your application's customer id): score
    0-100, band, named components, the daily trend and the conversations that moved it."""
    return runtime.health.customer(customer_id).as_dict()


@router.get("/metrics", response_class=PlainTextResponse, include_in_schema=True,
            dependencies=[Depends(metrics_reader)], responses=_JSON_ERRORS)
def metrics(runtime: RuntimeDep) -> str:
    """Prometheus text format: aggregate counts only, no customer data. Send
    ``Authorization: Bearer <ASSISTANT_METRICS_TOKEN>`` (or an admin credential)."""
    runtime.health.catch_up()
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               values: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in values:
            rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")

    totals = runtime.health.totals()
    metric("assistant_conversations_total", "counter", "Conversations started.",
           [({}, totals["conversations"])])
    metric("assistant_customer_messages_total", "counter",
           "Customer messages classified, by sentiment.",
           [({"sentiment": s}, n) for s, n in sorted(totals["sentiment"].items())])
    metric("assistant_handoffs", "gauge", "Hand-offs by status.",
           [({"status": s}, n) for s, n in sorted(runtime.handoffs.count_by_status().items())])
    metric("assistant_customers", "gauge", "Customers by health band.",
           [({"band": b}, n) for b, n in sorted(runtime.health.band_counts().items())])
    metric("assistant_webhook_deliveries", "gauge", "Webhook deliveries by status.",
           [({"status": s}, n) for s, n in sorted(totals["webhooks"].items())])
    metric("assistant_health_lag_events", "gauge",
           "Logged events the health projector has not folded yet.", [({}, totals["lag"])])
    return "\n".join(lines) + "\n"
