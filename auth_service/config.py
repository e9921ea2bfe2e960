"""The auth service's settings, read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import argon2
import limits
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask, current_app

from common.config import DEVELOPMENT, Env, LoggingConfig, require_secrets, url_password
from common.errors import ConfigError

_EXTENSION = "auth_service.config"
MIN_RSA_KEY_BITS = 2048
GENERATE_KEY_HINT = (
    "Generate one with `python -m auth_service gen-key PATH` and set "
    "JWT_PRIVATE_KEY_FILE=PATH (or put the PEM text itself in JWT_PRIVATE_KEY)."
)


@dataclass(frozen=True, slots=True)
class MySQLConfig:
    """Where the users database is and how long to wait for it."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    database: str = "auth"
    connect_timeout: int = 3
    query_timeout: int = 10

    @classmethod
    def from_env(cls, env: Env) -> MySQLConfig:
        """Read MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD and MYSQL_DB."""
        return cls(
            host=env.str("MYSQL_HOST", "127.0.0.1"),
            port=env.int("MYSQL_PORT", 3306, minimum=1, maximum=65535),
            user=env.str("MYSQL_USER", "root"),
            password=env.optional("MYSQL_PASSWORD") or "",
            database=env.str("MYSQL_DB", "auth"),
            connect_timeout=env.int("MYSQL_CONNECT_TIMEOUT", 3, minimum=1, maximum=60),
            query_timeout=env.int("MYSQL_QUERY_TIMEOUT", 10, minimum=1, maximum=600),
        )


@dataclass(frozen=True, slots=True)
class Argon2Config:
    """Argon2id cost parameters; the defaults are argon2-cffi's recommended ones."""

    time_cost: int = argon2.DEFAULT_TIME_COST
    memory_kib: int = argon2.DEFAULT_MEMORY_COST
    parallelism: int = argon2.DEFAULT_PARALLELISM

    @classmethod
    def from_env(cls, env: Env) -> Argon2Config:
        """Read ARGON2_TIME_COST, ARGON2_MEMORY_KIB and ARGON2_PARALLELISM."""
        return cls(
            time_cost=env.int("ARGON2_TIME_COST", argon2.DEFAULT_TIME_COST, minimum=1),
            memory_kib=env.int("ARGON2_MEMORY_KIB", argon2.DEFAULT_MEMORY_COST, minimum=8),
            parallelism=env.int("ARGON2_PARALLELISM", argon2.DEFAULT_PARALLELISM, minimum=1),
        )


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the auth service needs to run; tests build one directly."""

    jwt_private_key: RSAPrivateKey = field(repr=False)
    mysql: MySQLConfig = field(default_factory=MySQLConfig)
    jwt_issuer: str = "video2mp3-auth"
    jwt_audience: str = "video2mp3"
    jwt_ttl_seconds: int = 3600
    argon2: Argon2Config = field(default_factory=Argon2Config)
    # limits' notation: every login attempt per client IP, failed ones per account.
    login_rate_limit_client: str = "30/minute"
    login_rate_limit_account: str = "5/minute"
    ratelimit_storage_uri: str = field(default="memory://", repr=False)
    allow_registration: bool = False
    trusted_proxies: int = 0
    environment: str = DEVELOPMENT
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        for name in ("login_rate_limit_client", "login_rate_limit_account"):
            parse_rate_limit(name.upper(), getattr(self, name))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration from the environment and validate it.

        Raises:
            ConfigError: a value is malformed, the signing key is missing or
                unusable, or a production start has placeholder secrets.
        """
        env = Env(environ)
        environment = env.environment()
        mysql = MySQLConfig.from_env(env)
        key_pem = _read_private_key_pem(env)
        ratelimit_storage_uri = env.str("RATELIMIT_STORAGE_URI", "memory://")
        secrets = {"MYSQL_PASSWORD": mysql.password, "JWT_PRIVATE_KEY": key_pem}
        store_password = url_password(ratelimit_storage_uri)
        if store_password is not None:  # a shared store (Redis) that logs in
            secrets["RATELIMIT_STORAGE_URI password"] = store_password
        require_secrets(environment, secrets)
        return cls(
            jwt_private_key=load_private_key(key_pem),
            mysql=mysql,
            jwt_issuer=env.str("JWT_ISSUER", "video2mp3-auth"),
            jwt_audience=env.str("JWT_AUDIENCE", "video2mp3"),
            jwt_ttl_seconds=env.int("JWT_TTL_SECONDS", 3600, minimum=60, maximum=7 * 24 * 3600),
            argon2=Argon2Config.from_env(env),
            login_rate_limit_client=env.str("LOGIN_RATE_LIMIT_CLIENT", "30/minute"),
            login_rate_limit_account=env.str("LOGIN_RATE_LIMIT_ACCOUNT", "5/minute"),
            ratelimit_storage_uri=ratelimit_storage_uri,
            allow_registration=env.bool("ALLOW_REGISTRATION", False),
            trusted_proxies=env.int("TRUSTED_PROXIES", 0, minimum=0, maximum=10),
            environment=environment,
            logging=LoggingConfig.from_env(env),
        )


def parse_rate_limit(name: str, value: str) -> limits.RateLimitItem:
    """Parse a rate limit such as ``5/minute`` or ``30 per minute``.

    Raises:
        ConfigError: naming the variable when the value is not a rate limit.
    """
    try:
        return limits.parse(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate limit like '5/minute' or '30 per hour', got {value!r}"
        ) from None


def _read_private_key_pem(env: Env) -> str:
    inline = env.optional("JWT_PRIVATE_KEY")
    path = env.optional("JWT_PRIVATE_KEY_FILE")
    if inline and path:
        raise ConfigError("set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, not both")
    if inline:
        # Env files and orchestrators often carry the PEM with literal "\n".
        return inline.replace("\\n", "\n")
    if path:
        try:
            return Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read JWT_PRIVATE_KEY_FILE {path!r}: {exc}") from None
    raise ConfigError(
        f"no token signing key: set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE. {GENERATE_KEY_HINT}"
    )


def load_private_key(pem: str) -> RSAPrivateKey:
    """Load an unencrypted PEM RSA private key of at least 2048 bits.

    Raises:
        ConfigError: the text is no such key.
    """
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"JWT private key is not an unencrypted PEM private key ({exc}). {GENERATE_KEY_HINT}"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"JWT private key must be an RSA key for RS256. {GENERATE_KEY_HINT}")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise ConfigError(
            f"JWT private key has {key.key_size} bits; RS256 needs at least {MIN_RSA_KEY_BITS}."
        )
    return key


def init_app(app: Flask, config: Config) -> None:
    """Make ``config`` the configuration of ``app``."""
    app.extensions[_EXTENSION] = config


def current_config() -> Config:
    """Return the current app's configuration."""
    return current_app.extensions[_EXTENSION]
