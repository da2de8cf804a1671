"""Exports and spreadsheets: text that starts like a formula is kept exact, or neutralized
with a leading ' on request, from the service, the API and the command."""

import csv
import io
import json

from sqlalchemy import text

from app.jobs.worker import run_now
from tests.bulk import run_export, run_import, run_transform
from tests.conftest import create_user, login
from tests.harness import backoffice

FORMULAS = (
    "sku,name,category,weight_kg,length_cm,width_cm,height_cm,unit_price,currency,"
    "barcode,active,updated_at\n"
    'F1,"=HYPERLINK(""x"")",+1,,,,,1.5,EUR,,,\n'
    "F2,-2,@x,,,,,2,EUR,,,\n"
    'F3,"\ttab","\rcr",,,,,3,EUR,,,\n'
)


def formula_fixture(bo, customer):
    run_transform(bo, run_import(bo, customer, FORMULAS), "products")
    # A negative number can only come from SQL (the transform refuses it): it must stay as it is.
    with bo.engines.data.begin() as conn:
        conn.execute(
            text(
                "UPDATE reference.products SET weight_kg = -2 WHERE customer_id = :c AND sku = 'F1'"
            ),
            {"c": customer.id},
        )


def cells(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode(), newline="")))


def test_plain_exports_keep_formula_like_text_exact(bo, customer, tmp_path):
    formula_fixture(bo, customer)
    out = tmp_path / "plain.csv"
    export, outcome = run_export(bo, customer, "products", output=out)
    assert outcome.status == "succeeded" and export.neutralize_formulas is False
    rows = cells(out)
    assert [r[:4] for r in rows[1:]] == [
        ["F1", '=HYPERLINK("x")', "+1", "-2"],
        ["F2", "-2", "@x", ""],
        ["F3", "\ttab", "\rcr", ""],
    ]


def test_neutralized_exports_prefix_only_text_cells_that_start_like_formulas(
    bo, customer, tmp_path
):
    formula_fixture(bo, customer)
    out = tmp_path / "safe.csv"
    export, outcome = run_export(bo, customer, "products", output=out, neutralize=True)
    assert outcome.status == "succeeded" and export.neutralize_formulas is True and export.rows == 3
    rows = cells(out)
    assert rows[0][:4] == ["sku", "name", "category", "weight_kg"]
    assert [r[:4] + r[7:9] for r in rows[1:]] == [
        ["F1", '\'=HYPERLINK("x")', "'+1", "-2", "1.5", "EUR"],
        ["F2", "'-2", "'@x", "", "2", "EUR"],
        ["F3", "'\ttab", "'\rcr", "", "3", "EUR"],
    ]


def test_the_cli_and_the_api_neutralize_formulas_on_request(
    bulk_app, bulk_env, bo, customer, tmp_path
):
    formula_fixture(bo, customer)
    out = tmp_path / "cli.csv"
    done = backoffice(
        bulk_env,
        "export",
        "products",
        "--customer",
        customer.code,
        "--output",
        str(out),
        "--neutralize-formulas",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["export"]["neutralize_formulas"] is True
    assert cells(out)[1][1] == '\'=HYPERLINK("x")'

    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    body = {"dataset": "products", "customer_id": customer.id, "neutralize_formulas": True}
    created = client.post("/api/exports", headers=headers, json=body)
    assert created.status_code == 202 and created.json["export"]["neutralize_formulas"] is True
    run_now(bo, created.json["job"]["id"])
    download = client.get(f"/api/exports/{created.json['export']['id']}/download")
    assert download.status_code == 200
    assert list(csv.reader(io.StringIO(download.data.decode())))[1][1] == '\'=HYPERLINK("x")'
    body["neutralize_formulas"] = "yes"
    refused = client.post("/api/exports", headers=headers, json=body)
    assert refused.status_code == 422 and "neutralize_formulas" in refused.json["error"]["message"]
