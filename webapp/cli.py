"""`flask` commands: the number pool, operators, the outbox."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import services
from .background import run_outbox_worker
from .outbox import drain_once
from .startup import prepare_database
from .states import Actor

numbers = AppGroup("numbers", help="Manage the pool of proxy numbers.")


def _fail(exc: services.ServiceError) -> None:
    raise click.ClickException(exc.message)


def _ready() -> None:
    """Create or upgrade the schema first: on a fresh machine a command may run before the server ever did."""
    prepare_database(current_app._get_current_object())


@numbers.command("add")
@click.argument("number", nargs=-1, required=True)
def numbers_add(number: tuple[str, ...]) -> None:
    """Add one or more numbers (E.164, or national in DEFAULT_REGION)."""
    _ready()
    for raw in number:
        try:
            entry = services.add_number(raw, current_app.config["DEFAULT_REGION"], actor=Actor.CLI)
        except services.ServiceError as exc:
            _fail(exc)
        click.echo(f"added {entry.number}")


@numbers.command("remove")
@click.argument("number")
def numbers_remove(number: str) -> None:
    """Remove a number; refused while it carries active chats."""
    _ready()
    try:
        removed = services.remove_number(number, current_app.config["DEFAULT_REGION"], actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"removed {removed}")


@numbers.command("list")
def numbers_list() -> None:
    """List the pool with the active chats each number carries."""
    _ready()
    rows = services.list_numbers()
    if not rows:
        click.echo("the pool is empty: add numbers with `flask numbers add +44...`")
    for row in rows:
        click.echo(f"{row.number}\t{row.region or '-'}\t{row.active_chats} active chat(s)")


outbox_cli = AppGroup("outbox", help="The outbound SMS queue.")


@outbox_cli.command("drain")
def outbox_drain() -> None:
    """Send everything that is due now, then exit."""
    click.echo(f"sent {drain_once()} message(s)")


@outbox_cli.command("work")
@click.option("--until-idle", is_flag=True, help="Exit once nothing is due.")
def outbox_work(until_idle: bool) -> None:
    """Run an outbox sender in this process until SIGTERM/SIGINT. Several may run at once.

    Claims use FOR UPDATE SKIP LOCKED on PostgreSQL, so no message is sent twice; on PostgreSQL a doorbell
    (LISTEN/NOTIFY) wakes it as soon as a web process queues a message, else it polls every
    OUTBOX_POLL_SECONDS. Run the web processes with OUTBOX_WORKER=false when separate workers send.
    """
    if until_idle:
        total = 0
        while sent := drain_once():
            total += sent
        click.echo(f"sent {total} message(s)")
        return
    run_outbox_worker(current_app._get_current_object())


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


operators = AppGroup("operators", help="Dispatcher accounts for the dashboard.")


@operators.command("create")
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin (also used when stdin is not a terminal).",
)
def operators_create(name: str, password_stdin: bool) -> None:
    """Create an operator NAME; the password is prompted for (twice) or read from stdin."""
    from .dashboard.auth import AccountError, create_operator

    _ready()
    if password_stdin or not _stdin_is_terminal():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        operator = create_operator(name, password)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"operator {operator.name!r} created")


@operators.command("list")
def operators_list() -> None:
    """List operator accounts."""
    from sqlalchemy import select

    from .extensions import db
    from .models import Operator

    for op in db.session.scalars(select(Operator).order_by(Operator.name)):
        last = op.last_login_at.isoformat(timespec="minutes") if op.last_login_at else "never"
        click.echo(f"{op.name}\tlast sign-in: {last}")


retention = AppGroup("retention", help="Clearing old message texts (RETENTION_DAYS).")


@retention.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be cleared; change nothing.")
@click.option("--days", type=click.IntRange(min=1), help="Override RETENTION_DAYS for this run.")
def retention_purge(dry_run: bool, days: int | None) -> None:
    """Clear the texts of chats ended more than RETENTION_DAYS days ago (and of texts outside chats that
    old), keeping who, when, states and the audit trail. Prints the counts."""
    from .services.retention import count_due, purge

    _ready()
    days = days or int(current_app.config["RETENTION_DAYS"])
    if days <= 0:
        click.echo("RETENTION_DAYS is 0: texts are kept forever; nothing to purge (or pass --days N)")
        return
    if dry_run:
        counts = count_due(days)
        verb = "would clear"
    else:
        counts = purge(days, actor=Actor.CLI)
        verb = "cleared"
    click.echo(
        f"{verb} {counts.messages} text(s) in {counts.chats} chat(s) ended more than {days} day(s) ago, "
        f"and {counts.chatless} text(s) outside chats"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(operators)
    app.cli.add_command(numbers)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(retention)

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the schema and load PROXY_NUMBERS."""
        prepare_database(current_app._get_current_object())
        click.echo("database ready")
