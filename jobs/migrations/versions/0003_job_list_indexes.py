"""job list indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 04:39:24.425489
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import jobs.db


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_created'))
        batch_op.create_index('ix_job_created', ['created_at', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_created')
        batch_op.create_index(batch_op.f('ix_job_created'), ['created_at'], unique=False)

