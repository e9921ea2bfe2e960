"""Resumable uploads over the tus 1.0.0 protocol, at ``/files/``.

Core protocol plus the creation, creation-with-upload, termination, expiration and
checksum extensions (https://tus.io/protocols/resumable-upload). Every request carries a
bearer token and an upload is its creator's alone (anyone else gets 404).
``Upload-Metadata`` names the file (``filename``) and holds the same output options
and ``callback_url`` as the form fields of ``POST /upload``, checked before any
byte is stored. When the last byte arrives the job is created as for
``POST /upload``, and the answer names it in ``Video2mp3-Job-Id``. The bytes and
the upload's state live in ``gateway.resumable``. With the checksum extension
(``Upload-Checksum``, md5, sha1 or sha256) a request's body is kept only if it
matches, else 460; the digest is computed as the bytes stream through.
"""

from __future__ import annotations

import base64
import binascii
import logging

from flask import Blueprint, Response, request
from werkzeug.http import http_date, parse_options_header

from common.errors import TransientError
from common.http.errors import ApiError
from common.jobs import new_job_id
from common.logs import log_context
from common.mongo import utcnow
from gateway import metrics
from gateway.identity import JOBS_WRITE, current_user, requires_scope
from gateway.intake import StoredVideo, read_submission
from gateway.resumable import CHECKSUM_ALGORITHMS, Checksum, PendingUpload
from gateway.services import services
from gateway.uploads import clean_filename

log = logging.getLogger(__name__)

bp = Blueprint("tus", __name__, url_prefix="/files")

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHUNK_CONTENT_TYPE = "application/offset+octet-stream"
JOB_ID_HEADER = "Video2mp3-Job-Id"
FILENAME_KEY = "filename"
# Keys tus clients commonly send on their own (Uppy, tus-js-client demos): not options.
CLIENT_KEYS = frozenset({"name", "type", "filetype", "relativePath"})
MAX_METADATA_BYTES = 8192


@bp.after_request
def _tus_headers(response: Response) -> Response:
    """Tell every answer's reader which tus version the server speaks."""
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.before_request
def _check_version() -> None:
    """Refuse a client that speaks another tus version (OPTIONS is how it finds out)."""
    if request.method == "OPTIONS":
        return
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise ApiError(
            412,
            "unsupported_tus_version",
            f"Send Tus-Resumable: {TUS_VERSION}.",
            headers={"Tus-Version": TUS_VERSION},
        )


