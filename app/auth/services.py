"""Users, sessions and API tokens. Functions take a session and never commit.

Every change that must end sessions sends `NOTIFY backoffice_auth` through the same session,
so the notice is delivered when, and only if, the change commits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update

from app import audit
from app.auth import passwords, throttle
from app.auth.session_cache import Principal
from app.auth.tokens import new_api_token, new_session_token, token_hash
from app.config import Settings
from app.db import notices
from app.db.session import BackofficeSession
from app.errors import APIError
from app.models.primary.config import ROLES, ApiToken, User, UserSession

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the audit log."""

    user_id: int | None
    email: str | None
    client_ip: str | None = None

    @classmethod
    def of(cls, principal: Principal, client_ip: str | None) -> Actor:
        return cls(principal.user_id, principal.email, client_ip)

    def audit(self, session: BackofficeSession, action: str, **kwargs) -> None:
        audit.record(
            session,
            action,
            actor_id=self.user_id,
            actor_email=self.email,
            client_ip=self.client_ip,
            **kwargs,
        )


# -- values ---------------------------------------------------------------------------------


def normalize_email(raw: object) -> str:
    """NFKC-normalised and checked: no spaces, control or invisible characters."""
    if not isinstance(raw, str):
        raise APIError("email must be a string", code="invalid_email", status=422)
    email = unicodedata.normalize("NFKC", raw).strip()
    if len(email) > 254 or not EMAIL_PATTERN.match(email):
        raise APIError("email is not a valid address", code="invalid_email", status=422)
    if any(unicodedata.category(ch)[0] in "CZ" for ch in email):
        raise APIError(
            "email contains invisible or control characters", code="invalid_email", status=422
        )
    return email


def check_role(role: object) -> str:
    if role not in ROLES:
        raise APIError(f"role must be one of {', '.join(ROLES)}", code="invalid_role", status=422)
    return str(role)


def notify(session: BackofficeSession, kind: str, ident: int = 0) -> None:
    """Tell every process to forget what it cached of a user, a session or a token."""
    notices.notify(session.connection_for("primary"), kind, ident)


