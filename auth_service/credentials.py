"""Read and check what users send as credentials: pure functions, no I/O.

HTTP Basic parsing follows RFC 7617 with UTF-8 as the charset. A header that is
missing is a 401 (the client has not tried to log in yet); one that is present
but cannot be read as Basic ``email:password`` (another scheme, bad base64, no
colon, not UTF-8) is a 400 ``malformed_credentials``, because it is a broken
client rather than a wrong password and the sender needs to know which.
"""

from __future__ import annotations

import base64
import binascii
import re

from common.errors import PermanentError

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MIN_PASSWORD_LENGTH = 8
# argon2 would hash megabytes happily; bounding the input bounds the work.
MAX_PASSWORD_LENGTH = 1024

# Dot-atom local part and a dotted DNS name: what mail systems actually accept
# in practice. Internationalized addresses must arrive in their ASCII form.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


class MissingCredentials(PermanentError):
    """The request carries no Authorization header."""


class MalformedCredentials(PermanentError):
    """The Authorization header cannot be read as HTTP Basic email:password."""


class InvalidField(PermanentError):
    """A field of a new user is unacceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_basic_auth(authorization: str | None) -> tuple[str, str]:
    """Return ``(email, password)`` from an ``Authorization: Basic ...`` header value.

    Raises:
        MissingCredentials: the header is absent or empty.
        MalformedCredentials: the header is not Basic UTF-8 ``email:password``.
    """
    if authorization is None or not authorization.strip():
        raise MissingCredentials("Send your email and password with HTTP Basic authentication.")
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise MalformedCredentials("The Authorization header must use the Basic scheme.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCredentials("The Basic credentials are not valid base64.") from None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCredentials("The Basic credentials are not UTF-8 text.") from None
    email, colon, password = text.partition(":")
    if not colon:
        raise MalformedCredentials("The Basic credentials must be 'email:password'.")
    return email, password


def normalize_email(email: str) -> str:
    """Return the form an address is stored and looked up in: trimmed, lower case."""
    return email.strip().lower()


def plausible_login(email: str, password: str) -> bool:
    """Tell whether credentials are within the bounds any stored account could have."""
    return 0 < len(email) <= MAX_EMAIL_LENGTH and 0 < len(password) <= MAX_PASSWORD_LENGTH


def validate_email(value: object) -> str:
    """Return a new user's address, normalized.

    Raises:
        InvalidField: it is not a plausible email address.
    """
    if not isinstance(value, str):
        raise InvalidField("email", "email must be a string.")
    email = normalize_email(value)
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidField("email", f"email must be at most {MAX_EMAIL_LENGTH} characters.")
    if not _EMAIL.fullmatch(email):
        raise InvalidField("email", "email must be an address like name@example.com.")
    return email


def validate_password(value: object) -> str:
    """Return a new user's password if its length is acceptable.

    Raises:
        InvalidField: it is not a string of 8 to 1024 characters.
    """
    if not isinstance(value, str):
        raise InvalidField("password", "password must be a string.")
    if not MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH:
        raise InvalidField(
            "password",
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long.",
        )
    return value
