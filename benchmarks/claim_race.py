"""Claim race: many agents claim one hand-off at once, across two server processes.

Starts two ``assistant serve`` processes on one database (a SQLite file, or PostgreSQL
with ``--postgres URL``), creates ``--claimers`` agents with API tokens, and for each of
``--rounds`` rounds queues a fresh hand-off and fires one claim per agent at the same
moment, half at each process. Counts winners per round (the target is exactly one),
double owners (hand-offs with more than one ``handoff.claimed`` event) and reports claim
latency. SECURITY.md target: 50 concurrent claims, 200 rounds, 0 double owners.

    python benchmarks/claim_race.py [--rounds 200] [--claimers 50]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, console, fresh_pg_schema, percentile, show_table, write_json
from turn_latency import free_port, log_tail, stop_server

from assistant.identity import hash_token, new_conversation_token
from assistant.passwords import hash_password
from assistant.storage.db import make_engine, migrate
from assistant.storage.handoff_repo import HandoffStore
from assistant.storage.repos import Store

ADMIN = "bench-admin"


def start(url: str, data_dir: Path, kb_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_DATABASE_URL=url, ASSISTANT_DATA_DIR=str(data_dir),
               ASSISTANT_KB_DIR=str(kb_dir), ASSISTANT_ADMIN_TOKEN=ADMIN,
               ASSISTANT_IP_RATE_LIMIT_PER_MINUTE="1000000")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_up(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log_tail(log)}")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server not ready:\n{log_tail(log)}")


def make_agents(handoffs: HandoffStore, count: int, rounds: int) -> list[str]:
    tokens = []
    password = hash_password(uuid.uuid4().hex)
    for i in range(count):
        agent = handoffs.create_agent(
            email=f"bench{i}-{uuid.uuid4().hex[:6]}@example.com", name=f"Bench {i}",
            role="agent", password_hash=password, teams=["support"], capacity=rounds + 1)
        handoffs.set_online(agent.id, True)
        token = new_conversation_token()
        handoffs.add_token(agent.id, hash_token(token), "bench")
        tokens.append(token)
    return tokens


async def race(urls: list[str], tokens: list[str], rounds: int) -> dict[str, Any]:
    winners: list[int] = []
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=len(tokens) + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for n in range(rounds):
            base = urls[n % 2]
            chat = (await client.post(base + "/v1/conversations", json={})).json()
            handoff = await client.post(f"{base}/v1/conversations/{chat['id']}/handoff",
                                        headers={"Authorization": f"Bearer {chat['token']}"})
            handoff.raise_for_status()
            queue = (await client.get(urls[1] + "/v1/agent/queue",
                                      headers={"Authorization": f"Bearer {ADMIN}"})).json()
            (item,) = [i for i in queue["items"]
                       if i["handoff"]["conversation_id"] == chat["id"]]
            path = f"/v1/agent/handoffs/{item['handoff']['id']}/claim"

            async def claim(i: int, path: str = path) -> int:
                started = time.perf_counter()
                response = await client.post(urls[i % 2] + path,
                                             headers={"Authorization": f"Bearer {tokens[i]}"})
                latencies.append((time.perf_counter() - started) * 1000)
                return response.status_code

            codes = await asyncio.gather(*(claim(i) for i in range(len(tokens))))
            winners.append(codes.count(200))
            errors += sum(1 for c in codes if c not in (200, 409))
    return {"winners": winners, "latencies": latencies, "errors": errors}


def run(url: str, label: str, rounds: int, claimers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        engine = make_engine(url)
        migrate(engine)
        store, handoffs = Store(engine), HandoffStore(engine)
        tokens = make_agents(handoffs, claimers, rounds)
        kb = ROOT / "knowledge_base"
        procs, urls = [], []
        try:
            for n in range(2):
                port = free_port()
                log = tmp_path / f"server{n}.log"
                procs.append(start(url, tmp_path / f"data{n}", kb, port, log))
                urls.append(f"http://127.0.0.1:{port}")
            for proc, base, n in zip(procs, urls, range(2), strict=True):
                wait_up(proc, base, tmp_path / f"server{n}.log")
            started = time.perf_counter()
            result = asyncio.run(race(urls, tokens, rounds))
            seconds = time.perf_counter() - started
        finally:
            for proc in procs:
                stop_server(proc)
        claimed = store.list_events(type="handoff.claimed", limit=10 * rounds + 100)
        per_handoff: dict[str, int] = {}
        for event in claimed:
            key = event.payload["handoff_id"]
            per_handoff[key] = per_handoff.get(key, 0) + 1
        engine.dispose()
    lat = result["latencies"]
    return {
        "backend": label, "rounds": rounds, "claimers": claimers,
        "one_winner": sum(1 for w in result["winners"] if w == 1),
        "double_owners": sum(1 for c in per_handoff.values() if c > 1),
        "errors": result["errors"], "seconds": round(seconds, 1),
        "p50_ms": round(percentile(lat, 50), 1),
        "p95_ms": round(percentile(lat, 95), 1),
        "p99_ms": round(percentile(lat, 99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--claimers", type=int, default=50)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (a fresh schema)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"sqlite:///{Path(tmp) / 'race.db'}", "sqlite", args.rounds,
                           args.claimers))
    if args.postgres:
        with fresh_pg_schema(args.postgres) as (url, _schema):
            results.append(run(url, "postgresql", args.rounds, args.claimers))
    columns = list(results[0])
    show_table("claim race: 2 server processes, one database",
               columns, [[r[c] for c in columns] for r in results])
    ok = all(r["one_winner"] == r["rounds"] and not r["double_owners"]
             and not r["errors"] for r in results)
    console.print("exactly one winner in every round, 0 double owners" if ok
                  else "[red]FAILED: see the table[/red]")
    write_json(args.json, {"results": results})
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
