"""Every published transform keeps what it replaced: a row's versions newest first, a revert
that puts the customer's rows back exactly, refused while later transforms stand on the same
rows, itself revertible; history pruned past its retention and purged with the customer."""

import json
from datetime import datetime

import pytest
from sqlalchemy import text

from app.audit import Actor
from app.customers.purge import purge_customer_data
from app.db.session import session_scope
from app.errors import Refused
from app.jobs.worker import run_now
from app.retention import prune
from app.transforms import history
from app.transforms import revert as reverts
from app.transforms import service as transforms
from tests.bulk import PRODUCT_HEADER, RATES_HEADER, counts, crash_first_publish, run_import
from tests.conftest import create_user, login
from tests.harness import backoffice

FULL = (
    "sku,name,category,weight_kg,unit_price,currency,barcode,active\n"
    "P1,Kettle,kitchen,1.2,9.99,EUR,4006381333931,true\n"
    "P2,Toaster,kitchen,2.5,19.99,EUR,4006381333948,true\n"
    "P3,Grill,garden,8,99,EUR,,false\n"
)
# P1's price changes, P2's category is cleared, P3 stays, P4 is new.
LATER = (
    PRODUCT_HEADER + "P1,Kettle,10.49,EUR\nP2,Toaster,19.99,EUR\nP3,Grill,99,EUR\nP4,Fan,15,EUR\n"
)


def transform(bo, import_id, user=None, **options):
    """A transform run here, as `user` would start it; the transform after."""
    with session_scope(bo.session_factory) as session:
        made = transforms.create(
            session,
            bo.references,
            import_id=import_id,
            dataset="products",
            created_by=user.id if user else None,
            **options,
        )
        made_id, job_id = made.id, made.job_id
    assert run_now(bo, job_id).status == "succeeded"
    with bo.session_factory() as session:
        return transforms.get(session, made_id)


def queue_revert(bo, transform_id: int):
    with session_scope(bo.session_factory) as session:
        made = reverts.create(
            session, bo.references, transform_id=transform_id, history_days=90, created_by=None
        )
        return made.id, made.job_id


def revert(bo, transform_id: int):
    revert_id, job_id = queue_revert(bo, transform_id)
    outcome = run_now(bo, job_id)
    with bo.session_factory() as session:
        return transforms.get(session, revert_id), outcome


def table(bo, customer) -> list[tuple]:
    """Every column of every row of the customer's products, in key order (the checksum)."""
    with bo.engines.connect("data") as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT * FROM reference.products WHERE customer_id = :c ORDER BY sku"),
                {"c": customer.id},
            )
        ]


def versions(bo, customer, sku: str) -> list[dict]:
    with bo.engines.connect("data") as conn, conn.begin():
        return history.versions(conn, bo_dataset(), customer.id, {"sku": sku})


def bo_dataset():
    from app.datasets import DATASETS

    return DATASETS["products"]


def test_a_revert_puts_back_exactly_what_a_transform_inserted_updated_and_cleared(bo, customer):
    transform(bo, run_import(bo, customer, FULL))
    before = table(bo, customer)
    later = transform(bo, run_import(bo, customer, LATER), mapping={"category": None})
    assert counts(later)["inserted"] == 1 and counts(later)["updated"] == 3  # P3's category too
    assert table(bo, customer) != before
    done, outcome = revert(bo, later.id)
    assert outcome.status == "succeeded", outcome
    assert table(bo, customer) == before, "same rows, same values, same stamps and times"
    assert (done.counts["restored"], done.counts["deleted"], done.counts["reinserted"]) == (3, 1, 0)
    with bo.session_factory() as session:
        assert transforms.get(session, later.id).reverted_by_id == done.id
    with pytest.raises(Refused, match="already reverted"):
        queue_revert(bo, later.id)


def test_a_revert_of_the_revert_restores_the_transform(bo, customer):
    transform(bo, run_import(bo, customer, FULL))
    later = transform(bo, run_import(bo, customer, LATER), mapping={"barcode": None})
    after_later = table(bo, customer)
    first, _ = revert(bo, later.id)
    second, outcome = revert(bo, first.id)
    assert outcome.status == "succeeded"
    assert table(bo, customer) == after_later
    assert (second.counts["restored"], second.counts["reinserted"]) == (2, 1)
    with bo.session_factory() as session:
        assert transforms.get(session, later.id).reverted_by_id is None, "it stands again"
    _third, outcome = revert(bo, later.id)  # and can be reverted again
    assert outcome.status == "succeeded"
    assert [r[1] for r in table(bo, customer)] == ["P1", "P2", "P3"]


