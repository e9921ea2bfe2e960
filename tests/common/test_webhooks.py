"""The signature recipe webhook receivers use (URL checks: test_egress.py)."""

from __future__ import annotations

import time

import pytest

from common.webhooks import sign, verify_signature

SECRET = b"whsec-test-1234567890"


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
