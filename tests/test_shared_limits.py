"""Rate limits and sign-in lockouts shared by every server process through Redis
(``ASSISTANT_REDIS_URL``). Each test uses keys of its own, so a shared Redis is fine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from conftest import make_agent
from fastapi.testclient import TestClient

from assistant.agent_auth import MAX_FAILURES, AgentAuth, SharedLockout
from assistant.errors import RateLimited, Unauthorized
from assistant.runtime import Runtime
from assistant.web.app import create_app
from assistant.web.rate_limits import SharedRateLimiter

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = os.environ.get("ASSISTANT_TEST_REDIS_URL")
    if not url:
        pytest.skip("set ASSISTANT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) to run these")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    yield url
    client.close()


def test_two_processes_spend_one_budget(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    first, second = (SharedRateLimiter(redis.Redis.from_url(redis_url), prefix=prefix)
                     for _ in range(2))
    for limiter in (first, second, first, second, first):
        limiter.hit("ip:1.2.3.4", 5, "requests")
    with pytest.raises(RateLimited, match="at most 5 per minute") as refused:
        second.hit("ip:1.2.3.4", 5, "requests")
    assert 1 <= refused.value.retry_after <= 60
    second.hit("ip:5.6.7.8", 5, "requests")  # other keys are unaffected


def test_a_dead_redis_falls_back_to_counting_per_process() -> None:
    limiter = SharedRateLimiter(redis.Redis.from_url(DEAD_REDIS, socket_connect_timeout=0.2))
    limiter.hit("k", 2, "things")
    limiter.hit("k", 2, "things")
    with pytest.raises(RateLimited):
        limiter.hit("k", 2, "things")


def test_a_guesser_cannot_spread_attempts_over_processes(runtime: Runtime,
                                                         redis_url: str) -> None:
    agent = make_agent(runtime)
    prefix = f"test:{uuid.uuid4().hex}:"
    processes = [AgentAuth(runtime.handoffs) for _ in range(2)]
    for auth_ in processes:
        auth_._lockout = SharedLockout(redis.Redis.from_url(redis_url), prefix=prefix)
    for attempt in range(MAX_FAILURES):
        with pytest.raises(Unauthorized):
            processes[attempt % 2].sign_in(agent.email, "wrong password")
    # Locked on both, even with the right password.
    for auth_ in processes:
        with pytest.raises(RateLimited, match="too many failed sign-ins"):
            auth_.sign_in(agent.email, agent.password)
    # The email never reaches Redis in clear.
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys(prefix + "*")]
    assert keys and all(agent.email not in k for k in keys)


def test_the_api_counts_per_address_across_apps(runtime: Runtime, redis_url: str) -> None:
    # Two apps on one Redis stand in for two server processes behind a load balancer.
    db = redis.Redis.from_url(redis_url)
    for key in db.keys("assistant:rl:ip:testclient:*"):
        db.delete(key)
    runtime.settings = runtime.settings.model_copy(
        update={"redis_url": redis_url, "ip_rate_limit_per_minute": 6})
    with TestClient(create_app(runtime=runtime)) as one, \
            TestClient(create_app(runtime=runtime)) as two:
        codes = [(one if n % 2 else two).post("/v1/conversations", json={}).status_code
                 for n in range(7)]
    assert codes == [201] * 6 + [429]


def test_doctor_reports_the_shared_limits(settings, redis_url: str) -> None:
    from assistant.cli_doctor import _shared_limits

    assert _shared_limits(settings)[0] == "off"
    assert _shared_limits(settings.model_copy(update={"redis_url": redis_url}))[0] == "ok"
    dead = _shared_limits(settings.model_copy(update={"redis_url": DEAD_REDIS}))
    assert dead[0] == "error" and "127.0.0.1:1" in dead[1]
