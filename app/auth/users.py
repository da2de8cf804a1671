"""Users: made, changed, deleted, their passwords. Functions take a session and never commit.

A change that takes access away (a disable, a role change, a new password, a deletion) ends
the user's sessions, and where it must their API tokens, in every process (`sessions.py`).
"""

from __future__ import annotations

from sqlalchemy import func, select

from app.audit import Actor
from app.auth import api_tokens, counters, passwords, throttle
from app.auth.roles import check_role
from app.auth.session_cache import Principal
from app.auth.sessions import end_session, end_sessions, end_user_access
from app.config import Settings
from app.db.notices import notify
from app.db.session import BackofficeSession
from app.email_address import normalize_email
from app.errors import Refused
from app.models.primary.config import ApiToken, User


def find_user_by_email(session: BackofficeSession, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.lower()))


def get_user(session: BackofficeSession, user_id: int) -> User:
    return session.get_or_404(User, user_id, "user")


def list_users(session: BackofficeSession) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def create_user(
    session: BackofficeSession,
    actor: Actor,
    *,
    email: str,
    display_name: str,
    role: str,
    password: str,
    must_change_password: bool = False,
) -> User:
    email = normalize_email(email)
    if not display_name.strip():
        raise Refused("display_name must not be blank", code="invalid_field", status=422)
    role = check_role(role)
    passwords.check_policy(password, email=email)
    if find_user_by_email(session, email) is not None:
        raise Refused(f"a user with email {email} exists", code="email_taken", status=409)
    user = User(
        email=email,
        display_name=display_name.strip()[:200],
        role=role,
        password_hash=passwords.hash_password(password),
        must_change_password=must_change_password,
    )
    session.add(user)
    session.flush()
    actor.audit(
        session, "user.create", target_type="user", target_id=user.id, role=role, email=email
    )
    return user


def update_user(
    session: BackofficeSession,
    actor: Actor,
    user: User,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    display_name: str | None = None,
) -> dict[str, object]:
    """Apply the given changes; a role change or a disable ends the user's sessions."""
    changes: dict[str, object] = {}
    if role is not None and check_role(role) != user.role:
        changes["role"] = role
    if is_active is not None and is_active != user.is_active:
        changes["is_active"] = is_active
    if display_name is not None:
        if not display_name.strip():
            raise Refused("display_name must not be blank", code="invalid_field", status=422)
        if display_name.strip() != user.display_name:
            changes["display_name"] = display_name.strip()[:200]
    if not changes:
        return changes
    if user.id == actor.user_id and ("role" in changes or changes.get("is_active") is False):
        raise Refused(
            "admins cannot demote or disable themselves", code="forbidden_self_change", status=409
        )
    if changes.get("role", "admin") != "admin" or changes.get("is_active") is False:
        keep_an_active_admin(session, actor, user, "demote" if "role" in changes else "disable")
    for name, value in changes.items():
        setattr(user, name, value)
    user.updated_at = func.now()
    if changes.get("is_active") is False:  # revoked, so enabling again brings no token back
        end_user_access(session, actor, user_id=user.id, reason="user disabled")
    elif "role" in changes:  # tokens stay, capped by the new role when they are next checked
        end_sessions(session, user_id=user.id, reason="role changed")
    notify(session, "user", user.id)  # the reference checks and the lists' names
    actor.audit(
        session,
        "user.update",
        target_type="user",
        target_id=user.id,
        changes=dict(changes),
    )
    session.flush()
    return changes


def delete_user(session: BackofficeSession, actor: Actor, user: User) -> None:
    if user.id == actor.user_id:
        raise Refused("admins cannot delete themselves", code="forbidden_self_change", status=409)
    keep_an_active_admin(session, actor, user, "delete")
    notify(session, "user", user.id)  # sessions and tokens go with the row (ON DELETE CASCADE)
    actor.audit(session, "user.delete", target_type="user", target_id=user.id, email=user.email)
    session.delete(user)
    session.flush()


