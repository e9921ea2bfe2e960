"""The users table in MySQL: the only module that talks to the database.

Each request opens its own connection on first use and closes it when the
request ends (flaskr's ``get_db``), so a connection that died with the server
is never reused: once MySQL is back, the next request simply works again.
Connectivity failures become ``TransientError`` (the API answers 503); every
query is parameterized.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import mysql.connector
from flask import Flask, g
from mysql.connector import errorcode
from mysql.connector.abstracts import MySQLConnectionAbstract, MySQLCursorAbstract

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
    token_version INT NOT NULL DEFAULT 0,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""

# Tables added after the first release; each statement is safe to repeat.
ACCOUNT_TABLES = (
    """
CREATE TABLE IF NOT EXISTS revocations (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind VARCHAR(8) NOT NULL,
    subject CHAR(64) NOT NULL,
    min_version INT NULL,
    expires_at DATETIME NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY revocations_subject (subject),
    KEY revocations_expires_at (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin
""",
    """
CREATE TABLE IF NOT EXISTS api_keys (
    id CHAR(12) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    scopes VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    secret_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at DATETIME NULL,
    last_used_at DATETIME NULL,
    revoked_at DATETIME NULL,
    KEY api_keys_user (user_id, created_at),
    CONSTRAINT api_keys_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
""",
    """
CREATE TABLE IF NOT EXISTS oidc_logins (
    state CHAR(43) NOT NULL PRIMARY KEY,
    nonce CHAR(43) NOT NULL,
    code_verifier CHAR(64) NOT NULL,
    created_at DATETIME NOT NULL,
    KEY oidc_logins_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin
""",
)

# Columns added to users after the first release, with their definitions. MySQL 8.0
# has no ADD COLUMN IF NOT EXISTS, so information_schema is asked first.
USER_COLUMNS = {
    "token_version": "INT NOT NULL DEFAULT 0",  # nosec B105 - a column, not a secret
    "disabled": "BOOLEAN NOT NULL DEFAULT FALSE",
}

_SELECT_USERS = (
    "SELECT id, email, password_hash, is_admin, created_at, token_version, disabled FROM users "
)
_SELECT_USER = _SELECT_USERS + "WHERE email = %s"
_SELECT_USER_BY_ID = _SELECT_USERS + "WHERE id = %s"
# A deleted user's tokens are all older than this version (INT's largest value).
DELETED_VERSION = 2147483647
# Rows cleared per write that cleans up; bounds the work one request can be charged.
CLEANUP_BATCH = 100
# Revoked or expired API keys stay this long (listed nowhere, kept for a look in MySQL).
DEAD_KEY_RETENTION_DAYS = 7


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
    token_version: int = 0
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Revocation:
    """One entry of the revocation feed."""

    id: int
    kind: str
    subject: str
    min_version: int | None


@dataclass(frozen=True, slots=True)
class SessionState:
    """A token's user, and whether the token itself was revoked (logged out)."""

    user: User
    token_revoked: bool


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One row of the api_keys table, with its owner's address and state."""

    id: str
    user_id: int
    name: str
    scopes: tuple[str, ...]
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    owner_email: str
    owner_disabled: bool


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
            _add_missing_user_columns(cursor, config.database)
            for statement in ACCOUNT_TABLES:
                cursor.execute(statement)
            _delete_expired(cursor, batch=None)
    finally:
        connection.close()
    log.info("database %s is ready on %s:%s", config.database, config.host, config.port)


def _add_missing_user_columns(cursor: MySQLCursorAbstract, database: str) -> None:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'users'",
        (database,),
    )
    present = {str(name).lower() for (name,) in cursor.fetchall()}
    for column, definition in USER_COLUMNS.items():
        if column not in present:
            cursor.execute(f"ALTER TABLE users ADD COLUMN {column} {definition}")
            log.info("added column users.%s", column)


def _delete_expired(cursor: MySQLCursorAbstract, *, batch: int | None = CLEANUP_BATCH) -> None:
    # Expired revocations can revoke nothing (every token they named has expired too);
    # dead keys are kept a few days. Bounded per call when run beside a request's write.
    # LIMIT takes no NULL: the largest BIGINT stands for no limit.
    limit = 2**63 - 1 if batch is None else batch
    cursor.execute("DELETE FROM revocations WHERE expires_at < UTC_TIMESTAMP() LIMIT %s", (limit,))
    cursor.execute(
        "DELETE FROM api_keys WHERE COALESCE(revoked_at, expires_at) < "
        "UTC_TIMESTAMP() - INTERVAL %s DAY LIMIT %s",
        (DEAD_KEY_RETENTION_DAYS, limit),
    )


def ping() -> None:
    """Check that MySQL answers and the users table exists.

    Raises:
        TransientError: it does not.
    """
    with _translated_errors("checking readiness"), get_db().cursor() as cursor:
        cursor.execute("SELECT 1 FROM users LIMIT 1")
        cursor.fetchall()


def _user(row: tuple) -> User:
    user_id, email, password_hash, is_admin, created_at, token_version, disabled = row
    return User(
        user_id, email, password_hash, bool(is_admin), created_at, token_version, bool(disabled)
    )


def find_user(email: str) -> User | None:
    """Return the user with ``email``, or None.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    return _find(_SELECT_USER, email)


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


def update_password_hash(user_id: int, password_hash: str) -> None:
    """Replace a user's password hash, as when upgrading its parameters.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("updating a password hash"), get_db().cursor() as cursor:
        cursor.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id)
        )


def find_user_by_id(user_id: int) -> User | None:
    """Return the user with ``user_id``, or None.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    return _find(_SELECT_USER_BY_ID, user_id)


def _find(select: str, key: str | int) -> User | None:
    """Return the one user ``select`` finds by ``key``, or None."""
    with _translated_errors("looking up a user"), get_db().cursor() as cursor:
        cursor.execute(select, (key,))
        row = cursor.fetchone()
    return None if row is None else _user(row)


def list_users(query: str, *, limit: int, offset: int) -> tuple[list[User], int]:
    """Return a page of the users whose address contains ``query``, by address, and the total.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    # LIKE's own metacharacters in the query are matched literally.
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with _translated_errors("listing users"), get_db().cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM users WHERE email LIKE %s", (pattern,))
        (total,) = cursor.fetchone()
        cursor.execute(
            _SELECT_USERS + "WHERE email LIKE %s ORDER BY email LIMIT %s OFFSET %s",
            (pattern, limit, offset),
        )
        rows = cursor.fetchall()
    return [_user(row) for row in rows], int(total)


def revocation_subject(email: str) -> str:
    """Return how a revocation names a user: the SHA-256 of the address, in hex."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _transaction(action: str) -> Iterator[MySQLCursorAbstract]:
    connection = get_db()
    with _translated_errors(action):
        connection.start_transaction()
        try:
            with connection.cursor() as cursor:
                yield cursor
        except BaseException:
            # A connection that died cannot roll back; the server does it for us.
            with contextlib.suppress(mysql.connector.Error, OSError):
                connection.rollback()
            raise
        connection.commit()


def _insert_revocation(
    cursor: MySQLCursorAbstract,
    kind: str,
    subject: str,
    min_version: int | None,
    lifetime_seconds: int,
) -> None:
    # The last statement before COMMIT, so its id becomes visible right after it is taken.
    cursor.execute(
        "INSERT INTO revocations (kind, subject, min_version, expires_at) "
        "VALUES (%s, %s, %s, UTC_TIMESTAMP() + INTERVAL %s SECOND)",
        (kind, subject, min_version, lifetime_seconds),
    )


def change_user(
    user_id: int,
    *,
    revocation_seconds: int,
    password_hash: str | None = None,
    is_admin: bool | None = None,
    disabled: bool | None = None,
) -> User | None:
    """Set the given fields of a user and revoke all its tokens; return it, or None if unknown.

    With no field given this only revokes the tokens. The revocation entry lasts
    ``revocation_seconds``.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _transaction("changing a user") as cursor:
        cursor.execute("SELECT email FROM users WHERE id = %s FOR UPDATE", (user_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.execute(
            "UPDATE users SET password_hash = COALESCE(%s, password_hash), "
            "is_admin = COALESCE(%s, is_admin), disabled = COALESCE(%s, disabled), "
            "token_version = token_version + 1 WHERE id = %s",
            (password_hash, is_admin, disabled, user_id),
        )
        cursor.execute(_SELECT_USER_BY_ID, (user_id,))
        user = _user(cursor.fetchone())
        _insert_revocation(
            cursor, "user", revocation_subject(user.email), user.token_version, revocation_seconds
        )
    return user


def delete_user(user_id: int, *, revocation_seconds: int) -> User | None:
    """Delete a user (and its keys), revoking every token it has; return it, or None.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _transaction("deleting a user") as cursor:
        cursor.execute(_SELECT_USER_BY_ID + " FOR UPDATE", (user_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        user = _user(row)
        cursor.execute("DELETE FROM users WHERE id = %s", (user_id,))
        _insert_revocation(
            cursor, "user", revocation_subject(user.email), DELETED_VERSION, revocation_seconds
        )
    return user


def revoke_token(jti: str, *, revocation_seconds: int) -> None:
    """Revoke one token by its id (``jti``).

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("revoking a token"), get_db().cursor() as cursor:
        _insert_revocation(cursor, "token", jti, None, revocation_seconds)


def session_state(email: str, jti: str | None) -> SessionState | None:
    """Return the user ``email`` and whether its token ``jti`` was revoked; None if no user.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("checking a token"), get_db().cursor() as cursor:
        cursor.execute(
            "SELECT id, email, password_hash, is_admin, created_at, token_version, disabled, "
            "EXISTS(SELECT 1 FROM revocations WHERE subject = %s AND kind = 'token') "
            "FROM users WHERE email = %s",
            (jti or "", email),
        )
        row = cursor.fetchone()
    return None if row is None else SessionState(_user(row[:-1]), bool(row[-1]))


def revocations_after(after: int, *, limit: int) -> list[Revocation]:
    """Return up to ``limit`` unexpired revocations with ids above ``after``, oldest first.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("reading revocations"), get_db().cursor() as cursor:
        cursor.execute(
            "SELECT id, kind, subject, min_version FROM revocations "
            "WHERE id > %s AND expires_at > UTC_TIMESTAMP() ORDER BY id LIMIT %s",
            (after, limit),
        )
        rows = cursor.fetchall()
    return [Revocation(int(i), kind, subject, version) for i, kind, subject, version in rows]


def delete_expired() -> None:
    """Clear a bounded batch of expired revocations and long-dead API keys.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("clearing expired rows"), get_db().cursor() as cursor:
        _delete_expired(cursor)


class TooManyKeys(PermanentError):
    """The user has as many live API keys as allowed."""


class UnknownUser(PermanentError):
    """The user named does not exist (any more)."""


# A live key: neither revoked nor expired.
_SELECT_LIVE_KEYS = (
    "SELECT k.id, k.user_id, k.name, k.scopes, k.secret_hash, k.created_at, k.expires_at, "
    "k.last_used_at, u.email, u.disabled "
    "FROM api_keys k JOIN users u ON u.id = k.user_id "
    "WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > UTC_TIMESTAMP()) AND "
)


def _api_key(row: tuple) -> ApiKey:
    key_id, user_id, name, scopes, secret_hash, created, expires, used, email, disabled = row
    return ApiKey(
        key_id,
        user_id,
        name,
        tuple(scopes.split(",")),
        secret_hash,
        created,
        expires,
        used,
        email,
        bool(disabled),
    )


def insert_api_key(
    user_id: int,
    *,
    key_id: str,
    name: str,
    scopes: tuple[str, ...],
    secret_hash: str,
    expires_in_days: int | None,
    max_live: int,
) -> ApiKey:
    """Store a new API key for a user and return it.

    Raises:
        TooManyKeys: the user already has ``max_live`` live keys.
        UnknownUser: the user does not exist.
        TransientError: MySQL cannot be reached.
    """
    with _transaction("creating an API key") as cursor:
        # Locking the owner serializes its key creations, so the count holds.
        cursor.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
        if cursor.fetchone() is None:
            raise UnknownUser(f"user {user_id} does not exist")
        cursor.execute(
            "SELECT COUNT(*) FROM api_keys k WHERE k.user_id = %s AND "
            "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > UTC_TIMESTAMP())",
            (user_id,),
        )
        (live,) = cursor.fetchone()
        if live >= max_live:
            raise TooManyKeys(f"user {user_id} has {live} live API keys")
        cursor.execute(
            "INSERT INTO api_keys (id, user_id, name, scopes, secret_hash, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP() + INTERVAL %s DAY)",
            (key_id, user_id, name, ",".join(scopes), secret_hash, expires_in_days),
        )
    key = find_api_key(key_id)
    if key is None:
        raise TransientError(f"API key {key_id} was deleted right after it was created")
    return key


def find_api_key(key_id: str) -> ApiKey | None:
    """Return the live (unrevoked, unexpired) API key ``key_id`` with its owner, or None.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("looking up an API key"), get_db().cursor() as cursor:
        cursor.execute(
            _SELECT_LIVE_KEYS + "k.id = %s",
            (key_id,),
        )
        row = cursor.fetchone()
    return None if row is None else _api_key(row)


def list_api_keys(user_id: int) -> list[ApiKey]:
    """Return a user's live API keys, newest first.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("listing API keys"), get_db().cursor() as cursor:
        cursor.execute(
            _SELECT_LIVE_KEYS + "k.user_id = %s ORDER BY k.created_at DESC, k.id",
            (user_id,),
        )
        rows = cursor.fetchall()
    return [_api_key(row) for row in rows]


def revoke_api_key(user_id: int, key_id: str) -> bool:
    """Revoke a live API key of ``user_id``; tell whether there was one.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("revoking an API key"), get_db().cursor() as cursor:
        cursor.execute(
            "UPDATE api_keys k SET k.revoked_at = UTC_TIMESTAMP() "
            "WHERE k.id = %s AND k.user_id = %s AND "
            "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > UTC_TIMESTAMP())",
            (key_id, user_id),
        )
        return cursor.rowcount == 1


def touch_api_key(key_id: str, *, interval_seconds: int) -> None:
    """Record that an API key was used, unless that was recorded in the last interval.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("recording an API key's use"), get_db().cursor() as cursor:
        cursor.execute(
            "UPDATE api_keys SET last_used_at = UTC_TIMESTAMP() WHERE id = %s AND "
            "(last_used_at IS NULL OR last_used_at <= UTC_TIMESTAMP() - INTERVAL %s SECOND)",
            (key_id, interval_seconds),
        )


# A single sign-on must come back from the provider within this many minutes.
OIDC_LOGIN_MINUTES = 10


@dataclass(frozen=True, slots=True)
class OIDCLogin:
    """What a single sign-on in progress left for its callback to check."""

    nonce: str
    code_verifier: str


def save_oidc_login(state: str, nonce: str, code_verifier: str) -> None:
    """Record a single sign-on that is leaving for the provider.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("starting a single sign-on"), get_db().cursor() as cursor:
        # Abandoned attempts go as new ones start, a bounded number each time.
        cursor.execute(
            "DELETE FROM oidc_logins WHERE created_at < UTC_TIMESTAMP() - INTERVAL %s MINUTE "
            "LIMIT %s",
            (OIDC_LOGIN_MINUTES, CLEANUP_BATCH),
        )
        cursor.execute(
            "INSERT INTO oidc_logins (state, nonce, code_verifier, created_at) "
            "VALUES (%s, %s, %s, UTC_TIMESTAMP())",
            (state, nonce, code_verifier),
        )


def take_oidc_login(state: str) -> OIDCLogin | None:
    """Remove and return the single sign-on ``state`` names; None if unknown, used or stale.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    with _translated_errors("finishing a single sign-on"), get_db().cursor() as cursor:
        cursor.execute(
            "SELECT nonce, code_verifier, "
            "created_at >= UTC_TIMESTAMP() - INTERVAL %s MINUTE FROM oidc_logins WHERE state = %s",
            (OIDC_LOGIN_MINUTES, state),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.execute("DELETE FROM oidc_logins WHERE state = %s", (state,))
        # Of two callbacks racing with one state, only the one that deleted it goes on.
        if cursor.rowcount != 1 or not row[2]:
            return None
    return OIDCLogin(nonce=row[0], code_verifier=row[1])


def find_or_create_user(email: str, new_password_hash: Callable[[], str]) -> tuple[User, bool]:
    """Return the user with ``email``, creating it if missing; and whether it is new.

    ``new_password_hash`` is called only to create the user.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    user = find_user(email)
    if user is not None:
        return user, False
    try:
        return insert_user(email, new_password_hash(), is_admin=False), True
    except UserExists:
        # Created by a concurrent login between the look-up and the insert.
        user = find_user(email)
        if user is None:
            raise TransientError(f"user {email!r} was deleted while being created") from None
        return user, False


def init_app(app: Flask) -> None:
    """Close each request's connection when the request ends."""
    app.teardown_appcontext(close_db)
