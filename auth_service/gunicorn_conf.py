"""Gunicorn settings for the auth service.

Run as ``gunicorn -c python:auth_service.gunicorn_conf "auth_service:create_app()"``.
Only the listening port (AUTH_PORT, default 5000) and the process and thread
counts are read here; the app reads everything else itself in ``create_app``.
"""

from common.gunicorn import gunicorn_settings

# gunicorn reads its settings from this module's global names.
globals().update(gunicorn_settings("auth", "AUTH_PORT", 5000))
