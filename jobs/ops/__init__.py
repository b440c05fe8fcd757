"""Operations: health samples with history, metrics, the application's live log, caches.

The workers take one health sample per ``MARKETDESK_HEALTH_SAMPLE_SECONDS`` (one worker per
period, through the engine's periodic lease), keep them ``MARKETDESK_HEALTH_RETENTION_DAYS``
and fold old ones into hourly rows; each worker also ships its log lines through the event
stream. The web half (web/ops.py) serves /operations, /logs, /api/health, /metrics and the
header badge.
"""

import uuid
from pathlib import Path

from jobs.domain import Domain, Periodic
from jobs.ops.health import sample_and_prune
from jobs.ops.logbuffer import ship
from jobs.ops.settings import OpsSettings, ops_settings

# The log shipper runs in every worker, not in one per period: its lease name is this
# process's own (the engine's periodic lease is per name).
SHIP_LOGS = Periodic(f"ops.ship-logs.{uuid.uuid4().hex}", lambda: ops_settings().log_ship_seconds,
                     ship)
SAMPLE = Periodic("ops.health-sample", lambda: ops_settings().health_sample_seconds,
                  sample_and_prune)

DOMAIN = Domain(
    name="ops", title="Operations", tables=("jobs.ops.models",),
    migrations=Path(__file__).with_name("migrations"), settings=OpsSettings, web="web.ops",
    periodic=(SAMPLE, SHIP_LOGS), after=("prices", "simulation"),
)
