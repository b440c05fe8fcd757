"""job counts per (kind, status), kept by upserting triggers; finished_at index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:00:00

The counts of 0003 were per status only, and updated rows seeded in advance: a status
without its row was silently never counted. These upsert, and are per kind too, so the
totals of a filtered jobs list and a kind's busy check read a handful of rows at any size.
(On SQLite a migration that rebuilds `job` drops its triggers: create them again after.)
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPSERT = ("INSERT INTO job_count (kind, status, n) VALUES ({row}.kind, {row}.status, 1) "
          "ON CONFLICT (kind, status) DO UPDATE SET n = job_count.n + 1")
DECREMENT = "UPDATE job_count SET n = n - 1 WHERE kind = {row}.kind AND status = {row}.status"

SQLITE_TRIGGERS = (
    f"CREATE TRIGGER job_count_insert AFTER INSERT ON job BEGIN {UPSERT.format(row='NEW')}; END",
    f"CREATE TRIGGER job_count_delete AFTER DELETE ON job BEGIN {DECREMENT.format(row='OLD')}; END",
    f"""CREATE TRIGGER job_count_update AFTER UPDATE OF status, kind ON job
        WHEN OLD.status <> NEW.status OR OLD.kind <> NEW.kind BEGIN
        {DECREMENT.format(row='OLD')}; {UPSERT.format(row='NEW')}; END""",
)

POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION job_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP IN ('UPDATE', 'DELETE') THEN {DECREMENT.format(row='OLD')}; END IF;
         IF TG_OP IN ('UPDATE', 'INSERT') THEN {UPSERT.format(row='NEW')}; END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER job_count_insert_delete AFTER INSERT OR DELETE ON job
       FOR EACH ROW EXECUTE FUNCTION job_count_change()""",
    """CREATE TRIGGER job_count_update AFTER UPDATE OF status, kind ON job
       FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.kind IS DISTINCT FROM NEW.kind)
       EXECUTE FUNCTION job_count_change()""",
)


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("job_count_insert", "job_count_delete", "job_count_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS job_count_insert_delete ON job")
        op.execute("DROP TRIGGER IF EXISTS job_count_update ON job")
        op.execute("DROP FUNCTION IF EXISTS job_count_change()")


def upgrade() -> None:
    _drop_triggers()
    op.drop_table('job_count')
    op.create_table(
        'job_count',
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'status'),
    )
    op.execute("INSERT INTO job_count (kind, status, n) SELECT kind, status, count(*) FROM job "
               "GROUP BY kind, status")
    triggers = SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_TRIGGERS
    for statement in triggers:
        op.execute(statement)
    op.create_index('ix_job_finished', 'job', ['finished_at'], unique=False)


def downgrade() -> None:
    raise NotImplementedError("0005 is not reversible: restore a backup taken before it")
