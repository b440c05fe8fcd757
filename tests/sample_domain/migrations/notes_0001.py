"""the sample domain's table

Revision ID: notes_0001
Revises:
Create Date: 2026-11-30 15:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import jobs.db

revision = "notes_0001"
down_revision = None
branch_labels = ("notes",)
depends_on = "0004"


def upgrade() -> None:
    op.create_table(
        "sample_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("written_at", jobs.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("sample_note")
