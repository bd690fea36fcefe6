"""Console sign-in: passwords, lockout, sessions, presence, CSRF tokens."""

from __future__ import annotations

import pytest
from conftest import AGENT_PASSWORD, make_agent

from assistant.agent_auth import MAX_FAILURES, AgentAuth, csrf_matches, csrf_token
from assistant.errors import RateLimited, Unauthorized


@pytest.fixture
def auth(runtime) -> AgentAuth:
    return AgentAuth(runtime.handoffs, session_hours=1)


def test_sign_in_opens_a_session_and_goes_online(auth, runtime) -> None:
    agent = make_agent(runtime, "Sam Sign", online=False)
    signed = auth.sign_in(agent.email.upper(), AGENT_PASSWORD)
    assert signed.agent.online and auth.agent_for(signed.session_token).id == agent.id
    assert auth.agent_for("not-a-session") is None


def test_wrong_passwords_lock_the_account_out(auth, runtime) -> None:
    agent = make_agent(runtime, "Lou Lock")
    for _ in range(MAX_FAILURES):
        with pytest.raises(Unauthorized, match="wrong email or password"):
            auth.sign_in(agent.email, "wrong password!")
    with pytest.raises(RateLimited, match="try again in"):
        auth.sign_in(agent.email, AGENT_PASSWORD)
    with pytest.raises(Unauthorized, match="wrong email or password"):
        auth.sign_in("nobody@example.com", AGENT_PASSWORD)  # same message: no probing


def test_signing_out_of_one_browser_keeps_the_agent_online_in_another(auth, runtime) -> None:
    agent = make_agent(runtime, "Two Tabs", online=False)
    first = auth.sign_in(agent.email, AGENT_PASSWORD)
    second = auth.sign_in(agent.email, AGENT_PASSWORD)
    auth.sign_out(first.session_token)
    assert auth.agent_for(first.session_token) is None
    assert runtime.handoffs.get_agent(agent.id).online
    auth.sign_out(second.session_token)
    assert not runtime.handoffs.get_agent(agent.id).online


def test_csrf_tokens_belong_to_their_session() -> None:
    assert csrf_matches("session-a", csrf_token("session-a"))
    assert not csrf_matches("session-b", csrf_token("session-a"))
    assert not csrf_matches("session-a", None)
