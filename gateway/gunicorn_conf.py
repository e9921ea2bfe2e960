"""Gunicorn settings for the gateway.

Run as ``gunicorn -c python:gateway.gunicorn_conf "gateway:create_app()"``.
"""

from common.gunicorn import gunicorn_settings

# gunicorn reads its settings from this module's global names.
globals().update(gunicorn_settings("gateway", "GATEWAY_PORT", 8000))
