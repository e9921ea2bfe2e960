"""Parsing HTTP Basic credentials and checking new users' fields: pure functions."""

from __future__ import annotations

import base64

import pytest

from auth_service.credentials import (
    InvalidField,
    MalformedCredentials,
    MissingCredentials,
    normalize_email,
    parse_basic_auth,
    plausible_login,
    validate_email,
    validate_password,
)


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(b"a@example.com:secret"), ("a@example.com", "secret")),
        (basic(b"a@example.com:pa:ss:word"), ("a@example.com", "pa:ss:word")),
        (basic(b"a@example.com:"), ("a@example.com", "")),
        (basic(b":secret"), ("", "secret")),
        (basic("ä@example.com:pässwörd✓".encode()), ("ä@example.com", "pässwörd✓")),
        (basic(b"' OR 1=1 --:x' OR '1'='1"), ("' OR 1=1 --", "x' OR '1'='1")),
        ("basic " + base64.b64encode(b"a@example.com:pw").decode(), ("a@example.com", "pw")),
        (
            "  Basic   " + base64.b64encode(b"a@example.com:pw").decode() + " ",
            ("a@example.com", "pw"),
        ),
    ],
    ids=[
        "plain",
        "colons-in-password",
        "empty-password",
        "empty-email",
        "utf8",
        "sql",
        "lowercase-scheme",
        "spaces",
    ],
)
def test_parse_basic_auth_reads_email_and_password(header: str, expected: tuple[str, str]) -> None:
    assert parse_basic_auth(header) == expected


@pytest.mark.parametrize("header", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_parse_basic_auth_without_header_is_missing(header: str | None) -> None:
    with pytest.raises(MissingCredentials):
        parse_basic_auth(header)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer abc.def.ghi", "Basic scheme"),
        ("Digest username=x", "Basic scheme"),
        ("Basic", "'email:password'"),
        ("Basic !!!not-base64!!!", "base64"),
        ("Basic YWJj=ZGVm", "base64"),
        ("Basic ä", "base64"),
        (basic(b"no-colon-here"), "'email:password'"),
        (basic(b"\xff\xfe@example.com:pw"), "UTF-8"),
        (basic(b"a@example.com:\xc3"), "UTF-8"),
    ],
    ids=[
        "bearer",
        "digest",
        "no-payload",
        "junk",
        "inner-padding",
        "non-ascii",
        "no-colon",
        "latin1",
        "truncated-utf8",
    ],
)
def test_parse_basic_auth_rejects_malformed_headers(header: str, reason: str) -> None:
    with pytest.raises(MalformedCredentials, match=reason):
        parse_basic_auth(header)


def test_normalize_email_trims_and_lowercases() -> None:
    assert normalize_email("  Alice@Example.COM ") == "alice@example.com"


@pytest.mark.parametrize(
    ("email", "password", "plausible"),
    [
        ("a@example.com", "pw", True),
        ("", "pw", False),
        ("a@example.com", "", False),
        ("a" * 242 + "@example.com", "pw", True),
        ("a" * 243 + "@example.com", "pw", False),
        ("a@example.com", "p" * 1024, True),
        ("a@example.com", "p" * 1025, False),
    ],
)
def test_plausible_login_bounds_lengths(email: str, password: str, plausible: bool) -> None:
    assert plausible_login(email, password) is plausible


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user@example.com", "user@example.com"),
        (" User@Example.COM ", "user@example.com"),
        ("o'brien+tag@mail.example.co.uk", "o'brien+tag@mail.example.co.uk"),
        ("a" * 64 + "@" + "b" * 63 + ".com", "a" * 64 + "@" + "b" * 63 + ".com"),
    ],
)
def test_validate_email_accepts_and_normalizes(value: str, expected: str) -> None:
    assert validate_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "no-at-sign",
        "two@@example.com",
        "@example.com",
        "user@",
        "user@localhost",
        "user@-example.com",
        "us er@example.com",
        "user.@example.com",
        ".user@example.com",
        "us..er@example.com",
        "user@exa mple.com",
        "user\x00@example.com",
        "ünïcode@example.com",
        "' OR 1=1 --",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_validate_email_rejects_non_addresses(value: object) -> None:
    with pytest.raises(InvalidField) as raised:
        validate_email(value)
    assert raised.value.field == "email"


@pytest.mark.parametrize("value", ["12345678", "p" * 1024, "pässwörd", "with spaces and 'quotes'"])
def test_validate_password_accepts_8_to_1024_characters(value: str) -> None:
    assert validate_password(value) == value


@pytest.mark.parametrize("value", [None, 12345678, "", "1234567", "p" * 1025, ["password"]])
def test_validate_password_rejects_other_lengths_and_types(value: object) -> None:
    with pytest.raises(InvalidField) as raised:
        validate_password(value)
    assert raised.value.field == "password"
