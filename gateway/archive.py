"""ZIP batches: several of the caller's finished outputs as one ZIP streamed out of GridFS.

The archive is written with the standard library's ``zipfile`` into a sink that cannot
seek, so every entry gets a data descriptor (CRC and sizes after its bytes) and the CRC
is computed as the bytes pass; the sink is drained after every write, so the gateway
holds one GridFS read batch (``storage.READ_BATCH_CHUNKS``) per download, never the
archive. ``zipfile`` does everything a batch needs cleanly: STORED entries, UTF-8 names,
ZIP64 local headers, descriptors and end records when an entry, an offset or the entry
count needs them (it decides per entry from the size declared in advance, which GridFS
knows), so no dependency is added for it (zipstream-ng would do the same job).

Because every size is known before the first byte, the archive's length is too:
``archive_length`` computes it by ``zipfile``'s own layout rules, so browsers and the
CLI show a real progress bar. tests/gateway/test_archive.py holds it to the bytes that
``zipfile`` writes, ZIP64 cases included, so a Python whose layout differs is caught.

Everything that can refuse the request (ids, ownership, status, missing files) is
checked before the response starts: once the first byte is out, an error can only cut
the connection. What a job contributes comes from ``outputs_of`` alone: its output and,
for a split job, its tracks.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from common.http.errors import ApiError
from common.jobs import DONE, JobStore, output_filename, output_format
from common.mongo import FileNotFound
from common.storage import Bucket

log = logging.getLogger(__name__)

# One request's worth: 100 ids (40 bytes each as "job_id=<id>&") fit in gunicorn's
# 4094-byte request line (limit_request_line) with room for a 101st, so a list one too
# long gets this 400, not gunicorn's 414.
MAX_JOBS = 100
_JOB_ID = re.compile(r"[0-9a-f]{32}")
# What a name must not hold to unpack as one plain file anywhere (Windows included).
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]+')
MAX_NAME_CHARS = 200
# zipfile's fixed record sizes (APPNOTE 4.3): local header, central directory entry,
# data descriptor (plain, ZIP64), ZIP64 extra field header and value, end records.
_LOCAL_HEADER = 30
_CENTRAL_HEADER = 46
_DESCRIPTOR, _DESCRIPTOR_ZIP64 = 16, 24
_EXTRA_HEADER, _EXTRA_VALUE = 4, 8
_END_RECORD, _ZIP64_END_RECORD, _ZIP64_LOCATOR = 22, 56, 20
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Output:
    """One file a finished job produced: its id in the outputs' bucket and its download name."""

    fid: Any
    name: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of the archive: its unique name, size, time and where its bytes are."""

    name: str
    size: int
    modified: datetime | None
    fid: Any


def outputs_of(job: Mapping[str, Any]) -> list[Output]:
    """Return the files a done job offers for download: its output, then a split's tracks.

    Tracks are named "<output's stem> - 01 - <title>.<ext>", so they sort together
    after their whole output and beside it, whatever the other jobs in the batch.
    """
    whole = Output(job["mp3_fid"], output_filename(job.get("filename"), output_format(job)))
    return [whole] + [Output(track["fid"], track["filename"]) for track in job.get("tracks") or ()]


def requested_jobs(job_ids: Sequence[str], owner: str, jobs: JobStore) -> list[dict[str, Any]]:
    """Return ``owner``'s done jobs named by ``job_ids``, each once, in the order given.

    Raises:
        ApiError: 400 no id, too many or a malformed one; 404 a job that does not exist
            or is someone else's; 409 a job that is not done (queued, processing, failed).
    """
    if not job_ids:
        raise ApiError(400, "missing_job_id", "Name the jobs as ?job_id=<id>&job_id=<id>...")
    unique = list(dict.fromkeys(job_ids))
    if len(unique) > MAX_JOBS:
        raise ApiError(
            400, "too_many_jobs", f"At most {MAX_JOBS} jobs fit in one ZIP; got {len(unique)}."
        )
    for job_id in unique:
        if not _JOB_ID.fullmatch(job_id):
            raise ApiError(
                400, "invalid_job_id", f"{job_id[:64]!r} is not a job id.", extra={"job_id": job_id}
            )
    found = []
    for job_id in unique:
        job = jobs.get_owned(job_id, owner)
        if job is None:
            raise ApiError(404, "not_found", f"No such job: {job_id}.", extra={"job_id": job_id})
        if job["status"] != DONE:
            raise ApiError(
                409,
                "not_ready",
                f"Job {job_id} is {job['status']}: only done jobs can be zipped.",
                extra={
                    "job_id": job_id,
                    "status": job["status"],
                    "progress": job.get("progress", 0),
                    "reason": job.get("error"),
                },
            )
        found.append(job)
    return found


def plan_entries(jobs: Iterable[Mapping[str, Any]], mp3s: Bucket) -> list[Entry]:
    """Return the archive's entries for these jobs: unique safe names, sizes from GridFS.

    Raises:
        ApiError: 404 a done job whose file is gone (deleted meanwhile).
        TransientError: MongoDB failed.
    """
    entries: list[Entry] = []
    taken: set[str] = set()
    for job in jobs:
        for output in outputs_of(job):
            try:
                stored = mp3s.open(output.fid)
            except FileNotFound:
                raise ApiError(
                    404,
                    "not_found",
                    f"The file of job {job['_id']} is gone.",
                    extra={"job_id": job["_id"]},
                ) from None
            name = unique_name(entry_name(output.name), taken)
            entries.append(Entry(name, int(stored.length), job.get("finished_at"), output.fid))
    return entries


def entry_name(name: str) -> str:
    """Return ``name`` as a plain file name that unpacks in place on any system."""
    name = PurePosixPath(name.replace("\\", "/")).name
    name = _UNSAFE_CHARS.sub("_", name).strip().lstrip(".").strip()
    if len(name) > MAX_NAME_CHARS:
        suffix = PurePosixPath(name).suffix
        name = name[: MAX_NAME_CHARS - len(suffix)] + suffix
    return name or "audio.mp3"


def unique_name(name: str, taken: set[str]) -> str:
    """Return ``name``, or "name (1).mp3" and so on, unused in ``taken``; record it there.

    Names compare without case: macOS and Windows would unpack "A.mp3" over "a.mp3".
    """
    path = PurePosixPath(name)
    candidate, number = name, 0
    while candidate.casefold() in taken:
        number += 1
        candidate = f"{path.stem} ({number}){path.suffix}"
    taken.add(candidate.casefold())
    return candidate


def archive_length(entries: Sequence[Entry]) -> int:
    """Return the exact byte length of the archive ``stream`` writes for ``entries``.

    It follows ``zipfile``'s choices: a ZIP64 local header and descriptor when the
    declared size times 1.05 passes 4 GiB, a ZIP64 extra in the central directory for a
    size or an offset past 4 GiB, ZIP64 end records past 65535 entries or a central
    directory past 4 GiB.
    """
    offset = 0
    directory = 0
    for entry in entries:
        name = len(entry.name.encode("utf-8"))
        zip64 = entry.size * 1.05 > zipfile.ZIP64_LIMIT
        fields = 2 * (entry.size > zipfile.ZIP64_LIMIT) + (offset > zipfile.ZIP64_LIMIT)
        directory += _CENTRAL_HEADER + name
        if fields:
            directory += _EXTRA_HEADER + _EXTRA_VALUE * fields
        offset += _LOCAL_HEADER + name + entry.size
        offset += (_EXTRA_HEADER + 2 * _EXTRA_VALUE + _DESCRIPTOR_ZIP64) if zip64 else _DESCRIPTOR
    end = _END_RECORD
    if (
        len(entries) > zipfile.ZIP_FILECOUNT_LIMIT
        or offset > zipfile.ZIP64_LIMIT
        or directory > zipfile.ZIP64_LIMIT
    ):
        end += _ZIP64_END_RECORD + _ZIP64_LOCATOR
    return offset + directory + end


def stream(entries: Sequence[Entry], read: Callable[[Any], Iterable[bytes]]) -> Iterator[bytes]:
    """Yield the ZIP of ``entries`` piece by piece; ``read(fid)`` yields a file's bytes.

    Entries are STORED (MP3s do not compress); each piece is handed on as soon as
    ``zipfile`` has written it.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, _zip_time(entry.modified))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = entry.size  # decides ZIP64 up front, as archive_length does
            info.external_attr = 0o644 << 16
            with archive.open(info, "w") as member:
                yield from sink.drain()
                for chunk in read(entry.fid):
                    member.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()


def _zip_time(moment: datetime | None) -> tuple[int, int, int, int, int, int]:
    if moment is None:
        return _ZIP_EPOCH
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC).timetuple()[:6]
    return max(stamp, _ZIP_EPOCH)


def archive_name(now: datetime) -> str:
    """Return the download name of a batch made at ``now``."""
    return f"video2mp3-{now.astimezone(UTC):%Y%m%d-%H%M%S}.zip"


class _Sink:
    """Where ``zipfile`` writes: it cannot seek, so entries get data descriptors."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        # zipfile hands over header bytes and the caller's own chunks: kept as they are.
        self._pieces.append(data if isinstance(data, bytes) else bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here beyond what ``drain`` hands on."""

    def drain(self) -> list[bytes]:
        """Return and forget what was written since the last call."""
        pieces, self._pieces = self._pieces, []
        return pieces
