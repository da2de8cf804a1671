"""Exports: the round trip, gzip, no half files, generated names, and the routes."""

import csv
import gzip
import io
import json
import subprocess

import pytest
from sqlalchemy import text

from app import create_app
from app.auth.services import Actor
from app.customers import services as customers
from app.db.session import session_scope
from app.exports import service as exports
from app.jobs import runner
from app.jobs.worker import run_now
from tests.conftest import create_user, login
from tests.harness import backoffice
from tests.test_transforms import RATES, reference, staged, transform

ACTOR = Actor(None, "tests")
PRODUCTS = (
    "sku,name,category,weight_kg,length_cm,width_cm,height_cm,unit_price,currency,"
    "barcode,active,updated_at\n"
    'S2,"Widget, large",tools,1.250,10,20,30,9.99,eur,4006381333931,yes,'
    "2024-05-01T10:30:00+02:00\n"
    'S1,"Say ""hi""\nsecond line",,,,,,0.5,USD,,0,2024-05-02\n'
    "S3,Plain,,,,,,100,JPY,,,\n"
)


@pytest.fixture(scope="module")
def env(committed_env, tmp_path_factory):
    return {**committed_env, "EXPORT_DIR": str(tmp_path_factory.mktemp("exports"))}


@pytest.fixture(scope="module")
def app(env):
    application = create_app(env)
    yield application
    application.extensions["backoffice"].close()


@pytest.fixture(scope="module")
def bo(app):
    return app.extensions["backoffice"]


@pytest.fixture
def customer(bo, request):
    code = f"E{abs(hash(request.node.name)) % 10**8}"
    with session_scope(bo.session_factory) as session:
        return customers.create_customer(session, ACTOR, code=code, name=code)


def export(bo, customer, dataset, output=None, fmt="csv", neutralize=False):
    with session_scope(bo.session_factory) as session:
        e = exports.create(
            session,
            bo.references,
            dataset=dataset,
            customer_id=customer.id,
            format=fmt,
            created_by=None,
            output=str(output) if output else None,
            neutralize_formulas=neutralize,
        )
        export_id, job_id = e.id, e.job_id
    outcome = run_now(bo, job_id)
    with bo.session_factory() as session:
        return exports.get(session, export_id), outcome


@pytest.mark.parametrize(
    ("dataset", "content"),
    [
        ("products", PRODUCTS),
        (
            "rates",
            RATES + "DHL,x,,80331,,,1,EUR,"
            "2024-01-01,\nUPS,y,1,2,0.5,3,2.00,GBP,"
            "2024-02-01,2024-03-01\n",
        ),
    ],
)
def test_export_then_import_then_transform_is_the_identity(
    bo, customer, tmp_path, dataset, content
):
    first, _ = transform(bo, staged(bo, customer, content), dataset)
    assert first.as_dict()["rejected"] == 0
    before = reference(bo, dataset, customer)
    out = tmp_path / "out.csv"
    e, outcome = export(bo, customer, dataset, output=out)
    assert outcome.status == "succeeded" and e.rows == len(before)
    again, _ = transform(bo, staged(bo, customer, out.read_text()), dataset)
    assert again.as_dict()["unchanged"] == len(before) and again.as_dict()["rejected"] == 0
    after = reference(bo, dataset, customer)
    drop = {"source_import_id", "loaded_at"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in after] == [
        {k: v for k, v in r.items() if k not in drop} for r in before
    ]


def test_exports_have_a_header_stable_columns_and_key_order(bo, customer, tmp_path):
    transform(bo, staged(bo, customer, PRODUCTS), "products")
    out = tmp_path / "p.csv"
    export(bo, customer, "products", output=out)
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == PRODUCTS.splitlines()[0].split(",")
    assert [r[0] for r in rows[1:]] == ["S1", "S2", "S3"]
    assert rows[1][1] == 'Say "hi"\nsecond line'


