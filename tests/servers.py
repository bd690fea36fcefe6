"""Real `assistant serve` processes for multi-process, crash and scale-out tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ASSISTANT = Path(sys.executable).parent / "assistant"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen, log: Path, *,
                  path: str = "/healthz", timeout: float = 120) -> None:
    """Poll ``url + path`` until it answers 200; fail with the log if the process exits."""
    # A child process offers no event to wait on; poll its health endpoint.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}")


@dataclass
class ServerProcess:
    """One `assistant serve` child process and where it listens."""

    url: str
    process: subprocess.Popen
    log: Path
    port: int

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM) and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing; what a crash looks like."""
        self.process.kill()
        self.process.wait(timeout=30)


def start_server(env: Mapping[str, str], log: Path, *, port: int | None = None,
                 workers: int = 1, wait: bool = True) -> ServerProcess:
    """Start `assistant serve` on loopback with ``env`` added to this process's environment."""
    port = port or free_port()
    args = [str(ASSISTANT), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    with log.open("a") as out:
        process = subprocess.Popen(args, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log, port)
    if wait:
        wait_until_up(server.url, process, log)
    return server


def database_url(url: str, connect_args: Mapping[str, str]) -> str:
    """A backend's URL with its search_path option folded in, for a child process."""
    if connect_args:
        url += "?options=" + connect_args["options"].replace("=", "%3D")
    return url
