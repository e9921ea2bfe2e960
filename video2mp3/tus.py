"""The CLI's tus 1.0.0 uploads: a file in chunks, from where the server has it, retried.

``send`` takes an upload remembered in ``pending``: it asks the server how much
it has (``HEAD``), or creates the upload (``POST /files/``) when there is none or
the server no longer has it (404/410: expired, deleted), then sends the rest in
``PATCH`` requests of at most ``CHUNK_SIZE`` bytes, each streamed from the file,
moving the progress bar as the socket takes the bytes. The answer to the last
one names the job. A connection that breaks, a server that is briefly away (5xx),
busy with the same upload (423) or ahead of us (409) is asked again after
``RETRY_DELAYS``; the count starts over whenever the server's offset has moved.
When they are spent, the error says that running the command again resumes.

Why not the official client ``tuspy`` (the tests use it against the gateway):
measured with tuspy 1.1.0, it
- would grow the ``cli`` extra (requests alone, 2 MB) by aiohttp and its helpers
  (multidict, yarl, frozenlist, propcache, aiosignal, aiohappyeyeballs, attrs, several
  compiled) and tinydb: 10 distributions, about 11 MB. It imports aiohttp even for
  synchronous uploads, so ``import tusclient.client`` takes 0.5-0.8 s here against
  0.11-0.16 s for requests, on every run of the command;
- reads each chunk into memory whole (``file.read(chunk_size)``: 32 MiB of RAM per
  32 MiB chunk) and reports nothing until a chunk is done, 13 s of a still bar at
  20 Mbit/s;
- sends every request without a timeout (a silent server hangs it for ever) through
  module-level ``requests`` calls: no connection reuse and none of ``Client``'s
  headers, timeouts and translated errors;
- retries after a fixed delay (30 s by default) and raises when a stored upload has
  gone (404), where starting over is what a user wants; its stored uploads are keyed
  by the file's first 64 KiB and size alone (not the server, the user, the options).
Ours is this module's 150 lines and three request methods on ``Client``, which
already had the session, the token, the timeouts, the errors and the streamed body.

``creation-with-upload`` would spare one request per upload, but a body cut short
in the creating request leaves the client without the upload's URL; the
checksum extension would read every chunk twice. Neither is used.
"""

from __future__ import annotations

import logging
import time
from typing import Any, BinaryIO

from video2mp3.client import (
    ApiError,
    AuthenticationError,
    Client,
    ClientError,
    ConnectionFailed,
    UploadStatus,
)
from video2mp3.multipart import FileBody, FileChanged
from video2mp3.pending import PendingUpload, PendingUploads
from video2mp3.progress import Progress, human_size

log = logging.getLogger(__name__)

# Below the 100 MB that proxies in front of self-hosted services commonly allow a request
# body (and the web page's 50 MB chunks), a multiple of the gateway's 1 MiB GridFS chunks,
# and what a proxy that buffers whole bodies could lose at a cut: 13 s of a 20 Mbit/s uplink.
CHUNK_SIZE = 32 * 1024**2
# Waits before the 1st, 2nd, ... new attempt; 15 s in all, about the time a laptop takes
# to find its Wi-Fi again (tus-js-client waits 0, 1, 3 and 5 s).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
FILENAME_KEY = "filename"  # the Upload-Metadata key the gateway names the job's file by
GONE = frozenset({404, 410})
# Worth asking again: a cut-off slow body, another request's lock, an offset that moved
# under us, and a server or proxy briefly away.
TRANSIENT_STATUSES = frozenset({408, 409, 423, 500, 502, 503, 504})


class _Gone(Exception):
    """The server no longer has the upload being sent."""


