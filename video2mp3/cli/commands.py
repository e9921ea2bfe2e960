"""One function per subcommand: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import contextlib
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
    KEY_COLUMNS,
    TRACK_COLUMNS,
    account_lines,
    fail,
    format_fields,
    format_local_time,
    format_table,
    job_lines,
    job_rows,
    job_tracks,
    key_rows,
    loudness_text,
    note,
    say,
    track_rows,
    usage_lines,
)
from video2mp3.cli.parser import MAX_PAGE_SIZE, OPTION_FIELDS, PROG, SCOPES
from video2mp3.cli.transfers import (
    Resumable,
    save_download,
    save_export,
    save_zip,
    upload,
    wait_for_job,
)
from video2mp3.client import (
    MAX_ZIP_JOBS,
    ApiError,
    AuthenticationError,
    Client,
    ClientError,
    InsufficientScope,
    Login,
)
from video2mp3.config import (
    API_KEY_ENV,
    API_KEY_PATTERN,
    ConfigError,
    Credentials,
    api_key_from_env,
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
# Refusals of the caller, not of one file or job: they end the command.
REFUSED_CALLER = (AuthenticationError, InsufficientScope)


# --- login and logout ---------------------------------------------------------


def run_login(args: argparse.Namespace) -> int:
    """Log in with an email and password (or an API key) and store the token."""
    try:
        stored = load_credentials()
    except ConfigError:
        stored = None  # a damaged file is replaced by this login
    server = resolve_server(args.server, stored)
    if args.api_key:
        return _log_in_with_key(args, server)
    email = (args.email or _ask("Email: ")).strip()
    if not email:
        raise CommandError("an email is needed to log in (--email)", EXIT_USAGE)
    password = _read_password(from_stdin=args.password_stdin)
    with Client(server) as client:
        login = client.login(email, password)
    _store_session(server, email, login)
    say(
        f"Logged in to {server} as {email}. The token expires at "
        f"{format_local_time(time.time() + login.expires_in)} "
        f"(in {human_duration(login.expires_in)})."
    )
    _warn_if_env_key()
    return EXIT_OK


def _store_session(server: str, email: str, login: Login) -> None:
    save_credentials(
        Credentials(
            server=server,
            email=email,
            token=login.token,
            expires_at=time.time() + login.expires_in,
        )
    )


def _log_in_with_key(args: argparse.Namespace, server: str) -> int:
    """Check an API key with the server (GET /me) and store it, with no expiry."""
    if args.email:
        raise CommandError("--email goes with a password, not --api-key", EXIT_USAGE)
    key = _read_password(from_stdin=args.password_stdin, prompt="API key: ", what="API key")
    key = key.strip()
    match = API_KEY_PATTERN.fullmatch(key)
    if not match:
        raise CommandError("that is not an API key: one reads v2m_<id>_<secret>", EXIT_USAGE)
    with Client(server, key) as client:
        try:
            email = str(client.me().get("email") or "")
        except InsufficientScope:
            # Known to the server (or it would be a 401), but without jobs:read.
            email = ""
    save_credentials(Credentials(server=server, email=email, token=key, expires_at=None))
    whose = f" of {email}" if email else " (without jobs:read, so not its account)"
    say(
        f"Logged in to {server} with the API key {match.group(1)}{whose}. "
        "It works until it expires or is revoked."
    )
    _warn_if_env_key()
    return EXIT_OK


def _warn_if_env_key() -> None:
    if api_key_from_env() is not None:
        note(f"note: ${API_KEY_ENV} is set, and commands use it instead of this login")


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no email given (use --email)", EXIT_USAGE)
    return line


def _read_password(*, from_stdin: bool, prompt: str = "Password: ", what: str = "password") -> str:
    """Read a secret from the next line of stdin, or ask for it without echo."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        try:
            password = getpass.getpass(prompt, stream=sys.stderr)
        except EOFError:
            password = ""  # nosec B105
    if not password:
        raise CommandError(f"no {what} given", EXIT_USAGE)
    return password


def run_logout(args: argparse.Namespace) -> int:
    """End the session on the server (best effort) and forget the stored token."""
    try:
        stored = load_credentials()
    except ConfigError:
        stored = None
    if stored and not stored.is_api_key and not stored.expired():
        _end_session(stored)
    if forget_credentials():
        where = f" of {stored.server}" if stored else ""
        say(f"Logged out{where}.")
        if stored and stored.is_api_key:
            note(f"The API key still works until revoked: {PROG} keys revoke {stored.key_id}")
    else:
        say("You were not logged in.")
    if api_key_from_env() is not None:
        note(f"note: ${API_KEY_ENV} is still set, and commands go on using it")
    return EXIT_OK


def _end_session(stored: Credentials) -> None:
    """Ask the server to end the stored session's token; say so if it could not."""
    try:
        with Client(stored.server, stored.token) as client:
            client.logout()
    except AuthenticationError:
        pass  # already ended or refused: nothing is left to end
    except ClientError as exc:
        note(
            f"note: the server did not end the session ({describe(exc)}); "
            f"its token stops working at {format_local_time(stored.expires_at)}"
        )


