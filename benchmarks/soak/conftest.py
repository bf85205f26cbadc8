"""The soaks reuse the test suite's fixtures: a private TLS broker, sites on SQLite or PostgreSQL."""

from tests.conftest import backend, broker, database_url, make_site, pki  # noqa: F401 - fixtures
from tests.faults.conftest import private_broker, site_on  # noqa: F401 - fixtures
