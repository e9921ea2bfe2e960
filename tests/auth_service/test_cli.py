"""Operator commands through Flask's CLI runner, and the real entry points as subprocesses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from auth_service import db
from auth_service.config import Config, load_private_key
from devstack.servers import REPO_ROOT

if TYPE_CHECKING:
    from tests.conftest import MySQLServer


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def stored_user(app: Flask, email: str) -> db.User | None:
    with app.app_context():
        return db.find_user(email)


def test_init_db_is_idempotent(runner: FlaskCliRunner, app: Flask, config: Config) -> None:
    first = runner.invoke(args=["init-db"])
    second = runner.invoke(args=["init-db"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert config.mysql.database in second.output
    with app.app_context():
        db.ping()


def test_create_user_with_password_option(runner: FlaskCliRunner, app: Flask) -> None:
    result = runner.invoke(args=["create-user", "Ann@Example.com", "--password", "ann password"])

    assert result.exit_code == 0, result.output
    assert "Created user ann@example.com" in result.output
    user = stored_user(app, "ann@example.com")
    assert user is not None
    assert user.is_admin is False
    assert "ann password" not in user.password_hash


def test_create_user_reads_the_password_from_stdin(runner: FlaskCliRunner, app: Flask) -> None:
    result = runner.invoke(
        args=["create-user", "ann@example.com", "--password-stdin", "--admin"],
        input="piped password\n",
    )

    assert result.exit_code == 0, result.output
    assert "(admin)" in result.output
    assert stored_user(app, "ann@example.com").is_admin is True


def test_create_user_prompts_twice_for_the_password(runner: FlaskCliRunner, app: Flask) -> None:
    result = runner.invoke(
        args=["create-user", "ann@example.com"], input="typed password\ntyped password\n"
    )

    assert result.exit_code == 0, result.output
    assert "typed password" not in result.output
    assert stored_user(app, "ann@example.com") is not None


def test_create_user_updates_and_sets_the_admin_flag(runner: FlaskCliRunner, app: Flask) -> None:
    runner.invoke(args=["create-user", "ann@example.com", "--password", "first password"])
    first_hash = stored_user(app, "ann@example.com").password_hash

    promoted = runner.invoke(
        args=["create-user", "ann@example.com", "--password", "second password", "--admin"]
    )
    kept = runner.invoke(args=["create-user", "ann@example.com", "--password", "third password"])
    assert stored_user(app, "ann@example.com").is_admin is True
    demoted = runner.invoke(
        args=["create-user", "ann@example.com", "--password", "third password", "--no-admin"]
    )

    assert "Updated user ann@example.com (admin)" in promoted.output
    assert "Updated user ann@example.com." in kept.output
    assert demoted.exit_code == 0
    user = stored_user(app, "ann@example.com")
    assert user.is_admin is False
    assert user.password_hash != first_hash


def revocation_versions(app: Flask) -> list[int]:
    with app.app_context(), db.get_db().cursor() as cursor:
        cursor.execute("SELECT min_version FROM revocations WHERE kind = 'user' ORDER BY id")
        return [version for (version,) in cursor.fetchall()]


def test_create_user_revokes_sessions_only_when_something_changes(
    runner: FlaskCliRunner, app: Flask
) -> None:
    def save(*args: str) -> None:
        result = runner.invoke(args=["create-user", "ann@example.com", *args])
        assert result.exit_code == 0, result.output

    save("--password", "first password")
    save("--password", "first password")  # the same password: nothing changes
    save("--password", "first password", "--no-admin")  # already no admin
    assert revocation_versions(app) == []

    save("--password", "second password")
    save("--password", "second password", "--admin")
    save("--password", "second password", "--no-admin")

    assert revocation_versions(app) == [1, 2, 3]
    assert stored_user(app, "ann@example.com").token_version == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-user", "not-an-address", "--password", "long enough"], "email"),
        (["create-user", "ann@example.com", "--password", "short"], "password"),
        (["create-user", "ann@example.com", "--password", "x" * 9, "--password-stdin"], "not both"),
    ],
)
def test_create_user_refuses_bad_input(
    runner: FlaskCliRunner, app: Flask, args: list[str], message: str
) -> None:
    result = runner.invoke(args=args)

    assert result.exit_code == 2
    assert message in result.output
    assert stored_user(app, "ann@example.com") is None


def test_gen_key_writes_a_private_key_only_the_owner_can_read(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "signing.pem"

    result = runner.invoke(args=["gen-key", str(path), "--bits", "2048"])

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path.read_text()).key_size == 2048


def test_gen_key_defaults_to_3072_bits(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"

    assert runner.invoke(args=["gen-key", str(path)]).exit_code == 0
    assert load_private_key(path.read_text()).key_size == 3072


def test_gen_key_keeps_an_existing_file_unless_forced(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "signing.pem"
    path.write_text("precious")
    path.chmod(0o644)

    refused = runner.invoke(args=["gen-key", str(path), "--bits", "2048"])
    assert refused.exit_code == 1
    assert "--force" in refused.output
    assert path.read_text() == "precious"

    forced = runner.invoke(args=["gen-key", str(path), "--bits", "2048", "--force"])
    assert forced.exit_code == 0, forced.output
    assert load_private_key(path.read_text()).key_size == 2048
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- the real entry points ---------------------------------------------------------


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    # Only what the command needs, so the developer's own settings cannot leak in.
    base = {
        "PATH": os.environ["PATH"],
        "FLASK_SKIP_DOTENV": "1",
        "LOG_FORMAT": "text",
        "ARGON2_MEMORY_KIB": "64",
    }
    return subprocess.run(
        args,
        cwd=REPO_ROOT,
        env={**base, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def fresh_database(mysql_server: MySQLServer) -> Iterator[str]:
    """Name a database that does not exist yet, and drop it afterwards."""
    name = f"v2m_test_{uuid.uuid4().hex[:12]}"
    yield name
    admin = mysql_server.connect()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


def test_python_m_auth_service_works_from_a_fresh_start(
    tmp_path: Path, mysql_server: MySQLServer, fresh_database: str
) -> None:
    key_path = tmp_path / "jwt.pem"
    env = {
        "MYSQL_HOST": mysql_server.host,
        "MYSQL_PORT": str(mysql_server.port),
        "MYSQL_USER": mysql_server.user,
        "MYSQL_PASSWORD": mysql_server.password,
        "MYSQL_DB": fresh_database,
    }

    # No key exists yet, and gen-key must not need one.
    gen_key = run(
        [sys.executable, "-m", "auth_service", "gen-key", str(key_path), "--bits", "2048"], env
    )
    assert gen_key.returncode == 0, gen_key.stderr
    env["JWT_PRIVATE_KEY_FILE"] = str(key_path)
    init_db = run([sys.executable, "-m", "auth_service", "init-db"], env)
    assert init_db.returncode == 0, init_db.stderr
    create_user = run(
        [sys.executable, "-m", "auth_service", "create-user", "op@example.com", "--password-stdin"],
        env,
        stdin="operator password\n",
    )
    assert create_user.returncode == 0, create_user.stderr
    assert "Created user op@example.com" in create_user.stdout

    connection = mysql_server.connect(fresh_database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM users")
        assert cursor.fetchall() == [("op@example.com",)]
    connection.close()


def test_python_m_auth_service_without_a_key_explains(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "auth_service", "init-db"], {})

    assert result.returncode == 1
    assert "gen-key" in result.stderr
    assert "Traceback" not in result.stderr


def test_flask_cli_finds_the_commands(key_file: Path) -> None:
    flask = Path(sys.executable).with_name("flask")

    result = run(
        [str(flask), "--app", "auth_service", "--help"], {"JWT_PRIVATE_KEY_FILE": str(key_file)}
    )

    assert result.returncode == 0, result.stderr
    for command in ("init-db", "create-user", "gen-key"):
        assert command in result.stdout
