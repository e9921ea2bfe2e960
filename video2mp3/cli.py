"""The ``video2mp3`` command: log in, convert videos, follow jobs, download MP3s.

Results go to stdout, progress and messages to stderr. Every failure is one
line on stderr and a non-zero exit status:

====  ==================================================================
0     success
1     the server refused the request, a job failed, or a file could not be written
2     usage: bad arguments, a missing input file, or an output option the server refused
3     not logged in, login expired, or credentials/token refused
4     the server cannot be reached (refused, unknown host, timeout, connection lost)
130   interrupted (Ctrl-C); jobs already uploaded keep converting on the server
====  ==================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from video2mp3 import __version__
from video2mp3.client import (
    ApiError,
    AuthenticationError,
    Client,
    ClientError,
    ConnectionFailed,
    InvalidServer,
)
from video2mp3.config import (
    ConfigError,
    Credentials,
    forget_credentials,
    load_credentials,
    resolve_server,
    save_credentials,
)
from video2mp3.multipart import FileChanged
from video2mp3.progress import Progress, human_duration, human_size

PROG = "video2mp3"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

STATUSES = ("queued", "processing", "done", "failed")
FINISHED = ("done", "failed")
OPTION_FIELDS = (
    "bitrate",
    "quality",
    "sample_rate",
    "channels",
    "start",
    "end",
    "title",
    "artist",
    "album",
)
MAX_PAGE_SIZE = 100
POLL_FIRST_SECONDS = 0.2
POLL_MAX_SECONDS = 2.0
_JOB_ID = re.compile(r"[0-9a-f]{32}")


class CommandError(Exception):
    """A failure the command reports in one line, with its exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
        return args.run(args)
    except CommandError as exc:
        _fail(str(exc))
        return exc.exit_code
    except ClientError as exc:
        message = describe(exc)
        if isinstance(exc, AuthenticationError) and args.command != "login":
            message += f"; log in again with '{PROG} login'"
        _fail(message)
        return exit_code(exc)
    except (ConfigError, FileChanged) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. "| head"): stop quietly, as Unix tools do.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def exit_code(exc: ClientError) -> int:
    """Return the exit status for a client error."""
    if isinstance(exc, AuthenticationError):
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
    message = exc.message.rstrip()
    if exc.field:
        flag = f"--{exc.field.replace('_', '-')}" if exc.field in OPTION_FIELDS else exc.field
        message += f" ({flag})"
    if exc.code == "not_ready":
        if exc.body.get("reason"):
            message += f" Reason: {exc.body['reason']}"
        elif exc.body.get("status") == "processing":
            message += f" ({exc.body.get('progress', 0)}% done)"
    return message


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per action."""
    # --server is accepted before and after the subcommand; SUPPRESS keeps a
    # subcommand's absent flag from hiding the one given before it.
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="gateway URL (default: $VIDEO2MP3_URL, else the server you logged in to, "
        "else http://127.0.0.1:8000)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert videos to MP3 with a video2mp3 server.",
        epilog="Exit status: 0 ok, 1 failed, 2 usage, 3 not logged in, 4 server unreachable.",
        parents=[server],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], summary: str) -> Any:
        sub = commands.add_parser(name, parents=[server], help=summary, description=summary)
        sub.set_defaults(run=run)
        return sub

    login = command("login", run_login, "Log in and store the token in your config directory.")
    login.add_argument("--email", help="your email (asked for when not given)")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking for it",
    )

    command("logout", run_logout, "Forget the stored token.")

    convert = command("convert", run_convert, "Upload videos to convert them to MP3.")
    convert.add_argument("files", nargs="+", metavar="FILE", type=Path, help="video or audio file")
    quality = convert.add_mutually_exclusive_group()
    quality.add_argument(
        "--bitrate", type=int, metavar="KBPS", help="constant bitrate in kbit/s (default 192)"
    )
    quality.add_argument(
        "--quality", type=int, metavar="Q", help="variable bitrate quality, 0 (best) to 9"
    )
    convert.add_argument(
        "--sample-rate", type=int, metavar="HZ", help="e.g. 44100 (default: the source's)"
    )
    convert.add_argument(
        "--channels", type=int, choices=(1, 2), help="1 mono or 2 stereo (default: the source's)"
    )
    convert.add_argument("--start", metavar="TIME", help="start at TIME: 90, 1:30 or 0:01:30.5")
    convert.add_argument("--end", metavar="TIME", help="end at TIME (of the source)")
    convert.add_argument("--title", help="ID3 title (default: the file's name)")
    convert.add_argument("--artist", help="ID3 artist")
    convert.add_argument("--album", help="ID3 album")
    convert.add_argument(
        "--wait", action="store_true", help="wait for the conversions and download the MP3s"
    )
    convert.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="where --wait saves the MP3s (default: the current directory)",
    )

    jobs = command("jobs", run_jobs, "List your jobs, newest first.")
    jobs.add_argument("--status", choices=STATUSES, help="only jobs in this state")
    jobs.add_argument(
        "--limit", type=_page_size, default=20, metavar="N", help="show N jobs (1-100, default 20)"
    )
    jobs.add_argument("--offset", type=_non_negative, default=0, metavar="N", help="skip N jobs")

    status = command("status", run_status, "Show one job.")
    status.add_argument("job_id", metavar="JOB_ID")

    download = command("download", run_download, "Download a finished MP3.")
    download.add_argument("fid", metavar="FID", help="the MP3's id, its video's id or the job id")
    download.add_argument(
        "-o", "--output", type=Path, default=Path(), metavar="DIR", help="default: here"
    )

    delete = command("delete", run_delete, "Delete jobs with their video and MP3.")
    delete.add_argument("job_ids", nargs="+", metavar="JOB_ID")

    command("usage", run_usage, "Show what you store and run, and your quotas.")
    return parser


def _page_size(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_PAGE_SIZE}, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


# --- login and logout ---------------------------------------------------------


def run_login(args: argparse.Namespace) -> int:
    """Log in with an email and password and store the token."""
    try:
        stored = load_credentials()
    except ConfigError:
        stored = None  # a damaged file is replaced by this login
    server = resolve_server(args.server, stored)
    email = (args.email or _ask("Email: ")).strip()
    if not email:
        raise CommandError("an email is needed to log in (--email)", EXIT_USAGE)
    password = _read_password(from_stdin=args.password_stdin)
    with Client(server) as client:
        login = client.login(email, password)
    credentials = Credentials(
        server=server, email=email, token=login.token, expires_at=time.time() + login.expires_in
    )
    save_credentials(credentials)
    _say(
        f"Logged in to {server} as {email}. The token expires at "
        f"{_local_time(credentials.expires_at)} (in {human_duration(login.expires_in)})."
    )
    return EXIT_OK


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no email given (use --email)", EXIT_USAGE)
    return line


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        try:
            password = getpass.getpass("Password: ", stream=sys.stderr)
        except EOFError:
            password = ""  # nosec B105
    if not password:
        raise CommandError("no password given", EXIT_USAGE)
    return password


def run_logout(args: argparse.Namespace) -> int:
    """Forget the stored token."""
    try:
        stored = load_credentials()
    except ConfigError:
        stored = None
    if forget_credentials():
        where = f" of {stored.server}" if stored else ""
        _say(f"Logged out{where}.")
    else:
        _say("You were not logged in.")
    return EXIT_OK


def _client(args: argparse.Namespace) -> Client:
    """Return a client with the stored token for the chosen server.

    Raises:
        CommandError: not logged in to that server, or the login expired (exit 3).
    """
    stored = load_credentials()
    server = resolve_server(args.server, stored)
    if stored is None:
        flag = f" --server {server}" if args.server else ""
        raise CommandError(f"not logged in to {server}; run '{PROG}{flag} login' first", EXIT_AUTH)
    if stored.server != server:
        raise CommandError(
            f"not logged in to {server} (the stored login is for {stored.server}); "
            f"run '{PROG} --server {server} login'",
            EXIT_AUTH,
        )
    if stored.expired():
        raise CommandError(
            f"your login to {server} expired at {_local_time(stored.expires_at)}; "
            f"run '{PROG} login' again",
            EXIT_AUTH,
        )
    return Client(server, stored.token)


# --- convert ------------------------------------------------------------------


def run_convert(args: argparse.Namespace) -> int:
    """Upload each file; with --wait, follow the conversions and download the MP3s."""
    files: list[Path] = args.files
    for path in files:
        _check_readable(path)
    if args.wait:
        _check_directory(args.output)
    options = {
        field: str(getattr(args, field))
        for field in OPTION_FIELDS
        if getattr(args, field) is not None
    }
    failures = 0
    accepted: list[tuple[Path, str]] = []
    with _client(args) as client:
        try:
            for path in files:
                try:
                    job = _upload(client, path, options)
                except ApiError as exc:
                    if isinstance(exc, AuthenticationError) or exc.code == "invalid_option":
                        raise  # the same for every file
                    _fail(f"{path}: {describe(exc)}")
                    failures += 1
                    continue
                accepted.append((path, job["job_id"]))
                line = f"{path.name}: queued as job {job['job_id']}"
                if args.wait:
                    _note(line)
                else:
                    _say(line)
            if args.wait:
                while accepted:
                    path, job_id = accepted[0]
                    failures += not _finish(client, path.name, job_id, args.output)
                    accepted.pop(0)
        except KeyboardInterrupt:
            if not accepted:
                raise
            ids = " ".join(job_id for _, job_id in accepted)
            raise CommandError(
                f"interrupted; the server goes on converting: {PROG} status {ids}",
                EXIT_INTERRUPTED,
            ) from None
    return EXIT_FAILED if failures else EXIT_OK


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise CommandError(f"{path}: no such file", EXIT_USAGE)
    if not path.is_file():
        raise CommandError(f"{path}: not a file", EXIT_USAGE)
    if not os.access(path, os.R_OK):
        raise CommandError(f"{path}: not readable", EXIT_USAGE)


def _check_directory(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise CommandError(f"{path}: not a directory", EXIT_USAGE)


def _upload(client: Client, path: Path, options: dict[str, str]) -> dict[str, Any]:
    """Stream one file to the server with a progress bar; return the accepted job."""
    size = path.stat().st_size
    bar = Progress(f"uploading {path.name}", size)
    try:
        with path.open("rb") as file:
            job = client.upload(
                file, filename=path.name, size=size, options=options, on_progress=bar.update
            )
    except BaseException:
        bar.abort()
        raise
    bar.finish(bar.summary())
    return job


def _finish(client: Client, name: str, job_id: str, directory: Path) -> bool:
    """Wait for one job and download its MP3; return False (having said why) if it failed."""
    try:
        job = wait_for_job(client, job_id, label=name)
    except ApiError as exc:
        if isinstance(exc, AuthenticationError):
            raise
        _fail(f"{name}: {describe(exc)}")
        return False
    if job["status"] != "done":
        _fail(f"{name}: conversion failed: {job.get('error') or 'no reason given'}")
        return False
    saved = save_download(client, job["mp3_fid"], directory)
    _say(f"{name}: saved {saved}")
    return True


def wait_for_job(client: Client, job_id: str, *, label: str) -> dict[str, Any]:
    """Poll a job until it is done or failed, showing its progress; return it."""
    bar = Progress(f"converting {label}", 100, unit="percent")
    status = None
    interval = POLL_FIRST_SECONDS
    try:
        while True:
            job = client.job(job_id)
            if job["status"] != status:
                status = job["status"]
                bar.detail = status
                if not bar.tty and status not in FINISHED:
                    bar.note(f"{bar.label}: {status}")
            bar.update(int(job.get("progress") or 0))
            if status in FINISHED:
                break
            time.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX_SECONDS)
    except BaseException:
        bar.abort()
        raise
    if status == "done":
        bar.finish(f"done in {human_duration(bar.elapsed)}")
    else:
        bar.abort()
    return job


# --- jobs, status, download, delete -------------------------------------------


def run_jobs(args: argparse.Namespace) -> int:
    """Print a table of the caller's jobs."""
    with _client(args) as client:
        page = client.jobs(status=args.status, limit=args.limit, offset=args.offset)
    jobs = page.get("jobs", [])
    total = int(page.get("total", len(jobs)))
    if not jobs:
        _note("No jobs." if not args.status else f"No {args.status} jobs.")
        return EXIT_OK
    rows = [
        (
            job["job_id"],
            job["status"],
            f"{job.get('progress') or 0}%",
            _local_time(job.get("created_at")),
            job.get("mp3_fid") or "-",
            job.get("filename") or "-",
        )
        for job in jobs
    ]
    _say(_table(("JOB ID", "STATUS", "PROGRESS", "CREATED", "MP3 FID", "FILE"), rows))
    shown_to = args.offset + len(jobs)
    if args.offset or shown_to < total:
        more = f"; more with --offset {shown_to}" if shown_to < total else ""
        _note(f"jobs {args.offset + 1}-{shown_to} of {total}{more}")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    """Print one job's details."""
    with _client(args) as client:
        job = client.job(args.job_id)
    options = job.get("options") or {}
    size = job.get("size")
    lines = [
        ("job", job["job_id"]),
        ("file", f"{job.get('filename') or '-'}" + (f" ({human_size(size)})" if size else "")),
        ("status", f"{job['status']} ({job.get('progress') or 0}%)"),
    ]
    if job.get("error"):
        lines.append(("error", job["error"]))
    lines += [
        ("options", " ".join(f"{k}={v}" for k, v in options.items()) or "defaults"),
        ("created", _local_time(job.get("created_at"))),
        ("started", _local_time(job.get("started_at"))),
        ("finished", _local_time(job.get("finished_at"))),
        ("video fid", job.get("video_fid") or "-"),
        ("mp3 fid", job.get("mp3_fid") or "-"),
    ]
    if job["status"] == "done" and job.get("mp3_fid"):
        lines.append(("download", f"{PROG} download {job['mp3_fid']}"))
    _say(_fields(lines))
    return EXIT_OK


