"""The users table through db.py, against the test's own MySQL database."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from auth_service import db
from auth_service.config import Config
from common.errors import TransientError
from devstack.servers import free_port
from devstack.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from tests.conftest import MySQLServer


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def count_users() -> int:
    with db.get_db().cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM users")
        (count,) = cursor.fetchone()
    return count


@pytest.mark.usefixtures("ctx")
def test_init_db_is_idempotent_and_keeps_users(config: Config) -> None:
    db.insert_user("a@example.com", "hash", is_admin=False)

    db.init_db(config.mysql)
    db.init_db(config.mysql)

    assert db.find_user("a@example.com") is not None


def test_init_db_creates_a_missing_database(config: Config, mysql_server: MySQLServer) -> None:
    name = f"v2m_test_{uuid.uuid4().hex[:12]}"
    try:
        db.init_db(dataclasses.replace(config.mysql, database=name))

        connection = mysql_server.connect(name)
        with connection.cursor() as cursor:
            cursor.execute("SHOW COLUMNS FROM users")
            columns = {row[0] for row in cursor.fetchall()}
        connection.close()
        assert columns == {
            "id",
            "email",
            "password_hash",
            "is_admin",
            "created_at",
            "token_version",
            "disabled",
        }
    finally:
        admin = mysql_server.connect()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.mark.usefixtures("ctx")
def test_insert_and_find_a_user() -> None:
    created = db.insert_user("a@example.com", "hash-a", is_admin=True)

    found = db.find_user("a@example.com")

    assert found == created
    assert found.is_admin is True
    assert found.password_hash == "hash-a"
    assert db.find_user("b@example.com") is None


@pytest.mark.usefixtures("ctx")
def test_insert_refuses_a_taken_email_in_any_case() -> None:
    db.insert_user("a@example.com", "hash", is_admin=False)

    with pytest.raises(db.UserExists):
        db.insert_user("A@Example.com", "other", is_admin=False)
    assert count_users() == 1


@pytest.mark.usefixtures("ctx")
def test_update_password_hash() -> None:
    user = db.insert_user("a@example.com", "old", is_admin=False)

    db.update_password_hash(user.id, "new")

    assert db.find_user("a@example.com").password_hash == "new"


@pytest.mark.usefixtures("ctx")
@pytest.mark.parametrize(
    "email", ["' OR '1'='1", "a@example.com'; DROP TABLE users; --", "\\", "%", "_"]
)
def test_queries_treat_sql_metacharacters_as_data(email: str) -> None:
    db.insert_user("a@example.com", "hash", is_admin=False)

    assert db.find_user(email) is None
    db.insert_user(email, "hash", is_admin=False)
    assert db.find_user(email).email == email
    assert count_users() == 2


def test_one_connection_per_request_closed_at_teardown(app: Flask) -> None:
    with app.app_context():
        connection = db.get_db()
        assert db.get_db() is connection
        assert connection.is_connected()

    assert not connection.is_connected()


def test_ping_needs_the_users_table(make_app: Callable[..., Flask]) -> None:
    with make_app(init_db=False).app_context(), pytest.raises(TransientError):
        db.ping()


def test_unreachable_server_is_transient(config: Config) -> None:
    nowhere = dataclasses.replace(config.mysql, port=free_port())

    with pytest.raises(TransientError, match="cannot connect"):
        db.connect(nowhere)
    with pytest.raises(TransientError):
        db.init_db(nowhere)


def test_server_gone_mid_request_is_transient(
    make_app: Callable[..., Flask], proxied_config: Config, mysql_proxy: TcpProxy
) -> None:
    app = make_app(mysql=proxied_config.mysql)
    with app.app_context():
        db.find_user("a@example.com")  # opens this request's connection

        mysql_proxy.drop()

        with pytest.raises(TransientError, match="looking up a user"):
            db.find_user("a@example.com")
