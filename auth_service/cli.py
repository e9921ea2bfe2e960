"""Operator commands: ``flask --app auth_service <command>`` or ``python -m auth_service``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.cli import with_appcontext

from auth_service import accounts, db
from auth_service.config import current_config
from auth_service.credentials import InvalidField, normalize_email
from common.errors import TransientError
from common.tokens import jwk_thumbprint


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database and the users table if they are missing."""
    config = current_config().mysql
    try:
        db.init_db(config)
    except TransientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Database {config.database!r} on {config.host}:{config.port} is ready.")


def _read_password(password: str | None, password_stdin: bool) -> str:
    if password is not None and password_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("create-user")
@click.argument("email")
@click.option("--password", help="The password (visible to other local users; prefer a prompt).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first stdin line.")
@click.option(
    "--admin/--no-admin",
    default=None,
    help="Make the user an admin, or not. Without either, a new user is no admin "
    "and an existing one keeps its flag.",
)
@with_appcontext
def create_user_command(
    email: str, password: str | None, password_stdin: bool, admin: bool | None
) -> None:
    """Create a user, or set an existing user's password (and admin flag)."""
    secret = _read_password(password, password_stdin)
    try:
        created = accounts.save_user(email, secret, is_admin=admin)
    except InvalidField as exc:
        raise click.BadParameter(str(exc), param_hint=exc.field) from None
    except TransientError as exc:
        raise click.ClickException(str(exc)) from None
    role = {True: " (admin)", False: " (not admin)", None: ""}[admin]
    click.echo(f"{'Created' if created else 'Updated'} user {normalize_email(email)}{role}.")


@click.command("gen-key")
@click.argument("path", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option(
    "--bits", type=click.Choice(["2048", "3072", "4096"]), default="3072", show_default=True
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def gen_key_command(path: Path, bits: str, force: bool) -> None:
    """Write a new RSA private key for signing tokens to PATH, readable by its owner only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=int(bits))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; pass --force to replace it") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as key_file:
        # A replaced file keeps its old mode; tighten it before the key is in it.
        os.fchmod(key_file.fileno(), 0o600)
        key_file.write(pem)
    click.echo(f"Wrote a {bits}-bit RSA key to {path} (kid {jwk_thumbprint(key.public_key())}).")


def init_app(app: Flask) -> None:
    """Register the operator commands on ``app``'s Flask CLI."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(create_user_command)
    app.cli.add_command(gen_key_command)
