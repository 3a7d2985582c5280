"""`flask` commands: the number pool, operators, the outbox."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import services

numbers = AppGroup("numbers", help="Manage the pool of proxy numbers.")


def _fail(exc: services.ServiceError) -> None:
    raise click.ClickException(exc.message)


@numbers.command("add")
@click.argument("number", nargs=-1, required=True)
def numbers_add(number: tuple[str, ...]) -> None:
    """Add one or more numbers (E.164, or national in DEFAULT_REGION)."""
    for raw in number:
        try:
            entry = services.add_number(raw, current_app.config["DEFAULT_REGION"])
        except services.ServiceError as exc:
            _fail(exc)
        click.echo(f"added {entry.number}")


@numbers.command("remove")
@click.argument("number")
def numbers_remove(number: str) -> None:
    """Remove a number; refused while it carries active chats."""
    try:
        removed = services.remove_number(number, current_app.config["DEFAULT_REGION"])
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"removed {removed}")


@numbers.command("list")
def numbers_list() -> None:
    """List the pool with the active chats each number carries."""
    rows = services.list_numbers()
    if not rows:
        click.echo("the pool is empty: add numbers with `flask numbers add +44...`")
    for row in rows:
        click.echo(f"{row.number}\t{row.region or '-'}\t{row.active_chats} active chat(s)")


outbox_cli = AppGroup("outbox", help="The outbound SMS queue.")


@outbox_cli.command("drain")
def outbox_drain() -> None:
    """Send everything that is due now, then exit."""
    from .outbox import drain_once

    click.echo(f"sent {drain_once()} message(s)")


@outbox_cli.command("work")
@click.option("--until-idle", is_flag=True, help="Exit once nothing is due.")
def outbox_work(until_idle: bool) -> None:
    """Run an outbox sender in this process until SIGTERM/SIGINT. Several may run at once.

    Claims use FOR UPDATE SKIP LOCKED on PostgreSQL, so no message is sent twice; on PostgreSQL a doorbell
    (LISTEN/NOTIFY) wakes it as soon as a web process queues a message, else it polls every
    OUTBOX_POLL_SECONDS. Run the web processes with OUTBOX_WORKER=false when separate workers send.
    """
    from .outbox import drain_once

    if until_idle:
        total = 0
        while sent := drain_once():
            total += sent
        click.echo(f"sent {total} message(s)")
        return
    from .workers import run_outbox_worker

    run_outbox_worker(current_app._get_current_object())


def init_app(app: Flask) -> None:
    app.cli.add_command(numbers)
    app.cli.add_command(outbox_cli)

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the schema and load PROXY_NUMBERS."""
        from . import prepare_database

        prepare_database(current_app._get_current_object())
        click.echo("database ready")
