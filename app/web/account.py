"""My account: change my password, see and end my sessions."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import PasswordField
from wtforms.validators import EqualTo, InputRequired, Length

from app.auth import services
from app.auth.access import allow
from app.auth.login import client_ip
from app.db.session import db_session
from app.errors import APIError
from app.web.forms import PageForm
from app.web.pages import bp


class PasswordForm(PageForm):
    current_password = PasswordField("Current password", [InputRequired(), Length(max=1024)])
    new_password = PasswordField("New password", [InputRequired(), Length(max=1024)])
    confirm = PasswordField(
        "Repeat the new password",
        [InputRequired(), EqualTo("new_password", message="The two new passwords differ.")],
    )

    refusal_fields = {"invalid_credentials": "current_password", "weak_password": "new_password"}


def _actor() -> services.Actor:
    return services.Actor.of(current_user, client_ip())


@bp.get("/account")
@allow("viewer", while_password_change_required=True)
def account():
    return _show(PasswordForm())


@bp.post("/account/password")
@allow("viewer", while_password_change_required=True)
def change_password():
    form = PasswordForm()
    if form.validate():
        db = db_session()
        try:
            services.change_own_password(
                db, _actor(), current_user, form.current_password.data, form.new_password.data
            )
        except APIError as exc:
            if exc.code == "invalid_credentials":
                db.commit()  # the refusal is audited
            form.refused(exc)
        else:
            db.commit()
            flash("Password changed. Your other sessions have ended.", "success")
            return redirect(url_for("web.account"))
    return _show(form), 422


@bp.post("/account/sessions/<int:session_id>/end")
@allow("viewer")
def end_session(session_id: int):
    db = db_session()
    if session_id == current_user.session_id or not any(
        row.id == session_id for row in services.list_sessions(db, current_user.user_id)
    ):
        raise APIError(f"you have no other open session {session_id}", code="not_found", status=404)
    services.end_sessions(db, session_id=session_id, reason="ended by its user")
    _actor().audit(db, "session.end", target_type="session", target_id=session_id)
    db.commit()
    flash("Session ended.", "success")
    return redirect(url_for("web.account"))


def _show(form: PasswordForm) -> str:
    return render_template(
        "account.html",
        title="Account",
        form=form,
        sessions=services.list_sessions(db_session(), current_user.user_id),
    )
