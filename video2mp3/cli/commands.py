"""One function per subcommand: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from video2mp3.cli.errors import (
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    describe,
)
from video2mp3.cli.output import (
    JOB_COLUMNS,
    TRACK_COLUMNS,
    fail,
    format_fields,
    format_local_time,
    format_table,
    job_lines,
    job_rows,
    job_tracks,
    loudness_text,
    note,
    say,
    track_rows,
    usage_lines,
)
from video2mp3.cli.parser import MAX_PAGE_SIZE, OPTION_FIELDS, PROG
from video2mp3.cli.transfers import Resumable, save_download, save_zip, upload, wait_for_job
from video2mp3.client import MAX_ZIP_JOBS, ApiError, AuthenticationError, Client
from video2mp3.config import (
    ConfigError,
    Credentials,
    forget_credentials,
    load_credentials,
    resolve_server,
    save_credentials,
    state_dir,
    tus_threshold,
)
from video2mp3.pending import UPLOADS_DIR, PendingUploads
from video2mp3.progress import human_duration

_JOB_ID = re.compile(r"[0-9a-f]{32}")


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
    say(
        f"Logged in to {server} as {email}. The token expires at "
        f"{format_local_time(credentials.expires_at)} (in {human_duration(login.expires_in)})."
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
        say(f"Logged out{where}.")
    else:
        say("You were not logged in.")
    return EXIT_OK


def _client(args: argparse.Namespace) -> Client:
    """Return a client with the stored token for the chosen server.

    Raises:
        CommandError: not logged in to that server, or the login expired (exit 3).
    """
    stored = _credentials(args)
    return Client(stored.server, stored.token)


def _credentials(args: argparse.Namespace) -> Credentials:
    """Return the stored login, if it is for the chosen server and still good.

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
            f"your login to {server} expired at {format_local_time(stored.expires_at)}; "
            f"run '{PROG} login' again",
            EXIT_AUTH,
        )
    return stored


# --- convert ------------------------------------------------------------------


def run_convert(args: argparse.Namespace) -> int:
    """Upload each file (or have the server fetch each URL); with --wait, follow the
    conversions and download the MP3s."""
    files = [source if _is_url(source) else Path(source) for source in args.files]
    for path in files:
        if isinstance(path, Path):
            _check_readable(path)
    if args.wait:
        _check_directory(args.output)
    options = {
        field: str(getattr(args, field))
        for field in OPTION_FIELDS
        if getattr(args, field) is not None
    }
    stored = _credentials(args)
    resumable = Resumable(
        PendingUploads(state_dir() / UPLOADS_DIR), user=stored.email, threshold=tus_threshold()
    )
    failures = 0
    accepted: list[tuple[str, str]] = []  # (what the user named, job id)
    with Client(stored.server, stored.token) as client:
        try:
            for path in files:
                try:
                    if isinstance(path, str):
                        job = client.import_url(path, options=options)
                    else:
                        job = upload(
                            client,
                            path,
                            options,
                            audio_only=not args.full_upload,
                            resumable=resumable,
                        )
                except ApiError as exc:
                    if isinstance(exc, AuthenticationError) or exc.code == "invalid_option":
                        raise  # the same for every file
                    fail(f"{path}: {describe(exc)}")
                    failures += 1
                    continue
                name = path if isinstance(path, str) else path.name
                accepted.append((name, job["job_id"]))
                line = f"{name}: queued as job {job['job_id']}"
                if args.wait:
                    note(line)
                else:
                    say(line)
            if args.wait:
                while accepted:
                    name, job_id = accepted[0]
                    failures += not _finish(client, name, job_id, args.output)
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


def _is_url(source: str) -> bool:
    """Tell whether a convert argument is a URL for the server to fetch, not a file."""
    return re.match(r"(?i)https?://", source) is not None


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


def _finish(client: Client, name: str, job_id: str, directory: Path) -> bool:
    """Wait for one job and download its MP3, then show its loudness and tracks if it has
    them; return False (having said why) if it failed."""
    try:
        job = wait_for_job(client, job_id, label=name)
    except ApiError as exc:
        if isinstance(exc, AuthenticationError):
            raise
        fail(f"{name}: {describe(exc)}")
        return False
    if job["status"] != "done":
        fail(f"{name}: conversion failed: {job.get('error') or 'no reason given'}")
        return False
    saved = save_download(client, job["mp3_fid"], directory)
    say(f"{name}: saved {saved}")
    if isinstance(job.get("loudness"), dict):
        say(f"{name}: loudness {loudness_text(job['loudness'])}")
    if tracks := job_tracks(job):
        say(f"{name}: {len(tracks)} tracks, saved by: {PROG} download {job_id} --tracks")
        say(_indented(format_table(TRACK_COLUMNS, track_rows(tracks))))
    return True


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


# --- jobs, status, download, delete, usage ------------------------------------


