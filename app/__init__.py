"""The backoffice: a Flask application over two PostgreSQL engines.

`create_app()` is the factory; nothing happens at import time.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

# Nothing heavy at import time: `backoffice --help` and the bulk commands import this package
# and pay only for what they use. The factories import what they need inside.
if TYPE_CHECKING:
    from flask import Flask

    from app.config import Settings
    from app.db.engines import Engines

from app.backoffice import Backoffice

log = logging.getLogger(__name__)


def create_app(
    config: Settings | Mapping[str, str] | None = None, *, own_embedded: bool = False
) -> Flask:
    """Build the application.

    `config`: settings, or an environment mapping to read them from (default: `os.environ`).
    `own_embedded`: stop an embedded server this process starts when it exits (CLI processes).
    """
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from app.api.hostile_input import BackofficeRequest, StrictJSONProvider, refuse_hostile_input
    from app.auth.access import enforce
    from app.auth.login import init_login
    from app.db.session import close_db_session
    from app.errors import register_error_handlers
    from app.metrics import count_refusal, init_metrics

    settings = _settings(config)
    instance_path = settings.instance_path or default_instance_path()
    app = Flask(__name__, instance_path=instance_path, static_folder=None)
    app.request_class = BackofficeRequest
    app.json = StrictJSONProvider(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SECRET_KEY"] = settings.secret_key or _development_secret_key(app.instance_path)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    bo = build_backoffice(settings, own_embedded=own_embedded)
    app.extensions["backoffice"] = bo
    app.config["MAX_CONTENT_LENGTH"] = bo.settings.max_json_bytes
    if bo.settings.trusted_proxy_count:
        n = bo.settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore
    app.teardown_appcontext(close_db_session)
    register_error_handlers(app, count_refusal=count_refusal)
    init_login(app)
    # Before the other before_request functions: a request they refuse is timed and counted.
    init_metrics(app, bo)
    # Next: the statement timeouts of web requests cover the login lookup too.
    app.before_request(_limit_web_statements)
    app.teardown_request(_end_web_statement_limits)
    # Hostile input first: a NUL must not reach the login lookup either.
    app.before_request(refuse_hostile_input)
    app.before_request(enforce)

    from app import health, metrics
    from app.api import register_api
    from app.web import register_web

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    register_api(app)
    register_web(app)

    from app.cli import register_commands

    register_commands(app)
    return app


def _limit_web_statements() -> None:
    from flask import g

    from app.db.engines import web_request_started

    g.web_statement_limits = web_request_started()


def _end_web_statement_limits(exc: BaseException | None) -> None:
    from flask import g

    from app.db.engines import web_request_ended

    token = g.pop("web_statement_limits", None)
    if token is not None:
        web_request_ended(token)


def build_backoffice(
    config: Settings | Mapping[str, str] | None = None,
    *,
    own_embedded: bool = False,
    listen: bool = True,
) -> Backoffice:
    """Engines, sessions, the change listener and the caches, without the web app: what the
    app holds, and all a CLI command or a worker needs (without Flask's import cost).
    `listen=False`: no change listener, so the caches stay off and every lookup asks the
    database (a short command, which looks up a handful of things)."""
    from app.auth.session_cache import session_cache
    from app.database_url import database_tls_warnings
    from app.db.engines import Engines
    from app.db.guard import guard_engine
    from app.db.notices import Notices
    from app.db.session import make_session_factory
    from app.job_kinds import register_job_kinds
    from app.references import ReferenceChecker

    import_module("app.models")  # every table on its engine's metadata (drift check, moves)
    register_job_kinds()  # what this process's jobs run: a worker's, a CLI command's, the app's
    settings = _settings(config)
    instance_path = settings.instance_path or default_instance_path()
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    if settings.embedded:
        from app.db.embedded import start_embedded

        settings = start_embedded(settings, instance_path, stop_at_exit=own_embedded)
    engines = Engines(settings)
    engines.verify_layout()
    if settings.production:
        _refuse_database_behind(engines)
        for warning in database_tls_warnings(settings):
            log.warning("%s", warning)

    target = settings.listen_target if listen else None
    notices = Notices(target.conninfo if target else None)
    bo = Backoffice(
        settings=settings,
        engines=engines,
        session_factory=make_session_factory(
            {"primary": engines.primary, "data": engines.data}, guard=settings.engine_guard
        ),
        notices=notices,
        session_cache=session_cache(notices, settings.session_cache_ttl),
        references=ReferenceChecker(notices, settings.reference_cache_ttl),
        instance_path=instance_path,
    )
    if settings.engine_guard:
        for _role, engine in engines.items():
            guard_engine(engine)
    if own_embedded:
        import atexit

        # Runs before the embedded server stops (atexit is last in, first out): the listener
        # leaves quietly instead of seeing its server go.
        atexit.register(bo.close)
    return bo


def _settings(config: Settings | Mapping[str, str] | None) -> Settings:
    from app.config import Settings

    return config if isinstance(config, Settings) else Settings.from_env(config)


def default_instance_path() -> str:
    """Flask's default instance folder for this package, found without importing Flask:
    `instance/` beside the package when it is not installed, else `<prefix>/var/app-instance`."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prefix = _install_prefix(package_root)
    if prefix is None:
        return os.path.join(package_root, "instance")
    return os.path.join(prefix, "var", f"{__name__}-instance")


def _install_prefix(package_root: str) -> str | None:
    """The rule of `flask.sansio.scaffold.find_package`: the interpreter's prefix, a
    virtualenv's, or None when the package is not installed."""
    py_prefix = os.path.abspath(sys.prefix)
    if Path(package_root).is_relative_to(py_prefix):
        return py_prefix
    site_parent, site_folder = os.path.split(package_root)
    if site_folder.lower() != "site-packages":
        return None
    parent, folder = os.path.split(site_parent)
    if folder.lower() == "lib":
        return parent
    if os.path.basename(parent).lower() == "lib":
        return os.path.dirname(parent)
    return site_parent


def _development_secret_key(instance_path: str) -> str:
    """Development only: a random key kept in the instance folder, so sessions survive restarts."""
    from app.private_file import read_or_create

    return read_or_create(Path(instance_path) / "secret_key")


def _refuse_database_behind(engines: Engines) -> None:
    """Production never serves a database behind its code. An engine that is down is not
    refused here: the app starts degraded and readiness says which engine is missing."""
    from app.db import migrations
    from app.errors import ConfigError, DatabaseUnavailable

    behind = []
    for role, _engine in engines.items():
        try:
            behind += [st for st in migrations.status(engines, [role]) if not st.is_current]
        except DatabaseUnavailable as exc:
            log.warning("migrations not verified: %s", exc)
    if behind:
        detail = ", ".join(f"{st.role} tree {st.state}" for st in behind)
        raise ConfigError(
            f"the database is not at this code's migrations ({detail}): "
            "run `backoffice db upgrade` before serving"
        )
