"""The pages' rules seen from a plain HTTP client: sizes, credentials, fragments."""

import io

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
