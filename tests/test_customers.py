"""Customers over HTTP and the CLI: who may do what, bad input, and deletion with data."""

import pytest
from sqlalchemy import select

from app.models.primary.config import AuditEntry
from tests.conftest import login


@pytest.fixture
def as_operator(client, make_user):
    user = make_user("operator")
    return user, {"X-CSRF-Token": login(client, user.email)}


def create(client, headers, **fields):
    body = {"code": "acme", "name": "Acme Corp", **fields}
    return client.post("/api/customers", headers=headers, json=body)


def test_operators_create_read_update_and_delete_customers(client, as_operator, db):
    operator, headers = as_operator
    created = create(client, headers, contact_email="Buyer@Acme.example", contact_name="Bea")
    assert created.status_code == 201, created.json
    customer = created.json["customer"]
    assert customer["code"] == "ACME" and customer["status"] == "active"

    assert client.get(f"/api/customers/{customer['id']}").json["customer"]["name"] == "Acme Corp"
    patched = client.patch(
        f"/api/customers/{customer['id']}",
        headers=headers,
        json={"status": "inactive", "name": "Acme Corporation"},
    )
    assert patched.json["changed"] == ["name", "status"]
    audit = db.scalars(select(AuditEntry.action).where(AuditEntry.actor_id == operator.id)).all()
    assert audit[-2:] == ["customer.create", "customer.update"]

    assert client.delete(f"/api/customers/{customer['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/customers/{customer['id']}").status_code == 404


def test_viewers_read_but_do_not_write(client, make_user, as_operator, app):
    _operator, headers = as_operator
    customer_id = create(client, headers).json["customer"]["id"]
    viewer = make_user("viewer")
    other = app.test_client()
    csrf = {"X-CSRF-Token": login(other, viewer.email)}
    assert other.get("/api/customers").status_code == 200
    assert other.get(f"/api/customers/{customer_id}").status_code == 200
    assert create(other, csrf, code="other").status_code == 403
    assert (
        other.patch(f"/api/customers/{customer_id}", headers=csrf, json={"name": "x"}).status_code
        == 403
    )
    assert other.delete(f"/api/customers/{customer_id}", headers=csrf).status_code == 403


def test_listing_filters_searches_and_pages(client, as_operator):
    _operator, headers = as_operator
    for code, status in [("ALPHA", "active"), ("BETA", "inactive"), ("GAMMA", "active")]:
        assert (
            create(
                client, headers, code=code, name=f"{code.title()} Ltd", status=status
            ).status_code
            == 201
        )
    page = client.get("/api/customers?status=active&limit=1").json
    assert [customer["code"] for customer in page["customers"]] == ["ALPHA"] and page["total"] == 2
    assert [
        customer["code"] for customer in client.get("/api/customers?q=eta").json["customers"]
    ] == ["BETA"]
    assert client.get("/api/customers?q=%25").json["total"] == 0, "% is searched literally"
    assert client.get("/api/customers?status=gone").status_code == 400


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"code": "a"}, 422, "invalid_code"),
        ({"code": "has space"}, 422, "invalid_code"),
        ({"code": "../etc"}, 422, "invalid_code"),
        ({"code": 42}, 422, "invalid_code"),
        ({"name": ""}, 422, "missing_field"),
        ({"name": "x" * 201}, 422, "invalid_field"),
        ({"status": "deleted"}, 422, "invalid_field"),
        ({"contact_email": "not an email"}, 422, "invalid_email"),
        ({"owner": "me"}, 422, "invalid_field"),
    ],
)
def test_bad_customer_input_is_refused(client, as_operator, fields, status, code):
    _operator, headers = as_operator
    response = create(client, headers, **fields)
    assert response.status_code == status and response.json["error"]["code"] == code


def test_codes_are_unique_and_never_change(client, as_operator):
    _operator, headers = as_operator
    customer_id = create(client, headers).json["customer"]["id"]
    assert create(client, headers, code="Acme").json["error"]["code"] == "code_taken"
    response = client.patch(
        f"/api/customers/{customer_id}", headers=headers, json={"code": "OTHER"}
    )
    assert response.json["error"]["code"] == "immutable_field"


@pytest.fixture
def data_table(probe_table):
    """A data-engine table that refers to customers, as imports and datasets will."""
    return probe_table("customer_rows_probe", "customer_id", "value")


def test_a_customer_with_data_cannot_be_deleted(client, as_operator, db, data_table):
    _operator, headers = as_operator
    customer_id = create(client, headers).json["customer"]["id"]
    db.connection_for("data").execute(
        data_table.insert(), [{"customer_id": customer_id, "value": "v"}] * 3
    )
    response = client.delete(f"/api/customers/{customer_id}", headers=headers)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "customer_has_data"
    assert "3 row(s) in workspace.customer_rows_probe" in response.json["error"]["message"]
    assert client.get(f"/api/customers/{customer_id}").status_code == 200, "nothing deleted"
