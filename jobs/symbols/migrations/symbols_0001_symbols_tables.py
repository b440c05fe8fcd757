"""symbols tables

Revision ID: symbols_0001
Revises:
Depends on: 0004 (the engine's schema)
Create Date: 2026-11-30 14:33:47.464559
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import jobs.db


revision: str = 'symbols_0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ('symbols',)
depends_on: str | Sequence[str] | None = '0004'


def upgrade() -> None:
    op.create_table('tracked_symbol',
    sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('last_updated', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('level_count', sa.Integer(), nullable=False),
    sa.Column('last_close', sa.Float(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('added_at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("direction IN ('bullish', 'bearish', 'neutral')", name='ck_tracked_symbol_direction'),
    sa.PrimaryKeyConstraint('symbol')
    )
    op.create_table('symbol_level',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('price', sa.Float(), nullable=False),
    sa.Column('strength', sa.Integer(), nullable=False),
    sa.Column('first_touch', sa.Date(), nullable=False),
    sa.Column('last_touch', sa.Date(), nullable=False),
    sa.Column('created_at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('support', 'resistance')", name='ck_symbol_level_kind'),
    sa.ForeignKeyConstraint(['symbol'], ['tracked_symbol.symbol'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('symbol', 'kind', 'price', name='uq_symbol_level')
    )
    with op.batch_alter_table('symbol_level', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_symbol_level_symbol'), ['symbol'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('symbol_level', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_symbol_level_symbol'))

    op.drop_table('symbol_level')
    op.drop_table('tracked_symbol')
