"""Argon2id password hashes: make, check, and upgrade when the parameters change."""

from __future__ import annotations

import logging
import secrets

import argon2
from flask import Flask, current_app

from auth_service.config import Argon2Config

log = logging.getLogger(__name__)

_EXTENSION = "auth_service.passwords"


class PasswordHasher:
    """Hash and verify passwords with argon2id at the configured cost."""

    def __init__(self, config: Argon2Config) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=config.time_cost,
            memory_cost=config.memory_kib,
            parallelism=config.parallelism,
            type=argon2.Type.ID,
        )
        # Unknown accounts are checked against this so that a miss costs as
        # much time as a wrong password and timing does not reveal who exists.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        """Return a new salted argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """Tell whether ``password`` matches ``password_hash``."""
        try:
            return self._hasher.verify(password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            log.error("a stored password hash is not a valid argon2 hash; refusing the login")
            return False

    def verify_nobody(self, password: str) -> None:
        """Spend one verification on no account, as long as checking a real one takes."""
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Tell whether ``password_hash`` was made with other parameters than today's."""
        return self._hasher.check_needs_rehash(password_hash)


def init_app(app: Flask, config: Argon2Config) -> None:
    """Give ``app`` a password hasher with the configured cost."""
    app.extensions[_EXTENSION] = PasswordHasher(config)


def get_hasher() -> PasswordHasher:
    """Return the current app's password hasher."""
    return current_app.extensions[_EXTENSION]
