"""Hostile input over the real app (SECURITY.md #17, issue 9).

Oversized, deeply nested, non-UTF-8 and non-JSON bodies, NUL bytes, huge numbers, dates at
the ends of the calendar and huge headers get a clear 4xx (a JSON error a developer can act
on), never a 5xx, on every route that takes them; and rejected input never reaches the
model: a model is configured (a fake OpenAI server on loopback) and must see 0 requests.
The second half checks that every server-rendered page escapes customer, agent and KB text.

Routes and fields come from the app's OpenAPI schema, so a route added tomorrow is covered
the day it is added. ``test_api.py`` already covers the message route's basic cases (empty,
too long, NUL, one 1 MB body, one 5,000-deep body, invalid UTF-8, a 300-character
Idempotency-Key); this file extends them to every route and to the edges around them.
Checks where storage matters run on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    ADMIN_TOKEN,
    ARTICLES,
    Backend,
    TestAgent,
    auth,
    make_agent,
    write_kb,
)
from fake_openai import FakeOpenAI, fake_openai
from fastapi.testclient import TestClient
from servers import ServerProcess, database_url, start_server

from assistant.embeddings import HashingEmbedder
from assistant.evaluation.reports import build_report, write_html
from assistant.evaluation.runner import eval_runner
from assistant.evaluation.suites import load_suite
from assistant.runtime import Runtime, build_runtime
from assistant.web.app import MAX_BODY_BYTES, create_app

KIB = 1024
BIGGEST_ID = 2**63 - 1  # SQLite INTEGER and PostgreSQL BIGINT end here
SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
ESCAPED_BREAKOUT = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
HOSTILE_ARTICLE = f"""\
    ---
    title: Damaged parcels {BREAKOUT}
    url: https://help.example.test/shipping/damaged
    ---
    # Damaged parcels

    Damaged parcels are replaced for free: {BREAKOUT} write to shipping {SCRIPT} with a
    photo of the parcel.
    """
# A valid body per JSON route; each hostile test changes one thing in it. A route missing
# here is still probed, with a body that is invalid anyway (see ``valid_body``).
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/conversations"): {"customer": {
        "id": "cust-hostile", "name": "Ann Example", "email": "ann@example.com", "plan": "pro"}},
    ("POST", "/v1/conversations/{conversation_id}/messages"): {"text": "Where is my parcel?"},
    ("POST", "/v1/conversations/{conversation_id}/followup"): {"email": "ann@example.com"},
    ("POST", "/v1/conversations/{conversation_id}/csat"): {"score": 4, "comment": "Quick."},
    ("POST", "/v1/conversations/{conversation_id}/feedback"): {"message_id": 1, "helpful": True},
    ("POST", "/v1/agent/presence"): {"online": True},
    ("POST", "/v1/agent/handoffs/{handoff_id}/reassign"): {"agent_id": "{agent_id}"},
    ("POST", "/v1/agent/conversations/{conversation_id}/messages"): {"text": "On it."},
    ("POST", "/v1/agent/conversations/{conversation_id}/notes"): {"text": "Check the order."},
    ("POST", "/v1/agent/conversations/{conversation_id}/resolve"): {
        "resolution_code": "answered"},
    ("POST", "/v1/kb/ingest"): {"rebuild": False},
}


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    """The tests' KB plus an article whose title and text are hostile HTML."""
    return write_kb(tmp_path / "kb", {**ARTICLES, "shipping/damaged.md": HOSTILE_ARTICLE})


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


# -- the target: the app with a model, a conversation, a claimed hand-off --------------------


