"""What the command shows: results on stdout, notes and errors on stderr, laid out for people."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from video2mp3.cli.parser import PROG
from video2mp3.progress import human_size

JOB_COLUMNS = ("JOB ID", "STATUS", "PROGRESS", "CREATED", "MP3 FID", "FILE")
TRACK_COLUMNS = ("#", "TITLE", "START", "LENGTH", "SIZE", "FILE")
KEY_COLUMNS = ("ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "LAST USED")


def say(text: str) -> None:
    """Write a result to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """Write information to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def fail(text: str) -> None:
    """Write an error to stderr."""
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


def job_rows(jobs: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Return one row of ``JOB_COLUMNS`` per job from ``GET /jobs``."""
    return [
        (
            job["job_id"],
            job["status"],
            f"{job.get('progress') or 0}%",
            format_local_time(job.get("created_at")),
            job.get("mp3_fid") or "-",
            job.get("filename") or "-",
        )
        for job in jobs
    ]


def job_lines(job: dict[str, Any]) -> list[tuple[str, str]]:
    """Return ``(name, text)`` lines for one job, with the commands that download its output
    and its tracks (``track_rows`` lays out the tracks themselves)."""
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
    ]
    if isinstance(job.get("loudness"), dict):
        lines.append(("loudness", loudness_text(job["loudness"])))
    lines += [
        ("created", format_local_time(job.get("created_at"))),
        ("started", format_local_time(job.get("started_at"))),
        ("finished", format_local_time(job.get("finished_at"))),
        ("video fid", job.get("video_fid") or "-"),
        ("mp3 fid", job.get("mp3_fid") or "-"),
    ]
    if job["status"] == "done" and job.get("mp3_fid"):
        lines.append(("download", f"{PROG} download {job['mp3_fid']}"))
        if tracks := job_tracks(job):
            lines.append(("tracks", f"{len(tracks)}: {PROG} download {job['job_id']} --tracks"))
    return lines


def job_tracks(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the tracks of a split job (none for any other), in their order."""
    tracks = job.get("tracks")
    if not isinstance(tracks, list):
        return []
    return [track for track in tracks if isinstance(track, dict) and track.get("fid")]


def track_rows(tracks: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Return one row of ``TRACK_COLUMNS`` per track of a split job."""
    return [
        (
            str(track.get("number") or "-"),
            track.get("title") or "-",
            format_clock(track.get("start")),
            format_clock(track.get("duration")),
            human_size(track["size"]) if _is_number(track.get("size")) else "-",
            track.get("filename") or "-",
        )
        for track in tracks
    ]


def loudness_text(loudness: dict[str, Any]) -> str:
    """Show a job's measured loudness, before and after, beside its target and true peaks."""

    def figure(key: str) -> str:
        value = loudness.get(key)
        return f"{value:.1f}" if _is_number(value) else "?"

    return (
        f"{figure('input_i')} LUFS -> {figure('output_i')} LUFS "
        f"(target {figure('target')} LUFS; true peak {figure('input_tp')} -> "
        f"{figure('output_tp')} dBTP)"
    )


def format_clock(seconds: float | None) -> str:
    """Show seconds as a time on a clock: 0:05, 10:00, 1:02:03 (to the nearest second)."""
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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


def account_lines(account: dict[str, Any]) -> list[tuple[str, str]]:
    """Return ``(name, text)`` lines for ``GET /me``: who, how logged in, usage and quotas."""
    if account.get("auth") == "api_key":
        scopes = ", ".join(account.get("scopes") or []) or "none"
        how = f"API key {account.get('key_id') or '-'} (scopes: {scopes})"
    else:
        how = "session (email and password)"
    lines = usage_lines(account)
    return [lines[0], ("logged in with", how), *lines[1:]]


def key_rows(keys: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Return one row of ``KEY_COLUMNS`` per API key from ``GET /api-keys``."""
    return [
        (
            str(key.get("id") or "-"),
            str(key.get("name") or "-"),
            ",".join(key.get("scopes") or []) or "-",
            format_local_time(key.get("created_at")),
            format_local_time(key.get("expires_at")) if key.get("expires_at") else "never",
            format_local_time(key.get("last_used_at")) if key.get("last_used_at") else "never",
        )
        for key in keys
    ]


def _against(used: int, limit: int | None, show: Callable[[int], str]) -> str:
    """Show a figure beside its quota: "2 of 10", "10 of 10 (full)", "1.2 GiB (unlimited)"."""
    if limit is None:
        return f"{show(used)} (unlimited)"
    return f"{show(used)} of {show(limit)}" + (" (full)" if used >= limit else "")


def format_fields(lines: Sequence[tuple[str, str]]) -> str:
    """Lay out ``name: value`` lines with the values in one column."""
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in lines)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Lay out rows under their headers in columns two spaces apart."""
    rows = [headers, *rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(headers))]
    return "\n".join(
        "  ".join(f"{value!s:<{width}}" for value, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_local_time(value: str | float | None) -> str:
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