# -- users ----------------------------------------------------------------------------------


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
    email: object,
    display_name: object,
    role: object,
    password: str,
    must_change_password: bool = False,
) -> User:
    email = normalize_email(email)
    if not isinstance(display_name, str) or not display_name.strip():
        raise APIError("display_name must be a non-empty string", code="invalid_field", status=422)
    role = check_role(role)
    passwords.check_policy(password, email=email)
    if find_user_by_email(session, email) is not None:
        raise APIError(f"a user with email {email} exists", code="email_taken", status=409)
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
    role: object = None,
    is_active: object = None,
    display_name: object = None,
) -> dict[str, object]:
    """Apply the given changes; a role change or a disable ends the user's sessions."""
    changes: dict[str, object] = {}
    if role is not None and check_role(role) != user.role:
        changes["role"] = role
    if is_active is not None:
        if not isinstance(is_active, bool):
            raise APIError("is_active must be true or false", code="invalid_field", status=422)
        if is_active != user.is_active:
            changes["is_active"] = is_active
    if display_name is not None:
        if not isinstance(display_name, str) or not display_name.strip():
            raise APIError(
                "display_name must be a non-empty string", code="invalid_field", status=422
            )
        if display_name.strip() != user.display_name:
            changes["display_name"] = display_name.strip()[:200]
    if not changes:
        return changes
    if user.id == actor.user_id and ("role" in changes or changes.get("is_active") is False):
        raise APIError(
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
    actor.audit(
        session,
        "user.update",
        target_type="user",
        target_id=user.id,
        changes={k: v for k, v in changes.items()},
    )
    session.flush()
    return changes


def delete_user(session: BackofficeSession, actor: Actor, user: User) -> None:
    if user.id == actor.user_id:
        raise APIError("admins cannot delete themselves", code="forbidden_self_change", status=409)
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
        raise APIError(
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
    session: BackofficeSession, actor: Actor, user: User, password: str, *, action: str
) -> None:
    """The user proves again who they are; a wrong password is audited under `action`
    (the caller commits that row before raising the refusal on)."""
    if not passwords.verify_password(user.password_hash, password):
        actor.audit(
            session,
            action,
            outcome="refused",
            target_type="user",
            target_id=user.id,
            reason="wrong current password",
        )
        raise APIError("the current password is wrong", code="invalid_credentials", status=403)


def change_own_password(
    session: BackofficeSession, actor: Actor, principal: Principal, current: str, new: str
) -> None:
    user = get_user(session, principal.user_id)
    confirm_password(session, actor, user, current, action="user.password_change")
    if passwords.verify_password(user.password_hash, new):
        raise APIError(
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


# -- sessions -------------------------------------------------------------------------------


class LoginRefused(APIError):
    """Wrong email or password: the caller commits the failure count and the audit row."""

    status = 401
    code = "invalid_credentials"


def login(
    session: BackofficeSession,
    settings: Settings,
    *,
    email: object,
    password: object,
    client_ip: str | None,
    user_agent: str | None,
) -> tuple[User, UserSession, str]:
    """Check the credentials and open a session; returns the user, the row and the raw token."""
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise APIError("email and password are required strings", code="invalid_field", status=422)
    try:
        email = normalize_email(email)
    except APIError:
        email = email.strip()[:254]  # still counted and audited, never matches a user
    keys = throttle.keys_for(settings, email, client_ip)
    # Counted before the password is checked, so parallel attempts cannot all get checked.
    wait = throttle.reserve(session, keys, settings.login_lockout_seconds)
    if wait is not None:
        audit.record(
            session, "auth.login", outcome="throttled", actor_email=email, client_ip=client_ip
        )
        raise APIError(
            "too many failed logins; try again later", code="too_many_attempts", status=429
        ).with_header("Retry-After", str(wait))

    user = find_user_by_email(session, email)
    valid = passwords.verify_password(user.password_hash if user else None, password)
    if not valid or user is None or not user.is_active:
        throttle.record_failure(session, keys, settings.login_lockout_seconds)
        reason = "inactive user" if valid and user is not None else "bad credentials"
        audit.record(
            session,
            "auth.login",
            outcome="failed",
            actor_email=email,
            actor_id=user.id if user else None,
            client_ip=client_ip,
            reason=reason,
        )
        raise LoginRefused("wrong email or password")

    throttle.record_success(session, keys)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = func.now()
    token = new_session_token()
    row = UserSession(
        token_hash=token_hash(token),
        user_id=user.id,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.session_absolute_timeout),
        client_ip=client_ip,
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(row)
    audit.record(
        session, "auth.login", actor_id=user.id, actor_email=user.email, client_ip=client_ip
    )
    session.flush()
    return user, row, token


def end_sessions(
    session: BackofficeSession,
    *,
    reason: str,
    user_id: int | None = None,
    session_id: int | None = None,
    keep_session_id: int | None = None,
) -> list[int]:
    """End a user's sessions (or one session); returns the ids ended."""
    query = (
        update(UserSession)
        .where(UserSession.ended_at.is_(None))
        .values(ended_at=func.now(), ended_reason=reason)
        .returning(UserSession.id)
    )
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    if session_id is not None:
        query = query.where(UserSession.id == session_id)
    if keep_session_id is not None:
        query = query.where(UserSession.id != keep_session_id)
    ended = list(session.scalars(query, execution_options={"synchronize_session": False}))
    if user_id is not None:
        notify(session, "user", user_id)  # also drops a role or status cached for a kept one
    else:
        for ident in ended:
            notify(session, "session", ident)
    return ended


def end_user_access(
    session: BackofficeSession,
    actor: Actor,
    *,
    user_id: int,
    reason: str,
    keep_session_id: int | None = None,
) -> tuple[int, int]:
    """End a user's sessions (but `keep_session_id`) and revoke their API tokens, in every
    process; returns how many of each."""
    ended = end_sessions(session, user_id=user_id, keep_session_id=keep_session_id, reason=reason)
    return len(ended), revoke_api_tokens(session, actor, user_id=user_id, reason=reason)


def end_every_session(session: BackofficeSession, actor: Actor, *, reason: str) -> tuple[int, int]:
    """Everyone is logged out and every API token revoked, in every process (after a suspected
    leak, say); returns how many of each."""
    ended = session.execute(
        update(UserSession)
        .where(UserSession.ended_at.is_(None))
        .values(ended_at=func.now(), ended_reason=reason),
        execution_options={"synchronize_session": False},
    ).rowcount
    revoked = revoke_api_tokens(session, actor, user_id=None, reason=reason)
    notify(session, "all")
    actor.audit(session, "session.end_everyone", count=ended, tokens_revoked=revoked, reason=reason)
    return ended, revoked


def list_sessions(session: BackofficeSession, user_id: int) -> list[UserSession]:
    return list(
        session.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.ended_at.is_(None),
                UserSession.expires_at > func.now(),
            )
            .order_by(UserSession.id)
        )
    )


def principal_for_session(
    session: BackofficeSession, settings: Settings, token: str
) -> Principal | None:
    """One statement: check the session and its user, and note that it was seen."""
    row = (
        session.connection_for("primary")
        .execute(
            text(
                """
                UPDATE config.sessions s SET last_seen_at = now()
                FROM config.users u
                WHERE s.token_hash = :hash AND u.id = s.user_id AND u.is_active
                  AND s.ended_at IS NULL AND s.expires_at > now()
                  AND s.last_seen_at > now() - make_interval(secs => :idle)
                RETURNING s.id, u.id, u.email, u.display_name, u.role,
                          u.must_change_password, s.expires_at
                """
            ),
            {"hash": token_hash(token), "idle": settings.session_idle_timeout},
        )
        .one_or_none()
    )
    if row is None:
        return None
    return Principal(
        user_id=row[1],
        email=row[2],
        display_name=row[3],
        role=row[4],
        must_change_password=row[5],
        expires_at=row[6],
        session_id=row[0],
    )


