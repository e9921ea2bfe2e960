"""Config.from_env: defaults, the signing key, and refusals that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from auth_service.config import Config
from common.errors import ConfigError
from tests.support import forge


@pytest.fixture
def key_pem(signing_key: RSAPrivateKey) -> str:
    return forge.private_pem(signing_key)


def test_defaults(key_file: Path, signing_key: RSAPrivateKey) -> None:
    config = Config.from_env({"JWT_PRIVATE_KEY_FILE": str(key_file)})

    assert config.jwt_private_key.private_numbers() == signing_key.private_numbers()
    assert (config.mysql.host, config.mysql.port, config.mysql.user) == ("127.0.0.1", 3306, "root")
    assert (config.mysql.password, config.mysql.database) == ("", "auth")
    assert (config.jwt_issuer, config.jwt_audience) == ("video2mp3-auth", "video2mp3")
    assert config.jwt_ttl_seconds == 3600
    assert config.login_rate_limit_client == "30/minute"
    assert config.login_rate_limit_account == "5/minute"
    assert config.ratelimit_storage_uri == "memory://"
    assert config.allow_registration is False
    assert config.trusted_proxies == 0
    assert config.environment == "development"
    assert (config.argon2.time_cost, config.argon2.memory_kib) == (3, 65536)
    # Each default is declared once: nothing set gives what Config(...) gives.
    assert config == Config(jwt_private_key=config.jwt_private_key)


def test_every_variable_is_read(key_pem: str) -> None:
    config = Config.from_env(
        {
            "JWT_PRIVATE_KEY": key_pem,
            "MYSQL_HOST": "db.internal",
            "MYSQL_PORT": "3307",
            "MYSQL_USER": "auth",
            "MYSQL_PASSWORD": "s3cret-value",
            "MYSQL_DB": "users",
            "JWT_ISSUER": "iss",
            "JWT_AUDIENCE": "aud",
            "JWT_TTL_SECONDS": "600",
            "LOGIN_RATE_LIMIT_CLIENT": "100 per hour",
            "LOGIN_RATE_LIMIT_ACCOUNT": "3/minute",
            "RATELIMIT_STORAGE_URI": "redis://cache:6379",
            "ALLOW_REGISTRATION": "yes",
            "TRUSTED_PROXIES": "2",
            "ARGON2_TIME_COST": "4",
            "ARGON2_MEMORY_KIB": "1024",
            "ARGON2_PARALLELISM": "2",
            "APP_ENV": "production",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "text",
        }
    )

    assert config.mysql.host == "db.internal"
    assert config.mysql.port == 3307
    assert config.mysql.user == "auth"
    assert config.mysql.password == "s3cret-value"
    assert config.mysql.database == "users"
    assert (config.jwt_issuer, config.jwt_audience, config.jwt_ttl_seconds) == ("iss", "aud", 600)
    assert config.login_rate_limit_client == "100 per hour"
    assert config.login_rate_limit_account == "3/minute"
    assert config.ratelimit_storage_uri == "redis://cache:6379"
    assert config.allow_registration is True
    assert config.trusted_proxies == 2
    assert (config.argon2.time_cost, config.argon2.memory_kib, config.argon2.parallelism) == (
        4,
        1024,
        2,
    )
    assert config.environment == "production"
    assert (config.logging.level, config.logging.format) == ("DEBUG", "text")


def test_inline_key_may_carry_escaped_newlines(key_pem: str) -> None:
    config = Config.from_env({"JWT_PRIVATE_KEY": key_pem.replace("\n", "\\n")})

    assert config.jwt_private_key.key_size == 2048


def test_secrets_stay_out_of_the_repr(key_pem: str) -> None:
    config = Config.from_env(
        {
            "JWT_PRIVATE_KEY": key_pem,
            "MYSQL_PASSWORD": "hunter2-secret",
            "RATELIMIT_STORAGE_URI": "redis://:hunter3-secret@cache:6379",
        }
    )

    assert "hunter2" not in repr(config)
    assert "hunter3" not in repr(config)
    assert "PRIVATE KEY" not in repr(config)


def test_missing_key_says_how_to_generate_one() -> None:
    with pytest.raises(ConfigError, match=r"python -m auth_service gen-key PATH"):
        Config.from_env({})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JWT_PRIVATE_KEY": "not a key"}, "not an unencrypted PEM private key"),
        ({"JWT_PRIVATE_KEY": "x", "JWT_PRIVATE_KEY_FILE": "/x"}, "not both"),
        ({"JWT_PRIVATE_KEY_FILE": "/no/such/file.pem"}, "cannot read JWT_PRIVATE_KEY_FILE"),
        (
            {"JWT_PRIVATE_KEY": forge.private_pem(ec.generate_private_key(ec.SECP256R1()))},
            "must be an RSA key",
        ),
        ({"JWT_PRIVATE_KEY": forge.private_pem(forge.new_rsa_key(1024))}, "at least 2048"),
    ],
    ids=["garbage", "both", "missing-file", "ec-key", "short-key"],
)
def test_unusable_keys_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGIN_RATE_LIMIT_CLIENT", "lots"),
        ("LOGIN_RATE_LIMIT_ACCOUNT", "5 per fortnight"),
        ("MYSQL_PORT", "99999"),
        ("JWT_TTL_SECONDS", "10"),
        ("TRUSTED_PROXIES", "-1"),
        ("ALLOW_REGISTRATION", "maybe"),
        ("APP_ENV", "staging"),
        ("ARGON2_TIME_COST", "0"),
    ],
)
def test_malformed_values_name_the_variable(key_pem: str, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({"JWT_PRIVATE_KEY": key_pem, name: value})


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        ({}, "MYSQL_PASSWORD"),
        ({"MYSQL_PASSWORD": "changeme"}, "MYSQL_PASSWORD"),
        ({"MYSQL_PASSWORD": "real-password-1"}, None),
        # A shared rate-limit store that logs in is checked like the others; one without
        # a password (memory://, a Redis on a private network) has nothing to check.
        (
            {"MYSQL_PASSWORD": "real-password-1", "RATELIMIT_STORAGE_URI": "redis://:changeme@r"},
            "RATELIMIT_STORAGE_URI password",
        ),
        (
            {"MYSQL_PASSWORD": "real-password-1", "RATELIMIT_STORAGE_URI": "redis://:o8Lq2vZ@r"},
            None,
        ),
        ({"MYSQL_PASSWORD": "real-password-1", "RATELIMIT_STORAGE_URI": "redis://r:6379"}, None),
    ],
)
def test_production_refuses_placeholder_secrets(
    key_pem: str, environ: dict[str, str], refused: str | None
) -> None:
    environ = {"APP_ENV": "production", "JWT_PRIVATE_KEY": key_pem, **environ}

    if refused is None:
        assert Config.from_env(environ).environment == "production"
    else:
        with pytest.raises(ConfigError, match=f"placeholder secrets: {refused}"):
            Config.from_env(environ)


def test_production_refuses_a_placeholder_key() -> None:
    environ = {"APP_ENV": "production", "MYSQL_PASSWORD": "real", "JWT_PRIVATE_KEY": "changeme"}

    with pytest.raises(ConfigError, match="JWT_PRIVATE_KEY"):
        Config.from_env(environ)


def test_rate_limits_are_checked_when_built_directly(signing_key: RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="LOGIN_RATE_LIMIT_ACCOUNT"):
        Config(jwt_private_key=signing_key, login_rate_limit_account="often")