def run_download(args: argparse.Namespace) -> int:
    """Download an MP3 by its id, its video's id or its job's id."""
    _check_directory(args.output)
    with _client(args) as client:
        fid = args.fid
        if _JOB_ID.fullmatch(fid):
            job = client.job(fid)
            if job["status"] == "failed":
                raise CommandError(f"job {fid} failed: {job.get('error') or 'no reason given'}")
            if job["status"] != "done":
                raise CommandError(
                    f"the MP3 is not ready: job {fid} is {job['status']} "
                    f"({job.get('progress') or 0}% done)"
                )
            fid = job["mp3_fid"]
        saved = save_download(client, fid, args.output)
    _say(f"saved {saved}")
    return EXIT_OK


def save_download(client: Client, fid: str, directory: Path) -> Path:
    """Download an MP3 into ``directory`` under the server's name for it; return the path.

    An existing file is never overwritten: "name (1).mp3" and so on are tried.
    The bytes go to a hidden ".part" file first, renamed once complete.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{directory}: {exc.strerror or exc}") from None
    with client.download(fid) as download:
        target = _unused_path(directory / download.filename)
        partial = target.with_name(f".{target.name}.part")
        bar = Progress(f"downloading {target.name}", download.size)
        written = 0
        try:
            with partial.open("wb") as file:
                for chunk in download.chunks():
                    file.write(chunk)
                    written += len(chunk)
                    bar.update(written)
            if download.size is not None and written != download.size:
                raise ConnectionFailed(
                    f"the download stopped after {written} of {download.size} bytes"
                )
            partial.rename(target)
        except BaseException as exc:
            bar.abort()
            with contextlib.suppress(OSError):
                partial.unlink()
            if isinstance(exc, OSError):
                raise CommandError(f"{target}: {exc.strerror or exc}") from None
            raise
    bar.finish(bar.summary())
    return target


def _unused_path(path: Path) -> Path:
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem} ({number}){path.suffix}")
    return candidate


def run_delete(args: argparse.Namespace) -> int:
    """Delete jobs with their files."""
    failures = 0
    with _client(args) as client:
        for job_id in args.job_ids:
            try:
                client.delete_job(job_id)
            except ApiError as exc:
                if isinstance(exc, AuthenticationError):
                    raise
                _fail(f"{job_id}: {describe(exc)}")
                failures += 1
                continue
            _say(f"deleted job {job_id}")
    return EXIT_FAILED if failures else EXIT_OK


# --- usage --------------------------------------------------------------------


def run_usage(args: argparse.Namespace) -> int:
    """Print the caller's usage beside their quotas."""
    with _client(args) as client:
        account = client.me()
    _say(_fields(usage_lines(account)))
    return EXIT_OK


