"""contracts tables: catalog cache, date-folder scan cache, snapshots

Revision ID: contracts_0001
Revises:
Create Date: 2026-11-30 15:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import jobs.db

revision = "contracts_0001"
down_revision = None
branch_labels = ("contracts",)
depends_on = "0004"


def upgrade() -> None:
    op.create_table(
        "contract_catalog",
        sa.Column("exchange", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("var", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("cached_at", jobs.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("contracts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "var"),
    )
    op.create_table(
        "contract_scan",
        sa.Column("lake_version", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("symbol", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("n_dates", sa.Integer(), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=True),
        sa.Column("last_date", sa.Date(), nullable=True),
        sa.Column("dates", sa.LargeBinary(), nullable=False),
        sa.Column("no_data", sa.JSON(), nullable=False),
        sa.Column("scanned_at", jobs.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lake_version", "symbol"),
    )
    op.create_table(
        "contract_snapshot",
        sa.Column("exchange", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("var", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("built_at", jobs.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("last_error_at", jobs.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("exchange", "var"),
    )


def downgrade() -> None:
    op.drop_table("contract_snapshot")
    op.drop_table("contract_scan")
    op.drop_table("contract_catalog")
