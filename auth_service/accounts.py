"""What can be done with an account: log in, create it, change it, end its sessions.

Every change that should end a user's sessions (a new password, a new admin flag,
disabling, deleting, an admin's "revoke") goes through ``db.change_user`` or
``db.delete_user``, which raise the user's token version and write a revocation
entry in one transaction; the gateway learns of it from ``GET /revocations``.
"""

from __future__ import annotations

import logging
from datetime import UTC

from auth_service import db
from auth_service.config import current_config
from auth_service.credentials import validate_email, validate_password
from auth_service.passwords import get_hasher
from auth_service.tokens import IssuedToken, get_signer
from common.errors import PermanentError, TransientError
from common.tokens import Claims, InvalidToken

log = logging.getLogger(__name__)

# A revocation outlives every token it can revoke: their lifetime plus the verifiers' leeway.
REVOCATION_MARGIN_SECONDS = 60
SESSION_ENDED = "This session has ended: log in again."


class WrongPassword(PermanentError):
    """The current password given to change it is not the user's."""


def revocation_seconds() -> int:
    """Return how long a revocation entry must last: no token it names lives longer."""
    return current_config().jwt_ttl_seconds + REVOCATION_MARGIN_SECONDS


def authenticate(email: str, password: str) -> db.User | None:
    """Return the enabled user these credentials belong to, or None; costs one hash either way.

    A disabled user's right password is refused like a wrong one, so the answer does
    not tell whether an account exists or was disabled.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    hasher = get_hasher()
    user = db.find_user(email)
    if user is None:
        hasher.verify_nobody(password)
        return None
    if not hasher.verify(user.password_hash, password) or user.disabled:
        return None
    if hasher.needs_rehash(user.password_hash):
        try:
            db.update_password_hash(user.id, hasher.hash(password))
            log.info("upgraded the password hash of user %s", user.id)
        except TransientError as exc:
            # The login itself is good; the upgrade can wait for the next one.
            log.warning("could not upgrade the password hash of user %s: %s", user.id, exc)
    return user


def issue_token(user: db.User) -> IssuedToken:
    """Return a new access token for ``user`` at its current token version."""
    return get_signer().issue(user.email, admin=user.is_admin, token_version=user.token_version)


def create_user(email: object, password: object, *, is_admin: bool) -> db.User:
    """Validate and create a new user.

    Raises:
        InvalidField: the email or password is unacceptable.
        UserExists: the email address is taken.
        TransientError: MySQL cannot be reached.
    """
    return db.insert_user(*_checked_credentials(email, password), is_admin=is_admin)


def save_user(email: object, password: object, *, is_admin: bool | None) -> bool:
    """Create a user or reset an existing one's password; return whether it is new.

    ``is_admin`` None keeps an existing user's admin flag. Changing an existing
    user's password or admin flag ends its sessions; saving what it already has
    changes nothing.

    Raises:
        InvalidField: the email or password is unacceptable.
        TransientError: MySQL cannot be reached.
    """
    address = validate_email(email)
    secret = validate_password(password)
    hasher = get_hasher()
    user = db.find_user(address)
    if user is None:
        try:
            db.insert_user(address, hasher.hash(secret), is_admin=bool(is_admin))
            return True
        except db.UserExists:
            user = db.find_user(address)  # created meanwhile: update it below
            if user is None:
                raise TransientError(f"user {address!r} came and went while saving") from None
    same_password = hasher.verify(user.password_hash, secret)
    new_admin = None if is_admin is None or is_admin == user.is_admin else is_admin
    if same_password and new_admin is None:
        return False
    _change_user(
        user.id, password_hash=None if same_password else hasher.hash(secret), is_admin=new_admin
    )
    log.info("user %s changed from the command line; its sessions were revoked", user.id)
    return False


def change_password(user: db.User, current_password: object, new_password: object) -> db.User:
    """Check a user's current password, set a new one and end its sessions.

    Raises:
        WrongPassword: ``current_password`` is not the user's.
        InvalidField: the new password is unacceptable.
        UnknownUser: the user was deleted meanwhile.
        TransientError: MySQL cannot be reached.
    """
    hasher = get_hasher()
    if not isinstance(current_password, str) or not hasher.verify(
        user.password_hash, current_password
    ):
        raise WrongPassword("The current password is wrong.")
    changed = _change_user(user.id, password_hash=hasher.hash(validate_password(new_password)))
    if changed is None:
        raise db.UnknownUser(f"user {user.id} was deleted while changing its password")
    return changed


def change_flags(user_id: int, *, admin: bool | None, disabled: bool | None) -> db.User | None:
    """Set a user's admin and disabled flags, ending its sessions if either changes.

    Returns the user as it is now, or None if there is no such user.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    user = db.find_user_by_id(user_id)
    if user is None:
        return None
    new_admin = None if admin is None or admin == user.is_admin else admin
    new_disabled = None if disabled is None or disabled == user.disabled else disabled
    if new_admin is None and new_disabled is None:
        return user
    return _change_user(user_id, is_admin=new_admin, disabled=new_disabled)


def revoke_sessions(user_id: int) -> bool:
    """End every session of a user; tell whether the user exists.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    return _change_user(user_id) is not None


def delete_user(user_id: int) -> db.User | None:
    """Delete a user and its API keys, ending its sessions; return it, or None if unknown.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    db.delete_expired()
    return db.delete_user(user_id, revocation_seconds=revocation_seconds())


def log_out(claims: Claims) -> None:
    """Revoke one token (its ``jti``) until it would have expired anyway.

    Raises:
        InvalidToken: the token carries no usable id.
        TransientError: MySQL cannot be reached.
    """
    jti = claims.payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 64 or not jti.isascii():
        raise InvalidToken("The token has no id (jti) to revoke.")
    db.delete_expired()
    db.revoke_token(jti, revocation_seconds=revocation_seconds())


def session_user(claims: Claims) -> db.User:
    """Return the user of a verified token that has not been revoked since it was issued.

    Refused: a token older than the user's token version (a token without ``tv`` is
    version 0), a logged-out token, a token of a disabled or deleted user, and one
    issued before the user was created (to a deleted namesake; MySQL's clock and ours
    are assumed to agree within a second).

    Raises:
        InvalidToken: the token was revoked.
        TransientError: MySQL cannot be reached.
    """
    version = claims.payload.get("tv", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidToken("The token's tv claim must be an integer.")
    jti = claims.payload.get("jti")
    state = db.session_state(claims.subject, jti if isinstance(jti, str) else None)
    if (
        state is None
        or state.token_revoked
        or state.user.disabled
        or version < state.user.token_version
        # Issued to an earlier account with this address, since deleted.
        or claims.issued_at < state.user.created_at.replace(tzinfo=UTC).timestamp()
    ):
        raise InvalidToken(SESSION_ENDED)
    return state.user


def _change_user(user_id: int, **fields: object) -> db.User | None:
    # Each revoking write also clears a few expired rows: cleanup costs no scheduler.
    db.delete_expired()
    return db.change_user(user_id, revocation_seconds=revocation_seconds(), **fields)


def _checked_credentials(email: object, password: object) -> tuple[str, str]:
    address = validate_email(email)
    return address, get_hasher().hash(validate_password(password))
