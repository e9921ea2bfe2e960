"""Which environment variables each service's configuration actually reads.

A service reads its settings through ``common.config.Env``, which looks every
name up with ``.get``; a mapping that records those look-ups, handed to the
service's own ``Config.from_env`` (and, for the Flask services, to the gunicorn
settings), tells which names a deployment file may set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from auth_service.config import Config as AuthConfig
from common.gunicorn import gunicorn_settings
from converter.config import Config as ConverterConfig
from gateway.config import Config as GatewayConfig
from notification.config import Config as NotificationConfig
from tests.deploy.files import SERVICES, Service

# Read by prometheus_client in the gunicorn processes (gunicorn multiprocess mode),
# not by the services' Config.
FLASK_EXTRAS = frozenset({"PROMETHEUS_MULTIPROC_DIR"})

_CONFIGS: dict[str, Callable[[Mapping[str, str]], object]] = {
    "auth_service": AuthConfig.from_env,
    "gateway": GatewayConfig.from_env,
    "converter": ConverterConfig.from_env,
    "notification": NotificationConfig.from_env,
}


class RecordingEnviron(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.looked_up: set[str] = set()

    def get(self, key, default=None):  # type: ignore[no-untyped-def] - dict's own signature
        self.looked_up.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.looked_up.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.looked_up.add(str(key))
        return super().__contains__(key)


def service_named(package: str) -> Service:
    """Return the service whose package is ``package``."""
    return next(service for service in SERVICES if service.package == package)


def read_configuration(service: Service, environ: Mapping[str, str]) -> set[str]:
    """Load ``service``'s configuration from ``environ`` as it does at start; return names read.

    Raises:
        ConfigError: the service would refuse to start with this environment.
    """
    recording = RecordingEnviron(environ)
    _CONFIGS[service.package](recording)
    if service.http:
        # As the service's gunicorn_conf calls it (its name is the compose service's).
        gunicorn_settings(
            service.compose,
            port_variable=service.port_variable,
            default_port=service.port,
            environ=recording,
        )
    return recording.looked_up | (FLASK_EXTRAS if service.http else set())
