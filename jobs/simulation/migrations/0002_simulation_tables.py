"""simulation tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:39:44.149473
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import jobs.db


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('model_day_result',
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('cash', sa.Float(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('positions', sa.JSON(), nullable=False),
    sa.Column('prices', sa.JSON(), nullable=False),
    sa.Column('trades', sa.JSON(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('completed_at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model', 'day')
    )
    op.create_table('simulation_day',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'completed', 'failed', 'skipped')", name='ck_simulation_day_status'),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'model', 'day')
    )


def downgrade() -> None:
    op.drop_table('simulation_day')
    op.drop_table('model_day_result')
