"""Turn latency: the engine in-process, and the HTTP API under concurrent clients.

(a) engine: ingests the demo knowledge base (real ONNX embeddings, embedded Chroma, SQLite,
all in a temporary directory), warms up, then sends a fixed list of realistic customer
questions through ``Engine.handle_turn`` as an anonymous visitor, cycling through the list,
and reports p50/p95/p99 wall-clock milliseconds and the mean of each stage of
``timings_ms``.

(b) HTTP: starts the real server (``assistant serve --workers N``) in a subprocess on a free
port of 127.0.0.1 over the same data directory, waits for ``GET /healthz``, then runs an
asyncio + httpx load generator: every client opens its own conversation and posts messages
(each with a unique ``Idempotency-Key``) for ``--duration`` seconds or ``--requests`` posts.
A turn counts only when the bot answered it: once a question hands the conversation to a
person, later messages are stored and classified but not answered (they would measure a
cheaper path), so that client starts a new conversation, as a new customer would.
Reports turns/s, p50/p95/p99 latency of answered posts, how many posts were held for a
person instead, and errors (any non-2xx or transport failure). After the server has
stopped, the engine timings it stored on each reply are read back from its SQLite
database, to show how much of a turn's latency is the engine and how much is the rest
(HTTP, storage, waiting for a worker).

    python benchmarks/turn_latency.py [--turns 400] [--clients 16] [--duration 20]
        [--requests N] [--workers 1 2] [--embed-threads N] [--skip-engine] [--skip-http]
        [--profile [TURNS]] [--data-dir DIR] [--server-env NAME=VALUE]
        [--json results/turn_latency.json]

The server runs with a clean ``ASSISTANT_*`` environment (only data dir, KB dir, host,
port and ``--embed-threads`` are set), so local settings cannot change what is measured.

Targets (from the issue): engine p50 <= 20 ms; HTTP >= 100 turns/s with 16 clients on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    ROOT,
    console,
    env_setting,
    mean,
    percentile,
    require,
    show_table,
    write_json,
)

from assistant.config import Settings
from assistant.kb.audience import Audience
from assistant.runtime import Runtime, build_runtime

ENGINE_P50_TARGET_MS = 20.0
HTTP_TURNS_PER_S_TARGET = 100.0
HTTP_TARGET_CLIENTS = 16

SERVER_START_TIMEOUT_S = 180.0  # the server ingests first if the index is empty
SERVER_STOP_TIMEOUT_S = 20.0
REQUESTS_MODE_TIME_CAP_S = 300.0  # --requests N still stops after this long
MAX_POSTS_PER_CLIENT = 100_000
ERROR_SAMPLES = 5

# Realistic questions a Tallyboard customer asks, plus a few the help center cannot answer.
QUESTIONS = [
    "How do I reset my password?",
    "I forgot my password and the reset email never arrived",
    "My account is locked after too many failed sign-in attempts, what do I do?",
    "How do I turn on two-factor authentication?",
    "I lost my phone with my authenticator app, how do I get back into my account?",
    "Where do I find my 2FA recovery codes?",
    "How do I set up SSO with Okta using SAML?",
    "Can I change the email address I use to log in?",
    "Where can I download my invoices?",
    "How do I add our VAT number to invoices?",
    "Can I get a refund if I cancel in the middle of my billing cycle?",
    "I was charged twice this month, can I get my money back?",
    "My card payment failed, what happens to my account now?",
    "How do I update the credit card on file?",
    "How do I upgrade from Starter to Pro?",
    "Can I switch from monthly to annual billing?",
    "What happens if I downgrade my plan?",
    "How do I cancel my subscription?",
    "How much does the Pro plan cost?",
    "What is included in the free trial and how long does it last?",
    "Do you offer discounts for nonprofits?",
    "How does seat-based billing work when I add a teammate?",
    "How do I connect Tallyboard to Slack?",
    "Slack alerts stopped posting to our channel",
    "How do I connect Salesforce as a data source?",
    "What are the API rate limits?",
    "I keep getting 429 Too Many Requests from the API",
    "How do I create an API key?",
    "How do I verify webhook signatures?",
    "Our webhook endpoint is not receiving events",
    "How can I export all of my data?",
    "How do I delete my workspace and request GDPR erasure?",
    "Do you sign a data processing agreement?",
    "My dashboard is not loading, it just spins forever",
    "Dashboards are very slow this morning",
    "Our Postgres sync keeps failing",
    "What is the weather in Paris tomorrow?",
    "Can you recommend a good pizza place near me?",
    "Write me a poem about the ocean",
    "Who won the football game last night?",
]
WARMUP_TURNS = 20


@dataclass
class LoadResult:
    """What one HTTP load run measured."""

    latencies_ms: list[float] = field(default_factory=list)
    held: int = 0  # posts answered by nobody: the conversation was with a person
    handoffs: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    conversation_ids: list[str] = field(default_factory=list)
    server_cpu_seconds: float | None = None
    client_cpu_seconds: float = 0.0

    def error(self, message: str) -> None:
        """Count an error and keep the first few messages."""
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(message)


def summary(latencies: list[float], seconds: float, errors: int) -> dict[str, float]:
    """p50/p95/p99/mean ms and throughput of one run."""
    return {
        "turns": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": mean(latencies),
        "turns_per_s": len(latencies) / seconds if seconds > 0 else float("nan"),
        "errors": errors,
        "seconds": seconds,
    }


# -- (a) engine ----------------------------------------------------------------------------


def run_engine(runtime: Runtime, turns: int) -> dict[str, Any]:
    """Warm up, then ``turns`` turns through ``Engine.handle_turn``; latency and stage means."""
    engine = runtime.engine
    audience = Audience.anonymous()
    for i in range(WARMUP_TURNS):
        engine.handle_turn(text=QUESTIONS[i % len(QUESTIONS)], audience=audience)
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    abstained = errors = 0
    samples: list[str] = []
    cpu_started = time.process_time()  # every thread of this process, ONNX's pool included
    started = time.perf_counter()
    for i in range(turns):
        t0 = time.perf_counter()
        try:
            result = engine.handle_turn(text=QUESTIONS[i % len(QUESTIONS)], audience=audience)
        except Exception as exc:  # a benchmark reports failures, it does not stop on them
            errors += 1
            if len(samples) < ERROR_SAMPLES:
                samples.append(f"{type(exc).__name__}: {exc}")
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
        abstained += result.answer.abstained
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    stage_means = {stage: mean(values) for stage, values in stages.items()}
    parts = sum(v for k, v in stage_means.items() if k != "total")
    stage_means["other"] = stage_means.get("total", parts) - parts  # clock overhead only
    return {
        **summary(latencies, seconds, errors),
        "stage_means_ms": stage_means,
        "stage_p50_ms": {stage: percentile(values, 50) for stage, values in stages.items()},
        "cpu_ms_per_turn": cpu_seconds * 1000 / max(len(latencies), 1),
        "abstained": abstained,
        "error_samples": samples,
    }


def profile_engine(runtime: Runtime, turns: int) -> str:
    """cProfile ``turns`` engine turns; the top functions by own and cumulative time."""
    audience = Audience.anonymous()
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(turns):
        runtime.engine.handle_turn(text=QUESTIONS[i % len(QUESTIONS)], audience=audience)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)
    return out.getvalue()


# -- (b) HTTP ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    data_dir: Path,
    kb_dir: Path,
    port: int,
    workers: int,
    embed_threads: int,
    log_path: Path,
    server_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``assistant serve`` on 127.0.0.1:port in its own process group, logging to a file.

    ``server_env`` (``--server-env``) is applied last, so it can override any default here.
    """
    env = clean_env({
        "ASSISTANT_DATA_DIR": str(data_dir),
        "ASSISTANT_KB_DIR": str(kb_dir),
        "ASSISTANT_HOST": "127.0.0.1",
        "ASSISTANT_PORT": str(port),
        "ASSISTANT_EMBED_THREADS": str(embed_threads),
        # Every client posts from 127.0.0.1 as fast as it is answered: the per-address and
        # per-conversation limits would measure themselves, not the server.
        "ASSISTANT_RATE_LIMIT_PER_MINUTE": "100000",
        "ASSISTANT_IP_RATE_LIMIT_PER_MINUTE": "1000000",
        **(server_env or {}),
    })
    return spawn_serve(data_dir, env, port, workers, log_path)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any ``ASSISTANT_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(extra)
    return env


