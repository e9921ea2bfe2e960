"""Gunicorn settings shared by the HTTP services (auth_service, gateway).

Each service's ``gunicorn_conf`` module turns these into the module-level names
gunicorn reads. Only the listening address and the process/thread counts come
from the environment; each app reads the rest of its configuration itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger
from prometheus_client import multiprocess

from common.config import Env, LoggingConfig

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself


class AppLogsRequests(Logger):
    """gunicorn's logger minus its access log: the app logs every request itself.

    gunicorn builds an access-log record for each request whenever a logging config is
    given, even with no access log to write it to; that was 3% of a small request's CPU.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Log nothing: ``common.http.observe`` writes one line per request, with its request id."""


def _on_starting(_server: Any) -> None:
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:  # start from no values: old workers' files would be summed in
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def _child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get(MULTIPROC_ENV):  # drop the dead worker's live gauges
        multiprocess.mark_process_dead(worker.pid)


def gunicorn_settings(
    service: str,
    port_variable: str,
    default_port: int,
    environ: Mapping[str, str] | None = None,
    *,
    default_threads: int = 4,
) -> dict[str, Any]:
    """Return gunicorn's settings for ``service`` listening on ``$port_variable``.

    ``default_threads`` is the threads per worker when WEB_THREADS is not set.
    """
    env = Env(environ)
    logging_config = LoggingConfig.from_env(env)
    host = env.str("BIND_HOST", "0.0.0.0")  # noqa: S104 - reached from outside the container
    port = env.int(port_variable, default_port, minimum=1, maximum=65535)
    return {
        "bind": f"{host}:{port}",
        "workers": env.int("WEB_CONCURRENCY", 2, minimum=1, maximum=64),
        # Threads keep a worker serving while one request waits on a database,
        # the broker or a slow upload; argon2 and hashing release the GIL. A request
        # holds its thread while its body is read, so a service taking uploads needs
        # more threads than one whose requests are small (see gateway.gunicorn_conf).
        "worker_class": "gthread",
        "threads": env.int("WEB_THREADS", default_threads, minimum=1, maximum=64),
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        # Requests are logged by the app (common.http.observe), as one line each with their request
        # id; gunicorn's own lines (boot, worker exits) go through the same formatter.
        "accesslog": None,
        "logger_class": AppLogsRequests,
        "errorlog": "-",
        "logconfig_dict": _logging_dict(service, logging_config),
        # Several gunicorns share a machine in development and tests; a control
        # socket at a fixed path in $HOME would make them collide.
        "control_socket_disable": True,
        # prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) needs a clean
        # directory at start and to forget the live gauges of workers that exit.
        "on_starting": _on_starting,
        "child_exit": _child_exit,
    }


def _logging_dict(service: str, config: LoggingConfig) -> dict[str, Any]:
    formatter = (
        "common.logs.JsonFormatter" if config.format == "json" else "common.logs.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": formatter}},
        "filters": {"context": {"()": "common.logs.ContextFilter", "service": service}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "service",
                "filters": ["context"],
            }
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["stdout"], "level": config.level, "propagate": False}
        },
        # gunicorn merges this over its defaults, whose root logger names a handler we
        # replace; the app's configure_logging gives the root its handler in each worker.
        "root": {"level": config.level, "handlers": []},
    }
