"""`backoffice serve` and `backoffice doctor`."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from app.cli.context import backoffice, flask_app
from app.db.schemas import ENGINE_ROLES

if TYPE_CHECKING:
    from app import Backoffice


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the backoffice (development server; production uses gunicorn, see the checklist).

    Outside production, both trees are first brought to head.
    """
    from werkzeug.serving import run_simple

    from app.db import migrations
    from app.metrics_dir import empty_configured_metrics_dir

    # With PROMETHEUS_MULTIPROC_DIR set, an earlier run's samples would be counted again.
    empty_configured_metrics_dir()
    app = flask_app()
    bo = app.extensions["backoffice"]
    if not bo.settings.production:
        migrations.upgrade(bo.engines)
    for role in ENGINE_ROLES:
        click.echo(f"{role} database: {bo.engines.masked_url(role)}")
    _tell_about_first_admin(bo)
    click.echo(f"serving on http://{host}:{port}/ (health: /health/ready); Ctrl-C stops")
    # SIGTERM ends the process the way Ctrl-C does, so an embedded server started here stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(host, port, app, threaded=True, use_reloader=False)


def _tell_about_first_admin(bo: Backoffice) -> None:
    from sqlalchemy import func, select

    from app.models.primary.config import User

    with bo.session_factory() as session:
        if session.scalar(select(func.count()).select_from(User)) == 0:
            click.echo(
                "no users yet: create the first admin with\n"
                "  backoffice users create --role admin --email you@example.com --name 'Your Name'"
            )


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def doctor(as_json: bool) -> None:
    """The resolved configuration (secrets masked) and a check of each engine."""
    from app.health import readiness

    bo = backoffice()
    report = readiness(bo.engines)
    config = _configuration(bo)
    if as_json:
        click.echo(json.dumps({"config": config, "readiness": report}))
    else:
        _print_doctor(config, report)
    if report["status"] != "ready":
        sys.exit(1)


def _configuration(bo: Backoffice) -> dict[str, Any]:
    s = bo.settings
    return {
        "APP_ENV": s.env,
        "SPLIT_DB_MODE": s.split_mode,
        "primary": bo.engines.masked_url("primary"),
        "data": bo.engines.masked_url("data"),
        "embedded": bool(s.primary and s.primary.embedded),
        "LOG_DB_QUERIES": s.log_db_queries,
        "pools": {"primary": vars(s.primary_pool), "data": vars(s.data_pool)},
        "SESSION_CACHE_TTL": s.session_cache_ttl,
        "SECRET_KEY": "set" if s.secret_key else "generated (instance folder)",
        "instance_path": bo.instance_path,
    }


def _print_doctor(config: dict[str, Any], report: dict[str, Any]) -> None:
    click.echo("configuration:")
    for key, value in config.items():
        click.echo(f"  {key:18} {value}")
    click.echo(f"mode: {report['mode']}")
    for role, entry in report["engines"].items():
        if entry["reachable"]:
            m = entry["migrations"]
            click.echo(
                f"  {role:8} reachable  {entry['latency_ms']:.1f} ms  migrations "
                f"{m['state']} ({', '.join(m['current']) or 'nothing'} / head "
                f"{', '.join(m['head'])})"
            )
        else:
            click.echo(f"  {role:8} UNREACHABLE  {entry['url']}: {entry['error']}")
    if "jobs" in report:
        jobs = report["jobs"]
        waited = jobs["oldest_queued_seconds"]
        click.echo(
            f"jobs: {jobs['queued']} queued"
            + (f" (oldest waiting {waited:.0f} s)" if waited is not None else "")
            + f", {jobs['running']} running"
        )
    click.echo(f"status: {report['status']}")
