"""Serves the embeddable widget: the loader (``/widget.js``), the conversation frame, its
assets, and the ``/demo`` host page.

The conversation UI runs in an iframe served from this origin, so the host page can
neither style it nor read its conversation token. The frame's Content-Security-Policy
allows only this origin's scripts and ``frame-ancestors`` only the allowed host sites
(``ASSISTANT_WIDGET_ORIGINS``, plus this server for ``/demo``).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from assistant.config import Settings
from assistant.errors import Forbidden, InvalidInput, NotFound
from assistant.web.deps import RuntimeDep

router = APIRouter(include_in_schema=False)

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
LOCALE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
ASSETS = {
    "frame.js": "application/javascript; charset=utf-8",
    "frame.css": "text/css; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
ASSET_CACHE = "public, max-age=300"  # short: a KB team's widget update shows within minutes
BASE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin"}


def _own_origin(request: Request, settings: Settings) -> str:
    # The Host header is the client's to choose: behind a real domain, configure the
    # origin instead of trusting it (ASSISTANT_PUBLIC_URL).
    return settings.public_url or str(request.base_url).rstrip("/")


def frame_ancestors(settings: Settings, own_origin: str) -> str:
    """The CSP ``frame-ancestors`` value: this server, plus the configured host sites."""
    if "*" in settings.widget_origins:
        return "*"
    return " ".join(["'self'", *sorted(set(settings.widget_origins) - {own_origin})])


def _may_embed(settings: Settings, host: str, own_origin: str) -> bool:
    return host == own_origin or "*" in settings.widget_origins or host in settings.widget_origins


@lru_cache(maxsize=4)
def _templates(directory: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(directory)),
        autoescape=select_autoescape(["html"], default=True),
    )


def _file(settings: Settings, name: str) -> Path:
    path = settings.widget_dir / name
    if not path.is_file():
        raise NotFound(f"widget file {name!r} is missing from {settings.widget_dir}")
    return path


def _static(request: Request, path: Path, media_type: str) -> Response:
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**BASE_HEADERS, "Cache-Control": ASSET_CACHE, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@router.get("/widget.js")
def loader(request: Request, runtime: RuntimeDep) -> Response:
    """The loader that host pages include with one script tag."""
    return _static(
        request, _file(runtime.settings, "loader.js"), "application/javascript; charset=utf-8"
    )


@router.get("/widget/assets/{name}")
def asset(name: str, request: Request, runtime: RuntimeDep) -> Response:
    """The frame's script and stylesheet (nothing else is served from the widget dir)."""
    if name not in ASSETS:
        raise NotFound(f"no widget asset {name!r}")
    return _static(request, _file(runtime.settings, name), ASSETS[name])


@router.get("/widget/assets/i18n/{locale}.json")
def strings(locale: str, request: Request, runtime: RuntimeDep) -> Response:
    """The widget's UI strings for one locale."""
    if not LOCALE.match(locale):
        raise NotFound(f"no widget strings for {locale!r}")
    return _static(
        request, _file(runtime.settings, f"i18n/{locale}.json"), "application/json; charset=utf-8"
    )


@router.get("/widget/frame", response_class=HTMLResponse)
def frame(
    request: Request,
    runtime: RuntimeDep,
    host: Annotated[str, Query(max_length=300, description="The embedding page's origin.")],
    locale: Annotated[str, Query(max_length=10)] = "en",
    title: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    """The conversation UI, framed by the loader on an allowed host site."""
    settings = runtime.settings
    if not ORIGIN.match(host):
        raise InvalidInput("host must be the embedding page's origin, like https://example.com")
    own = _own_origin(request, settings)
    if not _may_embed(settings, host, own):
        raise Forbidden(
            f"{host} may not embed this widget: add it to ASSISTANT_WIDGET_ORIGINS on the server"
        )
    if not LOCALE.match(locale) or not (settings.widget_dir / "i18n" / f"{locale}.json").is_file():
        locale = "en"
    page = _templates(settings.widget_dir).get_template("frame.html").render(
        host_origin=host,
        locale=locale,
        title=title,
        api_base="",
        assets={"js": "/widget/assets/frame.js", "css": "/widget/assets/frame.css"},
    )
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors(settings, own)}"
    )
    return HTMLResponse(
        page,
        headers={**BASE_HEADERS, "Content-Security-Policy": policy, "Cache-Control": "no-store"},
    )


@router.get("/demo", response_class=HTMLResponse)
def demo(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """A sample host page with the widget embedded, as a customer's site would have it."""
    page = _templates(runtime.settings.widget_dir).get_template("demo.html").render(
        assistant_url=_own_origin(request, runtime.settings)
    )
    policy = (
        # As strict as a careful host site: the loader styles itself with a constructed
        # stylesheet, which needs no 'unsafe-inline'.
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-src 'self'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    # Rendered from the request: no shared cache may keep one client's copy for another.
    return HTMLResponse(page, headers={**BASE_HEADERS, "Content-Security-Policy": policy,
                                       "Cache-Control": "no-store"})


@router.get("/")
def home() -> RedirectResponse:
    """The demo page is the front door of a fresh install."""
    return RedirectResponse("/demo", status_code=307)