# -- API tokens -----------------------------------------------------------------------------


def create_api_token(
    session: BackofficeSession,
    actor: Actor,
    user: User,
    *,
    name: object,
    role: object = None,
    expires_in_days: object = None,
    caller: Principal | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `user`. Its role is at most the owner's and the calling credential's
    (`caller`; None for a shell command), and a token made by a token never outlives it:
    the routes accept only sessions, so this holds even if a route forgets to."""
    if not isinstance(name, str) or not name.strip():
        raise APIError("name must be a non-empty string", code="invalid_field", status=422)
    ceiling = user.role
    if caller is not None and RANK[caller.role] < RANK[ceiling]:
        ceiling = caller.role
    role = check_role(role if role is not None else ceiling)
    if RANK[role] > RANK[ceiling]:
        raise APIError(
            f"a token cannot have more rights than the credential that makes it ({ceiling})",
            code="invalid_role",
            status=422,
        )
    expires_at = _token_expiry(expires_in_days)
    limit = caller.expires_at if caller is not None and caller.via == "token" else None
    if limit is not None:
        if expires_at is not None and expires_at > limit:
            raise APIError(
                "a token cannot outlive the token that makes it",
                code="invalid_field",
                status=422,
            )
        expires_at = expires_at or limit
    raw = new_api_token()
    token = ApiToken(
        token_hash=token_hash(raw),
        user_id=user.id,
        name=name.strip()[:200],
        role=role,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    actor.audit(
        session,
        "token.create",
        target_type="api_token",
        target_id=token.id,
        owner_id=user.id,
        role=role,
    )
    return token, raw


def _token_expiry(expires_in_days: object) -> datetime | None:
    if expires_in_days is None:
        return None
    if (
        not isinstance(expires_in_days, int)
        or isinstance(expires_in_days, bool)
        or not (1 <= expires_in_days <= 3650)
    ):
        raise APIError(
            "expires_in_days must be a whole number from 1 to 3650",
            code="invalid_field",
            status=422,
        )
    return datetime.now(UTC) + timedelta(days=expires_in_days)


def list_api_tokens(session: BackofficeSession, user_id: int) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    )


def find_api_token(session: BackofficeSession, user_id: int, token_id: int) -> ApiToken | None:
    """The user's token with that id; None for another user's (or no) token."""
    token = session.get(ApiToken, token_id) if 0 < token_id < 2**63 else None
    return token if token is not None and token.user_id == user_id else None


def revoke_api_token(session: BackofficeSession, actor: Actor, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = func.now()
        notify(session, "token", token.id)
        actor.audit(
            session,
            "token.revoke",
            target_type="api_token",
            target_id=token.id,
            owner_id=token.user_id,
        )
        session.flush()


def revoke_api_tokens(
    session: BackofficeSession, actor: Actor, *, user_id: int | None, reason: str
) -> int:
    """Revoke a user's live tokens (everyone's: None), in every process; returns how many."""
    query = (
        update(ApiToken)
        .where(ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiToken.id)
    )
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    revoked = len(session.scalars(query, execution_options={"synchronize_session": False}).all())
    notify(session, "user" if user_id is not None else "all", user_id or 0)
    if revoked:
        actor.audit(
            session,
            "token.revoke_all",
            target_type="user" if user_id is not None else None,
            target_id=user_id,
            count=revoked,
            reason=reason,
        )
    return revoked


def principal_for_api_token(session: BackofficeSession, raw: str) -> Principal | None:
    row = (
        session.connection_for("primary")
        .execute(
            text(
                """
                SELECT t.id, u.id, u.email, u.display_name,
                       CASE WHEN array_position(ARRAY['viewer','operator','admin'], t.role)
                               < array_position(ARRAY['viewer','operator','admin'], u.role)
                            THEN t.role ELSE u.role END,
                       t.expires_at, u.must_change_password
                FROM config.api_tokens t JOIN config.users u ON u.id = t.user_id
                WHERE t.token_hash = :hash AND t.revoked_at IS NULL AND u.is_active
                  AND (t.expires_at IS NULL OR t.expires_at > now())
                """
            ),
            {"hash": token_hash(raw)},
        )
        .one_or_none()
    )
    if row is None:
        return None
    return Principal(
        user_id=row[1],
        email=row[2],
        display_name=row[3],
        role=row[4],
        must_change_password=row[6],  # refused like a session until the password is changed
        expires_at=row[5],
        token_id=row[0],
    )
