"""one unfinished job per key: job.dedupe_key and its partial unique index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 15:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED_KEYED = ("dedupe_key IS NOT NULL AND status IN "
                    "('downloading_data', 'pending', 'running')")


def upgrade() -> None:
    # plain ADD COLUMN (no batch rebuild): a rebuild of `job` on SQLite would drop its triggers
    op.add_column('job', sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    op.create_index('ux_job_unfinished_key', 'job', ['dedupe_key'], unique=True,
                    sqlite_where=sa.text(UNFINISHED_KEYED), postgresql_where=sa.text(UNFINISHED_KEYED))


def downgrade() -> None:
    op.drop_index('ux_job_unfinished_key', table_name='job')
    op.drop_column('job', 'dedupe_key')
