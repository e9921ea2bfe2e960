"""init_db brings a database made by an older release up to date, and can run again."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from auth_service import accounts, db
from auth_service.config import Config

if TYPE_CHECKING:
    from tests.conftest import MySQLServer

# The users table as the first release created it.
OLD_USERS = """
CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""


def columns(mysql_server: MySQLServer, database: str, table: str) -> dict[str, tuple]:
    connection = mysql_server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, column_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (database, table),
            )
            return {name: rest for name, *rest in cursor.fetchall()}
    finally:
        connection.close()


@pytest.fixture
def old_database(mysql_server: MySQLServer, mysql_database: str) -> str:
    """Fill the test's database as the first release left it: one user, no new tables."""
    connection = mysql_server.connect(mysql_database)
    with connection.cursor() as cursor:
        cursor.execute(OLD_USERS)
        cursor.execute(
            "INSERT INTO users (email, password_hash, is_admin) "
            "VALUES ('old@example.com', 'hash', TRUE)"
        )
    connection.commit()
    connection.close()
    return mysql_database


def test_init_db_migrates_an_old_database_twice_over(
    config: Config, mysql_server: MySQLServer, old_database: str, make_app
) -> None:
    db.init_db(config.mysql)
    db.init_db(config.mysql)

    users = columns(mysql_server, old_database, "users")
    # MariaDB says int(11) where MySQL 8 says int.
    assert users["token_version"][0].startswith("int")
    assert tuple(users["token_version"][1:]) == ("NO", "0")
    assert tuple(users["disabled"][:2]) == ("tinyint(1)", "NO")
    assert set(columns(mysql_server, old_database, "revocations")) == {
        "id",
        "kind",
        "subject",
        "min_version",
        "expires_at",
        "created_at",
    }
    assert set(columns(mysql_server, old_database, "api_keys")) == {
        "id",
        "user_id",
        "name",
        "scopes",
        "secret_hash",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    }
    app: Flask = make_app(init_db=False)
    with app.app_context():
        user = db.find_user("old@example.com")
        assert (user.is_admin, user.token_version, user.disabled) == (True, 0, False)


def test_a_migrated_database_matches_a_new_one(
    config: Config, mysql_server: MySQLServer, old_database: str, make_app
) -> None:
    db.init_db(config.mysql)
    fresh = f"{old_database}_fresh"
    try:
        db.init_db(dataclasses.replace(config.mysql, database=fresh))

        for table in ("users", "revocations", "api_keys"):
            assert columns(mysql_server, old_database, table) == columns(
                mysql_server, fresh, table
            ), table
    finally:
        admin = mysql_server.connect()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{fresh}`")
        admin.close()


def test_api_keys_go_with_their_user(make_app, config: Config) -> None:
    app: Flask = make_app()
    with app.app_context():
        user = db.insert_user("a@example.com", "hash", is_admin=False)
        db.insert_api_key(
            user.id,
            key_id="0123456789ab",
            name="k",
            scopes=("jobs:read",),
            secret_hash="0" * 64,
            expires_in_days=None,
            max_live=50,
        )

        accounts.delete_user(user.id)

        assert db.find_api_key("0123456789ab") is None
        with db.get_db().cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM api_keys")
            assert cursor.fetchone() == (0,)


def test_init_db_clears_expired_rows(make_app, config: Config) -> None:
    app: Flask = make_app()
    with app.app_context():
        user = db.insert_user("a@example.com", "hash", is_admin=False)
        with db.get_db().cursor() as cursor:
            cursor.execute(
                "INSERT INTO revocations (kind, subject, expires_at) VALUES "
                "('token', 'gone', UTC_TIMESTAMP() - INTERVAL 1 SECOND), "
                "('token', 'kept', UTC_TIMESTAMP() + INTERVAL 1 HOUR)"
            )
            cursor.execute(
                "INSERT INTO api_keys (id, user_id, name, scopes, secret_hash, revoked_at) "
                "VALUES ('00000000000a', %s, 'old', 'jobs:read', %s, "
                "UTC_TIMESTAMP() - INTERVAL 8 DAY), "
                "('00000000000b', %s, 'recent', 'jobs:read', %s, "
                "UTC_TIMESTAMP() - INTERVAL 6 DAY)",
                (user.id, "0" * 64, user.id, "1" * 64),
            )

        db.init_db(config.mysql)

        with db.get_db().cursor() as cursor:
            cursor.execute("SELECT subject FROM revocations")
            assert cursor.fetchall() == [("kept",)]
            cursor.execute("SELECT id FROM api_keys")
            assert cursor.fetchall() == [("00000000000b",)]
