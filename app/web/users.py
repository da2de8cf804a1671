"""Users, for admins: list, create, a user's page (role, disable, reset, sessions, tokens,
delete behind a confirmation)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import InputRequired, Length, Optional

from app.audit import Actor
from app.auth import api_tokens, passwords, sessions, users
from app.auth.access import allow
from app.auth.login import client_ip
from app.db.session import db_session
from app.errors import NotFound, Refused
from app.models.primary.config import ROLES, User
from app.web.forms import PageForm, options
from app.web.pages import bp, refused_back, secret_page

ROLE_CHOICES = options((role, role) for role in ROLES)


class NewUserForm(PageForm):
    email = EmailField("Email", [InputRequired(), Length(max=254)])
    display_name = StringField("Name", [InputRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")
    password = PasswordField("Password", [Optional(), Length(max=1024)])

    refusal_fields = {
        "invalid_email": "email",
        "email_taken": "email",
        "weak_password": "password",
        "invalid_role": "role",
    }


class UserForm(PageForm):
    display_name = StringField("Name", [InputRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES)

    refusal_fields = {"invalid_role": "role", "forbidden_self_change": "role", "last_admin": "role"}


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


@bp.get("/users")
@allow("admin")
def users_list():
    return render_template("users/list.html", title="Users", users=users.list_users(db_session()))


@bp.route("/users/new", methods=["GET", "POST"])
@allow("admin")
def new_user():
    form = NewUserForm()
    if form.submitted and form.validate():
        generated = not form.password.data
        password = passwords.temporary_password() if generated else form.password.data
        db = db_session()
        try:
            user = users.create_user(
                db,
                _actor(),
                email=form.email.data,
                display_name=form.display_name.data,
                role=form.role.data,
                password=password,
                must_change_password=generated,
            )
        except Refused as exc:
            form.refused(exc)
        else:
            db.commit()
            if generated:
                return secret_page(
                    f"User {user.email} created",
                    "Temporary password",
                    password,
                    "Give it to them over a channel you trust. They choose their own password "
                    "at their first sign-in. It is not shown again.",
                    url_for("web.user_page", user_id=user.id),
                )
            flash(f"User {user.email} created.", "success")
            return redirect(url_for("web.user_page", user_id=user.id))
    return render_template("users/new.html", title="New user", form=form)


@bp.get("/users/<int:user_id>")
@allow("admin")
def user_page(user_id: int):
    user = users.get_user(db_session(), user_id)
    return _show(user, UserForm(obj=user))


@bp.post("/users/<int:user_id>/edit")
@allow("admin")
def edit_user(user_id: int):
    db = db_session()
    user = users.get_user(db, user_id)
    form = UserForm()
    if form.validate():
        try:
            changes = users.update_user(
                db, _actor(), user, role=form.role.data, display_name=form.display_name.data
            )
        except Refused as exc:
            db.rollback()
            form.refused(exc)
        else:
            db.commit()
            flash(f"User {user.email} saved." if changes else "Nothing changed.", "success")
            return redirect(url_for("web.user_page", user_id=user.id))
    return _show(users.get_user(db, user_id), form)


@bp.post("/users/<int:user_id>/status")
@allow("admin")
def user_status(user_id: int):
    db = db_session()
    user = users.get_user(db, user_id)
    try:
        users.update_user(db, _actor(), user, is_active=not user.is_active)
    except Refused as exc:
        return refused_back(exc, url_for("web.user_page", user_id=user_id))
    db.commit()
    if user.is_active:
        flash(f"User {user.email} enabled.", "success")
    else:
        flash(f"User {user.email} disabled: their sessions and API tokens have ended.", "success")
    return redirect(url_for("web.user_page", user_id=user.id))


@bp.post("/users/<int:user_id>/reset-password")
@allow("admin")
def reset_user_password(user_id: int):
    db = db_session()
    user = users.get_user(db, user_id)
    password = passwords.temporary_password()
    users.set_password(db, _actor(), user, password, must_change=True, action="user.password_reset")
    db.commit()
    return secret_page(
        f"Password of {user.email} reset",
        "Temporary password",
        password,
        "Their sessions and API tokens have ended. They choose their own password at their next "
        "sign-in. It is not shown again.",
        url_for("web.user_page", user_id=user.id),
    )


@bp.post("/users/<int:user_id>/end-sessions")
@allow("admin")
def end_user_sessions(user_id: int):
    db = db_session()
    user = users.get_user(db, user_id)
    ended, revoked = sessions.end_user_sessions(
        db, _actor(), user.id, reason="ended by an admin", revoke_tokens=True
    )
    db.commit()
    flash(
        f"Ended {ended} session(s) and revoked {revoked} API token(s) of {user.email}.", "success"
    )
    return redirect(url_for("web.user_page", user_id=user.id))


@bp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
@allow("admin")
def revoke_user_token(user_id: int, token_id: int):
    db = db_session()
    user = users.get_user(db, user_id)
    token = api_tokens.find_api_token(db, user.id, token_id)
    if token is None:
        raise NotFound(f"user {user_id} has no API token {token_id}")
    api_tokens.revoke_api_token(db, _actor(), token)
    db.commit()
    flash(f"API token {token.name} revoked.", "success")
    return redirect(url_for("web.user_page", user_id=user.id))


@bp.get("/users/<int:user_id>/delete")
@allow("admin")
def confirm_delete_user(user_id: int):
    user = users.get_user(db_session(), user_id)
    return render_template("users/delete.html", title=f"Delete {user.email}", user=user)


@bp.post("/users/<int:user_id>/delete")
@allow("admin")
def delete_user(user_id: int):
    db = db_session()
    user = users.get_user(db, user_id)
    try:
        users.delete_user(db, _actor(), user)
    except Refused as exc:
        return refused_back(exc, url_for("web.user_page", user_id=user_id))
    db.commit()
    flash(f"User {user.email} deleted.", "success")
    return redirect(url_for("web.users_list"))


def _show(user: User, form: UserForm) -> str:
    db = db_session()
    return render_template(
        "users/show.html",
        title=f"User {user.email}",
        user=user,
        form=form,
        sessions=sessions.list_sessions(db, user.id),
        tokens=api_tokens.list_api_tokens(db, user.id),
        revoke_url=lambda token: url_for(
            "web.revoke_user_token", user_id=user.id, token_id=token.id
        ),
    )
