"""Typed readers for configuration taken from the environment.

Each service builds one frozen dataclass with ``Config.from_env()`` at start-up
from these readers, so a malformed value stops the service with a message that
names the variable instead of failing later in the middle of a request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

from common.errors import ConfigError

PRODUCTION = "production"
DEVELOPMENT = "development"
ENVIRONMENTS = (DEVELOPMENT, "test", PRODUCTION)

# Values that show a secret was copied from a template and never filled in. The
# deployment's own start scripts refuse the same values with this very expression
# (deploy/mongodb/10-video2mp3-users.js, deploy/rabbitmq/render-definitions.sh).
_PLACEHOLDER = re.compile(
    r"^(|change[-_ ]?me.*|replace[-_ ]?me.*|placeholder.*|example.*|<.*>|x+"
    r"|secret|password|guest)$",
    re.IGNORECASE,
)

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


class Env:
    """Read typed values from an environment mapping, naming the variable on error."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def str(self, name: str, default: str | None = None) -> str:
        """Return the variable's value, or ``default``; raise if neither exists."""
        value = self._environ.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            return default
        return value

    def optional(self, name: str) -> str | None:
        """Return the variable's value, or None when unset or empty."""
        return self._environ.get(name) or None

    def int(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """Return the variable as an int within the given bounds."""
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {value}")
        return value

    def float(self, name: str, default: float, *, minimum: float | None = None) -> float:
        """Return the variable as a float, at least ``minimum``."""
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        """Return the variable as a boolean (1/0, true/false, yes/no, on/off)."""
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")

    def size(self, name: str, default: int) -> int:
        """Return a byte size such as ``2147483648``, ``512M`` or ``2GiB``."""
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", raw)
        unit = match and match.group(2).lower()
        if not match or unit not in _SIZE_UNITS:
            raise ConfigError(f"{name} must be a size like 512M or 2GiB, got {raw!r}")
        return int(match.group(1)) * _SIZE_UNITS[unit]

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """Return the variable if it is one of ``choices``."""
        value = self.str(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def environment(self) -> str:
        """Return APP_ENV: development (default), test or production."""
        return self.choice("APP_ENV", DEVELOPMENT, ENVIRONMENTS)


def is_placeholder(value: str | None) -> bool:
    """Tell whether a secret is missing or still a template placeholder."""
    return value is None or bool(_PLACEHOLDER.match(value.strip()))


def require_secrets(environment: str, secrets: Mapping[str, str | None]) -> None:
    """Refuse a production start while any named secret is missing or a placeholder.

    Raises:
        ConfigError: naming every offending variable.
    """
    if environment != PRODUCTION:
        return
    bad = sorted(name for name, value in secrets.items() if is_placeholder(value))
    if bad:
        raise ConfigError(
            "refusing to start in production with missing or placeholder secrets: " + ", ".join(bad)
        )


def url_password(url: str) -> str | None:
    """Return the password in ``url``, decoded, or None when it carries none."""
    password = urlsplit(url).password
    return None if password is None else unquote(password)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """How a service writes its log lines."""

    level: str = "INFO"
    format: str = "json"

    @classmethod
    def from_env(cls, env: Env) -> LoggingConfig:
        """Read LOG_LEVEL and LOG_FORMAT (json or text)."""
        level = env.choice("LOG_LEVEL", "INFO", ("debug", "info", "warning", "error")).upper()
        return cls(level=level, format=env.choice("LOG_FORMAT", "json", ("json", "text")))


@dataclass(frozen=True, slots=True)
class RabbitConfig:
    """Where the broker is and how the services use it."""

    url: str = field(repr=False)
    heartbeat: int = 30
    delivery_limit: int = 20

    @classmethod
    def from_env(cls, env: Env) -> RabbitConfig:
        """Read RABBITMQ_URL, or RABBITMQ_HOST/PORT/USER/PASSWORD/VHOST."""
        url = env.optional("RABBITMQ_URL")
        if url is None:
            host = env.str("RABBITMQ_HOST", "127.0.0.1")
            port = env.int("RABBITMQ_PORT", 5672, minimum=1, maximum=65535)
            user = quote(env.str("RABBITMQ_USER", "guest"), safe="")
            password = quote(env.str("RABBITMQ_PASSWORD", "guest"), safe="")
            vhost = quote(env.str("RABBITMQ_VHOST", "/"), safe="")
            url = f"amqp://{user}:{password}@{host}:{port}/{vhost}"
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise ConfigError(
                f"RABBITMQ_URL must start with amqp:// or amqps://, got {redact_url(url)!r}"
            )
        return cls(
            url=url,
            heartbeat=env.int("RABBITMQ_HEARTBEAT", 30, minimum=0, maximum=3600),
            delivery_limit=env.int("RABBITMQ_DELIVERY_LIMIT", 20, minimum=1),
        )

    @property
    def password(self) -> str | None:
        """Return the password in the URL (None without credentials), for the secret check."""
        return url_password(self.url)


# MongoDB's ways of logging in without a password (certificates, cloud identities).
PASSWORDLESS_MONGO_AUTH = frozenset({"MONGODB-X509", "MONGODB-AWS", "MONGODB-OIDC"})


@dataclass(frozen=True, slots=True)
class MongoConfig:
    """Where MongoDB is and which databases hold what."""

    uri: str = field(default="mongodb://127.0.0.1:27017/", repr=False)
    videos_db: str = "videos"
    mp3s_db: str = "mp3s"
    timeout_ms: int = 5000

    @classmethod
    def from_env(cls, env: Env) -> MongoConfig:
        """Read MONGO_URI, MONGO_VIDEOS_DB, MONGO_MP3S_DB and MONGO_TIMEOUT_MS."""
        uri = env.str("MONGO_URI", "mongodb://127.0.0.1:27017/")
        if urlsplit(uri).scheme not in ("mongodb", "mongodb+srv"):
            raise ConfigError(
                f"MONGO_URI must start with mongodb:// or mongodb+srv://, got {redact_url(uri)!r}"
            )
        return cls(
            uri=uri,
            videos_db=env.str("MONGO_VIDEOS_DB", "videos"),
            mp3s_db=env.str("MONGO_MP3S_DB", "mp3s"),
            timeout_ms=env.int("MONGO_TIMEOUT_MS", 5000, minimum=100),
        )

    @property
    def password(self) -> str | None:
        """Return the password in the URI (None without credentials), for the secret check."""
        return url_password(self.uri)

    @property
    def passwordless(self) -> bool:
        """Tell whether the URI logs in without a password (X.509, AWS or OIDC)."""
        mechanism = parse_qs(urlsplit(self.uri).query).get("authMechanism", [""])[-1]
        return mechanism.upper() in PASSWORDLESS_MONGO_AUTH


# The ports a user's URL may name unless EGRESS_PORTS says otherwise.
DEFAULT_EGRESS_PORTS = frozenset({80, 443})
# The EGRESS_PORTS value that allows every port (make run's, for receivers on any port).
ANY_PORT = "any"


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """Where the services may connect on a user's behalf (webhooks, URL imports)."""

    allow_private: bool = False
    # None allows every port.
    ports: frozenset[int] | None = DEFAULT_EGRESS_PORTS

    def allows_port(self, port: int) -> bool:
        """Tell whether a URL may name ``port``."""
        return 0 < port < 65536 and (self.ports is None or port in self.ports)

    @classmethod
    def from_env(cls, env: Env) -> EgressConfig:
        """Read EGRESS_ALLOW_PRIVATE (or its alias WEBHOOK_ALLOW_PRIVATE) and EGRESS_PORTS.

        Raises:
            ConfigError: a value is malformed, or the two spellings disagree.
        """
        given = {
            name: env.bool(name, False)
            for name in ("EGRESS_ALLOW_PRIVATE", "WEBHOOK_ALLOW_PRIVATE")
            if env.optional(name) is not None
        }
        if len(set(given.values())) > 1:
            raise ConfigError(
                "EGRESS_ALLOW_PRIVATE and its old name WEBHOOK_ALLOW_PRIVATE disagree; "
                "set EGRESS_ALLOW_PRIVATE only"
            )
        raw_ports = env.optional("EGRESS_PORTS")
        return cls(
            allow_private=any(given.values()),
            ports=DEFAULT_EGRESS_PORTS if raw_ports is None else _egress_ports(raw_ports),
        )


def _egress_ports(raw: str) -> frozenset[int] | None:
    """Parse EGRESS_PORTS: a comma-separated list such as ``80,443``, or ``any``."""
    if raw.strip().lower() == ANY_PORT:
        return None
    try:
        ports = frozenset(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        ports = frozenset()
    if not ports or not all(0 < port < 65536 for port in ports):
        raise ConfigError(
            f"EGRESS_PORTS must be ports 1-65535 separated by commas, or {ANY_PORT!r}; got {raw!r}"
        )
    return ports


def pipeline_settings(
    env: Env, *, secrets: Mapping[str, str | None] | None = None
) -> dict[str, object]:
    """Read what the gateway and both workers share: environment, logging, broker, store.

    Raises:
        ConfigError: a value is malformed, or production runs with placeholder secrets.
    """
    environment = env.environment()
    rabbit = RabbitConfig.from_env(env)
    mongo = MongoConfig.from_env(env)
    # The broker's password is named as the operator gave it: in the URL, or on its own.
    rabbit_secret = "RABBITMQ_URL password" if env.optional("RABBITMQ_URL") else "RABBITMQ_PASSWORD"
    checked = {rabbit_secret: rabbit.password, **(secrets or {})}
    if not mongo.passwordless:
        checked["MONGO_URI password"] = mongo.password
    require_secrets(environment, checked)
    return {
        "environment": environment,
        "logging": LoggingConfig.from_env(env),
        "rabbit": rabbit,
        "mongo": mongo,
    }


def worker_settings(env: Env, *, port_variable: str, default_port: int) -> dict[str, object]:
    """Read where a worker answers its health probes."""
    return {
        # Probes reach a pod from outside it; make run narrows this to loopback.
        "health_host": env.str("HEALTH_HOST", "0.0.0.0"),  # noqa: S104
        "health_port": env.int(port_variable, default_port, minimum=0, maximum=65535),
    }
