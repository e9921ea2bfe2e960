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

from common import metrics
from common.egress import EgressRefused, check_url
from common.errors import TransientError
from common.jobs import (
    DONE,
    STATUSES,
    mp3_filename,
    new_job_id,
    public_view,
    utcnow,
    video_message,
)
from common.logs import log_context
from common.options import InvalidOption, Options
from common.retry import retry_transient
from common.storage import FileNotFound
from common.tokens import Claims
from common.web import ApiError
from gateway import admin, quotas
from gateway.identity import current_user
from gateway.services import services
from gateway.uploads import receive_upload

log = logging.getLogger(__name__)

bp = Blueprint("gateway", __name__)
bp.register_blueprint(admin.bp)

MAX_PAGE_SIZE = 100
# How long an upload that met a store outage waits for the store to settle what it did:
# remove the pieces of a refused upload, or record an accepted one.
SETTLE_TIMEOUT_S = 15.0
CALLBACK_FIELD = "callback_url"


def _not_found(what: str = "job") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


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
def me() -> Response:
    """Return who the caller is, what they use and their quotas (null: unlimited)."""
    svc = services()
    user = current_user()
    usage = quotas.measure(svc.storage, svc.jobs, user.subject, utcnow())
    limits = quotas.UNLIMITED if user.admin else svc.config.quotas
    return jsonify(
        {
            "email": user.subject,
            "admin": user.admin,
            "usage": usage.as_dict(),
            "quotas": limits.as_dict(),
        }
    )


@bp.post("/upload")
def upload() -> tuple[Response, int, dict[str, str]]:
    """Store one uploaded video, record its job and queue it for conversion."""
    svc = services()
    job_id = new_job_id()
    with log_context(job_id=job_id), _counting_upload():
        user = current_user()
        owner = user.subject
        limit = svc.config.max_content_length
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "too_large", f"The upload exceeds the {limit}-byte limit.")
        usage, storage_left = _within_quotas(user)
        mimetype, params = parse_options_header(request.headers.get("Content-Type", ""))
        if mimetype != "multipart/form-data" or not params.get("boundary"):
            raise ApiError(
                400,
                "invalid_upload",
                "Send the video as multipart/form-data with one field named 'file'.",
            )
        # Slow or stalled bodies are cut off (408) rather than holding this thread.
        body = svc.upload_watchdog.guard(request.stream, request.environ.get("gunicorn.socket"))
        bounded_by_quota = storage_left is not None and storage_left < limit
        try:
            received = receive_upload(
                body,
                params["boundary"].encode("latin-1"),
                open_sink=lambda filename: svc.storage.videos.open_upload(
                    filename, {"owner": owner, "job_id": job_id}, abort_patience=SETTLE_TIMEOUT_S
                ),
                max_bytes=storage_left if bounded_by_quota else limit,
                check_fields=_check_fields,
            )
        except ApiError as exc:
            # Sent without a Content-Length, the file outgrew what its owner may still store.
            if exc.code == "too_large" and bounded_by_quota and usage is not None:
                raise quotas.storage_exceeded(svc.config.quotas, usage) from None
            raise
        callback_url = received.fields.pop(CALLBACK_FIELD, "") or None
        options = Options.from_dict(received.fields).to_dict()
        try:
            job = svc.jobs.create(
                job_id=job_id,
                owner=owner,
                video_fid=received.video_fid,
                filename=received.filename,
                size=received.size,
                options=options,
                callback_url=callback_url,
            )
            svc.publisher.publish(
                svc.config.video_queue,
                video_message(job),
                message_id=job_id,
            )
        except TransientError:
            _forget_upload(job_id, received.video_fid)
            raise
        _accept(job_id)
        metrics.UPLOAD_BYTES.observe(received.size)
        log.info(
            "accepted %s (%d bytes, %s) from %s",
            received.filename,
            received.size,
            received.container,
            owner,
        )
    status_url = url_for("gateway.get_job", job_id=job_id)
    body = {
        "message": "success",
        "job_id": job_id,
        "video_fid": str(received.video_fid),
        "status_url": status_url,
    }
    return jsonify(body), 202, {"Location": status_url}


def _within_quotas(user: Claims) -> tuple[quotas.Usage | None, int | None]:
    """Check the caller's quotas before the body is read.

    Returns the caller's usage and the bytes they may still store; (None, None) for an
    admin, who has no quotas.

    Raises:
        ApiError: 429 or 507 when the upload would break a quota.
        TransientError: MongoDB failed.
    """
    if user.admin:
        return None, None
    svc, now = services(), utcnow()
    usage = quotas.measure(svc.storage, svc.jobs, user.subject, now)
    left = quotas.check_upload(
        usage, svc.config.quotas, incoming_bytes=request.content_length, now=now
    )
    return usage, left


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


