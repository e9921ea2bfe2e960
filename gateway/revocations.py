"""Login tokens auth has revoked, known to every gateway process within one poll.

Auth records a revocation when a user logs out (that token, by its ``jti``) and
when a user's tokens must all end (password change, disable, delete, admin flag
change: every token whose ``tv`` is below a minimum, by the SHA-256 of the email).
A thread of each gateway process (``keep_polling``, started by the first request
the process serves, as ``ResumableUploads.keep_sweeping`` is) asks auth's
``/revocations`` for the entries after the last one it has, every
``poll_seconds`` (``REVOCATION_POLL_SECONDS``), so a revocation bites within a
poll and a slow answer. Checking a token is then two dict lookups (``revoked``);
nothing is asked of auth per request.

One case is auth's to judge: the address of a deleted user (whose entry revokes
every version) may be registered again at once, and the new account's tokens are
good. A token of such an address gets ``ASK_AUTH``, and ``gateway.identity`` asks
auth's ``/validate`` about it (kept as an API key's answer is): rare, and right.

Auth answers only entries that may still revoke an unexpired token and does not
say when each stops mattering, so every ``RELOAD_SECONDS`` the list is read again
from the start and replaces the one held: what auth let expire is dropped then.

While auth cannot be reached the list keeps what it has (fail open): revocations
are made by auth, so when the gateway cannot reach it nearly always auth is down
and nobody can make a new one. The staleness (seconds since the last successful
poll) is the ``video2mp3_gateway_revocations_stale_seconds`` gauge; each failure
is logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Gauge

from common.errors import TransientError
from common.tokens import Claims

log = logging.getLogger(__name__)

RELOAD_SECONDS = 600.0
# The first request of a process waits this long for the first poll, so a process that
# has just started does not let a revoked token through while its list is still empty.
FIRST_POLL_WAIT_SECONDS = 2.0
# The version a deleted user's entry names: every token of that address is suspect.
DELETED_VERSION = 2147483647
VALID, REVOKED, ASK_AUTH = "valid", "revoked", "ask_auth"
SUBJECT_KEYS_KEPT = 10_000
PAGE_SIZE = 1000  # auth's most per answer: a full page means there may be more
MAX_PAGES_PER_POLL = 200  # 200,000 entries: bounds one poll's time and memory
# Each poll reads again this many entries before the last it has: two revocations can
# commit out of the order of their ids (a few milliseconds apart), and the one with the
# lower id would otherwise be skipped. Reading an entry twice changes nothing.
OVERLAP_ENTRIES = 100

STALE_SECONDS = Gauge(
    "video2mp3_gateway_revocations_stale_seconds",
    "Seconds since this gateway process last read auth's revocations (0 right after a read).",
    multiprocess_mode="livemax",
)

Fetch = Callable[[int], Mapping[str, Any]]
"""Return auth's revocations after an id: ``{"revocations": [...], "next": id}``."""


def subject_key(subject: str) -> str:
    """Return how a user revocation names a user: the hex SHA-256 of the token's ``sub``."""
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