def test_gzip_output_is_readable_by_gzip(bo, customer, tmp_path):
    transform(bo, staged(bo, customer, PRODUCTS), "products")
    plain, zipped = tmp_path / "p.csv", tmp_path / "p.csv.gz"
    export(bo, customer, "products", output=plain)
    e, _ = export(bo, customer, "products", output=zipped, fmt="csv.gz")
    unzipped = subprocess.run(["gzip", "-dc", str(zipped)], capture_output=True, check=True)
    assert unzipped.stdout == plain.read_bytes()
    assert e.size_bytes == zipped.stat().st_size


def test_a_crash_never_leaves_a_half_file_under_the_final_name(bo, customer, tmp_path, monkeypatch):
    transform(bo, staged(bo, customer, PRODUCTS), "products")

    def lost(conn, claim):
        raise runner.LeaseLost()

    monkeypatch.setattr("app.exports.service.fence", lost)
    out = tmp_path / "never.csv"
    _export, outcome = export(bo, customer, "products", output=out)
    assert outcome.status == "lost"
    assert not out.exists() and list(tmp_path.iterdir()) == [], "no part file either"


def test_export_routes_generate_names_and_serve_the_file(app, bo, customer):
    client = app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    transform(bo, staged(bo, customer, PRODUCTS), "products")
    created = client.post(
        "/api/exports",
        headers=headers,
        json={"dataset": "products", "customer_id": customer.id, "format": "csv.gz"},
    )
    assert created.status_code == 202, created.json
    export_id = created.json["export"]["id"]
    early = client.get(f"/api/exports/{export_id}/download")
    assert early.status_code == 409 and early.json["error"]["code"] == "not_ready"
    run_now(bo, created.json["job"]["id"])
    shown = client.get(f"/api/exports/{export_id}").json["export"]
    assert shown["status"] == "succeeded" and shown["rows"] == 3
    download = client.get(f"/api/exports/{export_id}/download")
    assert download.status_code == 200
    assert f"products-{customer.code}-{export_id}.csv.gz" in download.headers["Content-Disposition"]
    assert gzip.decompress(download.data).startswith(b"sku,name,")
    for body, code in [
        ({"dataset": "../../etc/passwd", "customer_id": customer.id}, "unknown_dataset"),
        ({"dataset": "products", "customer_id": 987654}, "unknown_customer"),
        ({"dataset": "products", "customer_id": customer.id, "format": "xlsx"}, "invalid_field"),
    ]:
        response = client.post("/api/exports", headers=headers, json=body)
        assert response.status_code == 422 and response.json["error"]["code"] == code
    assert client.get("/api/exports/999999/download").status_code == 404


# A customer's file whose text cells a spreadsheet would run as formulas.
FORMULAS = (
    "sku,name,category,weight_kg,length_cm,width_cm,height_cm,unit_price,currency,"
    "barcode,active,updated_at\n"
    'F1,"=HYPERLINK(""x"")",+1,,,,,1.5,EUR,,,\n'
    "F2,-2,@x,,,,,2,EUR,,,\n"
    'F3,"\ttab","\rcr",,,,,3,EUR,,,\n'
)


def formula_fixture(bo, customer):
    transform(bo, staged(bo, customer, FORMULAS), "products")
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
    e, outcome = export(bo, customer, "products", output=out)
    assert outcome.status == "succeeded" and e.neutralize_formulas is False
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
    e, outcome = export(bo, customer, "products", output=out, neutralize=True)
    assert outcome.status == "succeeded" and e.neutralize_formulas is True and e.rows == 3
    rows = cells(out)
    assert rows[0][:4] == ["sku", "name", "category", "weight_kg"]
    assert [r[:4] + r[7:9] for r in rows[1:]] == [
        ["F1", '\'=HYPERLINK("x")', "'+1", "-2", "1.5", "EUR"],
        ["F2", "'-2", "'@x", "", "2", "EUR"],
        ["F3", "'\ttab", "'\rcr", "", "3", "EUR"],
    ]


def test_the_cli_and_the_api_neutralize_formulas_on_request(app, env, bo, customer, tmp_path):
    formula_fixture(bo, customer)
    out = tmp_path / "cli.csv"
    done = backoffice(
        env,
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

    client = app.test_client()
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