@dataclass
class Target:
    """The app under attack, the records the requests aim at, and what must stay untouched."""

    client: TestClient
    runtime: Runtime
    llm: FakeOpenAI
    conversation: dict[str, str]
    staff_conversation: str
    handoff_id: str
    agent: TestAgent
    schema: dict[str, Any] = field(default_factory=dict)
    model_calls: int = 0
    messages: int = 0

    def headers(self, path: str, **extra: str) -> dict[str, str]:
        """Credentials that open ``path`` (so what is refused is the input, not the caller)."""
        if path.startswith("/v1/conversations/"):
            token = self.conversation["token"]
        elif path.startswith("/v1/agent/"):
            token = self.agent.token
        else:
            token = ADMIN_TOKEN
        return {**auth(token), **extra}

    def url(self, template: str) -> str:
        """``template`` with its ids filled in with records that exist."""
        ids = {
            "conversation_id": (self.conversation["id"] if template.startswith(
                "/v1/conversations/") else self.staff_conversation),
            "handoff_id": self.handoff_id,
            "customer_id": "cust-hostile",
            "delivery_id": "0123abcd",
            "article_id": "billing/refunds.md",
        }
        for name, value in ids.items():
            template = template.replace(f"{{{name}}}", value)
        return template

    def send(self, method: str, template: str, *, content: bytes | None = None,
             content_type: str = "application/json", **extra: str) -> httpx.Response:
        """``method`` on ``template`` with credentials; ``extra`` are more headers."""
        return self.client.request(
            method, self.url(template), content=content,
            headers=self.headers(template, **({"Content-Type": content_type} if content
                                              is not None else {}), **extra))

    def assert_untouched(self) -> None:
        """Nothing that was refused reached the model or the message log."""
        assert len(self.llm.requests) == self.model_calls, "rejected input reached the model"
        assert self.runtime.store.count_messages() == self.messages


def _target(settings: Any, embedder: HashingEmbedder, chroma_client: Any, llm: FakeOpenAI,
            database: str | None) -> Iterator[Target]:
    configured = settings.model_copy(update={
        "llm_base_url": llm.url, "llm_model": "test-model", "llm_timeout_seconds": 3.0,
        "llm_max_retries": 1, "rate_limit_per_minute": 100_000,
        **({"database_url": database} if database else {}),
    })
    runtime = build_runtime(configured, embedder=embedder, chroma_client=chroma_client)
    runtime.ingest()
    agent = make_agent(runtime)
    # A 500 is an answer to assert on, not an exception in the test.
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        conversation = client.post("/v1/conversations", json={}).json()
        staff = client.post("/v1/conversations", json={}).json()
        assert client.post(f"/v1/conversations/{staff['id']}/handoff",
                           headers=auth(staff["token"])).status_code == 200
        (item,) = client.get("/v1/agent/queue", headers=auth(agent.token)).json()["items"]
        handoff_id = item["handoff"]["id"]
        assert client.post(f"/v1/agent/handoffs/{handoff_id}/claim",
                           headers=auth(agent.token)).status_code == 200
        target = Target(client=client, runtime=runtime, llm=llm, conversation=conversation,
                        staff_conversation=staff["id"], handoff_id=handoff_id, agent=agent,
                        schema=client.get("/openapi.json").json())
        target.model_calls = len(llm.requests)
        target.messages = runtime.store.count_messages()
        yield target
    runtime.close()


@pytest.fixture
def target(settings, embedder, chroma_client, llm: FakeOpenAI) -> Iterator[Target]:
    """The target on the default SQLite database."""
    yield from _target(settings, embedder, chroma_client, llm, None)


@pytest.fixture
def stored_target(settings, embedder, chroma_client, llm: FakeOpenAI,
                  backend: Backend) -> Iterator[Target]:
    """The target on each storage backend (PostgreSQL refuses what SQLite stores)."""
    url = database_url(backend.url, backend.connect_args)
    yield from _target(settings, embedder, chroma_client, llm, url)


# -- reading the schema ----------------------------------------------------------------------