def run_jobs(args: argparse.Namespace) -> int:
    """Print a table of the caller's jobs."""
    with _client(args) as client:
        page = client.jobs(status=args.status, limit=args.limit, offset=args.offset)
    jobs = page.get("jobs", [])
    total = int(page.get("total", len(jobs)))
    if not jobs:
        note("No jobs." if not args.status else f"No {args.status} jobs.")
        return EXIT_OK
    say(format_table(JOB_COLUMNS, job_rows(jobs)))
    shown_to = args.offset + len(jobs)
    if args.offset or shown_to < total:
        more = f"; more with --offset {shown_to}" if shown_to < total else ""
        note(f"jobs {args.offset + 1}-{shown_to} of {total}{more}")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    """Print one job's details."""
    with _client(args) as client:
        job = client.job(args.job_id)
    say(format_fields(job_lines(job)))
    if tracks := job_tracks(job):
        say("")
        say(format_table(TRACK_COLUMNS, track_rows(tracks)))
    return EXIT_OK


def run_download(args: argparse.Namespace) -> int:
    """Download an MP3 by its id, its video's id or its job's id; several jobs as one ZIP."""
    _check_directory(args.output)
    if args.all and args.ids:
        raise CommandError("give job ids or --all, not both", EXIT_USAGE)
    if not args.all and not args.ids:
        raise CommandError("give the id of what to download, or --all", EXIT_USAGE)
    if args.tracks:
        return _download_tracks(args)
    if args.all or args.zip or len(args.ids) > 1:
        return _download_zip(args)
    with _client(args) as client:
        fid = args.ids[0]
        if _JOB_ID.fullmatch(fid):
            fid = _done_job(client, fid)["mp3_fid"]
        saved = save_download(client, fid, args.output)
    say(f"saved {saved}")
    return EXIT_OK


def _done_job(client: Client, job_id: str) -> dict[str, Any]:
    """Return a job whose output is ready.

    Raises:
        CommandError: the job failed or is not done yet (exit 1).
    """
    job = client.job(job_id)
    if job["status"] == "failed":
        raise CommandError(f"job {job_id} failed: {job.get('error') or 'no reason given'}")
    if job["status"] != "done":
        raise CommandError(
            f"the MP3 is not ready: job {job_id} is {job['status']} "
            f"({job.get('progress') or 0}% done)"
        )
    return job


def _download_tracks(args: argparse.Namespace) -> int:
    """Download the tracks of split jobs, each under its name, into the output directory."""
    if args.all or args.zip:
        raise CommandError(
            "--tracks takes job ids, not --all or --zip (a ZIP has the tracks)", EXIT_USAGE
        )
    job_ids = list(dict.fromkeys(args.ids))
    for job_id in job_ids:
        if not _JOB_ID.fullmatch(job_id):
            raise CommandError(f"{job_id} is not a job id: --tracks takes job ids", EXIT_USAGE)
    with _client(args) as client:
        jobs = [_done_job(client, job_id) for job_id in job_ids]
        for job in jobs:
            if not job_tracks(job):
                raise CommandError(f"job {job['job_id']} has no tracks: it was not split (--split)")
        for job in jobs:
            for track in job_tracks(job):
                saved = save_download(client, track["fid"], args.output, name=track.get("filename"))
                say(f"saved {saved}")
    return EXIT_OK


def _download_zip(args: argparse.Namespace) -> int:
    """Download jobs' MP3s as ZIPs of up to ``MAX_ZIP_JOBS``, unpacked unless --zip."""
    job_ids = list(dict.fromkeys(args.ids))
    for job_id in job_ids:
        if not _JOB_ID.fullmatch(job_id):
            raise CommandError(
                f"{job_id} is not a job id: several downloads (and --zip) take job ids",
                EXIT_USAGE,
            )
    with _client(args) as client:
        if args.all:
            job_ids = _done_job_ids(client)
            if not job_ids:
                note("No done jobs.")
                return EXIT_OK
        saved: list[Path] = []
        for start in range(0, len(job_ids), MAX_ZIP_JOBS):
            batch = job_ids[start : start + MAX_ZIP_JOBS]
            saved += save_zip(client, batch, args.output, unpack=not args.zip)
    for path in saved:
        say(f"saved {path}")
    return EXIT_OK


def _done_job_ids(client: Client) -> list[str]:
    """Return the ids of all the caller's done jobs, newest first."""
    job_ids: list[str] = []
    while True:
        page = client.jobs(status="done", limit=MAX_PAGE_SIZE, offset=len(job_ids))
        jobs = page.get("jobs", [])
        job_ids += [job["job_id"] for job in jobs]
        if not jobs or len(job_ids) >= int(page.get("total", 0)):
            # A job finishing meanwhile shifts the pages: one id may come twice.
            return list(dict.fromkeys(job_ids))


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
                fail(f"{job_id}: {describe(exc)}")
                failures += 1
                continue
            say(f"deleted job {job_id}")
    return EXIT_FAILED if failures else EXIT_OK


def run_usage(args: argparse.Namespace) -> int:
    """Print the caller's usage beside their quotas."""
    with _client(args) as client:
        account = client.me()
    say(format_fields(usage_lines(account)))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "login": run_login,
    "logout": run_logout,
    "convert": run_convert,
    "jobs": run_jobs,
    "status": run_status,
    "download": run_download,
    "delete": run_delete,
    "usage": run_usage,
}
