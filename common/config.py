"""Configuration taken from the environment, each setting declared once.

Each service's configuration is one frozen dataclass whose fields say where their
values come from: ``setting("VIDEO_QUEUE", "video")`` declares the variable, the
default (the same for ``Config()`` in a test and for an unset variable), bounds
and, where the type alone does not say, how to read it. ``Settings.from_env``
reads every such field through the typed ``Env`` readers, so a malformed value
stops the service at start-up with a message that names the variable; a field
whose type is itself ``Settings`` (``MongoConfig``, ``SmtpConfig``...) is read by
its own ``from_env``; and one hook, ``settle``, checks values across fields and
refuses placeholder secrets in production.

Why a helper of ours and not pydantic-settings: every value goes through the same
``Env`` readers, whose messages and look-ups (``tests/deploy/config_reads.py``
records them) stay as they were; the services keep their plain frozen dataclasses;
and importing pydantic-settings alone took 0.30 s, against 0.014 s for this module
and 0.05 s for a whole Python process that imports and reads the notification
service's config (best of 15-20 runs on the development machine): a cost that every
start of every service would pay.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Self
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

    def float(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        """Return the variable as a float within the given bounds."""
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {value}")
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


# --- declaring settings ----------------------------------------------------------

# The metadata key under which a dataclass field keeps its Setting.
_SETTING = "video2mp3.setting"

# How a setting whose type does not say is read: given the Env, the variable's name
# and the field's default, return the value (``Env.size``, ``RetryLadder.from_env``).
Reader = Callable[[Env, str, Any], Any]


@dataclass(frozen=True, slots=True)
class Setting:
    """Where one field of a configuration comes from, and how it is read."""

    # The environment variable; for a reader that reads several, their common prefix.
    variable: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    read: Reader | None = None
    # 0 in the environment means None (no limit); the field's type is ``int | None``.
    unlimited_at_zero: bool = False

    def value(self, env: Env, kind: Any, default: Any) -> Any:
        """Read this setting from ``env`` as a ``kind``, ``default`` when unset."""
        if self.unlimited_at_zero:
            return self._read(env, _without_none(kind), 0 if default is None else default) or None
        return self._read(env, kind, default)

    def _read(self, env: Env, kind: Any, default: Any) -> Any:
        name = self.variable
        if self.read is not None:
            return self.read(env, name, default)
        if self.choices is not None:
            return env.choice(name, default, self.choices)
        if kind is bool:
            return env.bool(name, default)
        if kind is int:
            return env.int(name, default, minimum=self.minimum, maximum=self.maximum)
        if kind is float:
            return env.float(name, default, minimum=self.minimum, maximum=self.maximum)
        if kind is str:
            return env.str(name, None if default is MISSING else default)
        if kind == str | None and default is None:
            return env.optional(name)
        raise TypeError(f"no reader for {name} of type {kind}; declare one with read=")


def setting(
    variable: str,
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    read: Reader | None = None,
    unlimited_at_zero: bool = False,
    secret: bool = False,
) -> Any:
    """Declare a configuration field read from ``variable``; a secret stays out of the repr."""
    spec = Setting(variable, minimum, maximum, choices, read, unlimited_at_zero)
    return field(
        default=default, default_factory=default_factory, repr=not secret, metadata={_SETTING: spec}
    )


def listen_port(variable: str, default: int) -> Any:
    """Declare the port a service listens on, read from ``variable`` (0: any free port)."""
    return setting(variable, default, minimum=0, maximum=65535)


def _read_public_url(env: Env, name: str, default: str) -> str:
    url = env.str(name, default).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {redact_url(url)!r}")
    return url


# Settings that more than one service reads, each declared here once and made a field
# of each service's Config by ``shared(VARIABLE)``.
_SHARED: dict[str, dict[str, Any]] = {
    "APP_ENV": {"default": DEVELOPMENT, "choices": ENVIRONMENTS},
    # The work queues' names on the broker (common.deadletters.WORK_QUEUES names the same).
    "VIDEO_QUEUE": {"default": "video"},
    "MP3_QUEUE": {"default": "mp3"},
    "WEBHOOK_QUEUE": {"default": "webhook"},
    # Where users reach the gateway: links in emails, the URLs the API hands out.
    "PUBLIC_URL": {"default": "http://127.0.0.1:8000", "read": _read_public_url},
    # What auth puts in its tokens and the gateway demands of them.
    "JWT_ISSUER": {"default": "video2mp3-auth"},
    "JWT_AUDIENCE": {"default": "video2mp3"},
    # How many proxies in front of an HTTP service may set X-Forwarded-For.
    "TRUSTED_PROXIES": {"default": 0, "minimum": 0, "maximum": 10},
    # A worker's health probes reach its pod from outside; make run narrows this to loopback.
    "HEALTH_HOST": {"default": "0.0.0.0"},  # noqa: S104
}


def shared(variable: str) -> Any:
    """Declare a field read from ``variable``, a setting that several services share."""
    return setting(variable, **_SHARED[variable])


def variable_of(config: type, name: str) -> str:
    """Return the environment variable that field ``name`` of ``config`` is read from."""
    (spec,) = [f.metadata[_SETTING] for f in dataclasses.fields(config) if f.name == name]
    return spec.variable


def given(env: Env, config: type, name: str) -> bool:
    """Tell whether the variable of field ``name`` of ``config`` is set in ``env``."""
    return env.optional(variable_of(config, name)) is not None


class Settings:
    """A configuration dataclass whose fields are ``setting()``s or nested ``Settings``."""

    __slots__ = ()

    @classmethod
    def from_env(cls, environ: Env | Mapping[str, str] | None = None) -> Self:
        """Read every field from the environment (``os.environ`` by default) and validate.

        Raises:
            ConfigError: a value is malformed, or production runs with placeholder secrets.
        """
        env = environ if isinstance(environ, Env) else Env(environ)
        values: dict[str, Any] = {}
        for item, kind in _typed_fields(cls):
            spec = item.metadata.get(_SETTING)
            if spec is not None:
                values[item.name] = spec.value(env, kind, _default(item))
            elif isinstance(kind, type) and issubclass(kind, Settings):
                values[item.name] = kind.from_env(env)
        cls.settle(env, values)
        return cls(**values)

    @classmethod
    def settle(cls, env: Env, values: dict[str, Any]) -> None:
        """Check ``values`` across fields and refuse placeholder secrets (here: nothing).

        The one hook after every field is read: it may also fill in a value that no
        one variable gives.

        Raises:
            ConfigError: the values do not go together.
        """


@functools.cache
def _typed_fields(config: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """Return each field of ``config`` with its type, resolved once per class."""
    hints = typing.get_type_hints(config)
    return tuple((item, hints[item.name]) for item in dataclasses.fields(config))


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default_factory is not MISSING:
        return item.default_factory()
    return item.default


def _without_none(kind: Any) -> Any:
    """Return ``X`` for ``X | None``."""
    (rest,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return rest


# --- the parts every service has --------------------------------------------------

LOG_LEVELS = ("debug", "info", "warning", "error")


def _read_log_level(env: Env, name: str, default: str) -> str:
    return env.choice(name, default, LOG_LEVELS).upper()


@dataclass(frozen=True, slots=True)
class LoggingConfig(Settings):
    """How a service writes its log lines."""

    level: str = setting("LOG_LEVEL", "INFO", read=_read_log_level)
    format: str = setting("LOG_FORMAT", "json", choices=("json", "text"))


def _read_rabbit_url(env: Env, name: str, default: object) -> str:
    """Read the broker's URL, or build it from RABBITMQ_HOST/PORT/USER/PASSWORD/VHOST."""
    url = env.optional(name)
    if url is None:
        host = env.str("RABBITMQ_HOST", "127.0.0.1")
        port = env.int("RABBITMQ_PORT", 5672, minimum=1, maximum=65535)
        user = quote(env.str("RABBITMQ_USER", "guest"), safe="")
        password = quote(env.str("RABBITMQ_PASSWORD", "guest"), safe="")
        vhost = quote(env.str("RABBITMQ_VHOST", "/"), safe="")
        url = f"amqp://{user}:{password}@{host}:{port}/{vhost}"
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise ConfigError(f"{name} must start with amqp:// or amqps://, got {redact_url(url)!r}")
    return url