def json_routes(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every operation that takes a JSON body."""
    return [(method.upper(), path, operation)
            for path, item in schema["paths"].items()
            for method, operation in item.items()
            if "application/json" in operation.get("requestBody", {}).get("content", {})]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def fields(schema: dict[str, Any], node: dict[str, Any], kind: str,
           prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, schema) of every field of type ``kind`` in a body schema, nested ones too."""
    node = _resolve(schema, node)
    for option in node.get("anyOf", []):
        yield from fields(schema, option, kind, prefix)
    if node.get("type") == kind:
        yield prefix, node
    for name, prop in node.get("properties", {}).items():
        yield from fields(schema, prop, kind, (*prefix, name))


def body_schema(operation: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of an operation's request body."""
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def valid_body(target: Target, method: str, path: str) -> dict[str, Any]:
    """A body the route accepts ({} for a route missing from ``VALID_BODIES``)."""
    body = copy.deepcopy(VALID_BODIES.get((method, path), {}))
    if body.get("agent_id") == "{agent_id}":
        body["agent_id"] = target.agent.id
    return body


def with_value(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``body`` with ``value`` at ``path`` (creating objects on the way)."""
    body = copy.deepcopy(body)
    node = body
    for name in path[:-1]:
        node = node.setdefault(name, {})
    node[path[-1]] = value
    return body


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON error of a refusal; fails unless it is one a developer can act on."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] and len(error["message"]) > 10
    return error


def refused(response: httpx.Response, statuses: set[int], what: str) -> list[str]:
    """[] if ``response`` is one of ``statuses`` with a JSON error, else what went wrong."""
    if response.status_code not in statuses:
        return [f"{what}: {response.status_code} (expected {sorted(statuses)}) "
                f"{response.text[:200]}"]
    error_of(response)
    return []


# -- bodies ------------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes: one field no route has."""
    head, tail = b'{"padding": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_bodies_of_4_kb_to_1_mb_get_a_clear_413_or_422_on_every_json_route(
    target: Target,
) -> None:
    routes = json_routes(target.schema)
    assert len(routes) >= 10
    problems: list[str] = []
    for method, path, _ in routes:
        for size in (4 * KIB, 64 * KIB, MAX_BODY_BYTES - KIB, MAX_BODY_BYTES + 1, 1024 * KIB):
            response = target.send(method, path, content=padded(size))
            what = f"{method} {path} with {size} bytes"
            if size <= MAX_BODY_BYTES:
                problems += refused(response, {422}, what)
                if response.status_code == 422:
                    assert "padding" in error_of(response)["message"], what
            else:
                problems += refused(response, {413}, what)
                if response.status_code == 413:
                    error = error_of(response)
                    assert error["code"] == "payload_too_large"
                    assert str(MAX_BODY_BYTES) in error["message"]
        # Without a Content-Length (chunked), the limit counts the bytes as they come.
        chunks = iter([b'{"padding": "', *[b"x" * 64 * KIB] * 8, b'"}'])
        response = target.client.request(method, target.url(path), content=chunks,
                                         headers=target.headers(path))
        problems += refused(response, {413}, f"{method} {path} with a chunked 512 KB body")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


def test_every_string_and_number_in_every_body_is_bounded(target: Target) -> None:
    unbounded = []
    for method, path, operation in json_routes(target.schema):
        body = body_schema(operation)
        for name, node in fields(target.schema, body, "string"):
            if "maxLength" not in node and "enum" not in node:
                unbounded.append(f"{method} {path}: string {'.'.join(name)} has no maxLength")
        for name, node in fields(target.schema, body, "integer"):
            if "maximum" not in node and "exclusiveMaximum" not in node:
                unbounded.append(f"{method} {path}: integer {'.'.join(name)} has no maximum "
                                 f"(ids end at {BIGGEST_ID} in SQLite and PostgreSQL)")
    assert not unbounded, "\n".join(unbounded)


def test_a_value_past_its_bound_is_a_422_naming_the_field(target: Target) -> None:
    problems: list[str] = []
    for method, path, operation in json_routes(target.schema):
        valid = valid_body(target, method, path)
        too_big: list[tuple[tuple[str, ...], Any]] = [
            (name, "a" * (node["maxLength"] + 1))
            for name, node in fields(target.schema, body_schema(operation), "string")
            if "maxLength" in node]
        too_big += [(name, 10**30) for name, _ in
                    fields(target.schema, body_schema(operation), "integer")]
        for name, value in too_big:
            response = target.send(method, path,
                                   content=json.dumps(with_value(valid, name, value)).encode())
            what = f"{method} {path} with {'.'.join(name)} past its bound"
            problems += refused(response, {422}, what)
            if response.status_code == 422:
                located = {d["field"] for d in error_of(response).get("details", [])}
                if "body." + ".".join(name) not in located:
                    problems.append(f"{what}: the error does not name the field: "
                                    f"{response.text[:200]}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


def test_a_message_over_the_length_limit_never_reaches_the_model(target: Target) -> None:
    limit = target.runtime.settings.max_message_chars
    path = "/v1/conversations/{conversation_id}/messages"
    problems: list[str] = []
    for text in ("x" * (limit + 1), "😀" * (limit + 1), " hi " + "é" * limit,
                 "x" * 100_001):
        for accept in ("application/json", "text/event-stream"):
            response = target.send("POST", path, content=json.dumps({"text": text}).encode(),
                                   Accept=accept)
            # Refused before any stream starts: a plain JSON 422, not an SSE "error" event.
            problems += refused(response, {422}, f"{len(text)} characters, Accept: {accept}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()
    # The limit counts characters, not bytes: the longest message in emoji is accepted.
    accepted = target.send("POST", path, content=json.dumps({"text": "😀" * limit}).encode())
    assert accepted.status_code == 200, accepted.text


@pytest.mark.parametrize("body", [
    pytest.param(b"[" * 10_000 + b"]" * 10_000, id="10k-arrays"),
    pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="10k-objects"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100k-arrays"),
    pytest.param(b'{"text": "hi", "extra": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
                 id="10k-inside-a-field"),
])
def test_deeply_nested_json_is_a_422_without_a_recursion_error(
    target: Target, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(body) <= MAX_BODY_BYTES  # under the size limit: the parser has to cope
    problems: list[str] = []
    with caplog.at_level(logging.ERROR):
        for method, path, _ in json_routes(target.schema):
            response = target.send(method, path, content=body)
            problems += refused(response, {422}, f"{method} {path}")
    assert not problems, "\n".join(problems)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    target.assert_untouched()


@pytest.mark.parametrize("body", [
    pytest.param(b'{"text": "\xff\xfe"}', id="invalid-bytes"),
    pytest.param(b'{"text": "\xc0\xaf"}', id="overlong-slash"),
    pytest.param(b'{"text": "\xe2\x82"}', id="truncated-sequence"),
    pytest.param(b'{"text": "\xed\xa0\x80"}', id="encoded-surrogate"),
    pytest.param(b'{"text": "\\ud800 lone surrogate"}', id="escaped-lone-surrogate"),
    pytest.param('{"text": "caf\u00e9"}'.encode("latin-1"), id="latin-1"),
])
def test_bodies_that_are_not_utf8_are_a_422_on_every_json_route(target: Target,
                                                                  body: bytes) -> None:
    problems: list[str] = []
    for method, path, operation in json_routes(target.schema):
        # The same bytes in the first string field the route has.
        strings = [name for name, _ in fields(target.schema, body_schema(operation), "string")]
        if strings:
            outer = json.dumps(with_value(valid_body(target, method, path), strings[0], "@@"))
            content = outer.encode().replace(b'"@@"', body[len(b'{"text": '):-1])
        else:
            content = body
        response = target.send(method, path, content=content)
        problems += refused(response, {422}, f"{method} {path}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


@pytest.mark.parametrize(("content_type", "body"), [
    # What a cross-site form can send without a CORS preflight must never pass for JSON.
    ("text/plain", b'{"text": "hello"}'),
    ("application/x-www-form-urlencoded", b"text=hello"),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhello\r\n--x--\r\n'),
    ("application/xml", b"<text>hello</text>"),
])
def test_a_body_that_is_not_json_is_refused_on_every_json_route(
    target: Target, content_type: str, body: bytes
) -> None:
    problems: list[str] = []
    for method, path, _ in json_routes(target.schema):
        response = target.send(method, path, content=body, content_type=content_type)
        problems += refused(response, {415, 422}, f"{method} {path} as {content_type}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


def test_json_that_is_not_an_object_is_refused(target: Target) -> None:
    problems: list[str] = []
    for method, path, operation in json_routes(target.schema):
        for body in (b"[]", b'"text"', b"1", b"true", b"null", b"NaN", b"1e999999"):
            if body == b"null" and not operation["requestBody"].get("required"):
                continue  # an optional body may be absent, and null says just that
            response = target.send(method, path, content=body)
            problems += refused(response, {422}, f"{method} {path} with {body!r}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


# -- NUL bytes and huge numbers: what a database refuses to store -----------------------------


def test_nul_characters_in_any_text_field_are_a_422(stored_target: Target) -> None:
    target = stored_target
    problems: list[str] = []
    for method, path, operation in json_routes(target.schema):
        valid = valid_body(target, method, path)
        for name, _ in fields(target.schema, body_schema(operation), "string"):
            body = with_value(valid, name, "before\x00after")
            response = target.send(method, path, content=json.dumps(body).encode())
            problems += refused(response, {422}, f"{method} {path} with NUL in "
                                f"{'.'.join(name)}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


def test_nul_characters_in_paths_and_queries_are_never_a_server_error(
    stored_target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    target = stored_target
    problems: list[str] = []
    caplog.set_level(logging.ERROR)
    for path, item in target.schema["paths"].items():
        for method, operation in item.items():
            if "/events" in path:
                continue  # a valid stream never ends; its parameters are integers and ids
            params = operation.get("parameters", [])
            template = path
            for param in params:
                if param["in"] == "path":
                    template = template.replace("{" + param["name"] + "}", "nul%00id")
            url = target.url(template)
            query = "&".join(f"{p['name']}=a%00b" for p in params
                             if p["in"] == "query" and _takes_string(p))
            response = target.client.request(method.upper(), f"{url}?{query}",
                                             headers=target.headers(path))
            if response.status_code >= 500:
                problems.append(f"{method.upper()} {url}?{query}: {response.status_code}")
    # The console's customer page looks the id up the same way.
    admin = make_agent(target.runtime, "Ada Admin", role="admin")
    sign_in(target.client, admin)
    page = target.client.get("/console/customers/nul%00id")
    if page.status_code >= 500:
        problems.append(f"GET /console/customers/nul%00id: {page.status_code}")
    # Refused requests are still audited (the audit log records every outcome).
    problems += [f"logged: {r.getMessage()}" for r in caplog.records
                 if r.levelno >= logging.ERROR and "unhandled error" not in r.getMessage()]
    assert not problems, "\n".join(problems)


def _takes_string(param: dict[str, Any]) -> bool:
    """Whether a parameter accepts a string (optional ones are ``anyOf: [string, null]``)."""
    options = [param["schema"], *param["schema"].get("anyOf", [])]
    return any(option.get("type") == "string" for option in options)


def _integer_schema(param: dict[str, Any]) -> dict[str, Any] | None:
    options = [param["schema"], *param["schema"].get("anyOf", [])]
    return next((o for o in options if o.get("type") == "integer"), None)


def test_numbers_past_what_the_database_stores_are_a_422(stored_target: Target) -> None:
    target = stored_target
    problems: list[str] = []
    for path, item in target.schema["paths"].items():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                integer = _integer_schema(param) if param["in"] == "query" else None
                if integer is None:
                    continue
                url = f"{target.url(path)}?{param['name']}="
                for value in (str(BIGGEST_ID + 1), str(10**30), "abc", "1e3", "-1", "1.5",
                              "0x10"):
                    response = target.client.request(method.upper(), url + value,
                                                     headers=target.headers(path))
                    problems += refused(response, {422}, f"{method.upper()} {url}{value}")
                # The largest value the schema allows must fit the column it is compared
                # with (message ids are 32-bit on PostgreSQL). A stream resumed there would
                # wait for events forever, so streams are left to Last-Event-ID below.
                if "maximum" in integer and "/events" not in path:
                    response = target.client.request(method.upper(), url + str(
                        integer["maximum"]), headers=target.headers(path))
                    if response.status_code >= 500:
                        problems.append(f"{method.upper()} {url}{integer['maximum']} (the "
                                        f"declared maximum): {response.status_code}")
    for method, path, operation in json_routes(target.schema):
        for name, node in fields(target.schema, body_schema(operation), "integer"):
            if "maximum" in node:
                body = with_value(valid_body(target, method, path), name, node["maximum"])
                response = target.send(method, path, content=json.dumps(body).encode())
                if response.status_code >= 500:
                    problems.append(f"{method} {path} with {'.'.join(name)} at its declared "
                                    f"maximum: {response.status_code}")
    events = "/v1/conversations/{conversation_id}/events"
    for value in (str(BIGGEST_ID + 1), "9" * 20, "-1"):
        response = target.client.get(target.url(events),
                                     headers=target.headers(events, **{"Last-Event-ID": value}))
        problems += refused(response, {422}, f"GET {events} with Last-Event-ID {value}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


def test_dates_at_the_ends_of_the_calendar_are_a_422(target: Target) -> None:
    problems: list[str] = []
    for query in ("until=9999-12-31", "since=9999-12-30&until=9999-12-31",
                  "until=0001-01-05", "since=0001-01-01"):
        response = target.client.get(f"/v1/analytics/summary?{query}",
                                     headers=target.headers("/v1/analytics/summary"))
        problems += refused(response, {422}, f"/v1/analytics/summary?{query}")
    admin = make_agent(target.runtime, "Ada Admin", role="admin")
    sign_in(target.client, admin)
    for query in ("until=9999-12-31", "until=0001-01-05"):
        page = target.client.get(f"/console/analytics?{query}")
        if page.status_code != 422 or "text/html" not in page.headers["content-type"]:
            problems.append(f"/console/analytics?{query}: {page.status_code}, "
                            f"{page.headers['content-type']} (expected a 422 page)")
    assert not problems, "\n".join(problems)


# -- headers -------------------------------------------------------------------------------


def test_hostile_headers_get_a_clear_4xx(target: Target) -> None:
    messages = "/v1/conversations/{conversation_id}/messages"
    body = json.dumps({"text": "hello"}).encode()
    problems: list[str] = []
    for key in ("k" * 64 * KIB, "tab\there", "delete\x7f", "bell\x07"):
        response = target.send("POST", messages, content=body, **{"Idempotency-Key": key})
        problems += refused(response, {422}, f"Idempotency-Key {key[:12]!r}")
    huge = auth("t" * 100 * KIB)
    customer = target.client.get(target.url(messages), headers=huge)
    problems += refused(customer, {404}, "a 100 KB conversation token")
    staff = target.client.get("/v1/agent/queue", headers=huge)
    problems += refused(staff, {401}, "a 100 KB staff token")
    events = "/v1/conversations/{conversation_id}/events"
    for value in ("1" * 21, "twelve", "1.5"):
        response = target.client.get(target.url(events),
                                     headers=target.headers(events, **{"Last-Event-ID": value}))
        problems += refused(response, {422}, f"Last-Event-ID {value!r}")
    crowded = target.client.get(target.url(messages), headers=target.headers(
        messages, **{f"X-Filler-{n}": "f" * KIB for n in range(200)}))
    if crowded.status_code != 200:
        problems.append(f"200 extra headers of 1 KB: {crowded.status_code}")
    assert not problems, "\n".join(problems)
    target.assert_untouched()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``assistant serve``: how it runs uvicorn decides what reaches the app."""
    root = tmp_path_factory.mktemp("served")
    server = start_server({"ASSISTANT_DATA_DIR": str(root / "data"),
                           "ASSISTANT_KB_DIR": str(write_kb(root / "kb")),
                           "ASSISTANT_ADMIN_TOKEN": ADMIN_TOKEN}, root / "server.log")
    yield server
    server.stop()


def raw_request(url: str, request: bytes) -> bytes:
    """Send raw bytes to the server; the start of its answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # Refused before it read everything: the answer is already waiting.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return sock.recv(4096)


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * 1024 * KIB
                 + b"\r\n\r\n", id="1mb-header"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 + b"".join(b"X-Filler-%d: %s\r\n" % (n, b"f" * KIB) for n in range(1024))
                 + b"\r\n", id="1000-headers"),
    pytest.param(b"GET /healthz?" + b"q" * 1024 * KIB + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 id="1mb-request-line"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", id="nul-header"),
    # Two lengths: which one a proxy in front believed is anyone's guess (smuggling).
    pytest.param(b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                 b"Content-Length: 40\r\nContent-Type: application/json\r\n\r\n{}",
                 id="two-content-lengths"),
    pytest.param(b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n"
                 b"\r\n{}", id="negative-content-length"),
])
def test_the_server_refuses_malformed_or_huge_http_and_keeps_serving(
    served: ServerProcess, request_bytes: bytes
) -> None:
    answer = raw_request(served.url, request_bytes)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    assert status is not None and 400 <= status < 500, answer[:200]
    assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200


# -- escaping: every page shows customer, agent and KB text as text ----------------------------


def sign_in(client: TestClient, account: TestAgent) -> None:
    """Sign ``account`` in to the console (the client keeps the session cookie)."""
    response = client.post("/console/login", follow_redirects=False,
                           data={"email": account.email, "password": account.password})
    assert response.status_code == 303, response.text


def assert_escaped(html: str, *, must_show: tuple[str, ...] = ()) -> None:
    """No hostile markup survives in ``html``; the escaped forms named are there."""
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "onerror=alert(1)>" not in html.replace("onerror=alert(1)&gt;", "")
    for text in must_show:
        assert text in html, text


def test_console_pages_escape_customer_agent_and_kb_text(runtime: Runtime,
                                                         client: TestClient) -> None:
    agent = make_agent(runtime, f"Eve {SCRIPT}")
    started = client.post("/v1/conversations", json={}).json()
    headers = auth(started["token"])
    said = client.post(f"/v1/conversations/{started['id']}/messages", headers=headers,
                       json={"text": f"Are damaged parcels replaced? {BREAKOUT}"})
    reply = said.json()["reply"]
    # The bot quoted the hostile article: its text reaches the pages through the answer.
    assert SCRIPT in reply["text"] and reply["citations"][0]["article_id"] == (
        "shipping/damaged.md")
    assert client.post(f"/v1/conversations/{started['id']}/handoff",
                       headers=headers).status_code == 200
    sign_in(client, agent)
    queue = client.get("/console").text
    assert_escaped(queue, must_show=(ESCAPED_BREAKOUT, ESCAPED_SCRIPT))
    (item,) = client.get("/v1/agent/queue", headers=auth(agent.token)).json()["items"]
    client.post(f"/v1/agent/handoffs/{item['handoff']['id']}/claim", headers=auth(agent.token))
    client.post(f"/v1/agent/conversations/{started['id']}/messages", headers=auth(agent.token),
                json={"text": f"Agent here {BREAKOUT}"})
    page = client.get(f"/console/conversations/{started['id']}").text
    assert_escaped(page, must_show=(
        f"Are damaged parcels replaced? {ESCAPED_BREAKOUT}",  # the customer
        f"write to shipping {ESCAPED_SCRIPT}",  # the KB, through the bot's answer
        f"Damaged parcels {ESCAPED_BREAKOUT}",  # the KB title, in "Articles the bot tried"
        f"Agent here {ESCAPED_BREAKOUT}",  # the agent's reply
        f"Eve {ESCAPED_SCRIPT}",  # the agent's name
    ))
    # The sign-in form echoes a failed e-mail address back into an attribute.
    client.post("/console/logout", headers={"X-CSRF-Token": _csrf(page)})
    failed = client.post("/console/login", data={"email": BREAKOUT, "password": "wrong"})
    assert failed.status_code == 401
    assert_escaped(failed.text, must_show=(f'value="{ESCAPED_BREAKOUT}"',))


def _csrf(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    return html.split(marker, 1)[1].split('"', 1)[0]


def test_the_widget_frame_escapes_its_title(client: TestClient) -> None:
    for title in (SCRIPT, BREAKOUT):
        frame = client.get("/widget/frame", params={"host": "http://testserver",
                                                    "title": title})
        assert frame.status_code == 200
        assert_escaped(frame.text)
        escaped = ESCAPED_SCRIPT if title == SCRIPT else ESCAPED_BREAKOUT
        assert f"<title>{escaped}</title>" in frame.text
        assert f'data-title="{escaped}"' in frame.text


def test_the_eval_report_escapes_questions_answers_and_kb_text(settings, tmp_path: Path) -> None:
    suite_file = tmp_path / "hostile.yaml"
    suite_file.write_text(textwrap.dedent(f"""\
        name: hostile
        description: {json.dumps("Suite " + SCRIPT)}
        kb: {settings.kb_dir}
        cases:
          - id: damaged
            tags: [{json.dumps(BREAKOUT)}]
            question: {json.dumps("Are damaged parcels replaced? " + BREAKOUT)}
            expect: {{contains: [{json.dumps("zebra " + SCRIPT)}]}}
        """), encoding="utf-8")
    with eval_runner(settings, embedder=HashingEmbedder(), workers=1) as runner:
        report = runner.run(load_suite(suite_file))
    (result,) = report.results
    assert SCRIPT in (result.observed.answer or "")  # the answer quotes the hostile article
    write_html(build_report([report], seed=0), tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html  # the report has no scripts of its own
    assert_escaped(html, must_show=(
        f"Suite {ESCAPED_SCRIPT}",  # the suite's description
        ESCAPED_BREAKOUT,  # the tag and the question
        f"write to shipping {ESCAPED_SCRIPT}",  # the KB text in the answer
        f"zebra {ESCAPED_SCRIPT}",  # the expectation, in the failure message
    ))
