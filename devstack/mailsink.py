"""An SMTP server that keeps every mail it receives, for development and tests.

It accepts any sender and recipient, keeps the parsed messages in memory for
tests to read, with the ``time.perf_counter()`` of each one's arrival, and, given
a folder, also writes each one there as a ``.eml`` file a person can open.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _KeepingHandler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self._sink.keep(message, raw)
        return "250 Message accepted for delivery"


class MailSink:
    """Receive mail on 127.0.0.1:port and keep it."""

    def __init__(self, port: int, folder: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.folder = folder
        self._messages: list[EmailMessage] = []
        self._arrivals: list[float] = []  # perf_counter() when each message was kept
        self._changed = threading.Condition()
        self._controller = Controller(_KeepingHandler(self), hostname=self.host, port=port)

    def start(self) -> None:
        """Start accepting mail in a background thread."""
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._controller.start()

    def stop(self) -> None:
        """Stop accepting mail."""
        self._controller.stop()

    def keep(self, message: EmailMessage, raw: bytes) -> None:
        """Store one received message (called by the SMTP handler)."""
        with self._changed:
            self._arrivals.append(time.perf_counter())
            self._messages.append(message)
            if self.folder:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                path = self.folder / f"{stamp}-{len(self._messages):04d}.eml"
                path.write_bytes(raw)
            self._changed.notify_all()

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        """Return the messages received so far, optionally only those to one address."""
        return [message for _arrived, message in self.arrivals(to)]

    def arrivals(self, to: str | None = None) -> list[tuple[float, EmailMessage]]:
        """Return (``perf_counter()`` at arrival, message) of each message so far, in order."""
        with self._changed:
            return [
                (arrived, message)
                for arrived, message in zip(self._arrivals, self._messages, strict=True)
                if to is None or to in str(message.get("To", ""))
            ]

    def wait_for(
        self, count: int, *, to: str | None = None, timeout: float = 30.0
    ) -> list[EmailMessage]:
        """Wait until ``count`` messages (to ``to``) have arrived and return them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.messages(to)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)} of {count} mails arrived in {timeout}s")
                self._changed.wait(remaining)
            return found

    def clear(self) -> None:
        """Forget every message received so far."""
        with self._changed:
            self._messages.clear()
            self._arrivals.clear()
