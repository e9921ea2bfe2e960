"""What can be done with an account: log in with it, create it, set its password."""

from __future__ import annotations

import logging

from auth_service import db
from auth_service.credentials import validate_email, validate_password
from auth_service.passwords import get_hasher
from common.errors import TransientError

log = logging.getLogger(__name__)


def authenticate(email: str, password: str) -> db.User | None:
    """Return the user these credentials belong to, or None; costs one hash either way.

    Raises:
        TransientError: MySQL cannot be reached.
    """
    hasher = get_hasher()
    user = db.find_user(email)
    if user is None:
        hasher.verify_nobody(password)
        return None
    if not hasher.verify(user.password_hash, password):
        return None
    if hasher.needs_rehash(user.password_hash):
        try:
            db.update_password_hash(user.id, hasher.hash(password))
            log.info("upgraded the password hash of user %s", user.id)
        except TransientError as exc:
            # The login itself is good; the upgrade can wait for the next one.
            log.warning("could not upgrade the password hash of user %s: %s", user.id, exc)
    return user


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

    ``is_admin`` None keeps an existing user's admin flag.

    Raises:
        InvalidField: the email or password is unacceptable.
        TransientError: MySQL cannot be reached.
    """
    return db.upsert_user(*_checked_credentials(email, password), is_admin=is_admin)


def _checked_credentials(email: object, password: object) -> tuple[str, str]:
    address = validate_email(email)
    return address, get_hasher().hash(validate_password(password))