@dataclass(frozen=True, slots=True)
class RabbitConfig(Settings):
    """Where the broker is and how the services use it."""

    url: str = setting("RABBITMQ_URL", read=_read_rabbit_url, secret=True)
    heartbeat: int = setting("RABBITMQ_HEARTBEAT", 30, minimum=0, maximum=3600)
    delivery_limit: int = setting("RABBITMQ_DELIVERY_LIMIT", 20, minimum=1)

    @property
    def password(self) -> str | None:
        """Return the password in the URL (None without credentials), for the secret check."""
        return url_password(self.url)


# MongoDB's ways of logging in without a password (certificates, cloud identities).
PASSWORDLESS_MONGO_AUTH = frozenset({"MONGODB-X509", "MONGODB-AWS", "MONGODB-OIDC"})


def _read_mongo_uri(env: Env, name: str, default: str) -> str:
    uri = env.str(name, default)
    if urlsplit(uri).scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigError(
            f"{name} must start with mongodb:// or mongodb+srv://, got {redact_url(uri)!r}"
        )
    return uri


@dataclass(frozen=True, slots=True)
class MongoConfig(Settings):
    """Where MongoDB is and which databases hold what."""

    uri: str = setting("MONGO_URI", "mongodb://127.0.0.1:27017/", read=_read_mongo_uri, secret=True)
    videos_db: str = setting("MONGO_VIDEOS_DB", "videos")
    mp3s_db: str = setting("MONGO_MP3S_DB", "mp3s")
    timeout_ms: int = setting("MONGO_TIMEOUT_MS", 5000, minimum=100)

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
# EGRESS_ALLOW_PRIVATE's first name, still read.
_OLD_ALLOW_PRIVATE = "WEBHOOK_ALLOW_PRIVATE"


