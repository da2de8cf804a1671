"""The pages' rules seen from a plain HTTP client: sizes, credentials, fragments."""

import html
import io
from html.parser import HTMLParser

from app import create_app
from tests.conftest import PASSWORD, create_user


def test_an_upload_over_the_limit_is_a_page_naming_the_limit(make_env):
    env = {**make_env("upload_limit"), "MAX_UPLOAD_BYTES": "2048"}
    application = create_app(env)
    try:
        from app.db import migrations

        migrations.upgrade(application.extensions["backoffice"].engines)
        operator = create_user(application.extensions["backoffice"].session_factory, "operator")
        client = application.test_client()
        client.post("/login", data={"email": operator.email, "password": PASSWORD})
        form = client.get("/imports/new").get_data(as_text=True)
        assert "Up to 2.0 KiB." in form
        token = form.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        answer = client.post(
            "/imports/new",
            data={
                "csrf_token": token,
                "customer": "1",
                "file": (io.BytesIO(b"x" * 100_000), "big.csv"),
            },
            content_type="multipart/form-data",
        )
        assert answer.status_code == 413
        assert answer.mimetype == "text/html"
        assert "The upload is larger than the limit of 2.0 KiB." in answer.get_data(as_text=True)
    finally:
        application.extensions["backoffice"].close()


def test_pages_refuse_an_api_token(client, make_user, db):
    from app.audit import Actor
    from app.auth.api_tokens import create_api_token

    user = make_user("admin")
    _, secret = create_api_token(db, Actor(None, "tests"), user, name="script")
    db.commit()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    for path in ("/", "/customers", "/users", "/account"):
        page = client.get(path, headers=bearer)
        assert page.status_code == 403, path
        assert page.mimetype == "text/html"


def test_a_fragment_polled_after_the_session_ended_sends_the_page_to_sign_in(client):
    answer = client.get(
        "/imports/1/progress",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/imports/1?page=2"},
    )
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"] == "/login?next=/imports/1"
    page = client.get("/imports/1")
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/imports/1"


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.names += [name for name, _ in attrs]


def test_text_someone_typed_never_becomes_attributes_on_the_audit_page(client, make_user, db):
    """An operator's customer name lands in the audit log's details; shown to an admin, it must
    stay text, not attributes htmx would act on with the admin's CSRF token."""
    from app.audit import Actor
    from app.customers import service as customers

    planted = "z hx-post=/users/1/status hx-trigger=load hx-include=[name=csrf_token] y"
    customer = customers.create_customer(db, Actor(None, "tests"), code="PLANT", name="Plant")
    customers.update_customer(db, Actor(None, "tests"), customer, name=planted)
    db.commit()
    admin = make_user("admin")
    client.post("/login", data={"email": admin.email, "password": PASSWORD})
    page = client.get("/audit?action=customer.update").get_data(as_text=True)
    assert "hx-post=/users/1/status" in html.unescape(page)  # shown, as text
    parser = _Attributes()
    parser.feed(page)
    assert [name for name in parser.names if name.startswith("hx-")] == []


def test_a_form_over_the_size_limit_names_the_forms_limit_not_the_uploads(client):
    answer = client.post("/login", data={"email": "x" * 2_000_000, "password": "y"})
    assert answer.status_code == 413
    text = answer.get_data(as_text=True)
    assert "The form is larger than the limit of" in text and "upload" not in text


def test_pages_and_downloads_are_not_kept_by_caches_but_static_files_are(client, make_user):
    viewer = make_user("viewer")
    client.post("/login", data={"email": viewer.email, "password": PASSWORD})
    assert client.get("/customers").headers["Cache-Control"] == "no-store"
    assert client.get("/datasets/products/template.csv").headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/static/style.css").headers.get("Cache-Control", "")
