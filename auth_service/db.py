"""The users table in MySQL: the only module that talks to the database.

Each request opens its own connection on first use and closes it when the
request ends (flaskr's ``get_db``), so a connection that died with the server
is never reused: once MySQL is back, the next request simply works again.
Connectivity failures become ``TransientError`` (the API answers 503); every
query is parameterized.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import mysql.connector
from flask import Flask, g
from mysql.connector import errorcode
from mysql.connector.abstracts import MySQLConnectionAbstract

from auth_service.config import MySQLConfig, current_config
from common.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

# Errors that mean the server is away, overloaded or not set up yet, rather than
# a bug in a query: trying again later, or after `init-db`, can succeed.
_TRANSIENT_ERRNOS = frozenset(
    {
        errorcode.CR_CONNECTION_ERROR,
        errorcode.CR_CONN_HOST_ERROR,
        errorcode.CR_SERVER_GONE_ERROR,
        errorcode.CR_SERVER_LOST,
        errorcode.CR_SERVER_LOST_EXTENDED,
        errorcode.ER_CON_COUNT_ERROR,
        errorcode.ER_SERVER_SHUTDOWN,
        errorcode.ER_LOCK_WAIT_TIMEOUT,
        errorcode.ER_LOCK_DEADLOCK,
        errorcode.ER_QUERY_INTERRUPTED,
        errorcode.ER_CLIENT_INTERACTION_TIMEOUT,
        errorcode.ER_BAD_DB_ERROR,
        errorcode.ER_NO_SUCH_TABLE,
    }
)
_TRANSIENT_CLASSES = (
    mysql.connector.InterfaceError,
    mysql.connector.OperationalError,
    mysql.connector.errors.ConnectionTimeoutError,
    mysql.connector.errors.ReadTimeoutError,
    mysql.connector.errors.WriteTimeoutError,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""

_SELECT_USER = "SELECT id, email, password_hash, is_admin, created_at FROM users WHERE email = %s"


class UserExists(PermanentError):
    """A user with that email address already exists."""


@dataclass(frozen=True, slots=True)
class User:
    """One row of the users table."""

    id: int
    email: str
    password_hash: str
    is_admin: bool
    created_at: datetime


@contextlib.contextmanager
def _translated_errors(action: str) -> Iterator[None]:
    try:
        yield
    except mysql.connector.Error as exc:
        if isinstance(exc, _TRANSIENT_CLASSES) or exc.errno in _TRANSIENT_ERRNOS:
            raise TransientError(f"MySQL unavailable while {action}: {exc}") from exc
        raise


def connect(config: MySQLConfig, *, database: bool = True) -> MySQLConnectionAbstract:
    """Open a connection with short timeouts, in UTC, autocommitting.

    Raises:
        TransientError: the server cannot be reached or refuses us.
    """
    try:
        return mysql.connector.connect(
            host=config.host,
            port=config.port,
            user=config.user,
            password=config.password,
            database=config.database if database else None,
            connection_timeout=config.connect_timeout,
            read_timeout=config.query_timeout,
            write_timeout=config.query_timeout,
            time_zone="+00:00",
            charset="utf8mb4",
            autocommit=True,
        )
    except mysql.connector.Error as exc:
        # Whatever stops us connecting (down, wrong password, no database yet)
        # is the dependency being unavailable to us, not a bad request.
        raise TransientError(
            f"cannot connect to MySQL at {config.host}:{config.port}: {exc}"
        ) from exc


def get_db() -> MySQLConnectionAbstract:
    """Return this request's connection, opening it on first use.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    if "db" not in g:
        g.db = connect(current_config().mysql)
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    """Close this request's connection, if it opened one."""
    connection = g.pop("db", None)
    if connection is not None:
        # A connection to a server that went away cannot be closed politely.
        with contextlib.suppress(mysql.connector.Error, OSError):
            connection.close()


def init_db(config: MySQLConfig) -> None:
    """Create the database if missing and the users table if missing; safe to repeat.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    connection = connect(config, database=False)
    try:
        with _translated_errors("creating the schema"), connection.cursor() as cursor:
            # Identifiers cannot be parameters; quote it the way MySQL does.
            quoted = "`" + config.database.replace("`", "``") + "`"
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS {quoted} "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            cursor.execute(f"USE {quoted}")
            cursor.execute(SCHEMA)
    finally:
        connection.close()
    log.info("database %s is ready on %s:%s", config.database, config.host, config.port)


def ping() -> None:
    """Check that MySQL answers and the users table exists.

    Raises:
        TransientError: it does not.
    """
    with _translated_errors("checking readiness"), get_db().cursor() as cursor:
        cursor.execute("SELECT 1 FROM users LIMIT 1")
        cursor.fetchall()


def _user(row: tuple) -> User:
    user_id, email, password_hash, is_admin, created_at = row
    return User(user_id, email, password_hash, bool(is_admin), created_at)


def find_user(email: str) -> User | None:
    """Return the user with ``email``, or None.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("looking up a user"), get_db().cursor() as cursor:
        cursor.execute(_SELECT_USER, (email,))
        row = cursor.fetchone()
    return None if row is None else _user(row)


def insert_user(email: str, password_hash: str, *, is_admin: bool) -> User:
    """Create a user and return it.

    Raises:
        UserExists: the email address is taken.
        TransientError: MySQL cannot be reached.
    """
    try:
        with _translated_errors("creating a user"), get_db().cursor() as cursor:
            cursor.execute(
                "INSERT INTO users (email, password_hash, is_admin) VALUES (%s, %s, %s)",
                (email, password_hash, is_admin),
            )
    except mysql.connector.IntegrityError as exc:
        if exc.errno == errorcode.ER_DUP_ENTRY:
            raise UserExists(f"a user with email {email!r} already exists") from None
        raise
    user = find_user(email)
    if user is None:
        raise TransientError(f"user {email!r} was deleted right after it was created")
    return user


def upsert_user(email: str, password_hash: str, *, is_admin: bool | None) -> bool:
    """Create the user, or set the password of an existing one; return whether it is new.

    ``is_admin`` None keeps an existing user's admin flag (a new user is no admin).

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("saving a user"), get_db().cursor() as cursor:
        # Parameters rather than VALUES(col), which MySQL 8 deprecates and
        # MariaDB's replacement syntax lacks: this runs on both.
        cursor.execute(
            "INSERT INTO users (email, password_hash, is_admin) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE password_hash = %s, is_admin = COALESCE(%s, is_admin)",
            (email, password_hash, bool(is_admin), password_hash, is_admin),
        )
        # MySQL counts 1 affected row for an insert, 2 for an update, 0 for no change.
        return cursor.rowcount == 1


def update_password_hash(user_id: int, password_hash: str) -> None:
    """Replace a user's password hash, as when upgrading its parameters.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("updating a password hash"), get_db().cursor() as cursor:
        cursor.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id)
        )


def init_app(app: Flask) -> None:
    """Close each request's connection when the request ends."""
    app.teardown_appcontext(close_db)
