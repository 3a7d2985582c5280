"""unrouted texts to action: the chat a text belongs to, handled by whom and when

Revision ID: d4e8a1c5f203
Revises: b7c2e4f81a90
Create Date: 2026-11-30 23:00:00

Unrouted texts get the chat that last joined their sender and proxy number (found once, when the text
arrives; this migration fills it in for the texts already stored), and who marked them handled, when. The nav
badge counts unhandled ones through a partial index. Texts older than a day when this runs are marked handled
by "system": the badge counted the last 24 hours before, so an upgrade does not greet dispatchers with every
unrouted text ever received.
"""
from alembic import op
import sqlalchemy as sa


revision = 'd4e8a1c5f203'
down_revision = 'b7c2e4f81a90'
branch_labels = None
depends_on = None

UNHANDLED = "chat_id IS NULL AND handled_at IS NULL AND direction = 'in'"


def upgrade():
    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.create_index('ix_chats_a_proxy', ['a_number', 'proxy_number', 'id'], unique=False)
        batch_op.create_index('ix_chats_b_proxy', ['b_number', 'proxy_number', 'id'], unique=False)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_chat_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handled_by', sa.String(length=80), nullable=True))

    # the texts already stored: link each to the last chat of its sender and proxy number before it arrived
    op.execute(
        "UPDATE messages SET last_chat_id = ("
        " SELECT max(c.id) FROM chats c WHERE c.proxy_number = messages.to_number"
        " AND (c.a_number = messages.from_number OR c.b_number = messages.from_number)"
        " AND c.created_at <= messages.created_at)"
        " WHERE direction = 'in' AND chat_id IS NULL"
    )
    cutoff = "now() - interval '1 day'" if op.get_bind().dialect.name == 'postgresql' else "datetime('now', '-1 day')"
    op.execute(
        f"UPDATE messages SET handled_at = created_at, handled_by = 'system'"
        f" WHERE direction = 'in' AND chat_id IS NULL AND created_at < {cutoff}"
    )

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(
            'ix_messages_unhandled', ['chat_id', 'handled_at', 'id'], unique=False,
            postgresql_where=sa.text(UNHANDLED), sqlite_where=sa.text(UNHANDLED),
        )


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_unhandled')
        batch_op.drop_column('handled_by')
        batch_op.drop_column('handled_at')
        batch_op.drop_column('last_chat_id')

    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.drop_index('ix_chats_b_proxy')
        batch_op.drop_index('ix_chats_a_proxy')
