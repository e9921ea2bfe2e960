"""The gateway's HTTP API: login, upload, download, jobs, health."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

from common.errors import TransientError
from common.http.errors import ApiError
from common.jobs import (
    DONE,
    STATUSES,
    new_job_id,
    output_filename,
    output_format,
    public_view,
    track_of,
)
from common.logs import log_context
from common.mongo import FileNotFound, utcnow
from gateway import admin, archive, metrics, quotas
from gateway.identity import JOBS_READ, JOBS_WRITE, current_user, requires_scope
from gateway.intake import StoredVideo, read_submission
from gateway.services import services
from gateway.uploads import receive_upload

log = logging.getLogger(__name__)

bp = Blueprint("gateway", __name__)
bp.register_blueprint(admin.bp)

MAX_PAGE_SIZE = 100


def _not_found(what: str = "job") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


def _not_ready(job: dict[str, Any], what: str) -> ApiError:
    """Return the 409 for a job that is not done yet, with its status, progress and reason."""
    return ApiError(
        409,
        "not_ready",
        f"The {what} is not ready: the job is {job['status']}.",
        extra={
            "status": job["status"],
            "progress": job.get("progress", 0),
            "job_id": job["_id"],
            "reason": job.get("error"),
        },
    )


@bp.post("/login")
def login() -> Response:
    """Forward HTTP Basic credentials to the auth service and return its answer."""
    answer = services().auth.login(
        authorization=request.headers.get("Authorization"),
        client_ip=request.remote_addr,
        request_id=request.headers.get("X-Request-ID"),
    )
    return Response(answer.body, status=answer.status, headers=answer.headers)


@bp.get("/me")
@requires_scope(JOBS_READ)
def me() -> Response:
    """Return who the caller is and how (login or API key), their usage and quotas (null: none)."""
    svc = services()
    user = current_user()
    usage = quotas.measure(svc.storage, svc.jobs, user.subject, utcnow())
    limits = svc.intake.quotas_of(user)
    return jsonify(
        {
            "email": user.subject,
            "admin": user.admin,
            "auth": "session" if user.scopes is None else "api_key",
            "scopes": None if user.scopes is None else sorted(user.scopes),
            "key_id": user.key_id,
            "usage": usage.as_dict(),
            "quotas": limits.as_dict(),
        }
    )


@bp.post("/upload")
@requires_scope(JOBS_WRITE)
def upload() -> tuple[Response, int, dict[str, str]]:
    """Store one uploaded video, record its job and queue it for conversion."""
    svc = services()
    job_id = new_job_id()
    with log_context(job_id=job_id), _counting_upload():
        user = current_user()
        limit = svc.config.max_content_length
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "too_large", f"The upload exceeds the {limit}-byte limit.")
        room = svc.intake.room_for(user, incoming_bytes=request.content_length, now=utcnow())
        mimetype, params = parse_options_header(request.headers.get("Content-Type", ""))
        if mimetype != "multipart/form-data" or not params.get("boundary"):
            raise ApiError(
                400,
                "invalid_upload",
                "Send the video as multipart/form-data with one field named 'file'.",
            )
        # Slow or stalled bodies are cut off (408) rather than holding this thread.
        body = svc.upload_watchdog.guard(request.stream, request.environ.get("gunicorn.socket"))
        bounded_by_quota = room.bytes_left is not None and room.bytes_left < limit
        try:
            received = receive_upload(
                body,
                params["boundary"].encode("latin-1"),
                open_sink=lambda filename: svc.intake.new_video(
                    job_id=job_id, owner=user.subject, filename=filename
                ),
                max_bytes=room.bytes_left if bounded_by_quota else limit,
                read_fields=lambda fields: read_submission(fields, svc.config.egress),
            )
        except ApiError as exc:
            # Sent without a Content-Length, the file outgrew what its owner may still store.
            if exc.code == "too_large" and bounded_by_quota and room.usage is not None:
                raise room.storage_exceeded() from None
            raise
        svc.intake.accept(
            job_id=job_id,
            owner=user.subject,
            video=StoredVideo(received.video_fid, received.filename, received.size),
            submission=received.fields,
        )
        metrics.UPLOAD_BYTES.observe(received.size)
        log.info(
            "accepted %s (%d bytes, %s) from %s",
            received.filename,
            received.size,
            received.container,
            user.subject,
        )
    status_url = url_for("gateway.get_job", job_id=job_id)
    body = {
        "message": "success",
        "job_id": job_id,
        "video_fid": str(received.video_fid),
        "status_url": status_url,
    }
    return jsonify(body), 202, {"Location": status_url}


@contextlib.contextmanager
def _counting_upload() -> Iterator[None]:
    """Count the upload in the block as accepted, rejected (bad input) or failed."""
    try:
        yield
    except (ApiError, HTTPException):  # bad input, or the client went away mid-upload
        metrics.UPLOADS.labels("rejected").inc()
        raise
    except TransientError:
        metrics.UPLOADS.labels("failed").inc()
        raise
    metrics.UPLOADS.labels("accepted").inc()


@bp.get("/download")
@requires_scope(JOBS_READ)
def download() -> Response:
    """Stream a finished output or one of its tracks, by its own id (or its video's), with Range."""
    owner = current_user().subject
    fid = request.args.get("fid", "")
    if not fid:
        raise ApiError(400, "missing_fid", "Give the file id as ?fid=<id>.")
    svc = services()
    try:
        job = svc.jobs.find_by_file(fid, owner)
    except FileNotFound:
        job = None
    if job is None:
        raise _not_found("file")
    if job["status"] != DONE:
        raise _not_ready(job, "MP3")
    output = output_format(job)
    # A track's id serves that track; the job's other ids its whole output.
    track = track_of(job, fid)
    served_fid = track["fid"] if track else job["mp3_fid"]
    filename = track["filename"] if track else output_filename(job.get("filename"), output)
    try:
        grid_out = svc.storage.mp3s.open(served_fid)
    except FileNotFound:
        raise _not_found("file") from None
    # The stored chunks go out as they are read (no sendfile: they are not in a file).
    response = Response(
        svc.storage.mp3s.reader(grid_out), mimetype=output.content_type, direct_passthrough=True
    )
    response.headers["Content-Disposition"] = attachment(filename)
    response.headers["Cache-Control"] = "private, max-age=0"
    response.set_etag(str(served_fid))
    response.last_modified = grid_out.upload_date
    response.content_length = grid_out.length
    return response.make_conditional(
        request.environ, accept_ranges=True, complete_length=grid_out.length
    )


@bp.get("/download.zip")
@requires_scope(JOBS_READ)
def download_zip() -> Response:
    """Stream several of the caller's finished outputs as one ZIP (see ``gateway.archive``)."""
    owner = current_user().subject
    svc = services()
    jobs = archive.requested_jobs(request.args.getlist("job_id"), owner, svc.jobs)
    entries = archive.plan_entries(jobs, svc.storage.mp3s)
    log.info("zipping %d files of %d jobs for %s", len(entries), len(jobs), owner)
    response = Response(
        archive.stream(entries, svc.storage.mp3s.iter_chunks),
        mimetype="application/zip",
        direct_passthrough=True,
    )
    response.headers["Content-Disposition"] = attachment(archive.archive_name(utcnow()))
    response.headers["Cache-Control"] = "private, no-store"
    response.content_length = archive.archive_length(entries)
    return response


def attachment(filename: str) -> str:
    """Return a Content-Disposition value that names ``filename`` safely for any client."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace("\\", "_").replace('"', "_")
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


@bp.get("/jobs")
@requires_scope(JOBS_READ)
def list_jobs() -> Response:
    """List the caller's jobs, newest first, optionally by status, a page at a time."""
    owner = current_user().subject
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}.")
    limit = _int_arg("limit", 20, 1, MAX_PAGE_SIZE)
    offset = _int_arg("offset", 0, 0, 10**9)
    jobs, total = services().jobs.list_owned(owner, status=status, limit=limit, offset=offset)
    return jsonify(jobs=[_job_body(job) for job in jobs], total=total, limit=limit, offset=offset)


