"""`backoffice demo`: a populated backoffice for a newcomer to look at.

Users of each role (their passwords printed once), three customers, and for each of them an
import, a transform with rejected rows and an export, built from small files in each dialect the
import reads (UTF-8 with a BOM and CRLF, semicolons, tabs in Latin-1, pipes, quoted newlines).
Everything goes through the same services and jobs as real work, run here one after another.
It refuses a database that already has customers: it is for an empty deployment.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from app.cli.context import backoffice, in_session
from app.cli.transforms import COUNTS

if TYPE_CHECKING:
    from app import Backoffice
    from app.audit import Actor
    from app.db.session import BackofficeSession

USERS = (
    ("admin", "ada@demo.example", "Ada Admin"),
    ("operator", "otto@demo.example", "Otto Operator"),
    ("viewer", "vera@demo.example", "Vera Viewer"),
)
CUSTOMERS = (
    ("ACME", "Acme Tools", "buyer@acme.example"),
    ("NORD", "Nordic Freight", "rates@nordic.example"),
    ("SOL", "Sol Café Supplies", "compras@sol.example"),
)


@dataclass(frozen=True)
class DemoFile:
    customer: str
    name: str
    dataset: str
    content: bytes
    encoding: str | None = None


FILES = (
    # UTF-8 with a BOM, commas, CRLF; a name with a comma and a quoted newline; a price that is
    # not a number, an unknown currency, and a key given twice (the later row wins).
    DemoFile(
        "ACME",
        "acme-products.csv",
        "products",
        "\ufeffSKU,Name,Category,Weight KG,Unit Price,Currency,Active,Updated At\r\n"
        "HAM-01,Claw hammer,Hand tools,0.6,12.90,EUR,yes,2026-10-01\r\n"
        'SAW-02,"Saw, 500 mm",Hand tools,0.9,24.50,EUR,yes,2026-10-01\r\n'
        'DRL-03,"Cordless drill\nwith two batteries",Power tools,1.8,89.00,EUR,true,2026-10-02\r\n'
        "LVL-04,Spirit level,Measuring,0.4,abc,EUR,yes,2026-10-02\r\n"
        "TAP-05,Tape measure,Measuring,0.2,6.20,XYZ,no,2026-10-03\r\n"
        "HAM-01,Claw hammer (new grip),Hand tools,0.6,13.40,EUR,yes,2026-11-01\r\n".encode(),
    ),
    # Semicolons and LF; a weight below zero and an expiry before the effective date.
    DemoFile(
        "NORD",
        "nordic-rates.csv",
        "rates",
        b"carrier;service;origin_postal;dest_postal;weight_min_kg;weight_max_kg;price;"
        b"currency;effective_date;expires_date\n"
        b"NF;express;0150;5003;0;5;19.90;NOK;2026-01-01;2026-12-31\n"
        b"NF;express;0150;5003;5;20;34.50;NOK;2026-01-01;2026-12-31\n"
        b"NF;economy;0150;7010;0;20;14.00;NOK;2026-01-01;\n"
        b"NF;economy;0150;9008;-1;20;15.00;NOK;2026-01-01;\n"
        b"NF;freight;0150;9008;20;500;120.00;NOK;2026-03-01;2026-02-01\n",
    ),
    # Tabs in Latin-1; accents; a boolean that is neither.
    DemoFile(
        "SOL",
        "sol-productos.tsv",
        "products",
        "sku\tname\tcategory\tunit_price\tcurrency\tactive\n"
        "CAF-1\tCafé molido 250 g\tCafé\t4.80\tEUR\tsí\n"
        "CAF-2\tCafé en grano 1 kg\tCafé\t15.90\tEUR\ttrue\n"
        "TE-1\tTé verde\tTé\t3.20\tEUR\tfalse\n"
        "AZU-1\tAzúcar moreno\tDulces\t2.10\tEUR\t1\n".encode("latin-1"),
        encoding="latin-1",
    ),
    # Pipes: a second ACME file that changes a price, adds the product the first file's bad
    # price kept out, and repeats one unchanged.
    DemoFile(
        "ACME",
        "acme-products-update.psv",
        "products",
        b"sku|name|category|weight_kg|unit_price|currency|active|updated_at\n"
        b"HAM-01|Claw hammer (new grip)|Hand tools|0.6|13.40|EUR|yes|2026-11-01\n"
        b"SAW-02|Saw, 500 mm|Hand tools|0.9|22.00|EUR|yes|2026-11-15\n"
        b"LVL-04|Spirit level|Measuring|0.4|9.90|EUR|yes|2026-11-15\n",
    ),
)


@click.command("demo")
def demo_command() -> None:
    """Fill an empty deployment with demo users, customers, imports, transforms and exports."""
    in_session(_refuse_a_used_deployment)
    made = in_session(_users_and_customers)
    click.echo("Users (their passwords are shown this once):")
    for role, email, password in made:
        click.echo(f"  {role:<9} {email:<22} {password}")
    bo = backoffice()
    for file in FILES:
        try:
            click.echo(_load(bo, file))
        except click.ClickException as exc:
            raise click.ClickException(f"{file.name}: {exc.message}") from None
    click.echo("Sign in at the server's address (./scripts/serve: http://127.0.0.1:5000/).")


def _actor() -> Actor:
    from app.audit import Actor

    return Actor(None, "cli:demo")


def _refuse_a_used_deployment(session: BackofficeSession) -> None:
    from app.auth import users
    from app.models.primary.customer import Customer

    if session.query(Customer.id).first() is not None:
        raise click.ClickException(
            "this deployment already has customers; `backoffice demo` fills an empty one"
        )
    for _role, email, _name in USERS:
        if users.find_user_by_email(session, email) is not None:
            raise click.ClickException(f"a user {email} exists already")


def _users_and_customers(session: BackofficeSession) -> list[tuple[str, str, str]]:
    from app.auth import passwords, users
    from app.customers import service as customers

    made = []
    for role, email, name in USERS:
        password = passwords.temporary_password()
        users.create_user(
            session, _actor(), email=email, display_name=name, role=role, password=password
        )
        made.append((role, email, password))
    for code, name, contact in CUSTOMERS:
        customers.create_customer(session, _actor(), code=code, name=name, contact_email=contact)
    return made


def _load(bo: Backoffice, file: DemoFile) -> str:
    """Import, transform and export one file; one line saying what came of it."""
    from app.customers import service as customers
    from app.exports import service as exports
    from app.imports import service as imports
    from app.jobs.worker import run_now
    from app.transforms import service as transforms

    def stage(session):
        customer = customers.find_by_code(session, file.customer)
        assert customer is not None
        return imports.receive(
            session,
            bo.references,
            customer_id=customer.id,
            created_by=None,
            file_name=file.name,
            stream=io.BytesIO(file.content),
            size_limit=bo.settings.max_upload_bytes,
            encoding=file.encoding,
        )

    batch = in_session(stage)
    run_now(bo, batch.job_id)
    transform = in_session(
        lambda session: transforms.create(
            session, bo.references, import_id=batch.id, dataset=file.dataset, created_by=None
        )
    )
    run_now(bo, transform.job_id)
    export = in_session(
        lambda session: exports.create(
            session,
            bo.references,
            dataset=file.dataset,
            customer_id=batch.customer_id,
            created_by=None,
        )
    )
    run_now(bo, export.job_id)
    counts = in_session(lambda session: transforms.get(session, transform.id).counts or {})
    shown = ", ".join(f"{name} {counts.get(name, 0)}" for name in COUNTS)
    return f"{file.customer:<5} {file.name:<26} import #{batch.id}, {file.dataset}: {shown}"
