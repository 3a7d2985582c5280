"""security: operator sessions, admin and disabled operators, auto-reply index

Revision ID: 5e3c9a1f7b20
Revises: 5e1a7c0b9d21
Create Date: 2026-11-28 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5e3c9a1f7b20'
down_revision = '5e1a7c0b9d21'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('operator_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('operator_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operator_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_operator_sessions_operator_id'), ['operator_id'], unique=False)

    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_admin', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(
            'ix_messages_auto_reply_created', ['created_at'], unique=False,
            postgresql_where=sa.text("kind = 'auto_reply'"), sqlite_where=sa.text("kind = 'auto_reply'"),
        )


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_auto_reply_created')

    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('is_admin')

    with op.batch_alter_table('operator_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operator_sessions_operator_id'))
        batch_op.drop_index(batch_op.f('ix_operator_sessions_expires_at'))

    op.drop_table('operator_sessions')
