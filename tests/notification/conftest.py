"""Fixtures the notification's tests share: the job records and the delivery ledger on them."""

from __future__ import annotations

import pytest

from common.jobs import JobStore
from common.storage import Storage
from notification.ledger import DeliveryLedger


@pytest.fixture
def jobs(storage: Storage) -> JobStore:
    """Open the test's job records."""
    return JobStore(storage.client, storage.config)


@pytest.fixture
def ledger(storage: Storage) -> DeliveryLedger:
    """Open the delivery ledger over the test's job records."""
    return DeliveryLedger(storage.client, storage.config)
