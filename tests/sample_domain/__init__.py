"""A domain that lives outside marketdesk's tree, as a desk's own would: one job kind, one
table (with its own migration), one page, one live region. tests/test_domains.py serves it
with ``MARKETDESK_DOMAINS=tests.sample_domain`` and nothing else changed anywhere."""

from pathlib import Path

from jobs.domain import Domain
from tests.sample_domain.kind import WRITE

DOMAIN = Domain(
    name="notes", title="Notes", kinds=(WRITE,), tables=("tests.sample_domain.tables",),
    migrations=Path(__file__).with_name("migrations"), web="tests.sample_domain.web",
)
