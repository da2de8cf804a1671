"""Database URLs as the settings give them: parsed, checked against libpq, masked for printing.

Accepts the forms the previous system used (`postgres://`, Prisma-style `?pgbouncer=true` and
`connection_limit=N`, read here and never passed to libpq).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import pq
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.errors import ConfigError
from app.setting_values import parse_bool, parse_int

if TYPE_CHECKING:
    from app.config import Settings

# Parameters the previous system put on its URLs (Prisma style). They are ours to read and
# never reach libpq.
PGBOUNCER_PARAMS = ("pgbouncer", "connection_limit")

# Every keyword the installed libpq understands may stay on a URL; anything else is a typo or a
# parameter of another tool, and is refused at start rather than silently ignored.
LIBPQ_KEYWORDS = frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


@dataclass(frozen=True)
class DatabaseTarget:
    """One database URL, parsed: where to connect and how the pool must behave there."""

    variable: str  # the environment variable it came from, for messages
    url: URL
    pgbouncer: bool = False  # behind PgBouncer: no server-side prepared statements, no LISTEN
    connection_limit: int | None = None  # caps this engine's pool (size + overflow)
    embedded: bool = False

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    @property
    def conninfo(self) -> str:
        """The URL as libpq takes it (for connections made outside SQLAlchemy)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def listen_ok(self) -> bool:
        """LISTEN needs a session of its own; PgBouncer's transaction mode cannot give one."""
        return not self.pgbouncer

    def same_place(self, other: DatabaseTarget) -> bool:
        """Whether two URLs name the same database (host, port and database name)."""
        a, b = self.url, other.url
        return (_host(a), a.port or 5432, a.database) == (_host(b), b.port or 5432, b.database)


def _host(url: URL) -> str:
    host = (url.host or str(url.query.get("host", "")) or "localhost").lower()
    return "localhost" if host in ("127.0.0.1", "::1") else host


# libpq keywords that carry a secret when given as URL parameters (`?password=...`).
SECRET_URL_PARAMS = ("password", "sslpassword")


def mask_url(url: URL | str) -> str:
    """The URL as it may be printed: the password, in its place or as a parameter, is ***."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    hidden = {name: "***" for name in SECRET_URL_PARAMS if name in url.query}
    rendered = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return rendered.replace("=%2A%2A%2A", "=***")  # the query's *** comes out percent-encoded


def parse_database_url(variable: str, raw: str) -> DatabaseTarget:
    """Parse one URL, accepting the `postgres://` and Prisma-style forms of the old system."""
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ConfigError(
            f"{variable} is not a database URL (expected postgresql://user:pass@host:port/db)"
        ) from None
    if url.get_backend_name() not in ("postgres", "postgresql"):
        raise ConfigError(
            f"{variable}={mask_url(url)}: only PostgreSQL is supported, "
            f"not {url.get_backend_name()!r}"
        )
    if not url.database:
        raise ConfigError(f"{variable}={mask_url(url)}: the URL names no database")

    query = dict(url.query)
    unknown = sorted(k for k in query if k not in LIBPQ_KEYWORDS and k not in PGBOUNCER_PARAMS)
    if unknown:
        raise ConfigError(
            f"{variable}={mask_url(url)}: unknown URL parameter(s) {', '.join(unknown)} "
            f"(accepted: pgbouncer, connection_limit and libpq's own keywords)"
        )
    pgbouncer = parse_bool(f"{variable} parameter pgbouncer", query.pop("pgbouncer", "false"))
    limit = query.pop("connection_limit", None)
    connection_limit = None
    if limit is not None:
        connection_limit = parse_int(f"{variable} parameter connection_limit", limit, minimum=1)
    url = url.set(drivername="postgresql+psycopg", query=query)
    return DatabaseTarget(variable, url, pgbouncer=pgbouncer, connection_limit=connection_limit)


def database_tls_warnings(settings: Settings) -> list[str]:
    """Database URLs whose traffic may cross a network unencrypted: no `sslmode` on the URL
    (libpq's default `prefer` falls back to plain text) and not a Unix socket. A warning, not
    a refusal: a data server next to the app may rightly go without TLS."""
    warnings = []
    for target in (settings.primary, settings.data, settings.auth_listen):
        if target is None or target.embedded or "sslmode" in target.url.query:
            continue
        if _over_unix_socket(target.url):
            continue
        warnings.append(
            f"{target.variable} ({target.masked}) sets no sslmode: add sslmode=verify-full "
            "(or require) for a server across a network, or sslmode=disable to say it needs none"
        )
    return warnings


def _over_unix_socket(url: URL) -> bool:
    """libpq's rule: a host starting with `/` is a socket directory, and no host at all is the
    default socket. `hostaddr` always means TCP."""
    if "hostaddr" in url.query:
        return False
    hosts = url.host or url.query.get("host") or ""
    if isinstance(hosts, tuple):  # ?host=a&host=b
        hosts = ",".join(hosts)
    return all(host.startswith("/") for host in hosts.split(",")) if hosts else True
