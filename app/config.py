"""Typed settings read from the environment.

`Settings.from_env` is a pure function of a mapping, so tests build settings without touching
`os.environ`. The `.env` file is loaded by the entry points (CLI, wsgi), never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from app.database_url import DatabaseTarget, parse_database_url
from app.errors import ConfigError
from app.setting_values import parse_bool, parse_int

ENVIRONMENTS = ("development", "test", "production")

MIN_SECRET_LENGTH = 32  # characters of SECRET_KEY and METRICS_TOKEN in production


def refuse_weak_production_settings(get: Callable[[str], str | None]) -> None:
    """APP_ENV=production: a setting that makes the deployment guessable or leaky is refused
    at start, naming it (never printing its value)."""
    for name in ("SECRET_KEY", "METRICS_TOKEN"):
        value = get(name)
        if value is not None and len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"APP_ENV=production needs {name} of at least {MIN_SECRET_LENGTH} characters "
                f"(it has {len(value)}); generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
    if not parse_bool("COOKIE_SECURE", get("COOKIE_SECURE") or "true"):
        raise ConfigError(
            "APP_ENV=production refuses COOKIE_SECURE=false: the session cookie must never "
            "travel without HTTPS (a TLS proxy in front of the app is enough)"
        )
    if parse_bool("LOG_DB_QUERIES", get("LOG_DB_QUERIES") or "false"):
        raise ConfigError(
            "APP_ENV=production refuses LOG_DB_QUERIES=true: the SQL log is a development "
            "tool (it would log every statement of every request)"
        )


@dataclass(frozen=True)
class PoolSettings:
    size: int
    max_overflow: int
    recycle: int = 300  # seconds a connection lives before the pool replaces it

    def capped(self, limit: int | None) -> PoolSettings:
        """`connection_limit=N` on a URL: never more than N connections from this process."""
        if limit is None:
            return self
        size = min(self.size, limit)
        return replace(self, size=size, max_overflow=min(self.max_overflow, limit - size))


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    split_mode: bool = False
    primary: DatabaseTarget | None = None  # None: the embedded server is started
    data: DatabaseTarget | None = None
    log_db_queries: bool = False
    primary_pool: PoolSettings = field(default_factory=lambda: PoolSettings(5, 5))
    data_pool: PoolSettings = field(default_factory=lambda: PoolSettings(5, 10, 1800))
    pool_timeout: int = 10
    # Seconds a statement of a web request may run, per engine (0: no limit); bulk jobs' own.
    primary_statement_timeout: float = 5
    data_statement_timeout: float = 60
    job_statement_timeout: float = 0
    connect_timeout: int = 5
    secret_key: str | None = None
    instance_path: str | None = None
    session_cache_ttl: int = 30
    auth_listen: DatabaseTarget | None = None  # direct URL for LISTEN when the primary's is pooled
    session_idle_timeout: int = 30 * 60
    session_absolute_timeout: int = 12 * 3600
    login_max_failures_per_account_and_client: int = 5
    login_max_failures_per_client: int = 20
    login_max_failures_per_account: int = 50  # from all addresses together
    login_lockout_seconds: int = 15 * 60
    cookie_secure: bool = False
    trusted_proxy_count: int = 0
    max_json_bytes: int = 1024 * 1024
    reference_cache_ttl: int = 30
    max_upload_bytes: int = 2 * 1024**3
    job_lease_seconds: int = 45
    job_heartbeat_seconds: float = 5
    job_max_attempts: int = 3
    worker_poll_seconds: float = 1.0
    transform_connections: int = 2  # data-engine connections a transform casts with at once
    export_dir: str | None = None  # None: <instance>/exports
    prune_sessions_days: int = 30  # ended/expired sessions and API tokens, login-throttle rows
    prune_jobs_days: int = 90  # ended jobs, transforms' rejected rows
    prune_export_files_days: int = 7  # API exports' files
    transform_history_days: int = 90  # what transforms replaced; a transform revertible as long
    prune_interval_seconds: int = 3600  # how often workers prune; 0: never (cron runs it)
    metrics_token: str | None = None  # lets a scraper read /metrics without an admin login
    engine_guard: bool = True  # refuse work spanning both engines (off in production)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def embedded(self) -> bool:
        return self.primary is None

    @property
    def listen_target(self) -> DatabaseTarget | None:
        """Where the session listener connects: AUTH_LISTEN_URL, else the primary if it can."""
        if self.auth_listen is not None:
            return self.auth_listen
        if self.primary is not None and self.primary.listen_ok:
            return self.primary
        return None

    def with_targets(self, primary: DatabaseTarget, data: DatabaseTarget | None) -> Settings:
        return replace(self, primary=primary, data=data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        app_env = (get("APP_ENV") or "development").lower()
        if app_env not in ENVIRONMENTS:
            raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, not {app_env!r}")
        split = parse_bool("SPLIT_DB_MODE", get("SPLIT_DB_MODE") or "false")

        primary_raw = get("PRIMARY_DATABASE_URL") or get("DATABASE_URL")
        primary_var = "PRIMARY_DATABASE_URL" if get("PRIMARY_DATABASE_URL") else "DATABASE_URL"
        data_raw = get("DATA_DATABASE_URL")
        primary = parse_database_url(primary_var, primary_raw) if primary_raw else None
        data = parse_database_url("DATA_DATABASE_URL", data_raw) if data_raw else None

        if split:
            if primary and not data:
                raise ConfigError(
                    "SPLIT_DB_MODE=true needs DATA_DATABASE_URL as well as "
                    f"{primary_var} (or neither, for two embedded servers)"
                )
            if data and not primary:
                raise ConfigError(
                    "SPLIT_DB_MODE=true needs PRIMARY_DATABASE_URL as well as DATA_DATABASE_URL"
                )
            if primary and data and primary.same_place(data):
                raise ConfigError(
                    f"SPLIT_DB_MODE=true but {primary_var} and DATA_DATABASE_URL name the same "
                    f"database ({primary.masked}); give two databases, or set SPLIT_DB_MODE=false"
                )
        elif data is not None:
            if primary is None or not primary.same_place(data):
                raise ConfigError(
                    f"SPLIT_DB_MODE=false but DATA_DATABASE_URL ({data.masked}) names another "
                    f"database than {primary_var} "
                    f"({primary.masked if primary else 'the embedded one'}); "
                    "set SPLIT_DB_MODE=true to use two databases, or unset DATA_DATABASE_URL"
                )
            data = None  # single mode: one database, one engine

        if app_env == "production":
            if primary is None:
                raise ConfigError(
                    "APP_ENV=production needs PRIMARY_DATABASE_URL (and DATA_DATABASE_URL in "
                    "split mode); the embedded database is for development only"
                )
            if not get("SECRET_KEY"):
                raise ConfigError("APP_ENV=production needs SECRET_KEY")
            refuse_weak_production_settings(get)

        def pool(prefix: str, size: int, overflow: int, recycle: int) -> PoolSettings:
            return PoolSettings(
                size=parse_int(
                    f"{prefix}_POOL_SIZE", get(f"{prefix}_POOL_SIZE") or size, minimum=1
                ),
                max_overflow=parse_int(
                    f"{prefix}_MAX_OVERFLOW", get(f"{prefix}_MAX_OVERFLOW") or overflow
                ),
                recycle=number(f"{prefix}_POOL_RECYCLE", recycle, minimum=1),
            )

        def number(name: str, default: int, minimum: int = 0) -> int:
            return parse_int(name, get(name) or default, minimum=minimum)

        def seconds(name: str, default: float, *, zero_ok: bool = False) -> float:
            raw = get(name)
            try:
                value = float(raw) if raw is not None else default
            except ValueError:
                raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
            if value < 0 or (value == 0 and not zero_ok):
                raise ConfigError(f"{name} must be {'0 or ' if zero_ok else ''}more than 0")
            return value

        per_account_and_client = number("LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT", 5, minimum=1)
        per_account = number("LOGIN_MAX_FAILURES_PER_ACCOUNT", 50, minimum=1)
        if per_account <= per_account_and_client:  # the meaning before it counted per address
            raise ConfigError(
                f"LOGIN_MAX_FAILURES_PER_ACCOUNT ({per_account}) counts failures from all "
                "addresses together: it must be more than "
                f"LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT ({per_account_and_client}), "
                "or one address could lock the owner out"
            )

        return cls(
            env=app_env,
            split_mode=split,
            primary=primary,
            data=data,
            log_db_queries=parse_bool("LOG_DB_QUERIES", get("LOG_DB_QUERIES") or "false"),
            primary_pool=pool("PRIMARY", 5, 5, 300),
            data_pool=pool("DATA", 5, 10, 1800),
            pool_timeout=number("DB_POOL_TIMEOUT", 10, minimum=1),
            primary_statement_timeout=seconds("PRIMARY_STATEMENT_TIMEOUT", 5, zero_ok=True),
            data_statement_timeout=seconds("DATA_STATEMENT_TIMEOUT", 60, zero_ok=True),
            job_statement_timeout=seconds("JOB_STATEMENT_TIMEOUT", 0, zero_ok=True),
            connect_timeout=number("DB_CONNECT_TIMEOUT", 5, minimum=1),
            secret_key=get("SECRET_KEY"),
            instance_path=get("INSTANCE_PATH"),
            session_cache_ttl=number("SESSION_CACHE_TTL", 30, minimum=0),
            auth_listen=parse_database_url("AUTH_LISTEN_URL", get("AUTH_LISTEN_URL"))
            if get("AUTH_LISTEN_URL")
            else None,
            session_idle_timeout=number("SESSION_IDLE_TIMEOUT", 30 * 60, minimum=60),
            session_absolute_timeout=number("SESSION_ABSOLUTE_TIMEOUT", 12 * 3600, minimum=60),
            login_max_failures_per_account_and_client=per_account_and_client,
            login_max_failures_per_client=number("LOGIN_MAX_FAILURES_PER_CLIENT", 20, minimum=1),
            login_max_failures_per_account=per_account,
            login_lockout_seconds=number("LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1),
            cookie_secure=parse_bool(
                "COOKIE_SECURE", get("COOKIE_SECURE") or str(app_env == "production")
            ),
            trusted_proxy_count=number("TRUSTED_PROXY_COUNT", 0),
            max_json_bytes=number("MAX_JSON_BYTES", 1024 * 1024, minimum=1024),
            reference_cache_ttl=number("REFERENCE_CACHE_TTL", 30),
            max_upload_bytes=number("MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1),
            job_lease_seconds=number("JOB_LEASE_SECONDS", 45, minimum=2),
            job_heartbeat_seconds=seconds("JOB_HEARTBEAT_SECONDS", 5),
            job_max_attempts=number("JOB_MAX_ATTEMPTS", 3, minimum=1),
            worker_poll_seconds=seconds("WORKER_POLL_SECONDS", 1.0),
            transform_connections=number("TRANSFORM_CONNECTIONS", 2, minimum=1),
            export_dir=get("EXPORT_DIR"),
            prune_sessions_days=number("PRUNE_SESSIONS_DAYS", 30, minimum=1),
            prune_jobs_days=number("PRUNE_JOBS_DAYS", 90, minimum=1),
            prune_export_files_days=number("PRUNE_EXPORT_FILES_DAYS", 7, minimum=1),
            transform_history_days=number("TRANSFORM_HISTORY_DAYS", 90, minimum=1),
            prune_interval_seconds=number("PRUNE_INTERVAL_SECONDS", 3600),
            metrics_token=get("METRICS_TOKEN"),
            engine_guard=parse_bool(
                "ENGINE_GUARD", get("ENGINE_GUARD") or str(app_env != "production")
            ),
        )
