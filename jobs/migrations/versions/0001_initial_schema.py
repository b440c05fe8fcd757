"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 10:10:51.682097
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import jobs.db

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('progress_done', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('arq_job_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('worker_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('created_at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested_at', jobs.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'downloading_data', 'running', 'completed', 'partial', 'failed', 'cancelled')", name='ck_job_status'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index('ix_job_created', ['created_at'], unique=False)
        batch_op.create_index('ix_job_kind_created', ['kind', 'created_at'], unique=False)
        batch_op.create_index('ix_job_status_created', ['status', 'created_at'], unique=False)

    op.create_table('price_bar',
    sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('open', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('close', sa.Float(), nullable=False),
    sa.Column('volume', sa.BigInteger(), nullable=False),
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('fetched_at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('symbol', 'day')
    )
    op.create_table('job_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('at', jobs.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_log', schema=None) as batch_op:
        batch_op.create_index('ix_job_log_job_id_id', ['job_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job_log', schema=None) as batch_op:
        batch_op.drop_index('ix_job_log_job_id_id')

    op.drop_table('job_log')
    op.drop_table('price_bar')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_status_created')
        batch_op.drop_index('ix_job_kind_created')
        batch_op.drop_index('ix_job_created')

    op.drop_table('job')
