"""`backoffice customers create|list`."""

from __future__ import annotations

import json

import click

from app.cli.context import cli_actor, in_session


@click.group("customers", help="Manage customers.")
def customers_cli() -> None:
    pass


@customers_cli.command("create")
@click.option("--code", required=True, help="Short, unique, upper case: ACME, ACME-EU.")
@click.option("--name", required=True)
@click.option("--contact-name")
@click.option("--contact-email")
@click.option("--contact-phone")
@click.option("--inactive", is_flag=True, help="Create it inactive.")
@click.option("--json", "as_json", is_flag=True, help="Print the customer as one JSON object.")
def create(code, name, contact_name, contact_email, contact_phone, inactive, as_json) -> None:
    from app.customers import service as customers_service

    customer = in_session(
        lambda s: customers_service.create_customer(
            s,
            cli_actor(),
            code=code,
            name=name,
            contact_name=contact_name,
            contact_email=contact_email,
            contact_phone=contact_phone,
            status="inactive" if inactive else "active",
        )
    )
    click.echo(
        json.dumps(customer.as_dict())
        if as_json
        else f"created customer {customer.code} (id {customer.id})"
    )


@customers_cli.command("list")
@click.option("--status", type=click.Choice(["active", "inactive"]))
@click.option("--json", "as_json", is_flag=True)
def list_customers(status: str | None, as_json: bool) -> None:
    from app.customers import service as customers_service

    rows, _total = in_session(
        lambda s: customers_service.list_customers(s, status=status, limit=10_000)
    )
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in rows]))
        return
    for c in rows:
        click.echo(f"{c.id:>5}  {c.code:12}  {c.status:8}  {c.name}")
