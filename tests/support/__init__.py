"""Test-support package: throwaway PKI, private RabbitMQ nodes, scratch PostgreSQL databases and polling.

Modules:

* :mod:`tests.support.pki` - certificates and keys (``make_pki``)
* :mod:`tests.support.broker` - a private TLS-only RabbitMQ node (``TestBroker``)
* :mod:`tests.support.pg` - scratch PostgreSQL databases
* :mod:`tests.support.waiting` - ``wait_until``, the only way tests wait
"""

from .broker import BrokerError, BrokerUnavailable, ManagementAPIError, SiteCreds, TestBroker, ensure_broker_binary
from .pki import LEAVES, PKI, make_pki
from .waiting import GiveUp, wait_until

__all__ = [
    "LEAVES",
    "PKI",
    "BrokerError",
    "BrokerUnavailable",
    "GiveUp",
    "ManagementAPIError",
    "SiteCreds",
    "TestBroker",
    "ensure_broker_binary",
    "make_pki",
    "wait_until",
]
