"""The auth service's settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
import limits
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask, current_app

from common.config import (
    Env,
    LoggingConfig,
    Settings,
    require_secrets,
    setting,
    shared,
    url_password,
    variable_of,
)
from common.errors import ConfigError

_EXTENSION = "auth_service.config"
MIN_RSA_KEY_BITS = 2048
GENERATE_KEY_HINT = (
    "Generate one with `python -m auth_service gen-key PATH` and set "
    "JWT_PRIVATE_KEY_FILE=PATH (or put the PEM text itself in JWT_PRIVATE_KEY)."
)


@dataclass(frozen=True, slots=True)
class MySQLConfig(Settings):
    """Where the users database is and how long to wait for it."""

    host: str = setting("MYSQL_HOST", "127.0.0.1")
    port: int = setting("MYSQL_PORT", 3306, minimum=1, maximum=65535)
    user: str = setting("MYSQL_USER", "root")
    password: str = setting("MYSQL_PASSWORD", "", secret=True)
    database: str = setting("MYSQL_DB", "auth")
    connect_timeout: int = setting("MYSQL_CONNECT_TIMEOUT", 3, minimum=1, maximum=60)
    query_timeout: int = setting("MYSQL_QUERY_TIMEOUT", 10, minimum=1, maximum=600)


@dataclass(frozen=True, slots=True)
class Argon2Config(Settings):
    """Argon2id cost parameters; the defaults are argon2-cffi's recommended ones."""

    time_cost: int = setting("ARGON2_TIME_COST", argon2.DEFAULT_TIME_COST, minimum=1)
    memory_kib: int = setting("ARGON2_MEMORY_KIB", argon2.DEFAULT_MEMORY_COST, minimum=8)
    parallelism: int = setting("ARGON2_PARALLELISM", argon2.DEFAULT_PARALLELISM, minimum=1)


def _read_domains(env: Env, name: str, default: frozenset[str]) -> frozenset[str]:
    raw = env.optional(name)
    if raw is None:
        return default
    return frozenset(d.strip().lower().lstrip("@") for d in raw.split(",") if d.strip())


@dataclass(frozen=True, slots=True)
class OIDCConfig(Settings):
    """Single sign-on through an OpenID provider; off while ``issuer`` is None."""

    issuer: str | None = setting("OIDC_ISSUER", None)
    client_id: str = setting("OIDC_CLIENT_ID", "")
    client_secret: str = setting("OIDC_CLIENT_SECRET", "", secret=True)
    # Email domains whose users may log in this way; empty: any verified address.
    allowed_domains: frozenset[str] = setting(
        "OIDC_ALLOWED_DOMAINS", frozenset(), read=_read_domains
    )
    scopes: str = setting("OIDC_SCOPES", "openid email profile")
    # What the login button says ("Log in with <name>"); the issuer's host when unset.
    provider_name: str | None = setting("OIDC_PROVIDER_NAME", None)
    # The callback the provider sends browsers back to is <PUBLIC_URL>/login/oidc/callback.
    public_url: str = shared("PUBLIC_URL")

    def __post_init__(self) -> None:
        if self.issuer is None:
            return
        if not self.issuer.startswith(("https://", "http://")):
            raise ConfigError(f"OIDC_ISSUER must be an http(s) URL, got {self.issuer!r}")
        if not self.client_id or not self.client_secret:
            raise ConfigError("with OIDC_ISSUER, set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET too")
        if "openid" not in self.scopes.split():
            raise ConfigError(f"OIDC_SCOPES must include 'openid', got {self.scopes!r}")

    @property
    def enabled(self) -> bool:
        """Tell whether single sign-on is configured."""
        return self.issuer is not None

    @property
    def redirect_uri(self) -> str:
        """Return the callback URI to register at the provider."""
        return f"{self.public_url}/login/oidc/callback"


@dataclass(frozen=True, slots=True)
class Config(Settings):
    """Everything the auth service needs to run; tests build one directly."""

    # Read by ``settle``: the key's text is checked as a secret before it is loaded.
    jwt_private_key: RSAPrivateKey = field(repr=False)
    mysql: MySQLConfig = field(default_factory=MySQLConfig)
    jwt_issuer: str = shared("JWT_ISSUER")
    jwt_audience: str = shared("JWT_AUDIENCE")
    jwt_ttl_seconds: int = setting("JWT_TTL_SECONDS", 3600, minimum=60, maximum=7 * 24 * 3600)
    argon2: Argon2Config = field(default_factory=Argon2Config)
    # limits' notation: every login attempt per client IP, failed ones per account.
    login_rate_limit_client: str = setting("LOGIN_RATE_LIMIT_CLIENT", "30/minute")
    login_rate_limit_account: str = setting("LOGIN_RATE_LIMIT_ACCOUNT", "5/minute")
    ratelimit_storage_uri: str = setting("RATELIMIT_STORAGE_URI", "memory://", secret=True)
    allow_registration: bool = setting("ALLOW_REGISTRATION", False)
    trusted_proxies: int = shared("TRUSTED_PROXIES")
    environment: str = shared("APP_ENV")
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    oidc: OIDCConfig = field(default_factory=OIDCConfig)

    def __post_init__(self) -> None:
        for name in ("login_rate_limit_client", "login_rate_limit_account"):
            parse_rate_limit(variable_of(type(self), name), getattr(self, name))

    @classmethod
    def settle(cls, env: Env, values: dict[str, Any]) -> None:
        """Read the signing key, refuse placeholder secrets in production, then load the key.

        Raises:
            ConfigError: the signing key is missing or unusable, or a production start
                has placeholder secrets.
        """
        key_pem = _read_private_key_pem(env)
        secrets = {"MYSQL_PASSWORD": values["mysql"].password, "JWT_PRIVATE_KEY": key_pem}
        store_password = url_password(values["ratelimit_storage_uri"])
        if store_password is not None:  # a shared store (Redis) that logs in
            secrets["RATELIMIT_STORAGE_URI password"] = store_password
        if values["oidc"].enabled:
            secrets["OIDC_CLIENT_SECRET"] = values["oidc"].client_secret
        require_secrets(values["environment"], secrets)
        values["jwt_private_key"] = load_private_key(key_pem)


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
