"""The agent console's pages: sign-in, sessions, CSRF, security headers and escaping."""

from __future__ import annotations

import json
import re
import threading

import httpx
import pytest
from conftest import auth, make_agent
from fastapi.testclient import TestClient

from assistant.agent_auth import MAX_FAILURES, csrf_token
from assistant.web.console import RESOLUTION_CODES, SECURITY_HEADERS, format_duration
from assistant.web.deps import SESSION_COOKIE

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def sign_in(client: TestClient, agent, **headers: str) -> httpx.Response:
    return client.post(
        "/console/login",
        data={"email": agent.email, "password": agent.password},
        headers=headers,
        follow_redirects=False,
    )


def set_cookie_header(response: httpx.Response) -> str:
    (header,) = response.headers.get_list("set-cookie")
    return header


def handed_off(client: TestClient, conversation: dict[str, str], *texts: str) -> None:
    """The customer writes ``texts`` then asks for a person."""
    for text in texts:
        sent = client.post(f"/v1/conversations/{conversation['id']}/messages",
                           json={"text": text}, headers=auth(conversation["token"]))
        assert sent.status_code == 200, sent.text
    asked = client.post(f"/v1/conversations/{conversation['id']}/handoff",
                        headers=auth(conversation["token"]))
    assert asked.status_code == 200, asked.text


