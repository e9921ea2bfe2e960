"""Gunicorn settings shared by the HTTP services (auth_service, gateway).

Each service's ``gunicorn_conf`` module turns these into the module-level names
gunicorn reads. Only the listening address and the process/thread counts come
from the environment; each app reads the rest of its configuration itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.config import Env


def gunicorn_settings(
    port_variable: str, default_port: int, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return gunicorn's settings for a service listening on ``$port_variable``."""
    env = Env(environ)
    host = env.str("BIND_HOST", "0.0.0.0")  # noqa: S104 - containers are reached from outside
    port = env.int(port_variable, default_port, minimum=1, maximum=65535)
    return {
        "bind": f"{host}:{port}",
        "workers": env.int("WEB_CONCURRENCY", 2, minimum=1, maximum=64),
        # Threads keep a worker serving while one request waits on a database,
        # the broker or a slow upload; argon2 and hashing release the GIL.
        "worker_class": "gthread",
        "threads": env.int("WEB_THREADS", 4, minimum=1, maximum=64),
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        # Several gunicorns share a machine in development and tests; a control
        # socket at a fixed path in $HOME would make them collide.
        "control_socket_disable": True,
    }
