"""Baseline security headers on every response (SECURITY.md #11 and issue 9): ``nosniff``
everywhere, a deny-all CSP on API responses, and never a weaker policy over the console's
or the widget frame's own. Streams still stream through the middleware."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import LiveServer, auth
from fastapi.testclient import TestClient

from assistant.web.app import create_app
from assistant.web.console import SECURITY_HEADERS as CONSOLE_HEADERS
from assistant.web.security_headers import API_POLICY, PAGE_POLICY, with_defaults

HOST = "https://shop.example.com"


def assert_api_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == API_POLICY
    # Added once, not next to a value of the route's own.
    assert len(response.headers.get_list("content-security-policy")) == 1


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"widget_origins": [HOST]})


def test_json_responses_get_nosniff_and_a_deny_all_policy(client: TestClient) -> None:
    started = client.post("/v1/conversations", json={})
    assert started.status_code == 201
    for response in (started, client.get("/healthz"), client.get("/openapi.json"),
                     client.get("/metrics")):
        assert_api_headers(response)
    assert API_POLICY == "default-src 'none'; frame-ancestors 'none'"


def test_error_responses_get_them_too(client: TestClient, conversation) -> None:
    url = f"/v1/conversations/{conversation['id']}/messages"
    errors = {
        404: client.get("/v1/no-such-route"),
        401: client.get(url),
        422: client.post(url, json={"text": ""}, headers=auth(conversation["token"])),
        405: client.delete("/healthz"),
        # Refused by the body-size guard before any route runs.
        413: client.post(url, content=b"x" * 300_000, headers={
            **auth(conversation["token"]), "Content-Type": "application/json"}),
    }
    for status, response in errors.items():
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert_api_headers(response)


def test_swagger_and_redoc_stay_usable_but_cannot_be_framed(client: TestClient) -> None:
    # They load their scripts from a CDN and run an inline one: a script policy would
    # break them, so they only get frame-ancestors (and nosniff).
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "cdn.jsdelivr.net" in page.text
        assert page.headers["content-security-policy"] == PAGE_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"


def test_the_console_keeps_its_own_policy(client: TestClient) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200
    for name, value in CONSOLE_HEADERS.items():
        assert page.headers.get_list(name) == [value], name


def test_the_widget_frame_keeps_its_frame_ancestors_allow_list(client: TestClient) -> None:
    frame = client.get("/widget/frame", params={"host": HOST})
    assert frame.status_code == 200
    (policy,) = frame.headers.get_list("content-security-policy")
    assert f"frame-ancestors 'self' {HOST}" in policy
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert frame.headers["x-content-type-options"] == "nosniff"
    assert frame.headers.get_list("referrer-policy") == ["strict-origin"]
    # A host that may not embed it gets an error that may not be framed anywhere.
    refused = client.get("/widget/frame", params={"host": "https://evil.example"})
    assert refused.status_code == 403
    assert_api_headers(refused)


def test_widget_assets_are_never_sniffed(client: TestClient) -> None:
    loader = client.get("/widget.js")
    assert loader.status_code == 200
    assert loader.headers["content-type"].startswith("application/javascript")
    assert loader.headers["x-content-type-options"] == "nosniff"
    assert loader.headers.get_list("referrer-policy") == ["strict-origin"]
    cached = client.get("/widget.js", headers={"If-None-Match": loader.headers["etag"]})
    assert cached.status_code == 304
    assert cached.headers["x-content-type-options"] == "nosniff"
    strings = client.get("/widget/assets/i18n/en.json")
    assert strings.headers["x-content-type-options"] == "nosniff"


def test_route_headers_win_whatever_their_case() -> None:
    own = [(b"Content-Type", b"text/html"), (b"Content-Security-Policy", b"default-src 'self'"),
           (b"X-Content-Type-Options", b"nosniff"), (b"Referrer-Policy", b"same-origin")]
    assert with_defaults(own) == own
    assert with_defaults([(b"content-type", b"text/html; charset=utf-8")]) == [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", PAGE_POLICY.encode()),
    ]
    # No content type (204, 304) is not a page.
    assert (b"content-security-policy", API_POLICY.encode()) in with_defaults([])


def test_server_sent_events_still_stream_through_it(live_server: LiveServer) -> None:
    started = httpx.post(f"{live_server.url}/v1/conversations", json={}, timeout=10).json()
    headers = auth(started["token"])
    url = f"{live_server.url}/v1/conversations/{started['id']}"
    with httpx.Client(timeout=httpx.Timeout(5, read=10)) as http, \
            http.stream("GET", f"{url}/events", headers=headers) as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        assert_api_headers(events)
        lines = events.iter_lines()
        # The stream is open and idle; the message posted now must arrive on it while it
        # stays open (a buffering middleware would hold it until the stream ends).
        sent = httpx.post(f"{url}/messages", json={"text": "How do I reset my password?"},
                          headers=headers, timeout=30)
        assert sent.status_code == 200, sent.text
        roles = []
        for line in lines:
            data = json.loads(line.removeprefix("data:")) if line.startswith("data:") else {}
            if "message" in data:
                roles.append(data["message"]["role"])
                if "assistant" in roles:
                    break
        assert roles[:2] == ["customer", "assistant"]


def test_a_streamed_reply_streams_through_it(live_server: LiveServer) -> None:
    started = httpx.post(f"{live_server.url}/v1/conversations", json={}, timeout=10).json()
    with httpx.stream("POST", f"{live_server.url}/v1/conversations/{started['id']}/messages",
                      json={"text": "How do I reset my password?"}, timeout=30,
                      headers={**auth(started["token"]), "Accept": "text/event-stream"}
                      ) as reply:
        assert reply.status_code == 200
        assert_api_headers(reply)
        kinds = [line.removeprefix("event: ") for line in reply.iter_lines()
                 if line.startswith("event: ")]
    assert kinds[0] == "stored" and kinds[-1] == "done" and "delta" in kinds


def test_a_server_error_carries_the_api_headers_too(runtime) -> None:
    app = create_app(runtime=runtime)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "kaboom" not in response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == API_POLICY