def assert_secured(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


# --- sign-in -----------------------------------------------------------------------------


def test_login_page_renders_an_accessible_form(client: TestClient) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert 'id="password" name="password" type="password"' in html
    assert 'href="#main"' in html and '<main id="main"' in html  # skip link and landmark
    assert "<script>" not in html and "style=" not in html  # the CSP forbids both
    assert_secured(page)


@pytest.mark.parametrize("wrong", ["password", "email"])
def test_a_wrong_password_or_email_gets_one_generic_answer_and_no_cookie(
    client: TestClient, agent, wrong: str
) -> None:
    form = {"email": agent.email, "password": "not the password"}
    if wrong == "email":
        form = {"email": "nobody@example.com", "password": agent.password}
    response = client.post("/console/login", data=form, follow_redirects=False)
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert "set-cookie" not in response.headers
    assert SESSION_COOKIE not in client.cookies
    assert_secured(response)


def test_signing_in_sets_a_strict_httponly_cookie_and_redirects_to_the_queue(
    client: TestClient, agent, runtime
) -> None:
    response = sign_in(client, agent)
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = set_cookie_header(response)
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/"
    hours = runtime.settings.session_hours
    assert hours * 3600 - 60 < int(attributes["max-age"].split("=")[1]) <= hours * 3600
    assert "secure" not in attributes  # plain HTTP in tests; see the next test
    token = client.cookies[SESSION_COOKIE]
    assert runtime.auth.agent_for(token).id == agent.id
    queue = client.get("/console")
    assert queue.status_code == 200
    assert f'<meta name="csrf-token" content="{csrf_token(token)}">' in queue.text
    assert agent.name in queue.text


def test_signing_in_again_replaces_the_old_session_and_stays_online(
    client: TestClient, agent, runtime
) -> None:
    sign_in(client, agent)
    first = client.cookies[SESSION_COOKIE]
    again = sign_in(client, agent)
    assert again.status_code == 303
    assert runtime.auth.agent_for(first) is None  # the old session ends
    assert runtime.auth.agent_for(client.cookies[SESSION_COOKIE]).id == agent.id
    assert runtime.handoffs.get_agent(agent.id).online is True


def test_the_cookie_is_secure_when_configured(runtime, agent) -> None:
    from assistant.web.app import create_app

    runtime.settings = runtime.settings.model_copy(update={"secure_cookies": True})
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        response = sign_in(client, agent)
    assert response.status_code == 303
    assert "secure" in set_cookie_header(response).lower().replace(" ", "").split(";")


def test_repeated_failures_lock_the_account_out(client: TestClient, agent) -> None:
    for _ in range(MAX_FAILURES):
        failed = client.post("/console/login",
                             data={"email": agent.email, "password": "guess"})
        assert failed.status_code == 401
    locked = sign_in(client, agent)  # even the right password, while locked
    assert locked.status_code == 429
    assert "too many failed sign-ins" in locked.text.lower()
    assert "Wrong email or password." not in locked.text
    assert "set-cookie" not in locked.headers


def test_a_sign_in_posted_from_another_site_is_refused(client: TestClient, agent) -> None:
    forged = sign_in(client, agent, origin="https://evil.example")
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers
    cross = sign_in(client, agent, **{"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    same = sign_in(client, agent, origin="http://testserver")
    assert same.status_code == 303


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(
    client: TestClient, agent, conversation
) -> None:
    page = f"/console/conversations/{conversation['id']}"
    bounced = client.get(page, follow_redirects=False)
    assert bounced.status_code == 303
    assert bounced.headers["location"] == (
        f"/console/login?next=%2Fconsole%2Fconversations%2F{conversation['id']}"
    )
    form = client.get(bounced.headers["location"])
    assert f'name="next" value="{page}"' in form.text
    back = client.post("/console/login", follow_redirects=False,
                       data={"email": agent.email, "password": agent.password, "next": page})
    assert back.headers["location"] == page
    client.cookies.clear()
    for evil in ("//evil.example", "https://evil.example/console", "/console/../v1/agent/me"):
        away = client.post("/console/login", follow_redirects=False,
                           data={"email": agent.email, "password": agent.password, "next": evil})
        assert away.headers["location"] == "/console"
        client.cookies.clear()


def test_pages_redirect_to_sign_in_without_a_valid_session(
    client: TestClient, conversation
) -> None:
    for path in ("/console", f"/console/conversations/{conversation['id']}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login")
        client.cookies.set(SESSION_COOKIE, "forged-or-expired")
        again = client.get(path, follow_redirects=False)
        assert again.status_code == 303
        assert again.headers["location"].startswith("/console/login")
        client.cookies.clear()


# --- CSRF and sign-out ---------------------------------------------------------------


def test_cookie_authenticated_writes_need_the_csrf_token(
    client: TestClient, agent, conversation, runtime
) -> None:
    handed_off(client, conversation, "My invoice is wrong")
    (queued,) = runtime.handoffs.queue()
    sign_in(client, agent)
    token = client.cookies[SESSION_COOKIE]
    url = f"/v1/agent/handoffs/{queued.id}/claim"
    refused = client.post(url)
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["error"]["message"]
    wrong = client.post(url, headers={"X-CSRF-Token": csrf_token("another session")})
    assert wrong.status_code == 403
    assert runtime.handoffs.get(queued.id).status == "queued"
    claimed = client.post(url, headers={"X-CSRF-Token": csrf_token(token)})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["agent_id"] == agent.id
    assert client.get("/v1/agent/me").json()["id"] == agent.id  # reads need no token


def test_signing_out_ends_the_session(client: TestClient, agent, runtime) -> None:
    sign_in(client, agent)
    token = client.cookies[SESSION_COOKIE]
    refused = client.post("/console/logout", follow_redirects=False)  # no CSRF token
    assert refused.status_code == 403
    assert runtime.auth.agent_for(token) is not None
    out = client.post("/console/logout", data={"csrf_token": csrf_token(token)},
                      follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/console/login"
    assert set_cookie_header(out).startswith(f'{SESSION_COOKIE}="";')
    assert runtime.auth.agent_for(token) is None
    assert runtime.handoffs.get_agent(agent.id).online is False
    # The old cookie, replayed, opens nothing.
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert client.get("/v1/agent/me").status_code == 401


# --- headers and static files ----------------------------------------------------------


def test_every_console_response_carries_the_security_headers(
    client: TestClient, agent, conversation
) -> None:
    assert_secured(client.get("/console", follow_redirects=False))
    sign_in(client, agent)
    for path in ("/console", f"/console/conversations/{conversation['id']}",
                 "/console/conversations/ffff", "/console/conversations/NOT-AN-ID"):
        assert_secured(client.get(path))
    assert client.get("/console/conversations/ffff").status_code == 404
    for path in ("/console/static/console.js", "/console/static/console.css"):
        static = client.get(path)  # cacheable, unlike pages; the rest applies as well
        for name, value in SECURITY_HEADERS.items():
            assert name == "Cache-Control" or static.headers[name] == value


def test_static_files_are_served_with_their_types_and_nothing_else(client: TestClient) -> None:
    page = client.get("/console/login").text
    (script,) = re.findall(r'<script src="([^"]+)" defer></script>', page)
    js = client.get(script)
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "immutable" in js.headers["cache-control"]
    # Data only ever becomes text: no HTML parsing sinks anywhere in the script.
    assert not re.search(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", js.text)
    css = client.get("/console/static/console.css")
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"] == "no-cache"  # unversioned URL: revalidate
    for bad in ("../console.py", "..%2Fconsole.py", "missing.js", "console.py"):
        assert client.get(f"/console/static/{bad}").status_code == 404


# --- what the pages show -------------------------------------------------------------


def test_customer_text_is_escaped_everywhere_it_is_shown(client: TestClient, agent) -> None:
    started = client.post("/v1/conversations", json={"customer": {
        "id": "cust-1", "name": "<b>Eve</b><svg onload=alert(3)>", "email": "eve@example.com",
    }})
    assert started.status_code == 201, started.text
    conversation = started.json()
    handed_off(client, conversation, f"My invoice is wrong {XSS}")
    note = client.post(f"/v1/agent/conversations/{conversation['id']}/notes",
                       json={"text": f"note {XSS}"}, headers=auth(agent.token))
    assert note.status_code == 201
    sign_in(client, agent)
    for path in ("/console", f"/console/conversations/{conversation['id']}"):
        html = client.get(path).text
        assert "<img src=x" not in html
        assert "<script>alert" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html
    page = client.get(f"/console/conversations/{conversation['id']}").text
    assert "<b>Eve" not in page and "<svg" not in page
    assert "&lt;b&gt;Eve&lt;/b&gt;&lt;svg onload=alert(3)&gt;" in page
    assert f'data-note-id="{note.json()["id"]}"' in page
    # The only scripts are the console's own file.
    assert re.findall(r"<script[^>]*>", page) == [
        re.search(r'<script src="/console/static/console\.js\?v=\w+" defer>', page).group(0)
    ]


def test_the_conversation_page_shows_the_context_packet_and_its_controls(
    client: TestClient, agent, conversation, runtime
) -> None:
    handed_off(client, conversation, "I was charged twice for my March invoice")
    sign_in(client, agent)
    url = f"/console/conversations/{conversation['id']}"
    html = client.get(url).text
    for text in ("Asked: I was charged twice for my March invoice", "Summary",
                 "Why it was handed off", "human requested", "Articles the bot tried",
                 "Intent and mood", "Health", "Previous conversations", "Anonymous visitor",
                 "Internal — never shown to the customer", 'data-state="queued"',
                 "Waiting in the support queue."):
        assert text in html, text
    assert re.search(r'<button type="button" id="claim" data-show="queued">Claim</button>', html)
    assert re.search(r'<form id="reply-form"[^>]* hidden>', html)  # not claimed yet
    (queued,) = runtime.handoffs.queue()
    token = client.cookies[SESSION_COOKIE]
    claim = client.post(f"/v1/agent/handoffs/{queued.id}/claim",
                        headers={"X-CSRF-Token": csrf_token(token)})
    assert claim.status_code == 200
    claimed = client.get(url).text
    assert 'data-state="mine"' in claimed
    assert re.search(r'<form id="reply-form"[^>]*data-show="mine">', claimed)
    assert '<label for="reply">Reply</label>' in claimed
    assert "Send reply" in claimed and "Return to bot" in claimed and "Release" in claimed
    # Another agent sees who holds it and gets no reply box.
    other = make_agent(runtime, "Sam Second")
    client.cookies.clear()
    sign_in(client, other)
    theirs = client.get(url).text
    assert 'data-state="other"' in theirs
    assert "Alex Agent is handling this conversation." in theirs


def test_every_offered_resolution_code_is_one_the_api_accepts() -> None:
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", code) for code, _ in RESOLUTION_CODES)


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (0, 59, 60, 3599, 3600, 3660, 86400, 90000)] == [
        "<1 min", "<1 min", "1 min", "59 min", "1 h", "1 h 1 min", "1 d", "1 d 1 h"]


# --- notes stay internal ---------------------------------------------------------------


def test_notes_never_reach_the_customer(live_server, runtime) -> None:
    """A note written between two replies is in neither the customer's messages nor stream."""
    agent = make_agent(runtime)
    base = live_server.url
    with httpx.Client(base_url=base, timeout=10) as http:
        conversation = http.post("/v1/conversations", json={}).json()
        customer = auth(conversation["token"])
        http.post(f"/v1/conversations/{conversation['id']}/handoff", headers=customer)
        (queued,) = runtime.handoffs.queue()
        staff = auth(agent.token)
        assert http.post(f"/v1/agent/handoffs/{queued.id}/claim", headers=staff).status_code == 200
        agent_url = f"/v1/agent/conversations/{conversation['id']}"
        note = http.post(f"{agent_url}/notes", json={"text": "SECRET NOTE: VIP, refund ok"},
                         headers=staff)
        assert note.status_code == 201
        reply = http.post(f"{agent_url}/messages", json={"text": "Hello, I can help."},
                          headers=staff)
        assert reply.status_code == 201

        messages = http.get(f"/v1/conversations/{conversation['id']}/messages",
                            headers=customer).text
        assert "Hello, I can help." in messages
        assert "SECRET NOTE" not in messages

        # The stream replays from the start; the reply comes after the note in the log, so
        # once the reply has arrived a leaked note would already have been seen.
        seen: list[str] = []
        done = threading.Event()
        with http.stream("GET", f"/v1/conversations/{conversation['id']}/events",
                         headers=customer) as stream:
            for line in stream.iter_lines():
                seen.append(line)
                if line.startswith("data:") and "Hello, I can help." in line:
                    done.set()
                    break
        assert done.is_set()
        stream_text = "\n".join(seen)
        assert "SECRET NOTE" not in stream_text
        assert "event: note" not in stream_text
        events = [json.loads(line[5:]) for line in seen if line.startswith("data:")]
        assert events[-1]["message"]["role"] == "agent"
        # Staff do see it.
        assert "SECRET NOTE: VIP, refund ok" in http.get(agent_url, headers=staff).text