def spawn_serve(
    data_dir: Path, env: dict[str, str], port: int, workers: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """Run ``assistant serve`` with exactly ``env``, in its own session, logging to a file."""
    command = [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=data_dir,  # no stray .env from the caller's directory
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully, workers too), then SIGKILL its group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            console.print("[yellow]server did not stop on SIGTERM; killing it[/yellow]")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def log_tail(log_path: Path, lines: int = 25) -> str:
    """The end of the server log, for error messages."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0
    if not ticks or not Path(f"/proc/{pid}/stat").exists():
        return None
    total = 0
    pending, seen = [pid], set()
    while pending and len(seen) < 256:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return total / ticks


def cores_busy(seconds: float = 1.0) -> float | None:
    """How many cores were busy (all processes) over the next ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def worker_pids(log_path: Path) -> set[str]:
    """Worker processes that uvicorn reported as started."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return set(re.findall(r"Started server process \[(\d+)\]", text))


def wait_until_ready(
    proc: subprocess.Popen[bytes], base_url: str, workers: int, log_path: Path
) -> dict[str, Any]:
    """Poll ``/healthz`` until it answers 200 and every worker finished its startup."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    health: dict[str, Any] | None = None
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(
                    f"server exited with code {proc.returncode}:\n{log_tail(log_path)}"
                )
            if health is None:
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get("/healthz")
                    if response.status_code == 200:
                        health = response.json()
            log = log_path.read_text(errors="replace")
            if health is not None and log.count("Application startup complete") >= workers:
                return health
            time.sleep(0.25)
    raise SystemExit(f"server not ready after {SERVER_START_TIMEOUT_S:.0f}s:\n{log_tail(log_path)}")


async def open_conversation(client: httpx.AsyncClient) -> tuple[str, str]:
    """POST /v1/conversations -> (id, token)."""
    response = await client.post("/v1/conversations", json={})
    response.raise_for_status()
    body = response.json()
    return str(body["id"]), str(body["token"])


async def post(
    client: httpx.AsyncClient, conversation: tuple[str, str], text: str
) -> httpx.Response:
    """One customer message with a fresh Idempotency-Key."""
    conversation_id, token = conversation
    return await client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
    )