def _int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a whole number.") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, f"invalid_{name}", f"{name} must be between {minimum} and {maximum}.")
    return value


@bp.get("/jobs/<job_id>")
@requires_scope(JOBS_READ)
def get_job(job_id: str) -> Response:
    """Show one of the caller's jobs: status, progress, error, ids, timestamps."""
    job = services().jobs.get_owned(job_id, current_user().subject)
    if job is None:
        raise _not_found()
    return jsonify(_job_body(job))


@bp.get("/jobs/<job_id>/waveform")
@requires_scope(JOBS_READ)
def get_waveform(job_id: str) -> Response:
    """Return the peaks of one of the caller's finished outputs, for a player to draw."""
    svc = services()
    job = svc.jobs.get_owned(job_id, current_user().subject)
    if job is None:
        raise _not_found()
    if job["status"] != DONE:
        raise _not_ready(job, "waveform")
    try:
        waveform = svc.storage.mp3s.metadata_of(job["mp3_fid"], "waveform")
    except FileNotFound:
        raise _not_found("file") from None
    if not waveform:
        raise ApiError(
            404,
            "no_waveform",
            "This job's output has no waveform: it was made before waveforms were, "
            "or its sound could not be measured.",
        )
    response = jsonify(
        job_id=job["_id"],
        duration=waveform["duration"],
        points=waveform["points"],
        peaks=waveform["peaks"],
    )
    # The output, and so its waveform, never changes: its id tells versions apart.
    response.headers["Cache-Control"] = "private, max-age=0"
    response.set_etag(str(job["mp3_fid"]))
    return response.make_conditional(request)


@bp.delete("/jobs/<job_id>")
@requires_scope(JOBS_WRITE)
def delete_job(job_id: str) -> tuple[str, int]:
    """Delete one of the caller's jobs with its video and MP3."""
    svc = services()
    job = svc.jobs.get_owned(job_id, current_user().subject)
    if job is None:
        raise _not_found()
    svc.storage.delete_files_of(job)  # then the record: a delete cut short can be repeated
    svc.jobs.delete(job_id)
    log.info("deleted job %s", job_id)
    return "", 204


def _job_body(job: dict[str, Any]) -> dict[str, Any]:
    body = public_view(job)
    # What url_for("gateway.get_job") and url_for("gateway.download") give for these ids
    # (hex strings), spelled out, for the CPU url_for cost: docs/performance.md, "What was
    # profiled and changed", row "Job URLs in job bodies built from the request root".
    root = request.script_root
    body["status_url"] = f"{root}/jobs/{quote(str(job['_id']), safe='')}"
    body["download_url"] = (
        f"{root}/download?fid={body['mp3_fid']}" if job["status"] == DONE else None
    )
    body["waveform_url"] = f"{body['status_url']}/waveform" if job["status"] == DONE else None
    return body
