"""Security schemes in the OpenAPI document, so ``/docs`` has a working *Authorize* button
and client generators know which credential each operation takes.

The routes read the ``Authorization`` header through dependencies (``deps.py``), which
FastAPI documents as a plain header parameter. Here each operation's parameter is replaced
by the scheme its dependencies actually check: the conversation's token, a staff token,
or the metrics scraper's token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from assistant.web import deps

SCHEMES: dict[str, dict[str, Any]] = {
    "conversationToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The `token` that `POST /v1/conversations` returned: it opens that "
        "conversation only.",
    },
    "staffToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An agent's API token (`assistant agents token EMAIL`) or "
        "`ASSISTANT_ADMIN_TOKEN`. The console's session cookie works as well, with its "
        "CSRF token in `X-CSRF-Token` on writes.",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`ASSISTANT_METRICS_TOKEN`, for a Prometheus scraper (`/metrics` only).",
    },
}

# Which schemes a dependency's check accepts (any one of them opens the operation).
_ACCEPTS: dict[Callable[..., Any], tuple[str, ...]] = {
    deps.customer_conversation: ("conversationToken",),
    deps.staff: ("staffToken",),
    deps.metrics_reader: ("metricsToken", "staffToken"),
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def route_schemes(dependant: Dependant) -> list[str]:
    """The schemes that open a route with this ``dependant``, in a stable order; empty for
    a public route."""
    found: list[str] = []
    calls = set(_calls(dependant))
    for call, schemes in _ACCEPTS.items():
        if call in calls:
            found.extend(s for s in schemes if s not in found)
    return found


def install_security_schemes(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare the bearer schemes and each operation's security."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description,
            routes=app.routes,
        )
        paths = schema.get("paths", {})
        # Routers are included lazily (FastAPI >= 0.160): walk the effective routes, whose
        # dependants carry the router-level dependencies too.
        for context in routing.iter_route_contexts(app.routes):
            if not isinstance(context.original_route, routing.APIRoute):
                continue
            route = cast(routing.APIRoute, context.route)
            if not route.include_in_schema:
                continue
            schemes = route_schemes(route.dependant)
            if not schemes:
                continue
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                parameters = [p for p in operation.get("parameters", [])
                              if not (p.get("in") == "header"
                                      and p.get("name", "").lower() == "authorization")]
                if parameters:
                    operation["parameters"] = parameters
                else:
                    operation.pop("parameters", None)
                operation["security"] = [{name: []} for name in schemes]
        schema.setdefault("components", {})["securitySchemes"] = SCHEMES
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
