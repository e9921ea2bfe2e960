"""Files to and from the server, and conversions followed, with progress on stderr."""

from __future__ import annotations

import contextlib
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from video2mp3 import soundtrack, tus
from video2mp3.cli.errors import CommandError
from video2mp3.cli.output import note
from video2mp3.client import Client, ConnectionFailed, Download, safe_filename
from video2mp3.pending import PendingUpload, PendingUploads, StateError, fingerprint
from video2mp3.progress import Progress, human_duration, human_size

FINISHED = ("done", "failed")
POLL_FIRST_SECONDS = 0.2
POLL_MAX_SECONDS = 2.0
UNPACK_CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Resumable:
    """How uploads of ``threshold`` bytes or more go: by tus, remembered in ``uploads``."""

    uploads: PendingUploads
    user: str  # whose uploads: part of every upload's fingerprint
    threshold: int


def upload(
    client: Client,
    path: Path,
    options: dict[str, str],
    *,
    audio_only: bool = True,
    resumable: Resumable,
) -> dict[str, Any]:
    """Stream one file to the server with a progress bar; return the accepted job.

    With ``audio_only``, a video's audio track is sent in its place when ffmpeg
    can copy it out (``soundtrack``), under the video's name, so the MP3 and the
    email are named after it; otherwise, silently, the whole file. Options that
    need the picture or the container (a cover, chapters) have the whole file
    sent, and say so. What is sent goes resumably (``tus``) from
    ``resumable.threshold`` bytes on, and an upload of the same file with the
    same options that an earlier run left unfinished is resumed, the track it
    was copying included.
    """
    if audio_only and (reason := soundtrack.whole_video_reason(options)):
        note(f"{path.name}: sending the whole file: {reason}")
        audio_only = False
    key = fingerprint(
        server=client.server,
        user=resumable.user,
        source=path,
        options=options,
        audio_only=audio_only,
    )
    pending = resumable.uploads.find(key)
    if pending is not None:
        return _send_resumable(client, resumable.uploads, pending, path.name)
    if not audio_only:
        return _send(client, resumable, key, path, path.name, options)
    with soundtrack.extracted(path, options) as track:
        if track is None:
            return _send(client, resumable, key, path, path.name, options)
        note(
            f"{path.name}: sending the audio only ({track.codec}): "
            f"{human_size(track.size)} of {human_size(path.stat().st_size)}"
        )
        # Kept when sent resumably: a rerun must send these very bytes (see pending).
        return _send(
            client,
            resumable,
            key,
            track.path,
            path.name,
            track.options,
            content_type=track.content_type,
            keep=True,
        )


