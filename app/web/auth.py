"""Sign in and out: the same sessions as the API, the same cookie, the same throttling."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import InputRequired, Length

from app.audit import Actor
from app.auth.access import PUBLIC, allow
from app.auth.login import client_ip
from app.auth.signin import clear_session_cookie, set_session_cookie, sign_in, sign_out
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import Refused
from app.web.forms import PublicForm
from app.web.pages import bp, safe_next


class SignInForm(PublicForm):
    email = EmailField("Email", [InputRequired(), Length(max=254)])
    password = PasswordField("Password", [InputRequired(), Length(max=1024)])
    next = HiddenField()


@bp.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login():
    form = SignInForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")))
        form.next.data = request.args.get("next", "")
    elif not _same_origin():
        # Sign-in has no session yet, so no CSRF token: a form posted from another site (which
        # would sign the victim in as the attacker) is told apart by its Origin header.
        raise Refused("this form was sent from another site", code="csrf_failed", status=403)
    elif form.validate():
        settings = current_backoffice().settings
        try:
            user, row, token = sign_in(
                db_session(),
                settings,
                request,
                email=form.email.data,
                password=form.password.data,
                client_ip=client_ip(),
            )
        except Refused as exc:
            # The same words whether the email exists or not.
            if exc.status == 429:
                form.form_errors.append(
                    "Too many failed sign-ins. Try again in "
                    f"{_minutes(exc.headers.get('Retry-After'))}."
                )
            else:
                form.form_errors.append("Wrong email or password.")
            return render_template("login.html", form=form, title="Sign in")
        target = url_for("web.account") if user.must_change_password else safe_next(form.next.data)
        response = redirect(target)
        set_session_cookie(response, settings, token, row.expires_at)
        flash(f"Signed in as {user.email}.", "success")
        return response
    return render_template("login.html", form=form, title="Sign in")


@bp.post("/logout")
@allow("viewer", while_password_change_required=True)
def logout():
    response = redirect(url_for("web.login"))
    sign_out(db_session(), Actor.of(current_user, client_ip()), current_user)
    clear_session_cookie(response)
    flash("Signed out.", "success")
    return response


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by older browsers on same-origin posts; CSRF needs a browser
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def _minutes(seconds: str | None) -> str:
    minutes = max(1, -(-int(seconds or 60) // 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"
