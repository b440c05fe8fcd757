"""job list index; job counts per status kept by triggers

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


STATUSES = ("pending", "downloading_data", "running", "completed", "partial", "failed", "cancelled")

SQLITE_TRIGGERS = (
    """CREATE TRIGGER job_count_insert AFTER INSERT ON job BEGIN
         UPDATE job_count SET n = n + 1 WHERE status = NEW.status; END""",
    """CREATE TRIGGER job_count_delete AFTER DELETE ON job BEGIN
         UPDATE job_count SET n = n - 1 WHERE status = OLD.status; END""",
    """CREATE TRIGGER job_count_update AFTER UPDATE OF status ON job
       WHEN OLD.status <> NEW.status BEGIN
         UPDATE job_count SET n = n - 1 WHERE status = OLD.status;
         UPDATE job_count SET n = n + 1 WHERE status = NEW.status; END""",
)

POSTGRES_TRIGGERS = (
    """CREATE FUNCTION job_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP IN ('UPDATE', 'DELETE') THEN
           UPDATE job_count SET n = n - 1 WHERE status = OLD.status;
         END IF;
         IF TG_OP IN ('UPDATE', 'INSERT') THEN
           UPDATE job_count SET n = n + 1 WHERE status = NEW.status;
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER job_count_insert_delete AFTER INSERT OR DELETE ON job
       FOR EACH ROW EXECUTE FUNCTION job_count_change()""",
    """CREATE TRIGGER job_count_update AFTER UPDATE OF status ON job
       FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
       EXECUTE FUNCTION job_count_change()""",
)


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_created'))
        batch_op.create_index('ix_job_created', ['created_at', 'id'], unique=False)

    op.create_table('job_count',
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('status')
    )
    for status in STATUSES:
        op.execute(sa.text("INSERT INTO job_count (status, n) "
                           "SELECT :s, count(*) FROM job WHERE status = :s").bindparams(s=status))
    triggers = SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_TRIGGERS
    for statement in triggers:
        op.execute(statement)



def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("job_count_insert", "job_count_delete", "job_count_update"):
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER job_count_insert_delete ON job")
        op.execute("DROP TRIGGER job_count_update ON job")
        op.execute("DROP FUNCTION job_count_change()")
    op.drop_table('job_count')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_created')
        batch_op.create_index(batch_op.f('ix_job_created'), ['created_at'], unique=False)

