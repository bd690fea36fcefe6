"""Knowledge-base endpoints for staff: ingest (admin), search and read articles.

Article ids are paths relative to the KB dir, but these routes never touch the file
system with them: articles are read back from the index, and an id that tries to leave
the KB dir (``..``, an absolute path, a backslash, control characters) is refused with a
422 before any lookup.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from assistant.errors import InvalidInput, NotFound
from assistant.kb.audience import Audience
from assistant.web.deps import AdminDep, RuntimeDep, StaffDep
from assistant.web.schemas import ErrorBody

router = APIRouter(prefix="/v1/kb", tags=["knowledge base"],
                   responses={code: {"model": ErrorBody} for code in (401, 403, 404, 422)})

# One ingest at a time per process; across processes a second concurrent ingest only
# repeats work (chunk ids are deterministic, upserts idempotent).
_INGEST_LOCK = threading.Lock()


class IngestRequest(BaseModel):
    """Options of an ingest run."""

    model_config = ConfigDict(extra="forbid", strict=True)
    rebuild: bool = False


def check_article_id(article_id: str) -> str:
    """The article id if it is a plain relative path inside the KB dir, else a 422."""
    parts = article_id.split("/")
    if (
        not article_id
        or len(article_id) > 500
        or article_id.startswith("/")
        or "\\" in article_id
        or any(part in ("", ".", "..") for part in parts)
        or not article_id.isprintable()
        or ":" in parts[0]
    ):
        raise InvalidInput(
            "article ids are paths relative to the KB dir, like 'billing/refunds.md' "
            "(no '..', no leading '/', no backslashes or control characters)"
        )
    return article_id


@router.post("/ingest")
def kb_ingest(_admin: AdminDep, runtime: RuntimeDep,
              body: IngestRequest | None = None) -> dict[str, Any]:
    """Ingest the configured KB dir now (incremental unless ``rebuild``); the report.

    Other workers sharing the Chroma server pick the change up within
    ``ASSISTANT_KB_REFRESH_SECONDS``.
    """
    with _INGEST_LOCK:
        report = runtime.ingest(rebuild=bool(body and body.rebuild))
    return report.as_dict()


@router.get("/search")
def kb_search(
    _staff: StaffDep,
    runtime: RuntimeDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="The query.")],
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """Hybrid search as an operator (every article); scored passages with article ids."""
    result = runtime.kb.retriever.search(q, k=k, audience=Audience.operator())
    return {"query": q, "confidence": round(result.confidence, 4),
            "passages": [p.as_dict() for p in result.passages]}


@router.get("/articles/{article_id:path}")
def kb_article(
    _staff: StaffDep,
    runtime: RuntimeDep,
    article_id: Annotated[str, Path(description="Path relative to the KB dir.")],
) -> dict[str, Any]:
    """One indexed article: its metadata and sections, as the index holds them."""
    chunks = runtime.kb.index.article_chunks(check_article_id(article_id))
    if not chunks:
        raise NotFound(f"no indexed article {article_id!r}")
    first = chunks[0]
    return {
        "article_id": first.article_id, "title": first.title, "url": first.url,
        "audience": list(first.audience),
        "sections": [{"section": c.section, "text": c.text, "flagged": c.flagged}
                     for c in chunks],
    }
