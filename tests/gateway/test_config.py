"""Config.from_env: the gateway's production start needs real store and broker credentials."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from gateway.config import Config

PRODUCTION = {
    "APP_ENV": "production",
    "MONGO_URI": "mongodb://gateway:o8Lq2vZ-real@mongodb:27017/?authSource=admin",
    "RABBITMQ_USER": "gateway",
    "RABBITMQ_PASSWORD": "Wq7-real-pass",
}


def test_production_starts_with_real_credentials():
    config = Config.from_env(PRODUCTION)

    assert config.environment == "production"
    assert config.rabbit.url == "amqp://gateway:Wq7-real-pass@127.0.0.1:5672/%2F"


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"MONGO_URI": "mongodb://mongodb:27017/"}, "MONGO_URI password"),
        ({"MONGO_URI": "mongodb://gateway:changeme@mongodb:27017/"}, "MONGO_URI password"),
        ({"RABBITMQ_PASSWORD": "changeme"}, "RABBITMQ_PASSWORD"),
        ({"RABBITMQ_URL": "amqp://rabbitmq:5672/%2F"}, "RABBITMQ_URL password"),
    ],
)
def test_production_refuses_missing_or_placeholder_credentials(change, refused):
    with pytest.raises(ConfigError, match=f"placeholder secrets: {refused}$") as refusal:
        Config.from_env({**PRODUCTION, **change})
    assert "real" not in str(refusal.value)
