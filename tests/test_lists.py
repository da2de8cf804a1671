"""The lists of bulk work name what their rows point at: the customer (code and name) and the
user who made each, from the primary engine, in batched lookups through the reference cache."""

import io
import time

from sqlalchemy import event

from app.audit import Actor
from app.customers import service as customers
from app.db.session import session_scope
from tests.bulk import PRODUCT_HEADER, run_export, run_import, run_transform, wait_for
from tests.conftest import create_user, login

ACTOR = Actor(None, "tests")


def made_through_the_api(client, headers, customer, *, rows: str) -> dict:
    upload = client.post(
        "/api/imports",
        headers=headers,
        data={
            "customer_id": str(customer.id),
            "file": (io.BytesIO((PRODUCT_HEADER + rows).encode()), "p.csv"),
        },
        content_type="multipart/form-data",
    )
    assert upload.status_code == 202, upload.json
    return upload.json


def test_each_list_names_the_customer_and_the_creator(bulk_app, bo, customer):
    operator = create_user(bo.session_factory, "operator")
    client = bulk_app.test_client()
    headers = {"X-CSRF-Token": login(client, operator.email)}
    made = made_through_the_api(client, headers, customer, rows="S1,A,1,EUR\n")
    import_id = made["import"]["id"]
    from app.jobs.worker import run_now

    run_now(bo, made["job"]["id"])
    transform = client.post(
        "/api/transforms", headers=headers, json={"import_id": import_id, "dataset": "products"}
    )
    assert transform.status_code == 202
    run_now(bo, transform.json["job"]["id"])
    export = client.post(
        "/api/exports", headers=headers, json={"dataset": "products", "customer_id": customer.id}
    )
    assert export.status_code == 202
    run_now(bo, export.json["job"]["id"])

    expected_customer = {"id": customer.id, "code": customer.code, "name": customer.name}
    expected_creator = {"id": operator.id, "email": operator.email, "name": "Operator"}
    for route, key in [
        (f"/api/imports?customer_id={customer.id}", "imports"),
        (f"/api/transforms?customer_id={customer.id}", "transforms"),
        (f"/api/exports?customer_id={customer.id}", "exports"),
        (f"/api/jobs?customer_id={customer.id}", "jobs"),
    ]:
        listed = client.get(route)
        assert listed.status_code == 200, (route, listed.json)
        rows = listed.json[key]
        assert rows, route
        for row in rows:
            assert row["customer"] == expected_customer, route
            assert row["creator"] == expected_creator, (route, row)
    assert len(client.get(f"/api/jobs?customer_id={customer.id}").json["jobs"]) == 3
    only = client.get(f"/api/transforms?import_id={import_id}").json["transforms"]
    assert [t["import_id"] for t in only] == [import_id]


def test_a_renamed_customer_is_named_anew_and_a_deleted_creator_is_none(bulk_app, bo, customer):
    operator = create_user(bo.session_factory, "operator")
    client = bulk_app.test_client()
    headers = {"X-CSRF-Token": login(client, operator.email)}
    made_through_the_api(client, headers, customer, rows="S1,A,1,EUR\n")
    first = client.get(f"/api/imports?customer_id={customer.id}").json["imports"][0]
    assert first["customer"]["name"] == customer.name
    with session_scope(bo.session_factory) as session:
        record = customers.get_customer(session, customer.id)
        customers.update_customer(session, ACTOR, record, name="Renamed Ltd")

    def renamed():
        listed = client.get(f"/api/imports?customer_id={customer.id}").json["imports"]
        return listed[0]["customer"]["name"] == "Renamed Ltd"

    assert wait_for(renamed, 5), "the change notice reaches the list within seconds"
    # An import made by the command line has no creator.
    run_import(bo, customer, PRODUCT_HEADER + "S2,B,2,EUR\n")
    listed = client.get(f"/api/imports?customer_id={customer.id}").json["imports"]
    assert listed[0]["created_by"] is None and listed[0]["creator"] is None


def test_a_page_costs_two_primary_queries_cold_and_none_warm(bulk_app, bo, customer):
    operator = create_user(bo.session_factory, "operator")
    client = bulk_app.test_client()
    headers = {"X-CSRF-Token": login(client, operator.email)}
    for n in range(5):
        made_through_the_api(client, headers, customer, rows=f"S{n},A,1,EUR\n")
    client.get("/api/auth/me")  # the session is in its cache from here on
    bo.references.cache.clear()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = bo.engines.primary
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert len(client.get("/api/imports?limit=5").json["imports"]) == 5
        lookups = [s for s in statements if "customer.customers" in s or "config.users" in s]
        assert len(lookups) == 2, lookups  # one for the customers, one for the users
        statements.clear()
        time.sleep(0.05)
        client.get("/api/imports?limit=5")
        assert not [s for s in statements if "customer.customers" in s or "config.users" in s]
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_rows_of_a_customer_the_cli_made_are_named_too(bulk_app, bo, customer):
    viewer = create_user(bo.session_factory, "viewer")
    client = bulk_app.test_client()
    login(client, viewer.email)
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\n")
    run_transform(bo, import_id)
    run_export(bo, customer, "products")
    for route, key in [("/api/transforms", "transforms"), ("/api/exports", "exports")]:
        rows = client.get(f"{route}?customer_id={customer.id}").json[key]
        assert rows and all(r["customer"]["code"] == customer.code for r in rows)
        assert all(r["creator"] is None for r in rows)
