"""Run the auth service's operator commands: ``python -m auth_service <command>``.

This is the Flask CLI for the app (``flask --app auth_service``) with two
differences: ``gen-key`` works before any key exists, since it needs no app,
and no ``.env`` file is loaded: settings come from the environment only, as
they do under gunicorn.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup

from auth_service import create_app
from auth_service.cli import gen_key_command
from common.errors import ConfigError


def _load_app() -> Flask:
    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


cli = FlaskGroup(
    name="auth_service",
    create_app=_load_app,
    load_dotenv=False,
    help="Operator commands of the video2mp3 auth service.",
)
cli.add_command(gen_key_command)


def main() -> None:
    """Run the command line."""
    cli.main(prog_name="python -m auth_service")


if __name__ == "__main__":
    main()
