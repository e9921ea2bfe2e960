"""Tokens and API keys as the gateway takes them: wait for a revocation to bite."""

from __future__ import annotations

from typing import Any

import requests

from tests.support.polling import wait_until

# Every revocation bites within 30 s (the gateway's poll of auth, its key cache); some slack.
REVOCATION_SECONDS = 35


def wait_until_refused(system, token: str) -> dict[str, Any]:
    """Poll GET /jobs with ``token`` until the gateway answers 401; return that answer's body.

    Raises:
        AssertionError: the token still worked after ``REVOCATION_SECONDS``.
    """
    answers: list[requests.Response] = []

    def refused() -> bool:
        answers.append(
            requests.get(
                f"{system.gateway}/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
        )
        return answers[-1].status_code == 401

    wait_until(
        refused,
        timeout=REVOCATION_SECONDS,
        interval=0.5,
        describe=lambda: f"{answers[-1].status_code} {answers[-1].text[:200]}",
    )
    return answers[-1].json()
