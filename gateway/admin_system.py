"""The admin API's view of the system: every job, the work queues, storage, the audit log.

Read-only: nothing here changes anything, so nothing here writes to the audit log.
The dead letters the queue view counts are listed, replayed and discarded by
``gateway.admin``'s ``/admin/dead-letters`` routes.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from common.http.errors import ApiError
from common.jobs import STATUSES, public_view
from common.messaging import dead_letter_queue
from gateway.admin import MAX_PAGE, admin_tools, page_arguments, require_admin
from gateway.services import services

bp = Blueprint("admin_system", __name__, url_prefix="/admin")
bp.before_request(require_admin)

MAX_OWNER_LENGTH = 255


@bp.get("/jobs")
def list_jobs() -> Response:
    """List every job (or one owner's, or in one state), newest first, with failures' reasons."""
    limit, offset = page_arguments(most=MAX_PAGE)
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}.")
    owner = request.args.get("owner") or None
    if owner is not None and len(owner) > MAX_OWNER_LENGTH:
        raise ApiError(
            400, "invalid_owner", f"owner must be at most {MAX_OWNER_LENGTH} characters."
        )
    jobs, total = services().jobs.list_all(owner=owner, status=status, limit=limit, offset=offset)
    return jsonify(
        jobs=[{**public_view(job), "owner": job["owner"]} for job in jobs],
        total=total,
        limit=limit,
        offset=offset,
    )


@bp.get("/queues")
def queue_statuses() -> Response:
    """Show each work queue's waiting messages, consumers and dead letters."""
    tools = admin_tools()
    names = list(tools.queues)
    found = tools.dead_letters.statuses([tools.queues[name] for name in names])
    return jsonify(
        queues=[
            {
                "queue": name,
                "broker_queue": status.queue,
                "messages": status.messages,
                "consumers": status.consumers,
                "dead_letter_queue": dead_letter_queue(status.queue),
                "dead_letters": status.dead_letters,
            }
            for name, status in zip(names, found, strict=True)
        ]
    )


@bp.get("/storage")
def storage_totals() -> Response:
    """Show the files and bytes in each bucket and how many jobs are in each state."""
    svc = services()
    buckets = []
    for name, bucket in (("videos", svc.storage.videos), ("mp3s", svc.storage.mp3s)):
        files, size = bucket.totals()
        buckets.append({"bucket": name, "files": files, "bytes": size})
    return jsonify(buckets=buckets, jobs_by_status=svc.jobs.counts_by_status())


@bp.get("/audit")
def audit_log() -> Response:
    """List what admins changed, newest first."""
    limit, offset = page_arguments(most=MAX_PAGE)
    entries, total = admin_tools().audit_log.page(limit=limit, offset=offset)
    return jsonify(entries=entries, total=total, limit=limit, offset=offset)