def keep_an_active_admin(session: BackofficeSession, actor: Actor, user: User, change: str) -> None:
    """Refuse to demote, disable or delete the last active admin.

    The active admins' rows are locked (in id order, so two callers cannot deadlock) before
    they are counted: of two admins removing each other at once, the second waits for the
    first to commit, counts again, and is refused. A shell command is not held to this: it
    is the way back in when no admin is left (`users create --role admin`)."""
    if actor.user_id is None:
        return
    admins = session.scalars(
        select(User.id)
        .where(User.role == "admin", User.is_active)
        .order_by(User.id)
        .with_for_update()
    ).all()
    if user.id in admins and len(admins) == 1:
        raise Refused(
            f"cannot {change} the last active admin; make another admin first",
            code="last_admin",
            status=409,
        )


def set_password(
    session: BackofficeSession,
    actor: Actor,
    user: User,
    password: str,
    *,
    must_change: bool,
    keep_session_id: int | None = None,
    action: str,
) -> None:
    """New password; every session of the user ends, but `keep_session_id`, and every API
    token is revoked (a token is as good as the password it was made with)."""
    passwords.check_policy(password, email=user.email)
    user.password_hash = passwords.hash_password(password)
    user.must_change_password = must_change
    user.password_changed_at = func.now()
    user.updated_at = func.now()
    end_user_access(session, actor, user_id=user.id, keep_session_id=keep_session_id, reason=action)
    actor.audit(session, action, target_type="user", target_id=user.id)
    session.flush()


def confirm_password(
    session: BackofficeSession,
    settings: Settings,
    actor: Actor,
    principal: Principal,
    user: User,
    password: str,
    *,
    action: str,
) -> None:
    """The user proves again who they are, counted against the sign-in's throttle (the same
    keys: this account from this address, this address, this account), so a borrowed session
    guesses no faster than a sign-in form. A wrong password is audited under `action`; once
    over a limit the answer is 429 with Retry-After, audited, and the session that kept
    guessing is ended (docs/SECURITY.md). The caller commits before passing the refusal on."""
    keys = throttle.keys_for(settings, user.email, actor.client_ip)
    wait = throttle.reserve(session, keys, settings.login_lockout_seconds)
    if wait is not None:
        counters.THROTTLED.labels(check="password_again").inc()
        actor.audit(
            session,
            action,
            outcome="throttled",
            target_type="user",
            target_id=user.id,
            reason="too many wrong passwords",
        )
        if principal.session_id is not None:
            end_session(session, actor, principal.session_id, reason="too many wrong passwords")
        raise Refused(
            "too many wrong passwords: this session is ended; sign in again later",
            code="too_many_attempts",
            status=429,
        ).with_header("Retry-After", str(wait))
    if not passwords.verify_password(user.password_hash, password):
        throttle.record_failure(session, keys, settings.login_lockout_seconds)
        counters.FAILURES.labels(check="password_again").inc()
        actor.audit(
            session,
            action,
            outcome="refused",
            target_type="user",
            target_id=user.id,
            reason="wrong current password",
        )
        raise Refused("the current password is wrong", code="invalid_credentials", status=403)
    throttle.record_success(session, keys)


# What a refusal of confirm_password leaves to be committed (its audit row, its count).
KEPT_REFUSALS = ("invalid_credentials", "too_many_attempts")


def change_own_password(
    session: BackofficeSession,
    settings: Settings,
    actor: Actor,
    principal: Principal,
    current: str,
    new: str,
) -> None:
    user = get_user(session, principal.user_id)
    confirm_password(
        session, settings, actor, principal, user, current, action="user.password_change"
    )
    if passwords.verify_password(user.password_hash, new):
        raise Refused(
            "the new password must differ from the current one", code="weak_password", status=422
        )
    set_password(
        session,
        actor,
        user,
        new,
        must_change=False,
        keep_session_id=principal.session_id,
        action="user.password_change",
    )


def create_own_api_token(
    session: BackofficeSession,
    settings: Settings,
    actor: Actor,
    principal: Principal,
    *,
    password: str,
    name: str,
    role: str | None = None,
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """A token for the caller, who gives the password again: a borrowed session alone cannot
    mint a credential that outlives it. A wrong password is audited (the caller commits that
    row before passing the refusal on)."""
    user = get_user(session, principal.user_id)
    confirm_password(session, settings, actor, principal, user, password, action="token.create")
    return api_tokens.create_api_token(
        session,
        actor,
        user,
        name=name,
        role=role,
        expires_in_days=expires_in_days,
        caller=principal,
    )