def usage_lines(account: dict[str, Any]) -> list[tuple[str, str]]:
    """Return ``(name, text)`` lines for an account from ``GET /me``; a null quota is unlimited."""
    usage = account.get("usage") or {}
    quotas = account.get("quotas") or {}
    email = account.get("email") or "-"
    stored = int(usage.get("stored_bytes") or 0)
    active = int(usage.get("active_jobs") or 0)
    uploads = int(usage.get("uploads_last_minute") or 0)
    storage_quota = quotas.get("stored_bytes")
    jobs_quota = quotas.get("active_jobs")
    rate_quota = quotas.get("uploads_per_minute")
    if rate_quota is None:
        rate = "unlimited"
    else:
        rate = f"at most {rate_quota}" + (", reached" if uploads >= rate_quota else "")
    return [
        ("account", f"{email} (admin)" if account.get("admin") else email),
        ("storage", _against(stored, storage_quota, human_size)),
        ("active jobs", _against(active, jobs_quota, str)),
        ("uploads", f"{uploads} in the last minute ({rate})"),
    ]


def _against(used: int, limit: int | None, show: Callable[[int], str]) -> str:
    """Show a figure beside its quota: "2 of 10", "10 of 10 (full)", "1.2 GiB (unlimited)"."""
    if limit is None:
        return f"{show(used)} (unlimited)"
    return f"{show(used)} of {show(limit)}" + (" (full)" if used >= limit else "")


# --- output -------------------------------------------------------------------


def _say(text: str) -> None:
    """Write a result to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    """Write information to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _fail(text: str) -> None:
    """Write an error to stderr."""
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


def _fields(lines: Sequence[tuple[str, str]]) -> str:
    """Lay out ``name: value`` lines with the values in one column."""
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in lines)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [headers, *rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(headers))]
    return "\n".join(
        "  ".join(f"{value!s:<{width}}" for value, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _local_time(value: str | float | None) -> str:
    """Show an ISO timestamp or epoch seconds in local time, to the second."""
    if value is None or value == "":
        return "-"
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            moment = datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
