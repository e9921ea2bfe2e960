"""Callback URL checks and the signature recipe receivers use."""

from __future__ import annotations

import time

import pytest

from common.webhooks import InvalidCallback, check_callback_url, sign, verify_signature

SECRET = b"whsec-test-1234567890"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("http:///no-host", "http:// or https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://example.com/" + "a" * 3000, "longer than"),
        ("http://127.0.0.1:8000/hook", "private or local"),
        ("http://localhost/hook", "private or local"),
        ("http://10.1.2.3/hook", "private or local"),
        ("http://192.168.0.10/hook", "private or local"),
        ("http://169.254.169.254/latest/meta-data", "private or local"),
        ("http://[::1]/hook", "private or local"),
        ("http://0.0.0.0/hook", "private or local"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_refused_callback_urls(url, reason):
    with pytest.raises(InvalidCallback, match=reason):
        check_callback_url(url, allow_private=False)


def test_public_addresses_pass_and_private_ones_when_allowed():
    assert check_callback_url("https://93.184.216.34/hook", allow_private=False)
    assert check_callback_url("http://127.0.0.1:9/hook", allow_private=True)


def test_the_documented_recipe_accepts_a_genuine_request():
    body = b'{"job_id":"j1","status":"done"}'
    now = int(time.time())
    signature = sign(SECRET, now, body)
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, signature=signature, timestamp=str(now), body=body)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s, t, b: (s, t, b + b" "),  # body changed
        lambda s, t, b: (s, str(int(t) + 1), b),  # timestamp changed
        lambda s, t, b: ("sha256=" + "0" * 64, t, b),  # forged signature
        lambda s, t, b: (s, "soon", b),  # not a timestamp
    ],
)
def test_the_recipe_rejects_tampering(tamper):
    body, now = b'{"job_id":"j1"}', int(time.time())
    signature, timestamp, body = tamper(sign(SECRET, now, body), str(now), body)
    assert not verify_signature(SECRET, signature=signature, timestamp=timestamp, body=body)


def test_the_recipe_rejects_replays_of_old_requests():
    body, sent = b"{}", int(time.time()) - 3600
    signature = sign(SECRET, sent, body)
    assert not verify_signature(SECRET, signature=signature, timestamp=str(sent), body=body)
    assert verify_signature(
        SECRET, signature=signature, timestamp=str(sent), body=body, now=sent + 10
    )


def test_another_secret_does_not_verify():
    body, now = b"{}", int(time.time())
    assert not verify_signature(
        b"other-secret", signature=sign(SECRET, now, body), timestamp=str(now), body=body
    )