class RevocationList:
    """The revocations of one process, refreshed by a thread of its own."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        poll_seconds: float,
        reload_seconds: float = RELOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._poll_seconds = poll_seconds
        self._reload_seconds = reload_seconds
        self._clock = clock
        # Replaced whole, never changed in place, so a reader needs no lock.
        self._users: dict[str, int] = {}  # subject_key -> lowest token version still valid
        self._tokens: frozenset[str] = frozenset()  # jti of tokens logged out
        self._after = 0
        self._subject_keys: dict[str, str] = {}
        self._loaded_at: float | None = None
        # When the list was last known current: the last successful poll, or polling's start.
        self._fresh_at: float | None = None
        self._unreachable = False
        self._first_poll = threading.Event()
        self._lock = threading.Lock()
        self._poller_pid = 0
        self._closed = threading.Event()

    def status(self, claims: Claims) -> str:
        """Tell whether auth revoked this login token: ``VALID``, ``REVOKED`` or ``ASK_AUTH``.

        ``ASK_AUTH``: the token's address belonged to a deleted user, and may have been
        registered again since; only auth knows whether this token is the new account's.
        """
        if not self._first_poll.is_set() and self._poller_pid:
            self._first_poll.wait(FIRST_POLL_WAIT_SECONDS)
        payload = claims.payload
        tokens = self._tokens
        if tokens and payload.get("jti") in tokens:
            return REVOKED
        users = self._users
        if not users:
            return VALID
        minimum = users.get(self._subject_key(claims.subject))
        if minimum is None:
            return VALID
        if minimum == DELETED_VERSION:
            return ASK_AUTH
        version = payload.get("tv", 0)
        return REVOKED if not isinstance(version, int) or version < minimum else VALID

    def _subject_key(self, subject: str) -> str:
        """Return ``subject_key(subject)``, remembered: hashing costs more than the lookup."""
        key = self._subject_keys.get(subject)
        if key is None:
            if len(self._subject_keys) >= SUBJECT_KEYS_KEPT:
                self._subject_keys = {}
            key = self._subject_keys[subject] = subject_key(subject)
        return key

    def keep_polling(self) -> None:
        """Make sure a thread of this process polls every ``poll_seconds``; cheap to repeat.

        Started on first use in the serving process: a thread made before gunicorn
        forks its workers would not exist in them.
        """
        if self._poller_pid == os.getpid():
            return
        with self._lock:
            if self._poller_pid == os.getpid() or self._closed.is_set():
                return
            self._poller_pid = os.getpid()
            threading.Thread(target=self._poll_forever, name="revocations", daemon=True).start()

    def close(self) -> None:
        """Stop the polling thread."""
        self._closed.set()

    def poll(self) -> None:
        """Read the revocations auth made since the last poll (all of them now and then).

        Raises:
            TransientError: auth could not be reached; the list stays as it was.
        """
        now = self._clock()
        reload = self._loaded_at is None or now - self._loaded_at >= self._reload_seconds
        users = {} if reload else dict(self._users)
        tokens = set() if reload else set(self._tokens)
        after = 0 if reload else max(0, self._after - OVERLAP_ENTRIES)
        for _ in range(MAX_PAGES_PER_POLL):
            page = self._fetch(after)
            entries = page.get("revocations") or []
            for entry in entries:
                _add(entry, users, tokens)
            after = max(after, int(page.get("next") or after))
            if len(entries) < PAGE_SIZE:
                break
        else:
            log.warning("more than %d revocations at once; reading on next poll", after)
        self._users, self._tokens, self._after = users, frozenset(tokens), after
        if reload:
            self._loaded_at = now
        self._fresh_at = now

    def _poll_forever(self) -> None:
        self._fresh_at = self._clock()
        while True:
            self._poll_and_report()
            self._first_poll.set()
            if self._closed.wait(self._poll_seconds):
                return

    def _poll_and_report(self) -> None:
        try:
            self.poll()
        except TransientError as exc:
            self._report_failure(str(exc))
        except Exception:  # the loop's edge: a bug must not end the polling for good
            log.exception("reading revocations failed")
            self._report_failure("unexpected error")
        else:
            if self._unreachable:
                log.info("revocations are read again")
            self._unreachable = False
            STALE_SECONDS.set(0)

    def _report_failure(self, reason: str) -> None:
        stale = self._clock() - (self._fresh_at or self._clock())
        log.warning(
            "cannot read revocations (%s); keeping the %d user and %d token entries, %.0f s old",
            reason,
            len(self._users),
            len(self._tokens),
            stale,
        )
        self._unreachable = True
        STALE_SECONDS.set(stale)


def _add(entry: Mapping[str, Any], users: dict[str, int], tokens: set[str]) -> None:
    """Add one of auth's entries to the dicts a poll builds; skip (and log) a malformed one."""
    kind, subject = entry.get("kind"), entry.get("subject")
    if kind == "token" and isinstance(subject, str):
        tokens.add(subject)
    elif kind == "user" and isinstance(subject, str) and isinstance(entry.get("min_version"), int):
        users[subject] = max(users.get(subject, 0), entry["min_version"])
    else:
        log.warning("ignoring a malformed revocation %r", entry.get("id"))
