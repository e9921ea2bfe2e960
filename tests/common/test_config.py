"""Typed environment readers and the production secret check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from common.config import (
    DEFAULT_EGRESS_PORTS,
    EgressConfig,
    Env,
    LoggingConfig,
    MongoConfig,
    PipelineConfig,
    RabbitConfig,
    Settings,
    given,
    is_placeholder,
    redact_url,
    require_secrets,
    setting,
    variable_of,
)
from common.errors import ConfigError
from converter.config import Config as ConverterConfig
from gateway.config import Config as GatewayConfig
from notification.config import Config as NotificationConfig


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
    assert config.password == "p@ss/word"


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


# What a production start of the gateway and the workers is given for its broker and store.
GOOD_MONGO = "mongodb://gateway:o8Lq2vZ-real@mongodb:27017/?authSource=admin"
GOOD_RABBIT = "amqp://gateway:Wq7-real-pass@rabbitmq:5672/%2F"


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        ({"MONGO_URI": GOOD_MONGO, "RABBITMQ_URL": GOOD_RABBIT}, None),
        ({}, "MONGO_URI password, RABBITMQ_PASSWORD"),  # the local defaults: no login, guest
        ({"MONGO_URI": "mongodb://mongodb:27017/", "RABBITMQ_URL": GOOD_RABBIT}, "MONGO_URI"),
        ({"MONGO_URI": "mongodb://gateway@mongodb/", "RABBITMQ_URL": GOOD_RABBIT}, "MONGO_URI"),
        (
            {"MONGO_URI": "mongodb://gateway:changeme@mongodb/", "RABBITMQ_URL": GOOD_RABBIT},
            "MONGO_URI password",
        ),
        (  # percent-encoded in the URI, still the template's value
            {"MONGO_URI": "mongodb://gateway:change%6De@mongodb/", "RABBITMQ_URL": GOOD_RABBIT},
            "MONGO_URI password",
        ),
        (
            {"MONGO_URI": "mongodb+srv://gateway:<password>@cluster0.example.net/"}
            | {"RABBITMQ_URL": GOOD_RABBIT},
            "MONGO_URI password",
        ),
        (  # a certificate is the credential: nothing to check
            {"MONGO_URI": "mongodb://mongodb/?tls=true&authMechanism=MONGODB-X509"}
            | {"RABBITMQ_URL": GOOD_RABBIT},
            None,
        ),
        (
            {"MONGO_URI": GOOD_MONGO, "RABBITMQ_URL": "amqp://rabbitmq:5672/"},
            "RABBITMQ_URL password",
        ),
        (
            {"MONGO_URI": GOOD_MONGO, "RABBITMQ_URL": "amqp://guest:guest@rabbitmq:5672/"},
            "RABBITMQ_URL password",
        ),
        (
            {"MONGO_URI": GOOD_MONGO, "RABBITMQ_USER": "gateway", "RABBITMQ_PASSWORD": "changeme"},
            "RABBITMQ_PASSWORD",
        ),
        ({"MONGO_URI": GOOD_MONGO, "RABBITMQ_USER": "gateway", "RABBITMQ_PASSWORD": "Wq7-r"}, None),
    ],
    ids=[
        "real",
        "local-defaults",
        "mongo-no-credentials",
        "mongo-no-password",
        "mongo-placeholder",
        "mongo-encoded-placeholder",
        "mongo-srv-template",
        "mongo-x509",
        "rabbit-no-credentials",
        "rabbit-guest",
        "rabbit-parts-placeholder",
        "rabbit-parts-real",
    ],
)
def test_production_refuses_a_store_or_broker_without_real_credentials(environ, refused):
    env = Env({"APP_ENV": "production", **environ})
    if refused is None:
        assert PipelineConfig.from_env(env).environment == "production"
    else:
        with pytest.raises(ConfigError, match=f"placeholder secrets: {refused}"):
            PipelineConfig.from_env(env)


@dataclass(frozen=True, slots=True)
class WithSecrets(PipelineConfig):
    """A service with secrets of its own: one missing, one real."""

    @classmethod
    def secrets(cls, values: dict[str, Any]) -> dict[str, str | None]:
        return {"WEBHOOK_SECRET": None, "SMTP_PASSWORD": "hunter2-ok"}


def test_production_names_every_offending_secret_and_shows_none():
    env = Env(
        {
            "APP_ENV": "production",
            "MONGO_URI": "mongodb://gateway:changeme@mongodb/",
            "RABBITMQ_URL": "amqp://gateway:Wq7-real-pass@rabbitmq/",
        }
    )
    with pytest.raises(ConfigError) as refusal:
        WithSecrets.from_env(env)
    message = str(refusal.value)
    assert message.endswith("placeholder secrets: MONGO_URI password, WEBHOOK_SECRET")
    assert "changeme" not in message
    assert "Wq7-real-pass" not in message


def test_development_runs_on_the_local_defaults():
    settings = PipelineConfig.from_env(Env({}))
    assert settings.environment == "development"
    assert settings.mongo == MongoConfig()


def test_mongo_uri_must_be_a_mongodb_uri_and_the_refusal_hides_its_password():
    with pytest.raises(ConfigError, match=r"MONGO_URI must start with mongodb://") as refusal:
        MongoConfig.from_env(Env({"MONGO_URI": "http://gateway:hunter2-pw@mongodb/"}))
    assert "hunter2-pw" not in str(refusal.value)


def test_connection_strings_stay_out_of_the_repr():
    settings = PipelineConfig.from_env(Env({"MONGO_URI": GOOD_MONGO, "RABBITMQ_URL": GOOD_RABBIT}))
    assert "o8Lq2vZ-real" not in repr(settings)
    assert "Wq7-real-pass" not in repr(settings)


# --- declaring settings once --------------------------------------------------------


def _shout(env: Env, name: str, default: str) -> str:
    return env.str(name, default).upper()


@dataclass(frozen=True, slots=True)
class Sample(Settings):
    """One field of every kind the generic reader knows."""

    text: str = setting("S_TEXT", "plain")
    maybe: str | None = setting("S_MAYBE", None, secret=True)
    count: int = setting("S_COUNT", 3, minimum=1, maximum=9)
    ratio: float = setting("S_RATIO", 0.5, minimum=0.0, maximum=1.0)
    flag: bool = setting("S_FLAG", False)
    mode: str = setting("S_MODE", "a", choices=("a", "b"))
    size: int = setting("S_SIZE", 1024, read=Env.size)
    shout: str = setting("S_SHOUT", "QUIET", read=_shout)
    limit: int | None = setting("S_LIMIT", 5, minimum=0, unlimited_at_zero=True)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def test_an_unset_variable_gives_the_fields_one_default():
    assert Sample.from_env({}) == Sample()


def test_every_kind_of_setting_is_read_from_its_variable():
    environ = {
        "S_TEXT": "other",
        "S_MAYBE": "hunter2-secret",
        "S_COUNT": "9",
        "S_RATIO": "0.25",
        "S_FLAG": "yes",
        "S_MODE": "B",
        "S_SIZE": "2k",
        "S_SHOUT": "loud",
        "S_LIMIT": "0",
        "LOG_LEVEL": "debug",
    }
    sample = Sample.from_env(environ)

    assert sample == Sample(
        text="other",
        maybe="hunter2-secret",
        count=9,
        ratio=0.25,
        flag=True,
        mode="b",
        size=2048,
        shout="LOUD",
        limit=None,
        logging=LoggingConfig(level="DEBUG"),
    )
    assert "hunter2" not in repr(sample)


# What each setting of Sample refuses, and how the refusal begins.
REFUSED = {
    "S_COUNT=10": "S_COUNT must be at most 9",
    "S_RATIO=1.5": "S_RATIO must be at most 1.0",
    "S_MODE=c": "S_MODE must be one of a, b",
    "S_LIMIT=-1": "S_LIMIT must be at least 0",
    "LOG_FORMAT=xml": "LOG_FORMAT must be one of json, text",
}


@pytest.mark.parametrize(("assignment", "message"), REFUSED.items())
def test_a_setting_out_of_bounds_names_its_variable(assignment, message):
    name, value = assignment.split("=")
    with pytest.raises(ConfigError, match=message):
        Sample.from_env({name: value})


def test_a_field_knows_its_variable_and_whether_it_is_given():
    assert variable_of(Sample, "count") == "S_COUNT"
    assert given(Env({"S_COUNT": "4"}), Sample, "count")
    assert not given(Env({"S_COUNT": ""}), Sample, "count")


@pytest.mark.parametrize("config", [GatewayConfig, ConverterConfig, NotificationConfig])
def test_a_services_defaults_are_its_dataclass_defaults(config):
    """Nothing set in the environment gives what ``Config(...)`` gives in a test."""
    rabbit = RabbitConfig.from_env({})
    assert config.from_env({}) == config(mongo=MongoConfig(), rabbit=rabbit)