async def drive(
    base_url: str,
    *,
    clients: int,
    duration: float,
    requests: int,
    timeout: float,
    server_pid: int,
) -> LoadResult:
    """Open one conversation per client, warm up, then post until the time or budget is up."""
    result = LoadResult()
    own_cpu = time.process_time
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=timeout, trust_env=False
    ) as client:
        conversations = await asyncio.gather(*(open_conversation(client) for _ in range(clients)))
        result.conversation_ids = [cid for cid, _ in conversations]
        # Warm-up: one message per client (connections open, worker threads started).
        warm = await asyncio.gather(
            *(post(client, c, QUESTIONS[i]) for i, c in enumerate(conversations)),
            return_exceptions=True,
        )
        for response in warm:
            if isinstance(response, BaseException) or not response.is_success:
                result.error(f"warm-up: {response!r}")

        loop = asyncio.get_running_loop()
        time_cap = REQUESTS_MODE_TIME_CAP_S if requests else duration
        deadline = loop.time() + time_cap
        issued = 0

        async def client_loop(index: int, conversation: tuple[str, str]) -> None:
            nonlocal issued
            for n in range(MAX_POSTS_PER_CLIENT):
                if loop.time() >= deadline or (requests and issued >= requests):
                    return
                issued += 1
                text = QUESTIONS[(index * 7 + n) % len(QUESTIONS)]
                t0 = time.perf_counter()
                try:
                    response = await post(client, conversation, text)
                except httpx.HTTPError as exc:
                    result.error(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed_ms = (time.perf_counter() - t0) * 1000
                if not response.is_success:
                    result.error(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                body = response.json()
                if body.get("reply") is None:
                    result.held += 1
                else:
                    result.latencies_ms.append(elapsed_ms)
                if body.get("reply") is None or body.get("handoff") is not None:
                    # A person has this conversation now: the bot would not answer again.
                    result.handoffs += body.get("handoff") is not None
                    try:
                        conversation = await open_conversation(client)
                    except httpx.HTTPError as exc:
                        result.error(f"new conversation: {type(exc).__name__}: {exc}")
                        return
                    result.conversation_ids.append(conversation[0])

        server_cpu = tree_cpu_seconds(server_pid)
        client_cpu = own_cpu()
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(client_loop(i, c) for i, c in enumerate(conversations))),
            timeout=time_cap + timeout + 10,
        )
        result.seconds = time.perf_counter() - started
        result.client_cpu_seconds = own_cpu() - client_cpu
        server_after = tree_cpu_seconds(server_pid)
        if server_cpu is not None and server_after is not None:
            result.server_cpu_seconds = server_after - server_cpu
    return result


