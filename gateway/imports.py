"""Import by URL: ``POST /jobs`` with ``{"url", "options", "callback_url"}``.

The gateway does not download the video: a download may take minutes, which
would hold a gateway thread and the client's request. It vets what can be vetted
without a lookup (``common.egress.check_url``: http or https, no credentials, a
bounded length, an allowed port, no refused address literal such as 127.0.0.1 or
``localhost``: those are a 400 ``invalid_url``), checks the caller's quotas and the
options as an upload's (``gateway.intake``), and queues a job whose video is still
to come. The converter fetches it (``converter.fetch``) through the egress guard,
which resolves the host then: a name that resolves to a refused address, an
origin that answers 404, a file too big or that is no media, fails the job with
the reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from bson import ObjectId
from flask import Blueprint, Response, jsonify, request, url_for

from common.egress import EgressRefused, check_url
from common.http.errors import ApiError
from common.jobs import new_job_id
from common.logs import log_context
from common.mongo import utcnow
from gateway.identity import JOBS_WRITE, current_user, requires_scope
from gateway.intake import CALLBACK_FIELD, CLIP_START_FIELD, Source, StoredVideo, read_submission
from gateway.services import services
from gateway.uploads import clean_filename

log = logging.getLogger(__name__)

bp = Blueprint("imports", __name__)

URL_FIELD = "url"
OPTIONS_FIELD = "options"
# A URL, a callback URL and a few options: far less than this.
MAX_BODY_BYTES = 16 * 1024


@bp.post("/jobs")
@requires_scope(JOBS_WRITE)
def import_url() -> tuple[Response, int, dict[str, str]]:
    """Queue a job whose video the converter fetches from the URL given."""
    svc = services()
    job_id = new_job_id()
    with log_context(job_id=job_id):
        user = current_user()
        body = _read_body()
        url = _read_url(body.get(URL_FIELD))
        submission = read_submission(_submission_fields(body), svc.config.egress)
        room = svc.intake.room_for(user, incoming_bytes=None, now=utcnow())
        limit = svc.config.max_content_length
        max_bytes = min(limit, room.bytes_left) if room.bytes_left is not None else limit
        video_fid = ObjectId()  # the id the fetched video will be stored under
        svc.intake.accept(
            job_id=job_id,
            owner=user.subject,
            video=StoredVideo(video_fid, filename_of(url), None),
            submission=submission,
            source=Source(url=url, max_bytes=max_bytes),
        )
        log.info("queued an import from %s for %s", urlsplit(url).hostname, user.subject)
    status_url = url_for("gateway.get_job", job_id=job_id)
    answer = {
        "message": "success",
        "job_id": job_id,
        "video_fid": str(video_fid),
        "source_url": url,
        "status_url": status_url,
    }
    return jsonify(answer), 202, {"Location": status_url}


def _read_body() -> dict[str, Any]:
    """Read the request's JSON object, refusing anything larger than an import needs.

    Raises:
        ApiError: 413 for a large body, 400 for one that is not a JSON object.
    """
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The request body exceeds {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_request", 'Send a JSON object such as {"url": "https://…/video.mp4"}.'
        )
    return body


def _read_url(url: object) -> str:
    """Return the URL to import if it may be fetched, as far as can be told without a lookup.

    Raises:
        ApiError: 400 ``invalid_url`` naming the field.
    """
    if not isinstance(url, str) or not url:
        raise ApiError(
            400,
            "invalid_url",
            "url: give the video's http:// or https:// URL",
            extra={"field": URL_FIELD},
        )
    try:
        check_url(url, services().config.egress)
    except EgressRefused as exc:
        raise ApiError(400, "invalid_url", f"url: {exc}", extra={"field": URL_FIELD}) from None
    return url


def _submission_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Return the body's options and callback URL as ``read_submission`` reads an upload's.

    Raises:
        ApiError: 400 ``invalid_option`` for options that are not an object, or that name
            a field an import does not take.
    """
    options = body.get(OPTIONS_FIELD) or {}
    if not isinstance(options, dict):
        raise ApiError(
            400,
            "invalid_option",
            "options: expected an object of named options",
            extra={"field": OPTIONS_FIELD},
        )
    for name in (CALLBACK_FIELD, CLIP_START_FIELD):
        if name in options:
            raise ApiError(400, "invalid_option", f"unknown option {name!r}", extra={"field": name})
    callback_url = body.get(CALLBACK_FIELD)
    if callback_url is not None and not isinstance(callback_url, str):
        raise ApiError(
            400,
            "invalid_callback_url",
            "callback_url: expected a URL",
            extra={"field": CALLBACK_FIELD},
        )
    return {**options, CALLBACK_FIELD: callback_url or ""}


def filename_of(url: str) -> str:
    """Return the name a video fetched from ``url`` goes by: its path's last part."""
    return clean_filename(unquote(PurePosixPath(urlsplit(url).path).name))
