"""Real servers for tests and benchmarks: gunicorn with several workers, and HTTP connections
pinned to each worker (gthread workers keep a connection on the worker that accepted it)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from app.auth.tokens import SESSION_COOKIE
from app.db.embedded_host import as_system_user

ROOT = Path(__file__).resolve().parents[1]
BACKOFFICE = os.path.join(os.path.dirname(sys.executable), "backoffice")


def environment(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its database URLs, plus `env`: a child process
    sees only the databases the test gives it."""
    inherited = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    return {**inherited, **env}


def backoffice(env: dict[str, str], *args: str, **options) -> subprocess.CompletedProcess:
    """`backoffice ARGS` in a child process on `env`; `input=` feeds its stdin."""
    return subprocess.run(
        [BACKOFFICE, *args],
        cwd=ROOT,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=options.pop("timeout", 300),
        **options,
    )


def terminate(process: subprocess.Popen, seconds: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited in time."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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

    def upload(self, headers: dict, customer_id: int, csv: str = "a,b\n1,2\n") -> Reply:
        """POST /api/imports with a CSV file, as multipart."""
        boundary = "----backoffice-test"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="customer_id"\r\n\r\n'
            f'{customer_id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n'
        ).encode()
        self.conn.request(
            "POST",
            "/api/imports",
            body=body,
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        response = self.conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), json.loads(response.read()))

    def close(self) -> None:
        self.conn.close()


class Gunicorn:
    """`gunicorn app.wsgi:app` with N gthread workers on a free loopback port, with the
    project's gunicorn settings (`app/gunicorn_conf.py`), as the deployment checklist says."""

    def __init__(self, env: dict[str, str], workers: int = 4, threads: int = 4) -> None:
        self.port = free_port()
        self.workers = workers
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:app.gunicorn_conf",
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
            env=environment(env),
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
        terminate(self.process)


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
        # A file, not a pipe: a full pipe would block the worker.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [BACKOFFICE, "worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=environment(env),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> str:
        """Kill it; returns what it wrote on stderr (its log)."""
        if self.log.closed:
            return ""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=15)
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        self.log.close()
        return text


def find_pgbouncer() -> tuple[str | None, str]:
    """PgBouncer's binary, installed from Debian's package when missing and we may; else
    None and the reason."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "pgbouncer is not installed, and apt-get cannot install it here (not root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbouncer"]
    for step in (install, ["apt-get", "update", "-q"], install):
        result = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
    found = shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found:
        return found, ""
    return None, f"apt-get install pgbouncer failed: {result.stderr.strip()[-300:]}"


class PgBouncer:
    """A real PgBouncer in transaction mode on loopback, in front of one PostgreSQL server."""

    def __init__(self, binary: str, folder: Path, server_url: str, pool_size: int) -> None:
        server = make_url(server_url)
        self.folder = folder
        self.port = free_port()
        self.pool_size = pool_size
        folder.mkdir(parents=True, exist_ok=True)
        # PgBouncer logs in to the server with the password it finds here.
        (folder / "users.txt").write_text(f'"{server.username}" "{server.password or ""}"\n')
        (folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.host} port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
            f"admin_users = {server.username}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
            "max_client_conn = 500\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            f"logfile = {folder / 'pgbouncer.log'}\n"
        )
        self.user = server.username
        run_as = as_system_user(folder)
        if run_as:
            for path in (folder, *folder.iterdir()):
                os.chown(path, run_as["user"], run_as["group"])
        self.process = subprocess.Popen(
            [binary, str(folder / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                self.show("VERSION")
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {self.log()}") from None
                time.sleep(0.1)

    def url(self, direct_url: str) -> str:
        """The same database as `direct_url`, through this PgBouncer."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return url.update_query_dict({"pgbouncer": "true"}).render_as_string(hide_password=False)

    def show(self, what: str) -> list[dict]:
        """SHOW <what> on the admin console (simple query protocol only)."""
        conninfo = f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user}"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=2) as conn:
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(f"SHOW {what}", prepare=False)
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def stop(self) -> None:
        terminate(self.process)
