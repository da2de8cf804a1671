"""`backoffice customers create|list|purge-data|delete`."""

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


def _code_to_id(code: str) -> int:
    from app.customers import service as customers_service
    from app.errors import NotFound

    def find(session) -> int:
        customer = customers_service.find_by_code(session, code)
        if customer is None:
            raise NotFound(f"no customer with code {code.strip().upper()}")
        return customer.id

    return in_session(find)


@customers_cli.command("purge-data")
@click.argument("code")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def purge_data(code: str, yes: bool, as_json: bool) -> None:
    """Remove everything the data engine holds for a customer (imports, staged rows,
    transforms and their errors, exports and their files, jobs, dataset rows), so that it can
    be deleted. The customer is made inactive first. Safe to run again after a crash."""
    from app.cli.context import backoffice, one_line_errors
    from app.customers.purge import purge_customer_data

    customer_id = _code_to_id(code)
    if not yes:
        click.confirm(
            f"Remove all data of customer {code.upper()} from the data engine? "
            "This cannot be undone",
            abort=True,
        )
    with one_line_errors():
        outcome = purge_customer_data(backoffice(), cli_actor(), customer_id, wait_seconds=60)
    if as_json:
        click.echo(json.dumps({"customer": code.upper(), "removed": outcome.counts}))
        return
    removed = {kind: n for kind, n in outcome.counts.items() if n}
    for kind, n in sorted(removed.items()):
        click.echo(f"{kind}: {n} removed")
    click.echo(
        f"customer {code.upper()}: its data is gone; "
        f"`backoffice customers delete {code.upper()}` deletes it"
    )


@customers_cli.command("delete")
@click.argument("code")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(code: str, yes: bool) -> None:
    """Delete a customer that has no data on the data engine (see purge-data)."""
    from app.customers import service as customers_service

    customer_id = _code_to_id(code)
    if not yes:
        click.confirm(f"Delete customer {code.upper()}?", abort=True)
    in_session(
        lambda s: customers_service.delete_customer(
            s, cli_actor(), customers_service.get_customer(s, customer_id)
        )
    )
    click.echo(f"deleted customer {code.upper()}")
