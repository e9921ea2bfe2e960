"""The command line: the program's name, its subcommands and their options."""

from __future__ import annotations

import argparse
from pathlib import Path

from video2mp3 import __version__
from video2mp3.config import DEFAULT_TUS_THRESHOLD, TUS_THRESHOLD_ENV

PROG = "video2mp3"
STATUSES = ("queued", "processing", "done", "failed")
# The convert flags sent to the server as conversion options, under these names.
OPTION_FIELDS = (
    "format",
    "bitrate",
    "quality",
    "sample_rate",
    "channels",
    "start",
    "end",
    "title",
    "artist",
    "album",
    "loudness",
    "cover",
    "cover_at",
    "split",
)
MAX_PAGE_SIZE = 100
# The server's output formats (common.options.FORMATS, which the CLI does not import).
FORMATS = ("mp3", "m4a", "opus", "flac", "wav")
# The server's cover choices (common.options.COVERS).
COVERS = ("frame", "none")
# What an API key may be allowed to do (the server's scopes).
SCOPES = ("jobs:read", "jobs:write")
MAX_KEY_DAYS = 3650


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per action, named in ``args.command``."""
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

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[server], help=summary, description=summary)

    login = command("login", "Log in and store the token in your config directory.")
    login.add_argument("--email", help="your email (asked for when not given)")
    login.add_argument(
        "--api-key",
        action="store_true",
        help="log in with an API key (v2m_..., from 'keys create' or the web page) instead "
        "of an email and password; checked with the server, then stored with no expiry",
    )
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (or with --api-key the key) from the first line of stdin "
        "instead of asking for it",
    )
    login.epilog = (
        "An API key in $VIDEO2MP3_API_KEY is used instead of the stored login by every command."
    )

    command("logout", "End the session on the server and forget the stored token.")

    convert = command("convert", "Upload videos to convert them to MP3.")
    convert.epilog = (
        f"Uploads of {DEFAULT_TUS_THRESHOLD // 1024**2} MiB or more (${TUS_THRESHOLD_ENV} "
        "bytes) are resumable: if one is cut off, run the same command again to resume it."
    )
    convert.add_argument(
        "files",
        nargs="+",
        metavar="FILE_OR_URL",
        help="video or audio file, or an http(s):// URL the server fetches it from",
    )
    convert.add_argument(
        "--format",
        choices=FORMATS,
        help="output format: mp3 (default), m4a (AAC), opus, flac or wav; "
        "flac and wav take no --bitrate or --quality, m4a and opus no --quality",
    )
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
        "--loudness",
        metavar="LUFS",
        help="normalise to this integrated loudness, -70 to -5: -16 for podcasts, "
        "-14 for streaming, -23 for broadcast (EBU R128, two passes)",
    )
    convert.add_argument(
        "--cover",
        choices=COVERS,
        help="frame: a still of the video as cover art (not with --format wav); "
        "none (default): no cover",
    )
    convert.add_argument(
        "--cover-at", metavar="TIME", help="take the cover's frame at TIME (implies --cover frame)"
    )
    convert.add_argument(
        "--split",
        metavar="chapters|TIME",
        help="also make one track per chapter of the video, or parts of TIME each "
        "(600 or 10:00, at least 10 s)",
    )
    convert.add_argument(
        "--full-upload",
        action="store_true",
        help="send the whole video, not only its audio track (which needs ffmpeg: "
        "on PATH or from 'pip install video2mp3[cli-audio]'); a cover and --split chapters "
        "need the whole video, which is then always sent",
    )
    convert.add_argument(
        "--wait",
        action="store_true",
        help="wait for the conversions and download the results (MP3 or --format)",
    )
    convert.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="where --wait saves the results (default: the current directory)",
    )

    jobs = command("jobs", "List your jobs, newest first.")
    jobs.add_argument("--status", choices=STATUSES, help="only jobs in this state")
    jobs.add_argument(
        "--limit", type=_page_size, default=20, metavar="N", help="show N jobs (1-100, default 20)"
    )
    jobs.add_argument("--offset", type=_non_negative, default=0, metavar="N", help="skip N jobs")

    status = command("status", "Show one job.")
    status.add_argument("job_id", metavar="JOB_ID")

    download = command(
        "download", "Download finished MP3s: one by its id, several (or --all) as one ZIP."
    )
    download.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help="a job id, or the MP3's or its video's id; several job ids come as one ZIP",
    )
    download.add_argument("--all", action="store_true", help="every done job (a ZIP per 100 jobs)")
    download.add_argument(
        "--zip",
        action="store_true",
        help="keep the ZIP as it came instead of unpacking its MP3s into DIR",
    )
    download.add_argument(
        "--tracks",
        action="store_true",
        help="save the tracks of split jobs (--split), each in its own file, "
        "instead of the whole output",
    )
    download.add_argument(
        "-o", "--output", type=Path, default=Path(), metavar="DIR", help="default: here"
    )
    download.epilog = (
        "A ZIP is unpacked into DIR and then removed, unless --zip; no existing file is "
        "overwritten: 'name (1).mp3' and so on."
    )

    delete = command("delete", "Delete jobs with their video and MP3.")
    delete.add_argument("job_ids", nargs="+", metavar="JOB_ID")

    command("usage", "Show what you store and run, and your quotas.")

    command("me", "Show your account: email, how you are logged in, usage and quotas.")

    password = command("password", "Change your password; other sessions end within 30 seconds.")
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the current password from the first line of stdin and the new one "
        "from the second, instead of asking for them",
    )

    export = command("export", "Save everything your account holds (account and jobs) as JSON.")
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write to FILE, or into FILE if it is a directory (default: the server's "
        "name for it, video2mp3-export-<date>.json, here; never overwritten)",
    )

    delete_account = command(
        "delete-account", "Delete your account with its API keys, jobs and files, for good."
    )
    delete_account.add_argument(
        "--confirm",
        metavar="EMAIL",
        help="your email, to confirm without being asked to type it",
    )

    keys = command("keys", "List, create and revoke API keys for scripts.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_commands.add_parser(
        "list", parents=[server], help="list your API keys", description="List your API keys."
    )
    create = key_commands.add_parser(
        "create",
        parents=[server],
        help="create an API key and print it (shown only once)",
        description="Create an API key and print it on stdout: the only time it is shown.",
    )
    create.add_argument("name", metavar="NAME", help="what the key is for, 1-100 characters")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        choices=SCOPES,
        help="what the key may do: jobs:read (list, status, download, export) and/or "
        "jobs:write (convert, delete); repeat for both (default: both)",
    )
    create.add_argument(
        "--expires-in-days",
        type=_key_days,
        metavar="N",
        help=f"the key stops working after N days (1-{MAX_KEY_DAYS}; default: never)",
    )
    revoke = key_commands.add_parser(
        "revoke",
        parents=[server],
        help="revoke an API key",
        description="Revoke an API key: it stops working within 30 seconds.",
    )
    revoke.add_argument("key_id", metavar="ID", help="the key's id (or its v2m_<id> prefix)")
    return parser


def option_flag(field: str) -> str:
    """Return the flag for a conversion option the server names, or the name itself."""
    return f"--{field.replace('_', '-')}" if field in OPTION_FIELDS else field


def _key_days(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= MAX_KEY_DAYS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_KEY_DAYS}, got {value}")
    return value


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
