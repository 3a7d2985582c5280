"""search index: chats (labels, reference, numbers) and message texts, on SQLite and PostgreSQL

Revision ID: d41f7a2c9e35
Revises: d4e8a1c5f203
Create Date: 2026-11-30 23:00:00

SQLite: FTS5 tables (external content) kept in step by triggers, and indexes on each number's last three
digits; PostgreSQL: a GIN full-text index on the labels and reference, one (partial) on the texts people and
dispatchers wrote, and b-tree indexes on the reversed numbers. The statements are a frozen copy of webapp/fulltext.py at this revision
(tests/test_search.py checks that they still agree); they are not models, so Alembic's comparison leaves
them out (fulltext.include_name).
"""
from alembic import op


revision = 'd41f7a2c9e35'
down_revision = 'd4e8a1c5f203'
branch_labels = None
depends_on = None

MESSAGE_ROWS = "chat_id IS NOT NULL AND (direction = 'in' OR kind = 'operator')"

SQLITE_TABLES = {
    'search_chat_words': (
        "CREATE VIRTUAL TABLE search_chat_words USING fts5(a_label, b_label, reference, content='chats', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    ),
    'search_messages': (
        "CREATE VIRTUAL TABLE search_messages USING fts5(text, content='messages', content_rowid='id', to"
        "kenize='unicode61 remove_diacritics 2')"
    ),
}

SQLITE_TRIGGERS = {
    'search_chats_insert': (
        'CREATE TRIGGER search_chats_insert AFTER INSERT ON chats BEGIN INSERT INTO search_chat_words(row'
        'id, a_label, b_label, reference) VALUES (new.id, new.a_label, new.b_label, new.reference); END'
    ),
    'search_chats_delete': (
        'CREATE TRIGGER search_chats_delete AFTER DELETE ON chats BEGIN INSERT INTO search_chat_words(sea'
        "rch_chat_words, rowid, a_label, b_label, reference) VALUES ('delete', old.id, old.a_label, old.b"
        '_label, old.reference); END'
    ),
    'search_chats_update': (
        'CREATE TRIGGER search_chats_update AFTER UPDATE OF a_label, b_label, reference ON chats BEGIN IN'
        "SERT INTO search_chat_words(search_chat_words, rowid, a_label, b_label, reference) VALUES ('dele"
        "te', old.id, old.a_label, old.b_label, old.reference); INSERT INTO search_chat_words(rowid, a_la"
        'bel, b_label, reference) VALUES (new.id, new.a_label, new.b_label, new.reference); END'
    ),
    'search_messages_insert': (
        'CREATE TRIGGER search_messages_insert AFTER INSERT ON messages WHEN new.chat_id IS NOT NULL AND '
        "(new.direction = 'in' OR new.kind = 'operator') BEGIN INSERT INTO search_messages(rowid, text) V"
        'ALUES (new.id, new.text); END'
    ),
    'search_messages_delete': (
        'CREATE TRIGGER search_messages_delete AFTER DELETE ON messages WHEN old.chat_id IS NOT NULL AND '
        "(old.direction = 'in' OR old.kind = 'operator') BEGIN INSERT INTO search_messages(search_message"
        "s, rowid, text) VALUES ('delete', old.id, old.text); END"
    ),
    'search_messages_update': (
        'CREATE TRIGGER search_messages_update AFTER UPDATE OF text, chat_id, direction, kind ON messages'
        " WHEN (old.chat_id IS NOT NULL AND (old.direction = 'in' OR old.kind = 'operator')) OR (new.chat"
        "_id IS NOT NULL AND (new.direction = 'in' OR new.kind = 'operator')) BEGIN INSERT INTO search_me"
        "ssages(search_messages, rowid, text) SELECT 'delete', old.id, old.text WHERE old.chat_id IS NOT "
        "NULL AND (old.direction = 'in' OR old.kind = 'operator'); INSERT INTO search_messages(rowid, tex"
        "t) SELECT new.id, new.text WHERE new.chat_id IS NOT NULL AND (new.direction = 'in' OR new.kind ="
        " 'operator'); END"
    ),
}

SQLITE_INDEXES = {
    'search_chats_a_number': (
        'CREATE INDEX search_chats_a_number ON chats (substr(a_number, -3))'
    ),
    'search_chats_b_number': (
        'CREATE INDEX search_chats_b_number ON chats (substr(b_number, -3))'
    ),
    'search_chats_proxy_number': (
        'CREATE INDEX search_chats_proxy_number ON chats (substr(proxy_number, -3))'
    ),
}

SQLITE_FILL = (
    "INSERT INTO search_chat_words(search_chat_words) VALUES ('rebuild')",
    f"INSERT INTO search_messages(rowid, text) SELECT id, text FROM messages WHERE {MESSAGE_ROWS}",
)

PG_INDEXES = {
    'search_chats_words': (
        "CREATE INDEX search_chats_words ON chats USING gin (to_tsvector('simple'::regconfig, regexp_repl"
        "ace(coalesce(a_label, '') || ' ' || coalesce(b_label, '') || ' ' || coalesce(reference, ''), '[^"
        "[:alnum:]]+', ' ', 'g')))"
    ),
    'search_chats_a_number': (
        'CREATE INDEX search_chats_a_number ON chats (reverse(a_number) text_pattern_ops)'
    ),
    'search_chats_b_number': (
        'CREATE INDEX search_chats_b_number ON chats (reverse(b_number) text_pattern_ops)'
    ),
    'search_chats_proxy_number': (
        'CREATE INDEX search_chats_proxy_number ON chats (reverse(proxy_number) text_pattern_ops)'
    ),
    'search_messages_text': (
        "CREATE INDEX search_messages_text ON messages USING gin (to_tsvector('simple'::regconfig, regexp"
        "_replace(text, '[^[:alnum:]]+', ' ', 'g'))) WHERE chat_id IS NOT NULL AND (direction = 'in' OR k"
        "ind = 'operator')"
    ),
}


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for statement in (*SQLITE_TABLES.values(), *SQLITE_TRIGGERS.values(), *SQLITE_INDEXES.values(),
                          *SQLITE_FILL):
            op.execute(statement)
    elif dialect == 'postgresql':
        for statement in PG_INDEXES.values():
            op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for name in SQLITE_TRIGGERS:
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
        for name in SQLITE_INDEXES:
            op.execute(f'DROP INDEX IF EXISTS {name}')
        for name in SQLITE_TABLES:
            op.execute(f'DROP TABLE IF EXISTS {name}')
    elif dialect == 'postgresql':
        for name in PG_INDEXES:
            op.execute(f'DROP INDEX IF EXISTS {name}')
