"""SMTP: the only module that talks to the mail server.

Failures are classified where they arise: a 5xx answer about this message
(bad recipient, rejected content) is a ``PermanentError``, retrying cannot help;
a server that is down, a 4xx "try later" or a broken login is a
``TransientError``, so the message waits and is retried.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

from common.errors import PermanentError, TransientError
from notification.config import SmtpConfig

log = logging.getLogger(__name__)


class Mailer:
    """Send one message per connection to the configured SMTP server."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    def send(self, message: EmailMessage, *, on_accepted: Callable[[], None] | None = None) -> None:
        """Deliver ``message`` to the SMTP server.

        ``on_accepted`` runs the moment the server has accepted the message, before the
        session is closed, so whoever records the delivery loses as little time as possible.

        Raises:
            PermanentError: the server refused the message or its recipient for good.
            TransientError: the server is unreachable or asked us to try later.
        """
        try:
            with self._connect() as smtp:
                if self._config.user:
                    smtp.login(self._config.user, self._config.password or "")
                refused = smtp.send_message(message)
                if on_accepted is not None:
                    on_accepted()
        except smtplib.SMTPRecipientsRefused as exc:
            raise _classify(
                min(code for code, _ in exc.recipients.values()),
                f"recipient refused: {exc.recipients}",
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials, not this message, are at fault: retry, then dead-letter.
            raise TransientError(f"SMTP login failed ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify(
                exc.smtp_code, f"SMTP server said {exc.smtp_code} {exc.smtp_error!r}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP server unavailable: {exc!r}") from exc
        if refused:
            log.warning("some recipients were refused: %s", refused)

    def _connect(self) -> smtplib.SMTP:
        config = self._config
        if config.security == "ssl":
            return smtplib.SMTP_SSL(
                config.host,
                config.port,
                timeout=config.timeout,
                context=ssl.create_default_context(),
            )
        smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        if config.security == "starttls":
            try:
                smtp.starttls(context=ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp


def _classify(code: int, reason: str) -> PermanentError | TransientError:
    return PermanentError(reason) if 500 <= code < 600 else TransientError(reason)
