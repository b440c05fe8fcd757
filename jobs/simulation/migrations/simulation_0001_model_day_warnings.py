"""simulation: each model-day's warnings (a wanted trade dropped, a symbol without a close)

Revision ID: simulation_0001
Depends on: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "simulation_0001"
down_revision = None
branch_labels = ("simulation",)
depends_on = "0004"


def upgrade() -> None:
    with op.batch_alter_table("simulation_day") as batch:
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("simulation_day") as batch:
        batch.drop_column("warnings")
