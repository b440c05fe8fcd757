"""health_sample and health_kind: the operations domain's health history

Revision ID: ops_0001
Revises:
Create Date: 2026-11-30 15:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from jobs.db import UTCDateTime

revision = "ops_0001"
down_revision = None
branch_labels = ("ops",)
depends_on = "0004"

BUCKETS = 18  # len(jobs.ops.models.BOUNDS) when this revision was written


def upgrade() -> None:
    op.create_table(
        "health_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("resolution", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("db_ok", sa.Boolean(), nullable=False),
        sa.Column("redis_ok", sa.Boolean(), nullable=False),
        sa.Column("db_ms", sa.Float(), nullable=True),
        sa.Column("redis_ms", sa.Float(), nullable=True),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("queue_pending", sa.Integer(), nullable=False),
        sa.Column("queue_active", sa.Integer(), nullable=False),
        sa.Column("lag_ms", sa.Float(), nullable=True),
        sa.Column("finished", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_health_sample_epoch", "health_sample", ["epoch"])
    op.create_table(
        "health_kind",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("finished", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        *(sa.Column(f"d{i}", sa.Integer(), nullable=False) for i in range(BUCKETS)),
        *(sa.Column(f"q{i}", sa.Integer(), nullable=False) for i in range(BUCKETS)),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_health_kind_epoch", "health_kind", ["epoch"])


def downgrade() -> None:
    op.drop_index("ix_health_kind_epoch", table_name="health_kind")
    op.drop_table("health_kind")
    op.drop_index("ix_health_sample_epoch", table_name="health_sample")
    op.drop_table("health_sample")
