"""An embedded PostgreSQL server under the instance folder, for a machine with no database.

The binaries come from the `pgserver` wheel (a dependency), or else from the system's
`initdb`/`pg_ctl`. The server listens on 127.0.0.1 on a free port; its data directory survives
restarts. PostgreSQL refuses to run as root, so as root it runs as a system user of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg import sql

from app.config import Settings, parse_database_url
from app.db.schemas import DATA, PRIMARY
from app.errors import ConfigError

log = logging.getLogger(__name__)

SYSTEM_USER = "backoffice-pg"  # who runs the server when we are root
SUPERUSER = "postgres"


def find_bin_dir() -> Path:
    """Where initdb, pg_ctl and postgres are: the pgserver wheel first, then the system."""
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    if versions:
        return Path(versions[-1]).parent
    raise ConfigError(
        "no database is configured and no PostgreSQL binaries were found: set DATABASE_URL "
        "(or PRIMARY_DATABASE_URL and DATA_DATABASE_URL), or `pip install pgserver`"
    )


def _version_key(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """One server with one data directory. `start()` is idempotent and safe across processes."""

    def __init__(self, datadir: Path | str, database: str, *, fast: bool = False) -> None:
        self.datadir = Path(datadir).absolute()
        self.database = database
        self.fast = fast  # tests: no fsync, data may be lost on a crash
        self.bin_dir = find_bin_dir()
        self.started_here = False

    # -- running commands -------------------------------------------------------------

    def _as_user(self) -> dict:
        # The binaries may sit in a virtual environment under a private folder (mktemp -d).
        return as_system_user(self.bin_dir.parent)

    def _run(self, *args: str, timeout: int = 60) -> None:
        # Output goes to a file, not a pipe: pg_ctl's server inherits the descriptors and
        # would hold a pipe open for ever.
        logfile = self.datadir.parent / f"{self.datadir.name}.commands.log"
        with open(logfile, "ab") as out:
            result = subprocess.run(
                [str(self.bin_dir / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **self._as_user(),
            )
        if result.returncode != 0:
            tail = _tail(logfile) + _tail(self.datadir / "server.log")
            raise ConfigError(
                f"embedded PostgreSQL in {self.datadir}: {args[0]} failed "
                f"(exit {result.returncode}). Last lines:\n{tail}"
            )

    # -- lifecycle --------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.datadir.parent / f".{self.datadir.name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def running_port(self) -> int | None:
        """The port of a live server on this data directory, from its postmaster.pid."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return port

    def start(self) -> str:
        """Initialise when new, start when stopped, create the database; return its URL."""
        with self._lock():
            if not (self.datadir / "PG_VERSION").exists():
                self._initdb()
            port = self.running_port()
            if port is None:
                port = self._start_server()
                self.started_here = True
            self._ensure_database(port)
        return self.url(port)

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._own(self.datadir)
        args = [
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if self.fast:
            args.append("--no-sync")
        self._run(*args, timeout=120)
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "logging_collector = off",
        ]
        if self.fast:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf = self.datadir / "postgresql.conf"
        with open(conf, "a") as handle:
            handle.write("\n# written by the backoffice's embedded server\n")
            handle.write("\n".join(settings) + "\n")

    @property
    def _port_file(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.port"

    def _preferred_ports(self) -> Iterator[int]:
        """The port used last time first, so a restarted server keeps its URL."""
        with contextlib.suppress(OSError, ValueError):
            yield int(self._port_file.read_text())
        while True:
            yield _free_port()

    def _start_server(self) -> int:
        last_error: ConfigError | None = None
        for _, port in zip(range(3), self._preferred_ports(), strict=False):
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.datadir / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port}",
                    "start",
                    timeout=90,
                )
                log.info("embedded PostgreSQL started on port %s (%s)", port, self.datadir)
                self._port_file.write_text(str(port))
                return port
            except ConfigError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        with self._lock():
            if self.running_port() is not None:
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        self.started_here = False

    def url(self, port: int | None = None) -> str:
        port = port or self.running_port()
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{self.database}"

    def _ensure_database(self, port: int) -> None:
        conninfo = f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _own(self, path: Path) -> None:
        """As root: hand the data directory to the server's user, and let it reach it."""
        if os.geteuid() != 0:
            return
        entry = _ensure_system_user()
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)
        _let_through(path)


def as_system_user(*reachable: Path) -> dict:
    """`subprocess` arguments that run a server as SYSTEM_USER when we are root (PostgreSQL
    and PgBouncer both refuse to run as root), able to reach the given folders."""
    if os.geteuid() != 0:
        return {}
    entry = _ensure_system_user()
    for path in reachable:
        _let_through(path)
    # Group too: left as root's, the group bits (none) would apply instead of "other".
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _let_through(path: Path) -> None:
    """As root: let the server's user traverse every folder above `path` (execute bit only,
    nothing becomes readable)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    except OSError:
        return ""


# Per layout: each engine's folder under <instance>/postgres and its database name.
EMBEDDED_LAYOUTS = {
    "single": {PRIMARY: ("main", "backoffice")},
    "split": {PRIMARY: ("primary", "backoffice_primary"), DATA: ("data", "backoffice_data")},
}


def embedded_servers(instance_path: str | Path) -> list[EmbeddedPostgres]:
    """The embedded servers that exist under an instance folder, of either layout."""
    root = Path(instance_path) / "postgres"
    return [
        EmbeddedPostgres(root / folder, database)
        for layout in EMBEDDED_LAYOUTS.values()
        for folder, database in layout.values()
        if (root / folder / "PG_VERSION").exists()
    ]


def start_embedded(settings: Settings, instance_path: str, *, stop_at_exit: bool) -> Settings:
    """No URL configured: start one embedded server (two in split mode) and point at them.

    `stop_at_exit`: the process that started a server stops it when it exits (CLI commands,
    `backoffice serve`). Servers found already running are left alone.
    """
    layout = EMBEDDED_LAYOUTS["split" if settings.split_mode else "single"]
    root = Path(instance_path) / "postgres"
    servers = {role: EmbeddedPostgres(root / folder, db) for role, (folder, db) in layout.items()}
    targets = {}
    for role, server in servers.items():
        variable = f"embedded {role} server" if settings.split_mode else "embedded server"
        target = parse_database_url(variable, server.start())
        targets[role] = replace(target, embedded=True)
        if stop_at_exit and server.started_here:
            atexit.register(server.stop)
    return settings.with_targets(targets[PRIMARY], targets.get(DATA))