def _send(
    client: Client,
    resumable: Resumable,
    key: str,
    path: Path,
    filename: str,
    options: dict[str, str],
    *,
    content_type: str | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Send one file under a name: resumably from the threshold on, else in one request."""
    size = path.stat().st_size
    if size >= resumable.threshold:
        metadata = {tus.FILENAME_KEY: filename, **options}
        try:
            pending = resumable.uploads.start(key, path, size=size, metadata=metadata, keep=keep)
        except StateError as exc:
            note(f"{filename}: {exc}; sending it in one request, which cannot be resumed")
        else:
            return _send_resumable(client, resumable.uploads, pending, filename)
    return _post(client, path, filename, options, content_type=content_type)


def _send_resumable(
    client: Client, uploads: PendingUploads, pending: PendingUpload, filename: str
) -> dict[str, Any]:
    bar = Progress(f"uploading {filename}", pending.size)
    try:
        job = tus.send(client, uploads, pending, bar)
    except KeyboardInterrupt:
        bar.abort()
        note(f"{filename}: run the same command again to resume the upload")
        raise
    except BaseException:
        bar.abort()
        raise
    bar.finish(bar.summary())
    return job


def _post(
    client: Client,
    path: Path,
    filename: str,
    options: dict[str, str],
    *,
    content_type: str | None = None,
) -> dict[str, Any]:
    size = path.stat().st_size
    bar = Progress(f"uploading {filename}", size)
    try:
        with path.open("rb") as file:
            job = client.upload(
                file,
                filename=filename,
                size=size,
                options=options,
                on_progress=bar.update,
                content_type=content_type,
            )
    except BaseException:
        bar.abort()
        raise
    bar.finish(bar.summary())
    return job


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


def save_download(client: Client, fid: str, directory: Path, *, name: str | None = None) -> Path:
    """Download an MP3 into ``directory`` under ``name`` or else the server's name for it;
    return the path.

    An existing file is never overwritten: "name (1).mp3" and so on are tried.
    The bytes go to a hidden ".part" file first, renamed once complete.

    Raises:
        CommandError: the directory or the file cannot be written (exit 1).
    """
    _make_directory(directory)
    with client.download(fid) as download:
        filename = safe_filename(name, download.filename) if name else download.filename
        target = _unused_path(directory / filename)
        bar = _receive(download, target)
    _publish(_partial_path(target), target)
    bar.finish(bar.summary())
    return target


def save_export(client: Client, output: Path | None) -> Path:
    """Download the account's export to ``output`` (a file, or a directory to put it in;
    default here) and return the path.

    In a directory it takes the server's name and never overwrites a file ("name (1).json"
    and so on); a file named by ``output`` is replaced, once the download is complete.

    Raises:
        CommandError: the directory or the file cannot be written (exit 1).
    """
    into_directory = output is None or output.is_dir()
    directory = (output or Path()) if into_directory else output.parent
    _make_directory(directory)
    with client.export() as download:
        target = _unused_path(directory / download.filename) if into_directory else output
        bar = _receive(download, target)
    _publish(_partial_path(target), target)
    bar.finish(bar.summary())
    return target


def save_zip(
    client: Client, job_ids: Sequence[str], directory: Path, *, unpack: bool = True
) -> list[Path]:
    """Download the outputs of done jobs as one ZIP into ``directory``; return what was saved.

    With ``unpack`` the archive's files are saved one by one (each CRC checked, none
    overwriting an existing file: "name (1).mp3" and so on) and the archive is removed;
    without it the ZIP itself is saved under the server's name for it.

    Raises:
        CommandError: a file cannot be written, or the archive is damaged (exit 1).
    """
    _make_directory(directory)
    with client.download_zip(job_ids) as download:
        target = _unused_path(directory / download.filename)
        bar = _receive(download, target)
    bar.finish(bar.summary())
    partial = _partial_path(target)
    if not unpack:
        _publish(partial, target)
        return [target]
    try:
        return _unpack(partial, directory)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def _unpack(archive: Path, directory: Path) -> list[Path]:
    """Save each file of a ZIP into ``directory`` under a safe, unused name."""
    saved = []
    try:
        with zipfile.ZipFile(archive) as files:
            for info in files.infolist():
                if info.is_dir():
                    continue
                target = _unused_path(directory / safe_filename(info.filename))
                partial = _partial_path(target)
                try:
                    with files.open(info) as source, partial.open("wb") as file:
                        shutil.copyfileobj(source, file, UNPACK_CHUNK_SIZE)
                except BaseException:
                    with contextlib.suppress(OSError):
                        partial.unlink()
                    raise
                _publish(partial, target)
                saved.append(target)
    except zipfile.BadZipFile as exc:  # also a CRC that does not match
        raise CommandError(f"the ZIP from the server is damaged: {exc}") from None
    except OSError as exc:
        raise CommandError(f"{directory}: {exc.strerror or exc}") from None
    return saved


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{directory}: {exc.strerror or exc}") from None


def _partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part")


def _receive(download: Download, target: Path) -> Progress:
    """Write a download into ``target``'s ``.part`` file with a progress bar; return the
    bar, unfinished.

    Raises:
        CommandError: the file cannot be written (exit 1); nothing is left behind.
        ConnectionFailed: the body stopped short of its Content-Length.
    """
    partial = _partial_path(target)
    bar = Progress(f"downloading {target.name}", download.size)
    written = 0
    try:
        with partial.open("wb") as file:
            for chunk in download.chunks():
                file.write(chunk)
                written += len(chunk)
                bar.update(written)
        if download.size is not None and written != download.size:
            raise ConnectionFailed(f"the download stopped after {written} of {download.size} bytes")
    except BaseException as exc:
        bar.abort()
        with contextlib.suppress(OSError):
            partial.unlink()
        if isinstance(exc, OSError):
            raise CommandError(f"{target}: {exc.strerror or exc}") from None
        raise
    return bar


def _publish(partial: Path, target: Path) -> None:
    """Give a complete ``.part`` file its name."""
    try:
        partial.rename(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise CommandError(f"{target}: {exc.strerror or exc}") from None


def _unused_path(path: Path) -> Path:
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem} ({number}){path.suffix}")
    return candidate
