"""Typed environment readers and the production secret check."""

from __future__ import annotations

import pytest

from common.config import (
    DEFAULT_EGRESS_PORTS,
    EgressConfig,
    Env,
    LoggingConfig,
    RabbitConfig,
    is_placeholder,
    redact_url,
    require_secrets,
)
from common.errors import ConfigError


def test_str_uses_default_and_requires_when_no_default():
    env = Env({"SET": "value", "EMPTY": ""})
    assert env.str("SET") == "value"
    assert env.str("EMPTY", "fallback") == "fallback"
    with pytest.raises(ConfigError, match="MISSING is required"):
        env.str("MISSING")


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("true", True), ("YES", True), ("off", False), ("0", False)]
)
def test_bool_parses_common_spellings(raw, expected):
    assert Env({"FLAG": raw}).bool("FLAG", not expected) is expected


@pytest.mark.parametrize(
    ("method", "raw", "message"),
    [
        ("int", "ten", "PORT must be an integer"),
        ("bool", "maybe", "PORT must be a boolean"),
        ("size", "2 lightyears", "PORT must be a size"),
        ("float", "fast", "PORT must be a number"),
    ],
)
def test_malformed_values_name_the_variable(method, raw, message):
    with pytest.raises(ConfigError, match=message):
        getattr(Env({"PORT": raw}), method)("PORT", 1)


def test_int_bounds_are_enforced():
    with pytest.raises(ConfigError, match="at most 65535"):
        Env({"PORT": "70000"}).int("PORT", 1, maximum=65535)
    assert Env({"PORT": "8080"}).int("PORT", 1, minimum=1, maximum=65535) == 8080


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2147483648", 2 * 1024**3), ("2GiB", 2 * 1024**3), ("512M", 512 * 1024**2), ("10k", 10240)],
)
def test_size_understands_units(raw, expected):
    assert Env({"MAX": raw}).size("MAX", 0) == expected


def test_choice_rejects_unknown_values():
    with pytest.raises(ConfigError, match="LOG_FORMAT must be one of json, text"):
        LoggingConfig.from_env(Env({"LOG_FORMAT": "xml"}))
    assert LoggingConfig.from_env(Env({"LOG_FORMAT": "TEXT", "LOG_LEVEL": "debug"})) == (
        LoggingConfig(level="DEBUG", format="text")
    )


@pytest.mark.parametrize(
    "value", [None, "", "change-me", "CHANGE_ME_PLEASE", "<your password>", "placeholder", "guest"]
)
def test_placeholders_are_recognised(value):
    assert is_placeholder(value)


def test_real_secrets_are_not_placeholders():
    assert not is_placeholder("o8#Lq2!vZ-real")


def test_production_refuses_placeholder_secrets_and_names_them():
    secrets = {"MYSQL_PASSWORD": "", "JWT_PRIVATE_KEY": "CHANGE_ME", "SMTP_PASSWORD": "s3cr3t-ok"}
    with pytest.raises(ConfigError, match="JWT_PRIVATE_KEY, MYSQL_PASSWORD"):
        require_secrets("production", secrets)
    require_secrets("development", secrets)  # development runs with local defaults


def test_rabbit_config_builds_a_url_from_parts():
    config = RabbitConfig.from_env(
        Env({"RABBITMQ_HOST": "mq", "RABBITMQ_PORT": "5673", "RABBITMQ_PASSWORD": "p@ss/word"})
    )
    assert config.url == "amqp://guest:p%40ss%2Fword@mq:5673/%2F"
    assert config.password == "p%40ss%2Fword"


def test_rabbit_config_prefers_the_url_and_checks_its_scheme():
    url = "amqp://u:pw@broker:5672/%2F"
    assert RabbitConfig.from_env(Env({"RABBITMQ_URL": url, "RABBITMQ_HOST": "x"})).url == url
    with pytest.raises(ConfigError, match="amqp://"):
        RabbitConfig.from_env(Env({"RABBITMQ_URL": "http://u:pw@broker/"}))


def test_redact_url_hides_only_the_password():
    assert redact_url("amqp://user:hunter2@host:5672/%2F") == "amqp://user:***@host:5672/%2F"
    assert redact_url("mongodb://host:27017/") == "mongodb://host:27017/"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, EgressConfig(allow_private=False, ports=DEFAULT_EGRESS_PORTS)),
        ({"EGRESS_ALLOW_PRIVATE": "true"}, EgressConfig(allow_private=True)),
        ({"WEBHOOK_ALLOW_PRIVATE": "true"}, EgressConfig(allow_private=True)),  # the old name
        (
            {"EGRESS_ALLOW_PRIVATE": "yes", "WEBHOOK_ALLOW_PRIVATE": "1"},
            EgressConfig(allow_private=True),
        ),
        ({"EGRESS_PORTS": "any"}, EgressConfig(ports=None)),
        ({"EGRESS_PORTS": "ANY"}, EgressConfig(ports=None)),
        ({"EGRESS_PORTS": "443, 8443"}, EgressConfig(ports=frozenset({443, 8443}))),
    ],
)
def test_egress_config_reads_its_policy(environ, expected):
    assert EgressConfig.from_env(Env(environ)) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EGRESS_ALLOW_PRIVATE": "true", "WEBHOOK_ALLOW_PRIVATE": "false"}, "disagree"),
        ({"EGRESS_ALLOW_PRIVATE": "maybe"}, "EGRESS_ALLOW_PRIVATE must be a boolean"),
        ({"EGRESS_PORTS": "http"}, "EGRESS_PORTS must be ports"),
        ({"EGRESS_PORTS": "0"}, "EGRESS_PORTS must be ports"),
        ({"EGRESS_PORTS": "443,70000"}, "EGRESS_PORTS must be ports"),
        ({"EGRESS_PORTS": ","}, "EGRESS_PORTS must be ports"),
        ({"EGRESS_PORTS": "*"}, "EGRESS_PORTS must be ports"),
    ],
)
def test_egress_config_refuses_malformed_values(environ, message):
    with pytest.raises(ConfigError, match=message):
        EgressConfig.from_env(Env(environ))
