"""Schema migrations (Alembic via Flask-Migrate) on SQLite and PostgreSQL.

The migrations must build exactly the schema the models describe: after `upgrade head` on an empty database,
autogenerate finds nothing to do.
"""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from tests.conftest import app_config
from webapp import create_app, fulltext, prepare_database
from webapp.database import alembic_config, current_revision, head_revision, migrate_schema
from webapp.extensions import db
from webapp.models import ProxyNumber


def _engine(url: str):
    engine = create_engine(url)
    return engine


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": fulltext.include_name})
        with fulltext.quiet_reflection():
            return compare_metadata(ctx, db.metadata)


def test_migrations_build_exactly_the_models_schema(database_url):
    engine = _engine(database_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    try:
        assert _diff(engine) == []
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
    finally:
        engine.dispose()


def test_migrations_downgrade_to_empty_and_up_again(database_url):
    engine = _engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_first_start_on_an_empty_database_creates_the_schema_at_head(tmp_path, database_url):
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    prepare_database(app)
    with app.app_context():
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert _diff(db.engine) == []
        assert db.session.scalar(select(ProxyNumber.id).limit(1)) is not None  # PROXY_NUMBERS loaded
        db.session.remove()
        # a second start changes nothing
        assert migrate_schema(db.engine) == "current"
        db.engine.dispose()


def _first_revision_schema_without_version(url: str) -> None:
    """The schema as the core's first release made it with create_all: the first revision, no alembic_version."""
    from alembic.script import ScriptDirectory

    engine = _engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(conn)
        command.upgrade(cfg, ScriptDirectory.from_config(cfg).get_base())
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO proxy_numbers (number, region, created_at) "
                "VALUES ('+447700900009', 'GB', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()


def test_a_database_from_before_migrations_is_upgraded_in_place(tmp_path, database_url):
    """Tables from the first release, no alembic_version: stamped at the first revision, upgraded, data kept."""
    _first_revision_schema_without_version(database_url)
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    prepare_database(app)
    with app.app_context():
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert _diff(db.engine) == []
        assert "+447700900009" in set(db.session.scalars(select(ProxyNumber.number)))
        db.session.remove()
        db.engine.dispose()


def test_a_current_create_all_database_is_adopted_at_head(database_url):
    engine = _engine(database_url)
    db.metadata.create_all(engine)
    try:
        assert migrate_schema(engine) == "adopted"
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
    finally:
        engine.dispose()


def test_flask_db_upgrade_command(tmp_path, database_url):
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert _diff(db.engine) == []
        db.engine.dispose()


def test_every_model_table_is_in_the_migrations():
    """Cheap guard for the day a model is added without a migration (the backend tests say where)."""
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    missing = set(db.metadata.tables) - set(inspect(engine).get_table_names())
    assert not missing, f"tables without a migration: {sorted(missing)}; run `flask db migrate`"


def test_concurrent_first_starts_on_one_postgres_schema_take_turns(tmp_path, postgres_schema):
    """Two processes starting at once on an empty database: one creates, the other finds it current."""
    import threading

    outcomes: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            engine = create_engine(postgres_schema)
            outcomes.append(migrate_schema(engine))
            engine.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(outcomes) == ["created", "current", "current"]