def test_a_revert_is_refused_while_a_later_transform_changed_the_same_rows(bo, customer):
    first = transform(bo, run_import(bo, customer, FULL))
    original = table(bo, customer)
    second = transform(bo, run_import(bo, customer, LATER))
    third = transform(bo, run_import(bo, customer, PRODUCT_HEADER + "P4,Fan,16,EUR\n"))
    with pytest.raises(Refused, match=f"#{third.id}") as refused:
        queue_revert(bo, second.id)
    assert refused.value.code == "revert_conflict" and refused.value.status == 409
    with pytest.raises(Refused, match=rf"transform\(s\) #{second.id} changed"):
        queue_revert(bo, first.id)  # the third changed only P4, which the first did not write
    revert(bo, third.id)
    revert(bo, second.id)
    _done, outcome = revert(bo, first.id)
    assert outcome.status == "succeeded"
    assert original and table(bo, customer) == [], "the first transform inserted them all"


def test_a_worker_killed_mid_revert_leaves_the_table_before_and_the_retry_finishes(
    bo, customer, monkeypatch
):
    transform(bo, run_import(bo, customer, FULL))
    before = table(bo, customer)
    later = transform(bo, run_import(bo, customer, LATER))
    after = table(bo, customer)
    seen = crash_first_publish(monkeypatch, customer)
    _revert_id, job_id = queue_revert(bo, later.id)
    assert run_now(bo, job_id).status == "retrying"
    assert seen["rows_inside"] == 3, "the revert had run inside the transaction"
    assert table(bo, customer) == after, "... and was rolled back whole"
    assert run_now(bo, job_id).status == "succeeded"
    assert table(bo, customer) == before


def test_a_row_shows_its_versions_newest_first_with_transform_import_and_user(
    bulk_app, bo, customer
):
    operator = create_user(bo.session_factory, "operator")
    first_import = run_import(bo, customer, FULL)
    first = transform(bo, first_import, operator)
    second_import = run_import(bo, customer, LATER)
    second = transform(bo, second_import)
    found = versions(bo, customer, "P1")
    assert [v["values"]["unit_price"] for v in found] == ["10.49", "9.99"]
    assert [(v["transform_id"], v["import_id"]) for v in found] == [
        (second.id, second_import),
        (first.id, first_import),
    ]
    assert [v["replaced_by"] for v in found] == [None, second.id]
    assert [v["values"]["unit_price"] for v in versions(bo, customer, "P3")] == ["99"]
    reverted, _ = revert(bo, second.id)
    assert [v.get("absent", False) for v in versions(bo, customer, "P4")] == [True, False]

    client = bulk_app.test_client()
    headers = {"X-CSRF-Token": login(client, create_user(bo.session_factory, "viewer").email)}
    answer = client.get(
        f"/api/datasets/products/history?customer_id={customer.id}&sku=P1", headers=headers
    )
    assert answer.status_code == 200, answer.json
    shown = answer.json["versions"]
    assert [v["values"]["unit_price"] for v in shown] == ["9.99", "10.49", "9.99"]
    assert shown[0]["transform"]["id"] == first.id
    assert datetime.fromisoformat(shown[0]["loaded_at"]).tzinfo is not None, "ISO 8601"
    assert shown[0]["transform"]["creator"]["email"] == operator.email
    assert shown[0]["replaced_by"] is None and shown[1]["replaced_by"] == reverted.id
    missing = client.get(f"/api/datasets/products/history?customer_id={customer.id}")
    assert missing.status_code == 422 and "sku" in missing.json["error"]["message"]
    unknown = client.get(f"/api/datasets/products/history?customer_id={customer.id}&sku=NO")
    assert unknown.status_code == 404


def test_history_past_retention_is_pruned_and_its_transform_cannot_be_reverted(bo, customer):
    transform(bo, run_import(bo, customer, FULL))
    later = transform(bo, run_import(bo, customer, LATER))
    with bo.engines.connect("data") as conn, conn.begin():
        conn.execute(
            text(
                "UPDATE workspace.transforms SET finished_at = now() - interval '91 days' "
                "WHERE id = :id"
            ),
            {"id": later.id},
        )
    with pytest.raises(Refused, match="older than the 90 days") as refused:
        queue_revert(bo, later.id)
    assert refused.value.code == "history_expired"
    counted = prune(bo, actor=Actor(None, "test"))
    assert counted["products_history"] >= 1  # P1's earlier price, at least
    with bo.engines.connect("data") as conn:
        left = conn.execute(
            text("SELECT count(*) FROM reference.products_history WHERE transform_id = :id"),
            {"id": later.id},
        ).scalar()
    assert left == 0


