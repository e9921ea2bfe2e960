"""argon2id hashing, and logins that cost the same whether or not the account exists."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
from flask import Flask

from auth_service import accounts
from auth_service.config import Argon2Config
from auth_service.passwords import PasswordHasher
from tests.auth_service.conftest import CHEAP_ARGON2


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(CHEAP_ARGON2)


def test_hash_is_salted_argon2id(hasher: PasswordHasher) -> None:
    first = hasher.hash("a password")
    second = hasher.hash("a password")

    assert first.startswith("$argon2id$")
    assert first != second
    assert "a password" not in first


def test_verify_accepts_only_the_password(hasher: PasswordHasher) -> None:
    password_hash = hasher.hash("pässwörd ✓")

    assert hasher.verify(password_hash, "pässwörd ✓") is True
    assert hasher.verify(password_hash, "passwörd ✓") is False
    assert hasher.verify(password_hash, "") is False


@pytest.mark.parametrize("stored", ["", "plaintext", "$argon2id$v=19$m=64,t=1,p=1$bad", "$2b$12$x"])
def test_verify_refuses_corrupt_hashes(hasher: PasswordHasher, stored: str) -> None:
    assert hasher.verify(stored, "plaintext") is False


def test_corrupt_hash_is_logged_without_the_password(
    hasher: PasswordHasher, caplog: pytest.LogCaptureFixture
) -> None:
    hasher.verify("not a hash", "hunter2 secret")

    assert "not a valid argon2 hash" in caplog.text
    assert "hunter2" not in caplog.text


def test_needs_rehash_when_parameters_change(hasher: PasswordHasher) -> None:
    stronger = PasswordHasher(Argon2Config(time_cost=2, memory_kib=128, parallelism=1))
    password_hash = hasher.hash("a password")

    assert hasher.needs_rehash(password_hash) is False
    assert stronger.needs_rehash(password_hash) is True
    assert stronger.verify(password_hash, "a password") is True


def test_default_parameters_are_argon2_cffis_recommendation() -> None:
    password_hash = PasswordHasher(Argon2Config()).hash("a password")

    assert "m=65536,t=3,p=4" in password_hash


def test_authenticate_returns_the_user_only_for_the_right_password(app: Flask) -> None:
    with app.app_context():
        accounts.save_user("a@example.com", "right password", is_admin=False)

        assert accounts.authenticate("a@example.com", "right password").email == "a@example.com"
        assert accounts.authenticate("a@example.com", "wrong password") is None
        assert accounts.authenticate("b@example.com", "right password") is None


def test_unknown_accounts_cost_as_much_as_wrong_passwords(make_app: Callable[..., Flask]) -> None:
    # Heavy enough that a skipped hash would stand out against MySQL's noise.
    app = make_app(argon2=Argon2Config(time_cost=2, memory_kib=16 * 1024, parallelism=1))

    def median_seconds(email: str) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            assert accounts.authenticate(email, "wrong password") is None
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    with app.app_context():
        accounts.save_user("real@example.com", "right password", is_admin=False)
        wrong_password = median_seconds("real@example.com")
        unknown_user = median_seconds("ghost@example.com")

    assert unknown_user > 0.5 * wrong_password