def _read_allow_private(env: Env, name: str, default: bool) -> bool:
    """Read ``name`` or its old name; refuse the two when they disagree."""
    given = {
        each: env.bool(each, default)
        for each in (name, _OLD_ALLOW_PRIVATE)
        if env.optional(each) is not None
    }
    if len(set(given.values())) > 1:
        raise ConfigError(f"{name} and its old name {_OLD_ALLOW_PRIVATE} disagree; set {name} only")
    return any(given.values()) if given else default


def _read_egress_ports(
    env: Env, name: str, default: frozenset[int] | None
) -> frozenset[int] | None:
    """Read a comma-separated list of ports such as ``80,443``, or ``any`` (None)."""
    raw = env.optional(name)
    if raw is None:
        return default
    if raw.strip().lower() == ANY_PORT:
        return None
    try:
        ports = frozenset(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        ports = frozenset()
    if not ports or not all(0 < port < 65536 for port in ports):
        raise ConfigError(
            f"{name} must be ports 1-65535 separated by commas, or {ANY_PORT!r}; got {raw!r}"
        )
    return ports


@dataclass(frozen=True, slots=True)
class EgressConfig(Settings):
    """Where the services may connect on a user's behalf (webhooks, URL imports)."""

    allow_private: bool = setting("EGRESS_ALLOW_PRIVATE", False, read=_read_allow_private)
    # None allows every port.
    ports: frozenset[int] | None = setting(
        "EGRESS_PORTS", DEFAULT_EGRESS_PORTS, read=_read_egress_ports
    )

    def allows_port(self, port: int) -> bool:
        """Tell whether a URL may name ``port``."""
        return 0 < port < 65536 and (self.ports is None or port in self.ports)


@dataclass(frozen=True, slots=True)
class PipelineConfig(Settings):
    """What the gateway and both workers share: environment, logging, broker, store.

    Each of those services' ``Config`` extends this one; a service with secrets of its
    own names them in ``secrets``, and they are checked with the broker's and the store's.
    """

    mongo: MongoConfig
    rabbit: RabbitConfig
    environment: str = shared("APP_ENV")
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @classmethod
    def secrets(cls, values: dict[str, Any]) -> dict[str, str | None]:
        """Return the service's own secrets in ``values``, by the names a refusal shows."""
        return {}

    @classmethod
    def settle(cls, env: Env, values: dict[str, Any]) -> None:
        """Refuse a production start whose broker, store or own secrets are placeholders.

        Raises:
            ConfigError: naming every offending secret.
        """
        rabbit, mongo = values["rabbit"], values["mongo"]
        # The broker's password is named as the operator gave it: in the URL, or on its own.
        rabbit_secret = (
            "RABBITMQ_URL password" if given(env, RabbitConfig, "url") else "RABBITMQ_PASSWORD"
        )
        checked = {rabbit_secret: rabbit.password, **cls.secrets(values)}
        if not mongo.passwordless:
            checked["MONGO_URI password"] = mongo.password
        require_secrets(values["environment"], checked)