@bp.route("/", methods=["OPTIONS"], provide_automatic_options=False)
@requires_scope(JOBS_WRITE)
def capabilities() -> tuple[str, int, dict[str, str]]:
    """Describe what the server supports: version, extensions, largest upload."""
    current_user()
    return (
        "",
        204,
        {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(services().config.max_content_length),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@bp.post("/", provide_automatic_options=False)
@requires_scope(JOBS_WRITE)
def create() -> tuple[str, int, dict[str, str]]:
    """Create an upload, after checking its metadata, size and the caller's quotas."""
    svc = services()
    user = current_user()
    uploads = svc.resumable
    length = _read_length()
    limit = svc.config.max_content_length
    if length > limit:
        raise ApiError(413, "too_large", f"The upload exceeds the {limit}-byte limit.")
    metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
    filename = clean_filename(metadata.pop(FILENAME_KEY, None) or metadata.get("name"))
    fields = {key: value for key, value in metadata.items() if key not in CLIENT_KEYS}
    submission = read_submission(fields, svc.config.egress)
    # Unfinished uploads hold room too, or many small creations could pass the quota.
    pending = 0 if user.admin else uploads.pending_bytes(user.subject)
    svc.intake.room_for(user, incoming_bytes=length + pending, now=utcnow())
    body_type = _body_type()
    if body_type not in (None, CHUNK_CONTENT_TYPE):
        raise _wrong_content_type()
    if body_type and request.content_length is not None and request.content_length > length:
        raise ApiError(413, "exceeds_upload_length", "The body is longer than Upload-Length.")
    job_id = new_job_id()
    with log_context(job_id=job_id):
        upload = uploads.create(
            owner=user.subject,
            job_id=job_id,
            length=length,
            filename=filename,
            submission=submission,
        )
        log.info(
            "resumable upload %s of %d bytes created by %s", upload.upload_id, length, user.subject
        )
        headers = {"Location": f"{request.script_root}/files/{upload.upload_id}"}
        if body_type == CHUNK_CONTENT_TYPE:  # creation-with-upload
            upload = _append(upload, offset=0)
            headers.update(_job_header(upload))
        headers.update(_progress_headers(upload))
    return "", 201, headers


@bp.route("/<upload_id>", methods=["HEAD"])
@requires_scope(JOBS_WRITE)
def status(upload_id: str) -> tuple[str, int, dict[str, str]]:
    """Tell how many bytes of the upload the server has."""
    upload = _find(upload_id)
    return "", 200, {**_progress_headers(upload), **_job_header(upload)}


@bp.patch("/<upload_id>")
@requires_scope(JOBS_WRITE)
def append(upload_id: str) -> tuple[str, int, dict[str, str]]:
    """Append the body to the upload at Upload-Offset; the last bytes start the job."""
    upload = _find(upload_id)
    if _body_type() != CHUNK_CONTENT_TYPE:
        raise _wrong_content_type()
    offset = _read_int_header("Upload-Offset")
    with log_context(job_id=upload.job_id):
        upload = _append(upload, offset=offset)
    return "", 204, {**_progress_headers(upload), **_job_header(upload)}


@bp.delete("/<upload_id>")
@requires_scope(JOBS_WRITE)
def terminate(upload_id: str) -> tuple[str, int]:
    """Remove an upload and the bytes stored so far (a finished upload's job stays)."""
    upload = _find(upload_id)
    services().resumable.terminate(upload)
    log.info("resumable upload %s terminated", upload.upload_id)
    return "", 204


def parse_metadata(header: str) -> dict[str, str]:
    """Decode ``Upload-Metadata``: comma-separated ``key base64(value)`` pairs.

    Raises:
        ApiError: 400 ``invalid_metadata`` for a malformed header.
    """
    if len(header) > MAX_METADATA_BYTES:
        raise _bad_metadata(f"Upload-Metadata exceeds {MAX_METADATA_BYTES} bytes.")
    metadata: dict[str, str] = {}
    for pair in header.split(","):
        if not pair.strip():
            continue
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise _bad_metadata(f"Malformed Upload-Metadata pair {pair.strip()!r}.")
        key = parts[0]
        if key in metadata:
            raise _bad_metadata(f"Upload-Metadata names {key!r} twice.")
        try:
            raw = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
            metadata[key] = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _bad_metadata(
                f"The Upload-Metadata value of {key!r} is not base64-encoded UTF-8."
            ) from None
    return metadata


def read_checksum(header: str | None) -> Checksum | None:
    """Decode ``Upload-Checksum``: an algorithm and the body's base64 digest.

    Raises:
        ApiError: 400 ``invalid_checksum`` for a malformed header or an unknown algorithm.
    """
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ApiError(
            400,
            "invalid_checksum",
            f"Upload-Checksum: use one of {', '.join(CHECKSUM_ALGORITHMS)}.",
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise ApiError(
            400, "invalid_checksum", "Upload-Checksum: the digest is not base64."
        ) from None
    return Checksum(algorithm, digest)


def _append(upload: PendingUpload, *, offset: int) -> PendingUpload:
    """Store the request body at ``offset``; when the upload is complete, start its job."""
    svc = services()
    # Slow or stalled bodies are cut off (408); what arrived before stays stored.
    body = svc.upload_watchdog.guard(request.stream, request.environ.get("gunicorn.socket"))
    was_sealed = upload.sealed
    upload = svc.resumable.append(
        upload,
        offset=offset,
        stream=body,
        content_length=request.content_length,
        checksum=read_checksum(request.headers.get("Upload-Checksum")),
    )
    if upload.sealed and not was_sealed:
        upload = _accept(upload)
    return upload


def _accept(upload: PendingUpload) -> PendingUpload:
    """Turn a finished upload into a job, as ``POST /upload`` does."""
    svc = services()
    try:
        svc.intake.accept(
            job_id=upload.job_id,
            owner=upload.owner,
            video=StoredVideo(upload.video_fid, upload.filename, upload.length),
            submission=upload.submission,
        )
    except TransientError:
        # Intake removed the video; the upload cannot be resumed.
        svc.resumable.forget(upload)
        metrics.UPLOADS.labels("failed").inc()
        raise
    metrics.UPLOADS.labels("accepted").inc()
    metrics.UPLOAD_BYTES.observe(upload.length)
    log.info(
        "accepted %s (%d bytes, %s) from %s by resumable upload",
        upload.filename,
        upload.length,
        upload.container,
        upload.owner,
    )
    return svc.resumable.mark_accepted(upload)


def _find(upload_id: str) -> PendingUpload:
    upload = services().resumable.find(upload_id, current_user().subject)
    if upload is None:
        raise ApiError(404, "not_found", "No such upload.")
    return upload


def _progress_headers(upload: PendingUpload) -> dict[str, str]:
    return {
        "Upload-Offset": str(upload.offset),
        "Upload-Length": str(upload.length),
        "Upload-Expires": http_date(upload.expires_at),
    }


def _job_header(upload: PendingUpload) -> dict[str, str]:
    return {JOB_ID_HEADER: upload.job_id} if upload.accepted else {}


def _body_type() -> str | None:
    raw = request.headers.get("Content-Type")
    return parse_options_header(raw)[0] if raw else None


def _read_length() -> int:
    if "Upload-Defer-Length" in request.headers:
        raise ApiError(
            400, "length_required", "Deferred lengths are not supported; send Upload-Length."
        )
    if "Upload-Length" not in request.headers:
        raise ApiError(400, "length_required", "Send the upload's size in Upload-Length.")
    length = _read_int_header("Upload-Length")
    if length == 0:
        raise ApiError(400, "empty_file", "The uploaded file is empty.")
    return length


def _read_int_header(name: str) -> int:
    raw = request.headers.get(name, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, "invalid_header", f"{name} must be a non-negative whole number.")
    return int(raw)


def _wrong_content_type() -> ApiError:
    return ApiError(
        415, "unsupported_media_type", f"Send the upload's bytes as {CHUNK_CONTENT_TYPE}."
    )


def _bad_metadata(message: str) -> ApiError:
    return ApiError(400, "invalid_metadata", message, extra={"field": "Upload-Metadata"})