def _check_fields(fields: dict[str, str]) -> None:
    """Validate the upload's text fields: output options and an optional callback URL.

    Raises:
        ApiError: 400 ``invalid_option`` naming the field, or ``invalid_callback_url``.
    """
    callback_url = fields.pop(CALLBACK_FIELD, "")
    try:
        Options.from_dict(fields)
    except InvalidOption as exc:
        raise ApiError(400, "invalid_option", str(exc), extra={"field": exc.field}) from None
    if callback_url:
        # Whether the host resolves, and to what, is checked when the callback is made:
        # an answer now would prove nothing then.
        try:
            check_url(callback_url, services().config.egress)
        except EgressRefused as exc:
            raise ApiError(
                400, "invalid_callback_url", f"callback_url: {exc}", extra={"field": CALLBACK_FIELD}
            ) from None


def _forget_upload(job_id: str, video_fid: Any) -> None:
    """Remove what an upload stored when it could not be queued; the client gets a 503.

    A write that failed may still have landed, so this waits out a short store outage;
    what is still there after ``SETTLE_TIMEOUT_S`` the janitor removes.
    """
    svc = services()

    def remove() -> None:
        # The record last: the janitor finds leftovers by it.
        svc.storage.delete_files_of({"video_fid": video_fid})
        svc.jobs.delete(job_id)

    with contextlib.suppress(TransientError):
        retry_transient(remove, "MongoDB to remove a refused upload", timeout=SETTLE_TIMEOUT_S)


def _accept(job_id: str) -> None:
    """Record that the job's message is on the queue, which makes the upload accepted.

    Raises:
        TransientError: MongoDB stayed away for ``SETTLE_TIMEOUT_S``, or the janitor
            removed the job first; unless a converter started it meanwhile, the janitor
            removes it.
    """
    jobs = services().jobs
    marked = retry_transient(
        lambda: jobs.mark_enqueued(job_id),
        "MongoDB to record an accepted upload",
        timeout=SETTLE_TIMEOUT_S,
    )
    if not marked:
        raise TransientError("the upload was removed before it was accepted")


@bp.get("/download")
def download() -> Response:
    """Stream a finished MP3, found by its own id or by its video's id, with Range support."""
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
        raise ApiError(
            409,
            "not_ready",
            f"The MP3 is not ready: the job is {job['status']}.",
            extra={
                "status": job["status"],
                "progress": job.get("progress", 0),
                "job_id": job["_id"],
                "reason": job.get("error"),
            },
        )
    try:
        grid_out = svc.storage.mp3s.open(job["mp3_fid"])
    except FileNotFound:
        raise _not_found("file") from None
    # The stored chunks go out as they are read (no sendfile: they are not in a file).
    response = Response(
        svc.storage.mp3s.reader(grid_out), mimetype="audio/mpeg", direct_passthrough=True
    )
    response.headers["Content-Disposition"] = attachment(mp3_filename(job.get("filename")))
    response.headers["Cache-Control"] = "private, max-age=0"
    response.set_etag(str(job["mp3_fid"]))
    response.last_modified = grid_out.upload_date
    response.content_length = grid_out.length
    return response.make_conditional(
        request.environ, accept_ranges=True, complete_length=grid_out.length
    )


def attachment(filename: str) -> str:
    """Return a Content-Disposition value that names ``filename`` safely for any client."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace("\\", "_").replace('"', "_")
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


@bp.get("/jobs")
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
def get_job(job_id: str) -> Response:
    """Show one of the caller's jobs: status, progress, error, ids, timestamps."""
    job = services().jobs.get_owned(job_id, current_user().subject)
    if job is None:
        raise _not_found()
    return jsonify(_job_body(job))


@bp.delete("/jobs/<job_id>")
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
    # (hex strings), spelled out: url_for was a tenth of a GET /jobs page's CPU.
    root = request.script_root
    body["status_url"] = f"{root}/jobs/{quote(str(job['_id']), safe='')}"
    body["download_url"] = (
        f"{root}/download?fid={body['mp3_fid']}" if job["status"] == DONE else None
    )
    return body


@bp.get("/health")
def health() -> Response:
    """Say the process is alive; checks nothing else."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> Response | tuple[Response, int]:
    """Say whether MongoDB and RabbitMQ answer, so traffic can be routed here."""
    svc = services()
    checks = {}
    for name, check in (("mongodb", svc.storage.ping), ("rabbitmq", svc.publisher.check)):
        try:
            check()
            checks[name] = "ok"
        except TransientError as exc:
            log.warning("not ready: %s", exc)
            checks[name] = "unavailable"
    ready_now = all(value == "ok" for value in checks.values())
    body = jsonify(status="ready" if ready_now else "unavailable", checks=checks)
    return body if ready_now else (body, 503)
