"""``/health`` and ``/ready``, with one body shape for all four services.

``/health`` says the process is alive (200 ``{"status": "ok"}``, or 503
``{"status": "stalled", "message": ...}`` from a worker whose work is wedged).
``/ready`` says whether the service can do its work now: 200
``{"status": "ready", "checks": {...}}`` when every check passes, else 503
``{"status": "unavailable", "checks": {...}}``, each check ``"ok"`` or
``"unavailable"``, so an operator sees which dependency is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from common.errors import TransientError

log = logging.getLogger(__name__)

OK, UNAVAILABLE = "ok", "unavailable"
# A check passes when it returns; it fails by raising TransientError.
Check = Callable[[], None]


def alive() -> tuple[int, dict[str, Any]]:
    """Return ``/health``'s answer for a process with nothing to report."""
    return 200, {"status": OK}


def readiness(checks: Mapping[str, Check]) -> tuple[int, dict[str, Any]]:
    """Run every check and return ``/ready``'s status code and body."""
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = OK
        except TransientError as exc:
            log.warning("not ready: %s: %s", name, exc)
            results[name] = UNAVAILABLE
    ready = all(result == OK for result in results.values())
    return (200 if ready else 503), {"status": "ready" if ready else UNAVAILABLE, "checks": results}
