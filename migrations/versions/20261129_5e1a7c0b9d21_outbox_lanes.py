"""outbox lanes; a part is (message, vonage id); the lane index on messages

Revision ID: 5e1a7c0b9d21
Revises: cc4b01c384d0
Create Date: 2026-11-29 19:40:00

Data: every recipient with queued messages gets a lane, due at its oldest queued message; messages left
`sending` by the previous version (which had no lanes) become `unconfirmed`, due for reconciliation now.
"""
from alembic import op
import sqlalchemy as sa


revision = '5e1a7c0b9d21'
down_revision = 'cc4b01c384d0'
branch_labels = None
depends_on = None

NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade():
    op.create_table('lanes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=20), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('recipient')
    )
    with op.batch_alter_table('lanes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lanes_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lanes_leased_until'), ['leased_until'], unique=False)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_to_number'))
        batch_op.create_index('ix_messages_lane', ['to_number', 'status', 'id'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('sms_parts_vonage_id_key', 'sms_parts', type_='unique')
        op.create_unique_constraint('uq_part_message_vonage', 'sms_parts', ['message_id', 'vonage_id'])
        op.create_index('ix_sms_parts_vonage_id', 'sms_parts', ['vonage_id'], unique=False)
    else:
        with op.batch_alter_table('sms_parts', schema=None, naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint('uq_sms_parts_vonage_id', type_='unique')
            batch_op.create_unique_constraint('uq_part_message_vonage', ['message_id', 'vonage_id'])
            batch_op.create_index('ix_sms_parts_vonage_id', ['vonage_id'], unique=False)

    op.execute(
        "UPDATE messages SET status = 'unconfirmed', next_attempt_at = CURRENT_TIMESTAMP, claimed_at = NULL "
        "WHERE status = 'sending'"
    )
    op.execute(
        "INSERT INTO lanes (recipient, due_at) SELECT to_number, MIN(next_attempt_at) FROM messages "
        "WHERE status = 'queued' GROUP BY to_number"
    )


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_sms_parts_vonage_id', table_name='sms_parts')
        op.drop_constraint('uq_part_message_vonage', 'sms_parts', type_='unique')
        op.create_unique_constraint('sms_parts_vonage_id_key', 'sms_parts', ['vonage_id'])
    else:
        with op.batch_alter_table('sms_parts', schema=None) as batch_op:
            batch_op.drop_index('ix_sms_parts_vonage_id')
            batch_op.drop_constraint('uq_part_message_vonage', type_='unique')
            batch_op.create_unique_constraint('uq_sms_parts_vonage_id', ['vonage_id'])

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_lane')
        batch_op.create_index(batch_op.f('ix_messages_to_number'), ['to_number'], unique=False)

    with op.batch_alter_table('lanes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lanes_leased_until'))
        batch_op.drop_index(batch_op.f('ix_lanes_due_at'))

    op.drop_table('lanes')