def send(
    client: Client, uploads: PendingUploads, pending: PendingUpload, bar: Progress
) -> dict[str, Any]:
    """Send the rest of ``pending``'s file and return its job (as ``GET /jobs/<id>`` has it).

    The entry is forgotten once the job exists, and when the server refuses the
    upload for good; it stays for a later run after a connection failure, a
    refused login or an interruption.

    Raises:
        ApiError, ConnectionFailed: as ``Client``'s; after the retries, the last one,
            saying how to resume.
        AuthenticationError: the login expired (rerun after logging in again to resume).
        multipart.FileChanged: the file shrank while it was being read.
    """
    status: UploadStatus | None = None
    failures = 0
    offset_at_failure = -1
    first_look = pending.url is not None
    while True:
        try:
            if status is None:
                pending, status = _locate(client, uploads, pending)
                if first_look and status.offset:
                    bar.resume_from(status.offset)
                    if status.job_id is None:  # else an earlier run finished it
                        bar.note(
                            f"{bar.label}: resuming at {human_size(status.offset)} "
                            f"of {human_size(status.length)}"
                        )
                first_look = False
                if status.offset > offset_at_failure:
                    failures = 0
            with pending.path.open("rb") as file:
                while status.job_id is None:
                    status = _append_chunk(client, file, status, bar)
                    pending = uploads.save(pending, url=status.url, expires_at=status.expires_at)
                    failures = 0
            job = client.job(status.job_id)
        except _Gone:
            log.debug("upload %s is gone from the server; starting over", pending.url)
            pending = uploads.save(pending, url=None, expires_at=None)
            bar.update(0)
            status, first_look = None, False
            failures += 1  # a server that keeps losing it is no reason to loop for ever
            if failures > len(RETRY_DELAYS):
                raise ConnectionFailed("The server keeps losing the upload.") from None
            continue
        except ClientError as exc:
            if not _transient(exc):
                if not isinstance(exc, AuthenticationError):
                    uploads.forget(pending)
                raise
            failures += 1
            offset_at_failure = status.offset if status is not None else offset_at_failure
            if failures > len(RETRY_DELAYS):
                raise _with_resume_hint(exc, bar) from None
            delay = RETRY_DELAYS[failures - 1]
            bar.note(f"{bar.label}: {str(exc).rstrip('.')}; trying again in {delay:g} s")
            time.sleep(delay)
            status = None
            continue
        except FileChanged:
            uploads.forget(pending)
            raise
        uploads.forget(pending)
        return job


def _locate(
    client: Client, uploads: PendingUploads, pending: PendingUpload
) -> tuple[PendingUpload, UploadStatus]:
    """Return the server's view of the upload; create it when the server has none to go on."""
    if pending.url is not None:
        try:
            status = client.upload_status(pending.url)
        except ApiError as exc:
            if exc.status not in GONE:
                raise
            log.debug("upload %s is gone (%s); starting over", pending.url, exc.status)
        else:
            # A whole upload with no job (the gateway failed between the two) cannot finish.
            finishable = status.job_id is not None or status.offset < status.length
            if status.length == pending.size and finishable:
                return pending, status
    status = client.create_upload(length=pending.size, metadata=pending.metadata)
    return uploads.save(pending, url=status.url, expires_at=status.expires_at), status


def _append_chunk(
    client: Client, file: BinaryIO, status: UploadStatus, bar: Progress
) -> UploadStatus:
    """Send the next chunk from the server's offset; return the server's answer."""
    file.seek(status.offset)
    body = FileBody(
        file,
        min(CHUNK_SIZE, status.length - status.offset),
        start=status.offset,
        on_progress=bar.update,
    )
    try:
        return client.append_to_upload(status.url, body, offset=status.offset, length=status.length)
    except ApiError as exc:
        if exc.status in GONE:
            raise _Gone from None
        raise


def _transient(exc: ClientError) -> bool:
    if isinstance(exc, ConnectionFailed):
        return True
    return isinstance(exc, ApiError) and exc.status in TRANSIENT_STATUSES


def _with_resume_hint(exc: ClientError, bar: Progress) -> ClientError:
    """Return ``exc`` with a message that says how far the upload got and how to resume it."""
    message = (
        f"{str(exc).rstrip('.')}. {human_size(bar.done)} of {human_size(bar.total or 0)} "
        "were sent; run the same command again to resume the upload."
    )
    if isinstance(exc, ApiError):
        return type(exc)(exc.status, exc.code, message, exc.body)
    return ConnectionFailed(message)