def server_engine_timings(data_dir: Path, conversation_ids: list[str]) -> dict[str, float]:
    """Mean engine stage timings the server stored on its replies to these conversations."""
    db = data_dir / "assistant.db"
    if not db.exists() or not conversation_ids:
        return {}
    marks = ",".join("?" * len(conversation_ids))
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            f"SELECT conversation_id, annotations FROM messages WHERE role = 'assistant' "
            f"AND conversation_id IN ({marks}) ORDER BY id",
            conversation_ids,
        ).fetchall()
    stages: dict[str, list[float]] = {}
    warmed_up: set[str] = set()
    for conversation_id, raw in rows:
        if conversation_id not in warmed_up:  # the first reply answered the warm-up post
            warmed_up.add(conversation_id)
            continue
        for stage, ms in (json.loads(raw or "{}").get("timings_ms") or {}).items():
            stages.setdefault(stage, []).append(float(ms))
    means = {stage: mean(values) for stage, values in stages.items()}
    if "total" in stages:
        means["total_p50"] = percentile(stages["total"], 50)
    return means


def run_http(
    data_dir: Path,
    kb_dir: Path,
    *,
    workers: int,
    embed_threads: int,
    clients: int,
    duration: float,
    requests: int,
    timeout: float,
    server_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start the server, drive it, stop it; the load numbers and the server's own timings."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = data_dir / f"server-{workers}w-{port}.log"
    console.print(f"starting `assistant serve --workers {workers}` on {base_url} ...")
    proc = start_server(
        data_dir, kb_dir, port, workers, embed_threads, log_path, server_env
    )
    try:
        health = wait_until_ready(proc, base_url, workers, log_path)
        pids = worker_pids(log_path)
        what = f"{requests} posts" if requests else f"{duration:.0f}s"
        console.print(
            f"server ready ({len(pids)} worker process(es), {health.get('kb_chunks')} chunks); "
            f"{clients} clients for {what} ..."
        )
        load = asyncio.run(
            drive(
                base_url,
                clients=clients,
                duration=duration,
                requests=requests,
                timeout=timeout,
                server_pid=proc.pid,
            )
        )
    finally:
        stop_server(proc)
    stats = summary(load.latencies_ms, load.seconds, load.errors)
    turns = max(len(load.latencies_ms), 1)
    server_cpu = load.server_cpu_seconds
    return {
        **stats,
        "server_cpu_ms_per_turn": server_cpu * 1000 / turns if server_cpu is not None else None,
        "server_cores_busy": server_cpu / load.seconds if server_cpu and load.seconds else None,
        "client_cpu_ms_per_turn": load.client_cpu_seconds * 1000 / turns,
        "held": load.held,
        "handoffs": load.handoffs,
        "workers_requested": workers,
        "embed_threads": embed_threads,
        "workers_started": len(pids),
        "clients": clients,
        "error_samples": load.error_samples,
        "server_engine_ms": server_engine_timings(data_dir, load.conversation_ids),
    }


# -- main ----------------------------------------------------------------------------------


def prepare(settings: Settings) -> Runtime:
    """A runtime over an ingested KB (ingested now unless the data dir already has it)."""
    runtime = build_runtime(settings)
    report = runtime.ensure_ingested()
    if report is None:
        console.print(
            f"reusing the index in {settings.data_dir} ({runtime.kb.index.count()} chunks)"
        )
    else:
        console.print(
            f"ingested {report.added} articles, {report.chunks_written} chunks "
            f"in {report.seconds:.1f}s"
        )
    return runtime


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for the tables (they stay narrow enough for an 80-column terminal)."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def report(engine: dict[str, Any] | None, http: list[dict[str, Any]], cores: int) -> None:
    """Print the results table, the stage breakdown and the verdicts on the targets."""
    rows: list[list[Any]] = []
    if engine:
        rows.append(
            [
                "engine (in-process)",
                fmt(engine["p50_ms"]),
                fmt(engine["p95_ms"]),
                fmt(engine["p99_ms"]),
                fmt(engine["turns_per_s"]),
                engine["errors"],
            ]
        )
    for run in http:
        label = f"HTTP, {run['clients']} clients, {run['workers_started']} worker(s)"
        rows.append(
            [
                label,
                fmt(run["p50_ms"]),
                fmt(run["p95_ms"]),
                fmt(run["p99_ms"]),
                fmt(run["turns_per_s"]),
                run["errors"],
            ]
        )
    show_table(
        f"Turn latency ({len(QUESTIONS)} questions cycled, {cores} CPU cores)",
        ["run", "p50 ms", "p95 ms", "p99 ms", "turns/s", "errors"],
        rows,
    )

    stage_names = ("embed", "classify", "retrieve", "answer", "decide", "total")
    stage_rows: list[list[Any]] = []
    if engine:
        means = engine["stage_means_ms"]
        stage_rows.append(["engine (in-process)", *(fmt(means.get(s)) for s in stage_names)])
    for run in http:
        server = dict(run["server_engine_ms"])
        if server:
            stages = ("embed", "classify", "retrieve", "answer", "decide")
            parts = sum(server.get(s, 0.0) for s in stages)
            server["other"] = server.get("total", float("nan")) - parts
            stage_rows.append(
                [
                    f"in server, {run['workers_started']} worker(s)",
                    *(fmt(server.get(s)) for s in stage_names),
                ]
            )
    if stage_rows:
        show_table("Engine stages, mean ms", ["where", *stage_names], stage_rows)
        console.print(
            "(the engine writes nothing: its events are stored with the reply, outside "
            "these timings)"
        )
    if engine:
        console.print(
            f"engine: {engine['turns']} turns one after another, {engine['abstained']} "
            f"abstained; CPU {fmt(engine['cpu_ms_per_turn'])} ms/turn (all threads)"
        )
        p50 = engine["stage_p50_ms"]
        if "classify" in p50 and p50.get("total"):
            console.print(
                f"classification (intent, sentiment, frustration, churn): p50 "
                f"{fmt(p50['classify'])} ms per message, "
                f"{100 * p50['classify'] / p50['total']:.0f}% of a turn's p50 "
                f"({fmt(p50['total'])} ms)"
            )
        for sample in engine["error_samples"]:
            console.print(f"[red]  engine error:[/red] {sample}")

    for run in http:
        server = run["server_engine_ms"]
        cpu_per_turn = (run["server_cpu_ms_per_turn"] or 0.0) + run["client_cpu_ms_per_turn"]
        ceiling = cores * 1000 / cpu_per_turn if cpu_per_turn else None
        console.print(
            f"HTTP, {run['workers_started']} worker(s): {run['turns']} turns in "
            f"{run['seconds']:.1f}s; mean latency {fmt(run['mean_ms'])} ms, engine inside the "
            f"server {fmt(server.get('total'))} ms of it; server CPU "
            f"{fmt(run['server_cpu_ms_per_turn'])} ms/turn ({fmt(run['server_cores_busy'], 2)} "
            f"cores busy); load generator CPU {fmt(run['client_cpu_ms_per_turn'])} ms/turn, "
            f"so {cores} fully used cores would give at most {fmt(ceiling, 0)} turns/s; "
            f"{run['handoffs']} hand-offs (each client then opened a new conversation), "
            f"{run['held']} posts held for a person"
        )
        if run["workers_started"] != run["workers_requested"]:
            console.print(
                f"[yellow]  asked for {run['workers_requested']} workers, "
                f"{run['workers_started']} started[/yellow]"
            )
        for sample in run["error_samples"]:
            console.print(f"[red]  HTTP error:[/red] {sample}")

    if engine:
        ok = engine["p50_ms"] <= ENGINE_P50_TARGET_MS
        console.print(
            f"target engine p50 <= {ENGINE_P50_TARGET_MS:.0f} ms: {fmt(engine['p50_ms'])} ms, "
            + ("[green]met[/green]" if ok else "[red]MISSED[/red]")
        )
    for run in http:
        ok = run["turns_per_s"] >= HTTP_TURNS_PER_S_TARGET and run["errors"] == 0
        caveat = "" if run["clients"] == HTTP_TARGET_CLIENTS else " (target is for 16 clients)"
        console.print(
            f"target HTTP >= {HTTP_TURNS_PER_S_TARGET:.0f} turns/s, no errors "
            f"({run['workers_started']} worker(s), {cores} cores): {fmt(run['turns_per_s'])} "
            f"turns/s, {run['errors']} errors, "
            + ("[green]met[/green]" if ok else "[red]MISSED[/red]")
            + caveat
        )


def main() -> None:
    """Run the benchmark and print (and optionally write) the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    parser.add_argument("--kb", type=Path, default=ROOT / "knowledge_base", help="KB directory")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="use (and keep) this data dir; ingestion is skipped when it has an index",
    )
    parser.add_argument("--turns", type=int, default=400, help="engine turns to time")
    parser.add_argument("--clients", type=int, default=HTTP_TARGET_CLIENTS, help="HTTP clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of HTTP load")
    parser.add_argument(
        "--requests", type=int, default=0, help="stop HTTP load after N posts instead"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="server worker processes (default: 1 2); one HTTP run per value",
    )
    parser.add_argument(
        "--embed-threads",
        type=int,
        default=0,
        help="ONNX intra-op threads for the engine and the server (0 = ORT default)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    parser.add_argument(
        "--server-env",
        type=env_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting, e.g. REQUEST_THREADS=8 (repeatable; ASSISTANT_ is implied)",
    )
    parser.add_argument("--skip-engine", action="store_true", help="no in-process engine run")
    parser.add_argument("--skip-http", action="store_true", help="no HTTP run")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=300,
        default=0,
        metavar="TURNS",
        help="also cProfile this many engine turns (default 300) and print the hot spots",
    )
    args = parser.parse_args()
    if not (1 <= args.turns <= 1_000_000 and 1 <= args.clients <= 256):
        parser.error("--turns must be 1-1000000 and --clients 1-256")
    if not (0 < args.duration <= 600 and 0 <= args.requests <= 1_000_000):
        parser.error("--duration must be in (0, 600] and --requests 0-1000000")
    if not all(1 <= w <= 16 for w in args.workers) or args.embed_threads < 0:
        parser.error("--workers must be 1-16 and --embed-threads >= 0")
    kb_dir = require(args.kb).resolve()
    cores = os.cpu_count() or 0
    busy_before = cores_busy()
    if busy_before is not None and busy_before > 0.25:
        console.print(
            f"[yellow]{busy_before:.2f} cores were busy before starting: other work on this "
            f"machine will skew the numbers[/yellow]"
        )

    engine: dict[str, Any] | None = None
    http: list[dict[str, Any]] = []
    profile = ""
    with contextlib.ExitStack() as stack:
        if args.data_dir:
            data_dir = args.data_dir.resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
        else:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="turns-")))
        settings = Settings(data_dir=data_dir, kb_dir=kb_dir, embed_threads=args.embed_threads)
        runtime = prepare(settings)
        try:
            if not args.skip_engine:
                console.print(f"engine: {WARMUP_TURNS} warm-up turns, then {args.turns} ...")
                engine = run_engine(runtime, args.turns)
                if args.profile:
                    profile = profile_engine(runtime, args.profile)
        finally:
            runtime.close()
        if not args.skip_http:
            for workers in args.workers:
                http.append(
                    run_http(
                        data_dir,
                        kb_dir,
                        workers=workers,
                        embed_threads=args.embed_threads,
                        clients=args.clients,
                        duration=args.duration,
                        requests=args.requests,
                        timeout=args.timeout,
                        server_env=dict(args.server_env),
                    )
                )

    report(engine, http, cores)
    if profile:
        console.print(f"\ncProfile of {args.profile} engine turns:")
        print(profile)
    write_json(
        args.json,
        {
            "benchmark": "turn_latency",
            "cpu_cores": cores,
            "cores_busy_before": busy_before,
            "embed_threads": args.embed_threads,
            "server_env": dict(args.server_env),
            "kb_dir": str(kb_dir),
            "questions": len(QUESTIONS),
            "engine": engine,
            "http": http,
            "targets": {
                "engine_p50_ms": ENGINE_P50_TARGET_MS,
                "http_turns_per_s": HTTP_TURNS_PER_S_TARGET,
                "http_clients": HTTP_TARGET_CLIENTS,
            },
        },
    )


if __name__ == "__main__":
    main()
