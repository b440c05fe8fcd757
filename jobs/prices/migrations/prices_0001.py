"""price_coverage: each symbol's first and last day and days held, kept as bars are stored

Revision ID: prices_0001
Revises:
Create Date: 2026-11-30 15:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "prices_0001"
down_revision = None
branch_labels = ("prices",)
depends_on = "0001"  # price_bar was created with the engine's first schema


def upgrade() -> None:
    op.create_table(
        "price_coverage",
        sa.Column("symbol", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("days_held", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("symbol"),
    )
    op.execute("INSERT INTO price_coverage (symbol, first_day, last_day, days_held) "
               "SELECT symbol, min(day), max(day), count(*) FROM price_bar GROUP BY symbol")


def downgrade() -> None:
    op.drop_table("price_coverage")
