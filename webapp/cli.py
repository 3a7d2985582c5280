"""`flask` commands: the number pool, operators, the outbox."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import services
from .background import run_outbox_worker
from .outbox import drain_once
from .startup import prepare_database
from .states import Actor

numbers = AppGroup("numbers", help="Manage the pool of proxy numbers.")


def _fail(exc: services.ServiceError) -> NoReturn:
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

_password_stdin = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin (also used when stdin is not a terminal).",
)


def _read_password(password_stdin: bool) -> str:
    """From stdin, or typed twice on a terminal: the rule is in the prompt and checked (by the same service
    function that enforces it) before the confirmation is asked for."""
    from .services.operators import MIN_PASSWORD, check_password

    if password_stdin or not _stdin_is_terminal():
        return sys.stdin.readline().rstrip("\r\n")

    def valid(value: str) -> str:
        try:
            return check_password(value)
        except services.ServiceError as exc:
            raise click.BadParameter(exc.message) from None

    while True:
        password = click.prompt(
            f"Password (at least {MIN_PASSWORD} characters)", hide_input=True, value_proc=valid
        )
        if click.prompt("Repeat the password", hide_input=True) == password:
            return password
        click.echo("Error: the two entries do not match. Try again.", err=True)


@operators.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Also manages numbers and operators on the dashboard.")
@_password_stdin
def operators_create(name: str, admin: bool, password_stdin: bool) -> None:
    """Create an operator NAME; the password (at least 8 characters) is prompted for (twice) or read from stdin."""
    from .services.operators import create_operator

    _ready()
    try:
        operator = create_operator(name, _read_password(password_stdin), admin=admin, actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"operator {operator.name!r} created" + (" (admin)" if operator.is_admin else ""))


@operators.command("disable")
@click.argument("name")
def operators_disable(name: str) -> None:
    """Stop NAME from signing in; their sessions and live connections end now."""
    from .services.operators import disable_operator

    _ready()
    try:
        operator = disable_operator(name, actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"operator {operator.name!r} disabled; their sessions have ended")


@operators.command("enable")
@click.argument("name")
def operators_enable(name: str) -> None:
    """Let a disabled operator NAME sign in again."""
    from .services.operators import enable_operator

    _ready()
    try:
        operator = enable_operator(name, actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"operator {operator.name!r} enabled")


@operators.command("reset-password")
@click.argument("name")
@_password_stdin
def operators_reset_password(name: str, password_stdin: bool) -> None:
    """Give NAME a new password (prompted twice, or from stdin); their sessions end now."""
    from .services.operators import get_operator, reset_password

    _ready()
    try:
        get_operator(name)  # before asking for a password for nobody
        operator = reset_password(name, _read_password(password_stdin), actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"password of {operator.name!r} changed; their sessions have ended")


@operators.command("promote")
@click.argument("name")
def operators_promote(name: str) -> None:
    """Make NAME an admin (manages numbers and operators on the dashboard)."""
    from .services.operators import set_admin

    _ready()
    try:
        operator = set_admin(name, True, actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"operator {operator.name!r} is an admin")


@operators.command("demote")
@click.argument("name")
def operators_demote(name: str) -> None:
    """Make NAME a dispatcher without admin rights."""
    from .services.operators import set_admin

    _ready()
    try:
        operator = set_admin(name, False, actor=Actor.CLI)
    except services.ServiceError as exc:
        _fail(exc)
    click.echo(f"operator {operator.name!r} is no longer an admin")


@operators.command("list")
def operators_list() -> None:
    """List operator accounts."""
    from .services.operators import list_operators

    _ready()
    for op in list_operators():
        last = op.last_login_at.isoformat(timespec="minutes") if op.last_login_at else "never"
        flags = ", ".join(f for f, on in (("admin", op.is_admin), ("disabled", op.disabled_at)) if on)
        click.echo(f"{op.name}\tlast sign-in: {last}" + (f"\t{flags}" if flags else ""))


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
