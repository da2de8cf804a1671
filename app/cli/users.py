"""`backoffice users ...`: manage users from a shell. Passwords come from a prompt or stdin."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from app.cli.context import LazyChoice, cli_actor, in_session

if TYPE_CHECKING:
    from app.db.session import BackofficeSession
    from app.models.primary.config import User


@click.group("users", help="Manage backoffice users.")
def users_cli() -> None:
    pass


def _roles() -> tuple[str, ...]:
    from app.models.primary.config import ROLES

    return ROLES


def _read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def _find(session: BackofficeSession, email: str) -> User:
    from app.auth import users

    user = users.find_user_by_email(session, email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--role", type=LazyChoice(_roles), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True, help="Print the user as one JSON object.")
def create(email: str, display_name: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user (the first admin: --role admin)."""
    from app.auth import users

    password = _read_password(password_stdin)
    user = in_session(
        lambda s: users.create_user(
            s, cli_actor(), email=email, display_name=display_name, role=role, password=password
        )
    )
    click.echo(
        json.dumps(user.as_dict())
        if as_json
        else f"created {user.role} {user.email} (id {user.id})"
    )


@users_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_users(as_json: bool) -> None:
    from app.auth import users

    found = in_session(users.list_users)
    if as_json:
        click.echo(json.dumps([user.as_dict() for user in found]))
        return
    for user in found:
        state = "active" if user.is_active else "disabled"
        click.echo(f"{user.id:>5}  {user.role:8}  {state:8}  {user.email}  ({user.display_name})")


def _set_active(email: str, active: bool) -> None:
    from app.auth import users

    def action(session):
        users.update_user(session, cli_actor(), _find(session, email), is_active=active)

    in_session(action)
    click.echo(
        f"{email} {'enabled' if active else 'disabled; its sessions ended, API tokens revoked'}"
    )


@users_cli.command("disable")
@click.argument("email")
def disable(email: str) -> None:
    """Disable a user, end their sessions and revoke their API tokens, in every process."""
    _set_active(email, False)


@users_cli.command("enable")
@click.argument("email")
def enable(email: str) -> None:
    _set_active(email, True)


@users_cli.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@click.option(
    "--temporary/--permanent",
    default=True,
    show_default=True,
    help="Whether the user must change it at the next login.",
)
def reset_password(email: str, password_stdin: bool, temporary: bool) -> None:
    """Set a new password, end the user's sessions and revoke their API tokens."""
    from app.auth import users

    password = _read_password(password_stdin)

    def action(session):
        users.set_password(
            session,
            cli_actor(),
            _find(session, email),
            password,
            must_change=temporary,
            action="user.password_reset",
        )

    in_session(action)
    click.echo(f"password of {email} reset; its sessions ended and API tokens revoked")


@users_cli.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(email: str, yes: bool) -> None:
    from app.auth import users

    if not yes:
        click.confirm(f"Delete {email} and end their sessions?", abort=True)
    in_session(lambda s: users.delete_user(s, cli_actor(), _find(s, email)))
    click.echo(f"deleted {email}")


@users_cli.command("end-sessions")
@click.argument("email", required=False)
@click.option("--all", "everyone", is_flag=True, help="End every session of every user.")
def end_sessions(email: str | None, everyone: bool) -> None:
    """End one user's sessions and revoke their API tokens, or everyone's (--all), in every
    process at once."""
    from app.auth import sessions

    if bool(email) == everyone:
        raise click.UsageError("give an EMAIL or --all")
    if everyone:
        ended, revoked = in_session(
            lambda s: sessions.end_every_session(s, cli_actor(), reason="ended by an admin")
        )
    else:

        def action(session):
            return sessions.end_user_sessions(
                session,
                cli_actor(),
                _find(session, email).id,
                reason="ended by an admin",
                revoke_tokens=True,
            )

        ended, revoked = in_session(action)
    click.echo(f"ended {ended} session(s) and revoked {revoked} API token(s)")


@users_cli.command("tokens")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as one JSON array.")
def tokens(email: str, as_json: bool) -> None:
    """List a user's API tokens (never their secrets)."""
    from app.auth import api_tokens

    rows = in_session(lambda s: api_tokens.list_api_tokens(s, _find(s, email).id))
    if as_json:
        click.echo(json.dumps([token.as_dict() for token in rows]))
        return
    for token in rows:
        click.echo(
            f"{token.id:>5}  {token.role:8}  {_token_state(token):8}  {token.name}"
            f"  (expires {token.expires_at.isoformat() if token.expires_at else 'never'})"
        )


def _token_state(token) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


@users_cli.command("revoke-token")
@click.argument("email")
@click.argument("token_id", type=int)
def revoke_token(email: str, token_id: int) -> None:
    """Revoke one of a user's API tokens, in every process at once."""
    from app.auth import api_tokens

    def action(session):
        token = api_tokens.find_api_token(session, _find(session, email).id, token_id)
        if token is None:
            raise click.ClickException(f"{email} has no API token {token_id}")
        api_tokens.revoke_api_token(session, cli_actor(), token)

    in_session(action)
    click.echo(f"revoked API token {token_id} of {email}")
