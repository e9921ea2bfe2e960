"""The ``video2mp3`` command: log in, convert videos, follow jobs, download MP3s.

Results go to stdout, progress and messages to stderr. Every failure is one
line on stderr and a non-zero exit status (the table is in ``errors``).
``parser`` reads the command line, ``commands`` runs one subcommand (with
``transfers`` for uploads, polling and downloads), ``output`` writes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from video2mp3.cli.commands import COMMANDS
from video2mp3.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
    describe,
    exit_code,
)
from video2mp3.cli.output import fail
from video2mp3.cli.parser import PROG, build_parser
from video2mp3.client import AuthenticationError, ClientError
from video2mp3.config import API_KEY_ENV, ConfigError
from video2mp3.multipart import FileChanged

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: the process's) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not hasattr(args, "server"):
        args.server = None
    try:
        return COMMANDS[args.command](args)
    except CommandError as exc:
        fail(str(exc))
        return exc.exit_code
    except ClientError as exc:
        message = describe(exc)
        if isinstance(exc, AuthenticationError) and args.command != "login":
            if os.environ.get(API_KEY_ENV, "").strip():
                message += f"; check the API key in ${API_KEY_ENV}"
            else:
                message += f"; log in again with '{PROG} login'"
        fail(message)
        return exit_code(exc)
    except (ConfigError, FileChanged) as exc:
        fail(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. "| head"): stop quietly, as Unix tools do.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
