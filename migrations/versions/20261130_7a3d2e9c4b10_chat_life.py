"""a chat's whole life: idle deadline, ended_by, retention marks, opt-out register, audit trail

Revision ID: 7a3d2e9c4b10
Revises: 5e3c9a1f7b20
Create Date: 2026-11-30 10:00:00

Indexes let the expiry and retention jobs find their rows without looking at the rest: active chats by
deadline, ended chats whose texts are kept, and (partial) texts outside any chat whose bodies are kept.
"""
from alembic import op
import sqlalchemy as sa


revision = '7a3d2e9c4b10'
down_revision = '5e3c9a1f7b20'
branch_labels = None
depends_on = None

CHATLESS_UNPURGED = "chat_id IS NULL AND purged_at IS NULL"


def upgrade():
    op.create_table('opt_outs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('proxy_number', sa.String(length=20), nullable=True),
    sa.Column('chat_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_chat_id'), ['chat_id'], unique=False)

    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ended_by', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('idle_timeout', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('idle_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_chats_status_expires_at', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_chats_status_idle_at', ['status', 'idle_at'], unique=False)
        batch_op.create_index(
            'ix_chats_status_purged_ended', ['status', 'purged_at', 'ended_at'], unique=False
        )

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            'ix_messages_chatless_unpurged', ['chat_id', 'purged_at', 'created_at'], unique=False,
            postgresql_where=sa.text(CHATLESS_UNPURGED), sqlite_where=sa.text(CHATLESS_UNPURGED),
        )


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_chatless_unpurged')
        batch_op.drop_column('purged_at')

    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.drop_index('ix_chats_status_purged_ended')
        batch_op.drop_index('ix_chats_status_idle_at')
        batch_op.drop_index('ix_chats_status_expires_at')
        batch_op.drop_column('purged_at')
        batch_op.drop_column('idle_at')
        batch_op.drop_column('idle_timeout')
        batch_op.drop_column('ended_by')

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_chat_id'))

    op.drop_table('audit_events')
    op.drop_table('opt_outs')
