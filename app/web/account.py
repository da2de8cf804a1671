"""My account: change my password, see and end my sessions, make and revoke my API tokens."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, NumberRange, Optional

from app.audit import Actor
from app.auth import api_tokens, sessions, users
from app.auth.access import allow
from app.auth.login import client_ip
from app.auth.roles import RANK
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import NotFound, Refused
from app.models.primary.config import ROLES
from app.web.forms import PageForm, WholeNumberField, options, sentence
from app.web.pages import bp, secret_page


class PasswordForm(PageForm):
    current_password = PasswordField("Current password", [InputRequired(), Length(max=1024)])
    new_password = PasswordField("New password", [InputRequired(), Length(max=1024)])
    confirm = PasswordField(
        "Repeat the new password",
        [InputRequired(), EqualTo("new_password", message="The two new passwords differ.")],
    )

    refusal_fields = {"invalid_credentials": "current_password", "weak_password": "new_password"}


class TokenForm(PageForm):
    name = StringField("Token name", [InputRequired(), Length(max=200)])
    role = SelectField("Token role")
    expires_in_days = WholeNumberField(
        "Expires in days", [Optional(), NumberRange(min=1, max=3650)]
    )
    # Its own id: the password form on the same page has a `current_password` too.
    current_password = PasswordField(
        "Your password", [InputRequired(), Length(max=1024)], id="token_password"
    )

    refusal_fields = {"invalid_credentials": "current_password", "invalid_role": "role"}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # A token never outranks its owner: offer the roles up to mine, mine first.
        mine = RANK[current_user.role]
        self.role.choices = options((role, role) for role in reversed(ROLES) if RANK[role] <= mine)


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


@bp.get("/account")
@allow("viewer", while_password_change_required=True)
def account():
    return _show(PasswordForm(), TokenForm())


def _ended(exc: Refused):
    """Too many wrong passwords: this session was ended with the refusal; off to sign in."""
    flash(sentence(exc.message), "error")
    return redirect(url_for("web.login"))


@bp.post("/account/password")
@allow("viewer", while_password_change_required=True)
def change_password():
    form = PasswordForm()
    if form.validate():
        db = db_session()
        try:
            users.change_own_password(
                db,
                current_backoffice().settings,
                _actor(),
                current_user,
                form.current_password.data,
                form.new_password.data,
            )
        except Refused as exc:
            if exc.code in users.KEPT_REFUSALS:
                db.commit()  # the refusal is audited and counted
            if exc.code == "too_many_attempts":
                return _ended(exc)
            form.refused(exc)
        else:
            db.commit()
            flash(
                "Password changed. Your other sessions and your API tokens have ended.", "success"
            )
            return redirect(url_for("web.account"))
    return _show(form, TokenForm())


@bp.post("/account/sessions/<int:session_id>/end")
@allow("viewer")
def end_session(session_id: int):
    db = db_session()
    if session_id == current_user.session_id or not any(
        row.id == session_id for row in sessions.list_sessions(db, current_user.user_id)
    ):
        raise NotFound(f"you have no other open session {session_id}")
    sessions.end_session(db, _actor(), session_id, reason="ended by its user")
    db.commit()
    flash("Session ended.", "success")
    return redirect(url_for("web.account"))


@bp.post("/account/tokens")
@allow("viewer")
def create_token():
    """The password is asked again, as in the API: a borrowed browser alone cannot mint a
    credential that outlives its session."""
    form = TokenForm()
    if form.validate():
        db = db_session()
        try:
            token, raw = users.create_own_api_token(
                db,
                current_backoffice().settings,
                _actor(),
                current_user,
                password=form.current_password.data,
                name=form.name.data,
                role=form.role.data,
                expires_in_days=form.expires_in_days.data,
            )
        except Refused as exc:
            if exc.code in users.KEPT_REFUSALS:
                db.commit()  # the refusal is audited and counted
            if exc.code == "too_many_attempts":
                return _ended(exc)
            form.refused(exc)
        else:
            db.commit()
            return secret_page(
                f"API token {token.name} created",
                "Secret",
                raw,
                "Send it as `Authorization: Bearer <secret>`. Keep it like a password: it is "
                "not shown again, and it ends when you revoke it or your password changes.",
                url_for("web.account"),
            )
    return _show(PasswordForm(), form)


@bp.post("/account/tokens/<int:token_id>/revoke")
@allow("viewer")
def revoke_token(token_id: int):
    db = db_session()
    token = api_tokens.revoke_own_api_token(db, _actor(), current_user.user_id, token_id)
    db.commit()
    flash(f"API token {token.name} revoked.", "success")
    return redirect(url_for("web.account"))


def _show(form: PasswordForm, token_form: TokenForm) -> str:
    db = db_session()
    return render_template(
        "account.html",
        title="Account",
        form=form,
        token_form=token_form,
        sessions=sessions.list_sessions(db, current_user.user_id),
        tokens=api_tokens.list_api_tokens(db, current_user.user_id),
        revoke_url=lambda token: url_for("web.revoke_token", token_id=token.id),
    )