def test_a_customers_purge_removes_its_history(bo, customer):
    transform(bo, run_import(bo, customer, FULL))
    transform(bo, run_import(bo, customer, LATER))
    purged = purge_customer_data(bo, Actor(None, "test"), customer.id)
    assert purged.done and purged.counts["reference.products_history"] == 1
    with bo.engines.connect("data") as conn:
        assert not conn.execute(
            text("SELECT count(*) FROM reference.products_history WHERE customer_id = :c"),
            {"c": customer.id},
        ).scalar()


def test_revert_through_the_api_and_the_command(bulk_app, bo, customer, committed_env):
    client = bulk_app.test_client()
    operator, viewer = create_user(bo.session_factory, "operator"), create_user(bo.session_factory)
    transform(bo, run_import(bo, customer, FULL))
    before = table(bo, customer)
    later = transform(bo, run_import(bo, customer, LATER))
    viewer_headers = {"X-CSRF-Token": login(client, viewer.email)}
    refused = client.post(f"/api/transforms/{later.id}/revert", headers=viewer_headers)
    assert refused.status_code == 403
    headers = {"X-CSRF-Token": login(client, operator.email)}
    queued = client.post(f"/api/transforms/{later.id}/revert", headers=headers)
    assert queued.status_code == 202, queued.json
    made = queued.json["transform"]
    assert made["reverts_id"] == later.id and queued.json["job"]["status"] == "queued"
    again = client.post(f"/api/transforms/{later.id}/revert", headers=headers)
    assert again.status_code == 409 and again.json["error"]["code"] == "already_reverted"
    assert run_now(bo, made["job_id"]).status == "succeeded"
    assert table(bo, customer) == before
    shown = client.get(f"/api/transforms/{made['id']}").json["transform"]
    assert (shown["status"], shown["restored"], shown["deleted"]) == ("succeeded", 1, 1)

    printed = backoffice(committed_env, "transforms", "revert", str(made["id"]), "--yes")
    assert printed.returncode == 0, printed.stderr
    assert f"reverted transform {made['id']}: restored 1, deleted 0, reinserted 1" in printed.stdout
    as_json = backoffice(committed_env, "transforms", "revert", str(made["id"]), "--yes", "--json")
    assert as_json.returncode == 1 and "already reverted" in as_json.stderr
    with bo.session_factory() as session:
        actions = [
            e.details.get("reverts_id")
            for e in __import__("app.audit", fromlist=["entries"]).entries(
                session, action="transform.revert", limit=100
            )
        ]
    assert later.id in actions and made["id"] in actions
    assert (
        json.loads(client.get(f"/api/transforms/{later.id}").data)["transform"]["reverted_by_id"]
        is None
    )


def test_every_dataset_keeps_history_through_its_triggers(bo):
    from app.datasets import DATASETS

    with bo.engines.connect("data") as conn:
        triggers = set(
            conn.execute(
                text(
                    "SELECT c.relname || ':' || t.tgname FROM pg_trigger t "
                    "JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'reference' AND NOT t.tgisinternal"
                )
            ).scalars()
        )
    for name in DATASETS:
        assert {f"{name}:{name}_history_update", f"{name}:{name}_history_delete"} <= triggers


def test_a_transform_published_before_history_was_kept_cannot_be_reverted(bo, customer):
    made = transform(bo, run_import(bo, customer, FULL))
    with bo.engines.connect("data") as conn, conn.begin():
        conn.execute(
            text("UPDATE workspace.transforms SET keeps_history = false WHERE id = :id"),
            {"id": made.id},
        )
    with pytest.raises(Refused, match="before transforms kept history") as refused:
        queue_revert(bo, made.id)
    assert refused.value.code == "not_revertible"


def test_a_revert_whose_history_was_pruned_meanwhile_is_refused_and_changes_nothing(bo, customer):
    transform(bo, run_import(bo, customer, FULL))
    later = transform(bo, run_import(bo, customer, LATER))
    after = table(bo, customer)
    _revert_id, job_id = queue_revert(bo, later.id)
    with bo.engines.connect("data") as conn, conn.begin():  # as a prune's batch would
        conn.execute(
            text("DELETE FROM reference.products_history WHERE transform_id = :id"),
            {"id": later.id},
        )
    outcome = run_now(bo, job_id)
    assert outcome.status == "failed" and "no longer complete" in outcome.error
    assert table(bo, customer) == after, "nothing deleted"


