"""Resumable uploads under way, remembered between runs so that ``convert`` can resume them.

One JSON entry per upload in ``<state dir>/uploads/`` (0600 files in a 0700
directory), named by the fingerprint of what is being converted: the server,
the user, the source file (absolute path, size, mtime in ns), the conversion
options, and whether only the audio was asked for. A run that finds the entry
for its file asks the server how far the upload got and sends the rest.

An audio-only upload sends a track that ffmpeg copied out of the video, and a
resume is only valid if it sends the very bytes whose beginning the server has.
So the track is kept here, beside its entry, until the upload completes, rather
than copied out again by the next run and compared: a second copy is the same
only with the same ffmpeg build, and some muxers write a random id or the time
into every file (Matroska's segment UID, Ogg's stream serial numbers); and to
compare it, the whole copy would have to be made first, only to learn at worst
that the upload must start over. Keeping it also spares the rerun the copy.

Entries go when their upload completes, when the server no longer has it, and
when it expires (the server's ``Upload-Expires``, else a day); kept tracks take
at most ``MAX_KEPT_BYTES`` together (the least recently active go first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from video2mp3.config import ConfigError, write_private_json

log = logging.getLogger(__name__)

UPLOADS_DIR = "uploads"  # under the client's state directory
ENTRY_SUFFIX = ".json"
# The gateway's default for an unfinished upload (RESUMABLE_UPLOAD_EXPIRY), for when the
# server has not said when it drops this one.
DEFAULT_EXPIRY_SECONDS = 24 * 3600.0
# Kept tracks are at least the tus threshold each (32 MiB by default): some dozens of them.
MAX_KEPT_BYTES = 2 * 1024**3
# A file with no entry is left alone this long: a crash's remains, not another run's work.
STRAY_SECONDS = 3600.0


class StateError(ConfigError):
    """The state directory cannot hold an upload's entry or its track."""


def fingerprint(
    *, server: str, user: str, source: Path, options: Mapping[str, str], audio_only: bool
) -> str:
    """Return the key of an upload: what is converted, how, by whom, where.

    Raises:
        OSError: ``source`` cannot be read.
    """
    stat = source.stat()
    identity = {
        "server": server,
        "user": user,
        "path": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "options": dict(options),
        "audio_only": audio_only,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PendingUpload:
    """A resumable upload as this client remembers it."""

    key: str
    path: Path  # the file whose bytes are sent: the source, or a track kept in the store
    size: int
    metadata: dict[str, str]  # Upload-Metadata: the file's name and the options
    kept: bool  # ``path`` belongs to the store and goes with the entry
    url: str | None  # None until the server created the upload
    expires_at: float  # seconds since the epoch


class PendingUploads:
    """The entries of one state directory."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock

    def find(self, key: str) -> PendingUpload | None:
        """Return the upload remembered under ``key``, or None (and forget it) if it is unusable.

        Unusable: unreadable, expired, or its file is gone or no longer its size.
        """
        entry = self.directory / f"{key}{ENTRY_SUFFIX}"
        try:
            pending = self._read(key, json.loads(entry.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("dropping the unreadable upload entry %s: %s", entry, exc)
            self._remove(key)
            return None
        try:
            size = pending.path.stat().st_size
        except OSError:
            size = None
        if pending.expires_at <= self._clock() or size != pending.size:
            self.forget(pending)
            return None
        return pending

    def start(
        self, key: str, path: Path, *, size: int, metadata: Mapping[str, str], keep: bool
    ) -> PendingUpload:
        """Remember a new upload of ``path``; with ``keep``, move ``path`` into the store first.

        Raises:
            StateError: the directory cannot be written (nothing is left behind, and
                ``path`` is where it was).
        """
        self.sweep()
        pending = PendingUpload(
            key=key,
            path=self.directory / f"{key}{path.suffix}" if keep else path,
            size=size,
            metadata=dict(metadata),
            kept=keep,
            url=None,
            expires_at=self._clock() + DEFAULT_EXPIRY_SECONDS,
        )
        moved = False
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if keep:
                # The track before its entry: an entry never names a track still arriving.
                shutil.move(path, pending.path)
                moved = True
                pending.path.chmod(0o600)
            self._write(pending)
        except OSError as exc:
            if moved:  # back where the caller can still send it from
                with contextlib.suppress(OSError):
                    shutil.move(pending.path, path)
            self._remove(key, pending.path if keep else None)
            raise StateError(
                f"cannot keep the upload's state in {self.directory}: {exc.strerror or exc}"
            ) from None
        return pending

    def save(
        self, pending: PendingUpload, *, url: str | None, expires_at: float | None
    ) -> PendingUpload:
        """Record where the upload lives and until when; return the entry as it now is.

        A failure to write is logged, not raised: the upload goes on, only a
        later run could not resume it.
        """
        expiry = expires_at if expires_at is not None else self._clock() + DEFAULT_EXPIRY_SECONDS
        pending = replace(pending, url=url, expires_at=expiry)
        try:
            self._write(pending)
        except OSError as exc:
            log.warning("cannot record the upload in %s: %s", self.directory, exc)
        return pending

    def forget(self, pending: PendingUpload) -> None:
        """Remove an entry and, if the store kept it, its file."""
        self._remove(pending.key, pending.path if pending.kept else None)

    def sweep(self) -> None:
        """Remove expired and broken entries, files no entry names, and the oldest kept tracks.

        Kept tracks beyond ``MAX_KEPT_BYTES`` together go, the least recently active first.
        """
        try:
            names = [path.name for path in self.directory.iterdir()]
        except OSError:
            return
        entries = [
            pending
            for name in names
            if name.endswith(ENTRY_SUFFIX) and not name.startswith(".")
            if (pending := self.find(name.removesuffix(ENTRY_SUFFIX))) is not None
        ]
        named = {f"{p.key}{ENTRY_SUFFIX}" for p in entries} | {p.path.name for p in entries}
        now = self._clock()
        for name in names:
            path = self.directory / name
            with contextlib.suppress(OSError):
                if name not in named and path.stat().st_mtime < now - STRAY_SECONDS:
                    path.unlink()
        kept = sorted((p for p in entries if p.kept), key=lambda p: p.expires_at)
        total = sum(p.size for p in kept)
        while kept and total > MAX_KEPT_BYTES:
            oldest = kept.pop(0)
            self.forget(oldest)
            total -= oldest.size

    def _read(self, key: str, record: dict[str, Any]) -> PendingUpload:
        kept = bool(record["kept"])
        # A kept track is named inside the store, so an entry never points out of it.
        path = self.directory / Path(record["file"]).name if kept else Path(record["file"])
        return PendingUpload(
            key=key,
            path=path,
            size=int(record["size"]),
            metadata={str(k): str(v) for k, v in dict(record["metadata"]).items()},
            kept=kept,
            url=str(record["url"]) if record["url"] else None,
            expires_at=float(record["expires_at"]),
        )

    def _write(self, pending: PendingUpload) -> None:
        write_private_json(
            self.directory / f"{pending.key}{ENTRY_SUFFIX}",
            {
                "file": pending.path.name if pending.kept else str(pending.path),
                "size": pending.size,
                "metadata": pending.metadata,
                "kept": pending.kept,
                "url": pending.url,
                "expires_at": pending.expires_at,
            },
        )

    def _remove(self, key: str, kept_file: Path | None = None) -> None:
        for path in (self.directory / f"{key}{ENTRY_SUFFIX}", kept_file):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
