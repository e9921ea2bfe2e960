"""The deployments ship the retry ladders the code documents (docs/decisions.md)."""

from __future__ import annotations

from common.config import Env
from common.retry import RetryLadder
from converter.config import CONVERT_RETRY
from notification.config import NOTIFY_RETRY
from tests.deploy.files import find


def test_kubernetes_ships_the_documented_ladders():
    converter = Env(find("ConfigMap", "converter")["data"])
    notification = Env(find("ConfigMap", "notification")["data"])
    # Read as the services read them; an unset variable would fall back to the same default,
    # so the ConfigMaps must set them to be compared at all.
    assert converter.optional("CONVERT_RETRY_DELAYS")
    assert notification.optional("NOTIFY_RETRY_DELAYS")
    assert RetryLadder.from_env(converter, "CONVERT", CONVERT_RETRY) == CONVERT_RETRY
    assert RetryLadder.from_env(notification, "NOTIFY", NOTIFY_RETRY) == NOTIFY_RETRY
    assert (CONVERT_RETRY.attempts, NOTIFY_RETRY.attempts) == (18, 31)
