"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from assistant.web.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(runtime: RuntimeDep) -> dict[str, object]:
    """Database reachable, index size, answerer in use."""
    db_ok = runtime.store.integrity_ok()
    return {
        "status": "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "error",
        "kb_chunks": runtime.kb.retriever.size,
        "answerer": runtime.engine.answerer.name,
    }
