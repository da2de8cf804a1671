"""Real servers for tests and benchmarks: gunicorn with several workers, and HTTP connections
pinned to each worker (gthread workers keep a connection on the worker that accepted it)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.auth.tokens import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict | None


@dataclass
class Connection:
    """One keep-alive HTTP connection; with gthread workers it stays on one worker."""

    port: int
    conn: http.client.HTTPConnection = field(init=False)
    pid: int | None = None

    def __post_init__(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, *, body=None, headers=None) -> Reply:
        headers = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return Reply(response.status, dict(response.getheaders()), data)

    def close(self) -> None:
        self.conn.close()


class Gunicorn:
    """`gunicorn app.wsgi:app` with N gthread workers on a free loopback port."""

    def __init__(self, env: dict[str, str], workers: int = 4, threads: int = 4) -> None:
        self.port = free_port()
        self.workers = workers
        clean = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "app.wsgi:app",
                "-w",
                str(workers),
                "-k",
                "gthread",
                "--threads",
                str(threads),
                "--keep-alive",
                "120",
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**clean, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait_until_up()

    def _wait_until_up(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.process.stderr.read()}")
            try:
                if Connection(self.port).request("GET", "/health/live").status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer in time")

    def pinned_connections(self, seconds: float = 30) -> list[Connection]:
        """One open connection per worker, each knowing the pid of the worker it is on.

        Workers boot one by one, and the kernel hands connections to whichever accepts
        first: keep opening connections until every worker has answered one."""
        by_pid: dict[int, Connection] = {}
        spare: list[Connection] = []
        deadline = time.monotonic() + seconds
        while len(by_pid) < self.workers and time.monotonic() < deadline:
            conn = Connection(self.port)
            conn.pid = conn.request("GET", "/health/live").body["pid"]
            if conn.pid in by_pid:
                spare.append(conn)  # kept open a while, so that busy workers stay busy
                if len(spare) > 20:
                    spare.pop(0).close()
                    time.sleep(0.05)
            else:
                by_pid[conn.pid] = conn
        for conn in spare:
            conn.close()
        if len(by_pid) < self.workers:
            raise RuntimeError(f"reached {len(by_pid)} of {self.workers} workers")
        return list(by_pid.values())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def login(conn: Connection, email: str, password: str) -> dict[str, str]:
    """Headers that act as the logged-in user on any connection (cookie and CSRF token)."""
    reply = conn.request("POST", "/api/auth/login", body={"email": email, "password": password})
    if reply.status != 200:
        raise AssertionError(f"login failed: {reply.status} {reply.body}")
    cookie = reply.headers["Set-Cookie"].split(";", 1)[0]
    assert cookie.startswith(SESSION_COOKIE + "=")
    return {"Cookie": cookie, "X-CSRF-Token": reply.body["csrf_token"]}


class WorkerProcess:
    """`backoffice worker` as its own process, which a test may pause, resume or kill -9."""

    def __init__(self, env: dict[str, str], concurrency: int = 1) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
        backoffice = os.path.join(os.path.dirname(sys.executable), "backoffice")
        self.process = subprocess.Popen(
            [backoffice, "worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env={**clean, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=15)
