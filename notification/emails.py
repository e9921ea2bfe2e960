"""The emails users receive: what a finished or failed job tells them (pure functions).

Everything an email says comes from the job's record in the database, its
recipient included: the job's owner, whoever the queue message names.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

from common.jobs import DONE, output_filename, output_format

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MAX_SUBJECT_NAME = 80


def _one_line(text: str, limit: int | None = None) -> str:
    text = _CONTROL.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def compose(job: Mapping[str, Any], *, mail_from: str, public_url: str) -> EmailMessage:
    """Build the text + HTML email that tells the owner of the finished ``job`` how it ended."""
    filename = _one_line(str(job.get("filename") or "your video"))
    if job["status"] == DONE:
        subject, text, body_html = _done(job, filename, public_url)
    else:
        subject, text, body_html = _failed(job, filename)
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = job["owner"]
    message["Subject"] = subject
    domain = mail_from.rpartition("@")[2] or "localhost"
    # The same Message-ID every time a job's email is sent: a copy sent again after a
    # crash (docs/decisions.md) is the same message, which mail stores can fold into one.
    message["Message-ID"] = f"<{job['_id']}.job@{domain}>"
    message["X-Video2mp3-Job"] = str(job["_id"])
    message.set_content(text)
    message.add_alternative(body_html, subtype="html")
    return message


def _done(job: Mapping[str, Any], filename: str, public_url: str) -> tuple[str, str, str]:
    mp3_fid = str(job["mp3_fid"])
    output = output_format(job)
    # The name the download is saved under, so the reader knows what to look for.
    saved_as = _one_line(output_filename(job.get("filename"), output))
    link = f"{public_url}/download?{urlencode({'fid': mp3_fid})}"
    subject = f"Your {output.label} is ready: {_one_line(filename, MAX_SUBJECT_NAME)}"
    tracks = len(job.get("tracks") or ())
    # A split job's tracks are listed on the job and in its ZIP; the link stays the whole's.
    split = f"Split into {tracks} tracks: see the job or download its ZIP.\n" if tracks else ""
    text = (
        f"Hello,\n\n"
        f'"{filename}" has been converted to {output.label}.\n\n'
        f"{split}"
        f"File: {saved_as}\n"
        f"fid: {mp3_fid}\n"
        f"Download: {link}\n\n"
        f"The download link needs your login token, for example:\n"
        f'  curl "{link}" -H "Authorization: Bearer $JWT" -O -J\n\n'
        f"-- video2mp3\n"
    )
    body_html = (
        f"<p>Hello,</p>"
        f"<p><strong>{html.escape(filename)}</strong> has been converted to {output.label}.</p>"
        f"{f'<p>{html.escape(split.strip())}</p>' if split else ''}"
        f"<p>fid: <code>{html.escape(mp3_fid)}</code><br>"
        f'<a href="{html.escape(link)}">Download {html.escape(saved_as)}</a> (log in first)</p>'
        f"<p>-- video2mp3</p>"
    )
    return subject, text, body_html


def _failed(job: Mapping[str, Any], filename: str) -> tuple[str, str, str]:
    reason = _one_line(str(job.get("error") or "the conversion failed"))
    job_id = str(job["_id"])
    label = output_format(job).label
    subject = f"We could not convert {_one_line(filename, MAX_SUBJECT_NAME)}"
    text = (
        f"Hello,\n\n"
        f'We could not convert "{filename}" to {label}.\n\n'
        f"Reason: {reason}\n"
        f"Job: {job_id}\n\n"
        f"You can upload the file again once the problem is fixed.\n\n"
        f"-- video2mp3\n"
    )
    body_html = (
        f"<p>Hello,</p>"
        f"<p>We could not convert <strong>{html.escape(filename)}</strong> to {label}.</p>"
        f"<p>Reason: {html.escape(reason)}<br>Job: <code>{html.escape(job_id)}</code></p>"
        f"<p>-- video2mp3</p>"
    )
    return subject, text, body_html
