"""Failures as the command reports them: one line on stderr and an exit status.

====  ==================================================================
0     success
1     the server refused the request, a job failed, or a file could not be written
2     usage: bad arguments, a missing input file, or an output option the server refused
3     not logged in, login expired, credentials/token refused, or an API key not allowed to
      do this
4     the server cannot be reached (refused, unknown host, timeout, connection lost)
130   interrupted (Ctrl-C); jobs already uploaded keep converting on the server
====  ==================================================================
"""

from __future__ import annotations

from video2mp3.cli.parser import PROG, option_flag
from video2mp3.client import (
    ApiError,
    AuthenticationError,
    ClientError,
    ConnectionFailed,
    InsufficientScope,
    InvalidServer,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure the command reports in one line, with its exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code(exc: ClientError) -> int:
    """Return the exit status for a client error."""
    if isinstance(exc, (AuthenticationError, InsufficientScope)):
        return EXIT_AUTH
    if isinstance(exc, ApiError):
        return EXIT_USAGE if exc.code == "invalid_option" else EXIT_FAILED
    if isinstance(exc, ConnectionFailed):
        return EXIT_UNREACHABLE
    if isinstance(exc, InvalidServer):
        return EXIT_USAGE
    return EXIT_FAILED


def describe(exc: ClientError) -> str:
    """Return the one-line message for a client error, naming the option the server refused."""
    if not isinstance(exc, ApiError):
        return str(exc)
    if isinstance(exc, InsufficientScope):
        if exc.required == "session":
            return (
                "an API key cannot do this; log in with your email and password "
                f"('{PROG} login') to do it"
            )
        return (
            f"the API key lacks the {exc.required} scope this needs; use a key created "
            f"with --scope {exc.required}, or log in with your password"
        )
    message = exc.message.rstrip()
    if exc.field:
        message += f" ({option_flag(exc.field)})"
    if exc.code == "not_ready":
        if exc.body.get("reason"):
            message += f" Reason: {exc.body['reason']}"
        elif exc.body.get("status") == "processing":
            message += f" ({exc.body.get('progress', 0)}% done)"
    return message