def _client(args: argparse.Namespace) -> Client:
    """Return a client with the stored token for the chosen server.

    Raises:
        CommandError: not logged in to that server, or the login expired (exit 3).
    """
    stored = _credentials(args)
    return Client(stored.server, stored.token)


def _credentials(args: argparse.Namespace) -> Credentials:
    """Return the API key in the environment, else the stored login if it is for the
    chosen server and still good.

    Raises:
        CommandError: not logged in to that server, or the login expired (exit 3).
        ConfigError: the environment's API key is malformed.
    """
    key = api_key_from_env()
    if key is not None:
        try:
            stored = load_credentials()
        except ConfigError:
            stored = None  # the key is all that is needed; the file only names a server
        return Credentials(
            server=resolve_server(args.server, stored), email="", token=key, expires_at=None
        )
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
        PendingUploads(state_dir() / UPLOADS_DIR),
        user=stored.email or f"api-key:{stored.key_id}",
        threshold=tus_threshold(),
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
                    if isinstance(exc, REFUSED_CALLER) or exc.code == "invalid_option":
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
        if isinstance(exc, REFUSED_CALLER):
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
                if isinstance(exc, REFUSED_CALLER):
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


# --- the account: me, password, export, delete-account, keys -------------------


def run_me(args: argparse.Namespace) -> int:
    """Print who the caller is, how they are logged in, their usage and quotas."""
    with _client(args) as client:
        account = client.me()
    say(format_fields(account_lines(account)))
    return EXIT_OK


def run_password(args: argparse.Namespace) -> int:
    """Change the password and store the new token the server answers."""
    stored = _credentials(args)
    current = _read_password(
        from_stdin=args.password_stdin, prompt="Current password: ", what="current password"
    )
    chosen = _read_password(
        from_stdin=args.password_stdin, prompt="New password: ", what="new password"
    )
    if not args.password_stdin:
        again = _read_password(
            from_stdin=False, prompt="New password again: ", what="repeated password"
        )
        if again != chosen:
            raise CommandError("the new passwords differ; nothing changed", EXIT_USAGE)
    with Client(stored.server, stored.token) as client:
        try:
            login = client.change_password(current, chosen)
        except AuthenticationError as exc:
            if exc.code == "invalid_credentials":
                raise CommandError(
                    "the current password is wrong; nothing changed", EXIT_AUTH
                ) from None
            raise
    _store_session(stored.server, stored.email, login)
    say(
        "Password changed. Other sessions end within 30 seconds; this one goes on with a "
        f"new token until {format_local_time(time.time() + login.expires_in)}."
    )
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    """Save the account's export (account and every job) as a JSON file."""
    with _client(args) as client:
        saved = save_export(client, args.output)
    say(f"saved {saved}")
    return EXIT_OK


def run_delete_account(args: argparse.Namespace) -> int:
    """Delete the account, its keys, jobs and files once the user typed their email."""
    stored = _credentials(args)
    confirm = args.confirm
    if confirm is None:
        who = f" ({stored.email})" if stored.email else ""
        note("This deletes your account, its API keys and every job with its files, for good.")
        confirm = _ask(f"Type your email{who} to confirm: ")
    confirm = confirm.strip()
    if not confirm:
        raise CommandError("not confirmed: nothing was deleted", EXIT_USAGE)
    with Client(stored.server, stored.token) as client:
        try:
            answer = client.delete_account(confirm)
        except ApiError as exc:
            if exc.code == "confirmation_required":
                raise CommandError(
                    f"{confirm!r} is not the email of this account; nothing was deleted",
                    EXIT_USAGE,
                ) from None
            raise
    # The login died with the account (only a session may delete one, never a key).
    with contextlib.suppress(ConfigError):
        forget_credentials()
    remaining = int(answer.get("remaining_jobs") or 0)
    if answer.get("status") == "deleting" and remaining:
        jobs = "its last job goes" if remaining == 1 else f"its last {remaining} jobs go"
        say(f"Account deleted; {jobs} within minutes.")
    else:
        say("Account deleted, with all its jobs and files.")
    return EXIT_OK


def run_keys(args: argparse.Namespace) -> int:
    """List, create or revoke the caller's API keys."""
    with _client(args) as client:
        if args.keys_command == "list":
            keys = client.api_keys()
            if not keys:
                note(f"No API keys. Create one with: {PROG} keys create NAME")
            else:
                say(format_table(KEY_COLUMNS, key_rows(keys)))
        elif args.keys_command == "create":
            created = client.create_api_key(
                args.name, args.scopes or list(SCOPES), args.expires_in_days
            )
            expires = created.get("expires_at")
            note(
                f"Created the key {created['id']} ({', '.join(created.get('scopes') or [])}; "
                f"expires {format_local_time(expires) if expires else 'never'}). "
                "This is the only time it is shown: store it now."
            )
            say(str(created["key"]))
        else:
            key_id = args.key_id.strip().removeprefix("v2m_")
            client.revoke_api_key(key_id)
            say(f"Revoked the key {key_id}: it stops working within 30 seconds.")
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
    "me": run_me,
    "password": run_password,
    "export": run_export,
    "delete-account": run_delete_account,
    "keys": run_keys,
}