def test_a_refused_revert_names_the_latest_transform_on_its_rows(bo, customer):
    """T0 inserts P1, T1 and T2 change it, #4 reverts T2, #5 reverts T1: reverting #4 (which
    would bring T2's price back) is refused naming #5, which stands on the row, not T0."""
    t0 = transform(bo, run_import(bo, customer, PRODUCT_HEADER + "P1,Kettle,1,EUR\n"))
    t1 = transform(bo, run_import(bo, customer, PRODUCT_HEADER + "P1,Kettle,2,EUR\n"))
    t2 = transform(bo, run_import(bo, customer, PRODUCT_HEADER + "P1,Kettle,3,EUR\n"))
    four, _ = revert(bo, t2.id)
    five, _ = revert(bo, t1.id)
    with pytest.raises(Refused, match=rf"transform\(s\) #{five.id} changed") as refused:
        queue_revert(bo, four.id)
    assert f"#{t0.id}" not in refused.value.message


def test_reverting_a_chain_of_reverts_keeps_which_transform_stands(bo, customer):
    transform(bo, run_import(bo, customer, FULL))
    later = transform(bo, run_import(bo, customer, LATER))
    after_later, before = table(bo, customer), None
    three, _ = revert(bo, later.id)
    before = table(bo, customer)
    four, _ = revert(bo, three.id)
    assert table(bo, customer) == after_later
    five, outcome = revert(bo, four.id)
    assert outcome.status == "succeeded" and table(bo, customer) == before
    with bo.session_factory() as session:
        links = {
            t.id: t.reverted_by_id
            for t in (transforms.get(session, n) for n in (later.id, three.id, four.id))
        }
    assert links == {later.id: three.id, three.id: None, four.id: five.id}


def test_a_revert_is_refused_for_an_inactive_customer(bo, customer):
    from app.customers import service as customers

    later = transform(bo, run_import(bo, customer, FULL))
    with session_scope(bo.session_factory) as session:
        record = customers.get_customer(session, customer.id)
        customers.update_customer(session, Actor(None, "test"), record, status="inactive")
    with pytest.raises(Refused) as refused:
        queue_revert(bo, later.id)
    assert refused.value.code == "inactive_customer"


def test_rows_page_through_rates_in_key_order_with_empty_and_numeric_keys(bulk_app, bo, customer):
    """Weights 5 and 10.5 sort one way as numbers and the other as text; empty origins and
    weights come last: paging one row at a time gives every row once, in the index's order."""
    lines = [
        f"DHL,EXP,{origin},75001,{weight},,{n + 1},EUR,2025-01-01,"
        for n, (origin, weight) in enumerate(
            (o, w) for o in ("10115", "") for w in ("5", "10.5", "", "0")
        )
    ]
    import_id = run_import(bo, customer, RATES_HEADER + "\n".join(lines) + "\n")
    with session_scope(bo.session_factory) as session:
        made = transforms.create(
            session, bo.references, import_id=import_id, dataset="rates", created_by=None
        )
        job_id = made.job_id
    assert run_now(bo, job_id).status == "succeeded"
    client = bulk_app.test_client()
    login(client, create_user(bo.session_factory, "viewer").email)
    seen, after = [], None
    for _ in range(20):
        answer = client.get(
            f"/api/datasets/rates/rows?customer_id={customer.id}&limit=1"
            + (f"&after={after}" if after else "")
        )
        assert answer.status_code == 200, answer.json
        seen += [(r["origin_postal"], r["weight_min_kg"]) for r in answer.json["rows"]]
        after = answer.json["next"]
        if not after:
            break
    assert seen == [
        ("10115", "0"),
        ("10115", "5"),
        ("10115", "10.5"),
        ("10115", None),
        (None, "0"),
        (None, "5"),
        (None, "10.5"),
        (None, None),
    ]
    base = f"/api/datasets/rates/history?customer_id={customer.id}&carrier=DHL&service=EXP"
    found = client.get(
        f"{base}&origin_postal=&dest_postal=75001&weight_min_kg=10.50&effective_date=2025-01-01"
    )
    assert found.status_code == 200, found.json
    assert found.json["versions"][0]["values"]["price"] == "6"
    for bad in ("weight_min_kg=%D9%A3", "weight_min_kg=1e200000", "effective_date=2021-W01-1"):
        key = {"weight_min_kg": "5", "effective_date": "2025-01-01"}
        name, value = bad.split("=")
        query = "&".join(f"{k}={value if k == name else v}" for k, v in key.items())
        refused = client.get(f"{base}&origin_postal=&dest_postal=75001&{query}")
        assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_key"
    import base64

    for cursor in (
        base64.urlsafe_b64encode(json.dumps(["A\u0000", None, None, "1", None, None]).encode()),
        base64.urlsafe_b64encode(b"[" * 5000),
        b"not-a-cursor",
    ):
        refused = client.get(
            f"/api/datasets/rates/rows?customer_id={customer.id}&after={cursor.decode()}"
        )
        assert refused.status_code == 422, (cursor[:20], refused.data[:200])
