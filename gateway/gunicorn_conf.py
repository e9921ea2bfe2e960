"""Gunicorn settings for the gateway.

Run as ``gunicorn -c python:gateway.gunicorn_conf "gateway:create_app()"``.
"""

from common.gunicorn import gunicorn_settings
from gateway.services import EXTENSION

# An upload holds a thread for as long as its body takes to arrive (at most
# UPLOAD_READ_TIMEOUT per 256 KiB piece, see gateway.watchdog). 32 threads a worker
# leave 20 slow clients, all landing on one worker, a dozen threads short of the
# /health probe and everyone else's requests. An idle thread costs next to nothing;
# a busy upload holds about 2 MiB (a read, a GridFS chunk, gunicorn's receive buffer).
GATEWAY_THREADS = 32

# gunicorn reads its settings from this module's global names.
globals().update(
    gunicorn_settings("gateway", "GATEWAY_PORT", 8000, default_threads=GATEWAY_THREADS)
)


def worker_exit(_server: object, worker: object) -> None:
    """Close the app's connections as its worker stops, so the broker sees a clean goodbye."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get(EXTENSION)
    if services is not None:
        services.close()
