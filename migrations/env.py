"""Alembic environment for `flask db ...` and for webapp.database.migrate_schema.

The connection comes from `config.attributes["connection"]` when the app migrates itself at start (so the
whole step runs under its advisory lock), else from the Flask app's engine (`flask db upgrade`).
"""

import logging

from alembic import context
from flask import current_app

from webapp.extensions import db
from webapp.fulltext import include_name
from webapp.models import UTCDateTime

config = context.config
logger = logging.getLogger("alembic.env")
target_metadata = db.metadata


def render_item(type_, obj, autogen_context):
    """Write our UTCDateTime as the plain type it stores, so migrations don't import the app."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def process_revision_directives(context_, revision, directives):
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def _configure(connection):
    options = {}
    try:
        options = dict(current_app.extensions["migrate"].configure_args)
    except (RuntimeError, KeyError):  # no app context: migrate_schema passes the connection
        pass
    options.setdefault("process_revision_directives", process_revision_directives)
    options.setdefault("render_as_batch", True)
    options.setdefault("compare_type", True)
    options.setdefault("include_name", include_name)  # the search index is not in the models (fulltext.py)
    context.configure(
        connection=connection, target_metadata=target_metadata, render_item=render_item, **options
    )


def run_migrations_online():
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = current_app.extensions["migrate"].db.engine
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline():
    url = current_app.extensions["migrate"].db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
