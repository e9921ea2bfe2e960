"""The queue contract: every message on the ``video``, ``mp3`` and ``webhook`` queues.

Each producer builds its message here and each consumer reads it here, so no
handler reads a key another module invented. A message only names a job: what a
converter converts and what the owner is told (the email and the webhook alike)
come from the job's record, never from the message.

- ``video``: asks a converter to convert a job (the gateway, and the janitor for
  a stalled job).
- ``mp3``: says a job finished, done or failed (the converter and its janitor);
  the notifier emails the owner and queues the webhook.
- ``webhook``: asks the notifier to call a finished job's ``callback_url``.

The ``video`` and ``mp3`` bodies keep the course project's fields (``job_id``,
``video_fid``, ``mp3_fid``, ``username``, ``options``; ``status`` and ``error`` on
``mp3``), so tools that read them still work, and the readers require no more
than earlier versions did, so messages already queued by them are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import PermanentError

VIDEO, MP3, WEBHOOK = "video", "mp3", "webhook"
# The fields a video message has always carried, so it is refused without one.
_VIDEO_FIELDS = ("job_id", "video_fid", "username")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message ready to publish: its JSON body and its broker message id."""

    body: dict[str, Any]
    # Derived from the job, so an operator finds a job's messages (in a dead-letter
    # queue, say) by its id.
    message_id: str


def video_message(job: Mapping[str, Any]) -> OutgoingMessage:
    """Build the ``video`` message that asks a converter to convert ``job``."""
    return OutgoingMessage(_job_fields(job, mp3_fid=None), message_id=job["_id"])


def mp3_message(job: Mapping[str, Any]) -> OutgoingMessage:
    """Build the ``mp3`` message announcing how the finished ``job`` ended."""
    mp3_fid = str(job["mp3_fid"]) if job.get("mp3_fid") else None
    body = _job_fields(job, mp3_fid=mp3_fid)
    body["status"] = job["status"]
    body["error"] = job.get("error")
    return OutgoingMessage(body, message_id=job["_id"])


def webhook_message(job_id: str) -> OutgoingMessage:
    """Build the ``webhook`` message that asks for the call to the job's ``callback_url``."""
    return OutgoingMessage({"job_id": job_id}, message_id=f"{job_id}.webhook")


def _job_fields(job: Mapping[str, Any], *, mp3_fid: str | None) -> dict[str, Any]:
    return {
        "job_id": job["_id"],
        "video_fid": str(job["video_fid"]),
        "mp3_fid": mp3_fid,
        "username": job["owner"],
        "filename": job.get("filename"),
        "options": job.get("options", {}),
    }


def read_video_message(message: Mapping[str, Any]) -> str:
    """Return the job a ``video`` message asks to convert.

    Raises:
        PermanentError: a field the message must carry is missing or not a string.
    """
    return _read(VIDEO, message, _VIDEO_FIELDS)


def read_mp3_message(message: Mapping[str, Any]) -> str:
    """Return the finished job an ``mp3`` message names.

    Raises:
        PermanentError: the message names no job.
    """
    return _read(MP3, message, ("job_id",))


def read_webhook_message(message: Mapping[str, Any]) -> str:
    """Return the job whose webhook a ``webhook`` message asks to call.

    Raises:
        PermanentError: the message names no job.
    """
    return _read(WEBHOOK, message, ("job_id",))


def _read(kind: str, message: Mapping[str, Any], required: tuple[str, ...]) -> str:
    for name in required:
        if not isinstance(message.get(name), str) or not message[name]:
            raise PermanentError(f"{kind} message lacks a {name!r} string")
    return message["job_id"]


def job_id_in(message: object) -> str | None:
    """Return the job any message names, or None: for logs and for giving up on a message."""
    job_id = message.get("job_id") if isinstance(message, Mapping) else None
    return job_id if isinstance(job_id, str) and job_id else None
