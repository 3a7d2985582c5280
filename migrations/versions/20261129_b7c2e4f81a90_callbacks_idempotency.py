"""event callbacks (events and their lanes per chat) and API idempotency keys

Revision ID: b7c2e4f81a90
Revises: 7a3d2e9c4b10
Create Date: 2026-11-29 19:20:00

New tables only; no data changes.
"""
from alembic import op
import sqlalchemy as sa


revision = 'b7c2e4f81a90'
down_revision = '7a3d2e9c4b10'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('callback_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=True),
    sa.Column('lane', sa.String(length=40), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_id')
    )
    with op.batch_alter_table('callback_events', schema=None) as batch_op:
        batch_op.create_index('ix_callback_events_lane', ['lane', 'status', 'id'], unique=False)
        batch_op.create_index('ix_callback_events_finished', ['status', 'finished_at'], unique=False)
        batch_op.create_index('ix_callback_events_recent', ['status', 'created_at'], unique=False)

    op.create_table('callback_lanes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('callback_lanes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_lanes_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_lanes_leased_until'), ['leased_until'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_lanes_failing_since'), ['failing_since'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('committed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_created_at'))
    op.drop_table('idempotency_keys')

    with op.batch_alter_table('callback_lanes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_lanes_failing_since'))
        batch_op.drop_index(batch_op.f('ix_callback_lanes_leased_until'))
        batch_op.drop_index(batch_op.f('ix_callback_lanes_due_at'))
    op.drop_table('callback_lanes')

    with op.batch_alter_table('callback_events', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_events_recent')
        batch_op.drop_index('ix_callback_events_finished')
        batch_op.drop_index('ix_callback_events_lane')
    op.drop_table('callback_events')
