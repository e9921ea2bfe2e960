"""The gateway's HTTP API, as Python calls; the only module that talks to the server.

Resumable uploads speak tus 1.0.0 (``create_upload``, ``upload_status``,
``append_to_upload``: one request each; ``tus`` drives them).

Every failure comes out as a ``ClientError`` with a one-line message:
``ApiError`` when the server answered with an error (its JSON ``error`` code,
``message`` and, for a refused option, ``field``), ``AuthenticationError`` for
a 401, ``InsufficientScope`` for an API key refused a route (403),
``ConnectionFailed`` when the server cannot be reached or the connection
breaks, ``InvalidServer`` for a URL that cannot be used.
"""

from __future__ import annotations

import base64
import contextlib
import mimetypes
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import PurePosixPath, PureWindowsPath
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
from urllib3.exceptions import ProtocolError

from video2mp3 import __version__
from video2mp3.multipart import FileBody, MultipartUpload

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
DOWNLOAD_CHUNK_SIZE = 256 * 1024
# Logging out is best effort: the credentials go whatever the server says, so wait less.
LOGOUT_TIMEOUT = 10.0
_ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^'\"\)]+)")
_SAYS_WHEN = re.compile(r"\btry again (in|at)\b", re.IGNORECASE)
TUS_VERSION = "1.0.0"
_TUS = {"Tus-Resumable": TUS_VERSION}
TUS_CHUNK_TYPE = "application/offset+octet-stream"
JOB_ID_HEADER = "Video2mp3-Job-Id"
MAX_ZIP_JOBS = 100  # the most jobs the server puts in one ZIP


class ClientError(Exception):
    """Something went wrong talking to the server; ``str()`` says what in one line."""


class InvalidServer(ClientError):
    """The server URL cannot be used."""


class ConnectionFailed(ClientError):
    """The server could not be reached, did not answer in time, or the connection broke."""


class ApiError(ClientError):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.body = dict(body)

    @property
    def field(self) -> str | None:
        """Return the form field the server refused, if it named one."""
        field = self.body.get("field")
        return str(field) if field else None


class AuthenticationError(ApiError):
    """The server refused the credentials or the token (401)."""


class InsufficientScope(ApiError):
    """The API key may not do this (403 ``insufficient_scope``): ``required`` names what may."""

    @property
    def required(self) -> str:
        """Return the scope the request needs, or ``session`` for a login with a password."""
        return str(self.body.get("required") or "session")


@dataclass(frozen=True)
class Login:
    """A fresh token and how many seconds it is good for."""

    token: str
    expires_in: int


@dataclass(frozen=True)
class UploadStatus:
    """Where a resumable upload stands on the server."""

    url: str
    offset: int  # bytes the server has
    length: int
    expires_at: float | None  # seconds since the epoch; the server drops it unfinished then
    job_id: str | None  # once the last byte arrived and its job exists


class Download:
    """A file on its way from the server (an MP3 or a ZIP): its name, its size, its bytes."""

    def __init__(
        self, response: requests.Response, server: str, *, default_name: str = "audio.mp3"
    ) -> None:
        self._response = response
        self._server = server
        self.filename = filename_from_disposition(
            response.headers.get("Content-Disposition"), default_name
        )
        length = response.headers.get("Content-Length", "")
        self.size: int | None = int(length) if length.isdigit() else None

    def chunks(self) -> Iterator[bytes]:
        """Yield the body a piece at a time.

        Raises:
            ConnectionFailed: the connection broke or stalled.
        """
        with _translate_errors(self._server, READ_TIMEOUT):
            yield from self._response.iter_content(DOWNLOAD_CHUNK_SIZE)

    def close(self) -> None:
        """Release the connection."""
        self._response.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Client:
    """Talk to one video2mp3 gateway, optionally with a bearer token."""

    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"video2mp3-cli/{__version__}"
        self._session.headers["Accept"] = "application/json"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def login(self, email: str, password: str) -> Login:
        """Exchange an email and password for a token.

        Raises:
            AuthenticationError: wrong or missing credentials.
            ApiError, ConnectionFailed, InvalidServer: see the module.
        """
        return self._login("/login", self._json("POST", "/login", auth=(email, password)))

    def logout(self) -> None:
        """End this token's session on the server.

        Raises:
            AuthenticationError: the token was already refused.
            ApiError, ConnectionFailed, InvalidServer: see the module.
        """
        self._send("POST", "/logout", timeout=(CONNECT_TIMEOUT, LOGOUT_TIMEOUT)).close()

    def change_password(self, current_password: str, new_password: str) -> Login:
        """Change the caller's password; return the new token (every other one ends).

        Raises:
            AuthenticationError: the current password is wrong (``invalid_credentials``).
            ApiError: 400 ``invalid_password`` for a new one the server refuses.
            InsufficientScope: called with an API key.
        """
        body = self._json(
            "POST",
            "/me/password",
            json={"current_password": current_password, "new_password": new_password},
        )
        return self._login("/me/password", body)

    def _login(self, path: str, body: Mapping[str, Any]) -> Login:
        """Read a token answer (``{token, expires_in}``)."""
        try:
            return Login(token=str(body["token"]), expires_in=int(body["expires_in"]))
        except (KeyError, TypeError, ValueError):
            raise self._unexpected(path, 200) from None

    def api_keys(self) -> list[dict[str, Any]]:
        """Return the caller's live API keys, newest first (never their secrets)."""
        keys = self._json("GET", "/api-keys", expect=("keys",))["keys"]
        if not isinstance(keys, list):
            raise self._unexpected("/api-keys", 200)
        return keys

    def create_api_key(
        self, name: str, scopes: Sequence[str], expires_in_days: int | None = None
    ) -> dict[str, Any]:
        """Create an API key; return it with its secret ``key``, which is shown only now.

        Raises:
            ApiError: 400 ``invalid_name``, ``invalid_scopes``, ``invalid_expiry`` or
                ``too_many_keys``.
            InsufficientScope: called with an API key.
        """
        return self._json(
            "POST",
            "/api-keys",
            json={"name": name, "scopes": list(scopes), "expires_in_days": expires_in_days},
            expect=("id", "key"),
        )

    def revoke_api_key(self, key_id: str) -> None:
        """Revoke one of the caller's API keys.

        Raises:
            ApiError: 404 for unknown ids and other people's keys.
            InsufficientScope: called with an API key.
        """
        self._send("DELETE", f"/api-keys/{quote(key_id, safe='')}").close()

    def export(self) -> Download:
        """Start downloading everything the account holds as JSON; close the result when done."""
        response = self._send("GET", "/me/export", stream=True)
        return Download(response, self.server, default_name="video2mp3-export.json")

    def delete_account(self, confirm: str) -> dict[str, Any]:
        """Delete the caller's account and data; ``confirm`` is their email, typed again.

        Return ``{status: "deleted"}``, or ``{status: "deleting", remaining_jobs}`` when
        the server finishes deleting the jobs later.

        Raises:
            ApiError: 400 ``confirmation_required`` when ``confirm`` is not the caller's email;
                503 when the account could not be deleted (nothing was).
            InsufficientScope: called with an API key.
        """
        return self._json("DELETE", "/me", json={"confirm": confirm}, expect=("status",))

    def upload(
        self,
        file: BinaryIO,
        *,
        filename: str,
        size: int,
        options: Mapping[str, str] | None = None,
        on_progress: Callable[[int], None] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Stream one video to the server with its output options; return the accepted job.

        ``content_type`` defaults to the one ``filename``'s extension suggests.

        Raises:
            ApiError: 400 (with ``field`` for a refused option), 413, 415, 503; 429 and
                507 past a quota (``quota``, ``limit`` and ``usage`` in the body).
            AuthenticationError, ConnectionFailed, InvalidServer: see the module.
            multipart.FileChanged: the file shrank while it was being read.
        """
        content_type = (
            content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        body = MultipartUpload(
            file,
            filename=filename,
            size=size,
            fields=options,
            content_type=content_type,
            on_progress=on_progress,
        )
        return self._json(
            "POST",
            "/upload",
            data=body,
            headers={"Content-Type": body.content_type},
            expect=("job_id",),
        )

    def import_url(self, url: str, *, options: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Have the server fetch the video at ``url`` and convert it; return the queued job.

        Raises:
            ApiError: 400 ``invalid_url`` or ``invalid_option`` (with ``field``); 429 and
                507 past a quota, as for an upload.
            AuthenticationError, ConnectionFailed, InvalidServer: see the module.
        """
        return self._json(
            "POST", "/jobs", json={"url": url, "options": dict(options or {})}, expect=("job_id",)
        )

    def create_upload(self, *, length: int, metadata: Mapping[str, str]) -> UploadStatus:
        """Create a resumable upload of ``length`` bytes; ``metadata``: filename and options.

        Raises:
            ApiError: as ``upload`` (the options are checked here, before any byte is sent).
            AuthenticationError, ConnectionFailed, InvalidServer: see the module.
        """
        encoded = ",".join(
            f"{key} {base64.b64encode(value.encode()).decode('ascii')}"
            for key, value in metadata.items()
        )
        headers = {**_TUS, "Upload-Length": str(length), "Upload-Metadata": encoded}
        response = self._send("POST", "/files/", headers=headers)
        location = response.headers.get("Location", "")
        url = urljoin(f"{self.server}/", location)
        # The bearer token goes wherever the upload lives: only to this server.
        if not location or _origin(url) != _origin(self.server):
            raise self._unexpected("/files/", response.status_code)
        return self._upload_status(url, response, length)

    def upload_status(self, url: str) -> UploadStatus:
        """Ask how much of a resumable upload the server has.

        Raises:
            ApiError: 404 (or 410) once the upload is gone: expired, deleted, someone else's.
            AuthenticationError, ConnectionFailed: see the module.
        """
        return self._upload_status(url, self._request("HEAD", url, headers=_TUS))

    def append_to_upload(
        self, url: str, body: FileBody, *, offset: int, length: int
    ) -> UploadStatus:
        """Send ``body`` as the bytes of a resumable upload of ``length`` from ``offset`` on.

        Raises:
            ApiError: 404/410 the upload is gone; 409 ``offset`` is not the server's;
                423 another request is writing to it; 415 the bytes are no media.
            AuthenticationError, ConnectionFailed: see the module.
            multipart.FileChanged: the file shrank while it was being read.
        """
        headers = {**_TUS, "Upload-Offset": str(offset), "Content-Type": TUS_CHUNK_TYPE}
        response = self._request("PATCH", url, data=body, headers=headers)
        return self._upload_status(url, response, length)

    def job(self, job_id: str) -> dict[str, Any]:
        """Return one of the caller's jobs.

        Raises:
            ApiError: 404 for unknown ids and other people's jobs.
        """
        return self._json("GET", f"/jobs/{quote(job_id, safe='')}", expect=("job_id", "status"))

    def jobs(
        self, *, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]:
        """Return a page of the caller's jobs, newest first: ``{jobs, total, limit, offset}``."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self._json("GET", "/jobs", params=params, expect=("jobs",))

    def me(self) -> dict[str, Any]:
        """Return the caller's account: ``{email, admin, auth, scopes, key_id, usage, quotas}``
        (a null quota: none; ``auth`` is ``session`` or ``api_key``)."""
        return self._json("GET", "/me", expect=("usage", "quotas"))

    def delete_job(self, job_id: str) -> None:
        """Delete one of the caller's jobs with its video and MP3.

        Raises:
            ApiError: 404 for unknown ids and other people's jobs.
        """
        self._send("DELETE", f"/jobs/{quote(job_id, safe='')}").close()

    def download(self, fid: str) -> Download:
        """Start downloading an MP3 by its id or its video's id; close the result when done.

        Raises:
            ApiError: 404 unknown file; 409 ``not_ready`` (``status`` in the body).
        """
        return Download(
            self._send("GET", "/download", params={"fid": fid}, stream=True), self.server
        )

    def download_zip(self, job_ids: Sequence[str]) -> Download:
        """Start downloading the outputs of done jobs as one ZIP; close the result when done.

        Raises:
            ApiError: 400 no ids, more than ``MAX_ZIP_JOBS`` or a malformed one; 404 a job
                that is unknown or someone else's, 409 one not done (``job_id`` in the body).
        """
        response = self._send(
            "GET",
            "/download.zip",
            params=[("job_id", job_id) for job_id in job_ids],
            headers={"Accept": "application/zip, application/json"},
            stream=True,
        )
        return Download(response, self.server, default_name="video2mp3.zip")

    def _json(
        self, method: str, path: str, *, expect: tuple[str, ...] = (), **kwargs: Any
    ) -> dict[str, Any]:
        """Send a request and return its JSON object, which must have the ``expect`` keys."""
        response = self._send(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or any(key not in body for key in expect):
            raise self._unexpected(path, response.status_code)
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request for ``path`` on the server; return the response if it is a success."""
        return self._request(method, f"{self.server}{path}", **kwargs)

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send a request and return the response if it is a success.

        Raises:
            ApiError, AuthenticationError: the server answered with an error.
            ConnectionFailed, InvalidServer: see the module.
        """
        timeout = kwargs.pop("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        with _translate_errors(self.server, timeout[1]):
            response = self._session.request(method, url, timeout=timeout, **kwargs)
        if response.ok:
            return response
        with response:
            raise _api_error(response)

    def _upload_status(
        self, url: str, response: requests.Response, length: int | None = None
    ) -> UploadStatus:
        """Read a tus answer's headers (Upload-Length is optional after a PATCH)."""
        with response:
            offset = response.headers.get("Upload-Offset", "")
            length_header = response.headers.get("Upload-Length", "")
            expires = response.headers.get("Upload-Expires")
            job_id = response.headers.get(JOB_ID_HEADER) or None
        if length_header.isdigit():
            length = int(length_header)
        if not offset.isdigit() or length is None:
            raise self._unexpected(urlsplit(url).path, response.status_code)
        try:
            expires_at = parsedate_to_datetime(expires).timestamp() if expires else None
        except (TypeError, ValueError):
            expires_at = None
        return UploadStatus(url, int(offset), length, expires_at, job_id)

    def _unexpected(self, path: str, status: int) -> ApiError:
        return ApiError(
            status,
            "unexpected_response",
            f"{self.server}{path} did not answer like a video2mp3 server (HTTP {status}); "
            "check the server URL.",
            {},
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _api_error(response: requests.Response) -> ApiError:
    """Build the error for a failed response from its JSON body (or its status line)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    code = str(body.get("error") or f"http_{status}")
    message = str(body.get("message") or f"The server answered {status} {response.reason}.")
    retry_after = response.headers.get("Retry-After", "")
    # Unless the server's own words already say when.
    if status == 429 and retry_after.isdigit() and not _SAYS_WHEN.search(message):
        message = f"{message.rstrip('.')}; try again in {retry_after} s."
    error_type = ApiError
    if status == 401:
        error_type = AuthenticationError
    elif status == 403 and code == "insufficient_scope":
        error_type = InsufficientScope
    return error_type(status, code, message, body)


@contextlib.contextmanager
def _translate_errors(server: str, read_timeout: float) -> Iterator[None]:
    """Turn requests' exceptions into ``ConnectionFailed`` / ``InvalidServer``."""
    try:
        yield
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
        raise InvalidServer(f"Invalid server URL {server!r}: {exc}") from None
    except requests.exceptions.MissingSchema:
        raise InvalidServer(
            f"Invalid server URL {server!r}: it needs http:// or https://"
        ) from None
    except requests.exceptions.ConnectTimeout:
        raise ConnectionFailed(f"Cannot reach the server at {server}: timed out") from None
    except requests.exceptions.ReadTimeout:
        raise ConnectionFailed(
            f"The server at {server} did not answer within {read_timeout:g} s."
        ) from None
    except requests.exceptions.SSLError as exc:
        raise ConnectionFailed(f"TLS with {server} failed: {_reason(exc)}") from None
    except requests.exceptions.ChunkedEncodingError:
        raise ConnectionFailed(f"The connection to {server} broke during the transfer.") from None
    except requests.ConnectionError as exc:
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, ProtocolError):  # connected, then the line went: not "unreachable"
            raise ConnectionFailed(
                f"The connection to {server} broke: {_reason(cause.args[-1])}"
            ) from None
        raise ConnectionFailed(f"Cannot reach the server at {server}: {_reason(exc)}") from None
    except requests.RequestException as exc:
        raise ConnectionFailed(f"Talking to {server} failed: {_reason(exc)}") from None


def _reason(exc: object) -> str:
    """Return the operating system's short reason buried in a requests exception."""
    match = _ERRNO_REASON.search(str(exc))
    if match:
        return match.group(1).strip().lower()
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."


_DISPOSITION_EXTENDED = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_DISPOSITION_QUOTED = re.compile(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_DISPOSITION_TOKEN = re.compile(r"filename\s*=\s*([^\s;\"]+)", re.IGNORECASE)
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]+')


def filename_from_disposition(value: str | None, default: str = "audio.mp3") -> str:
    """Return a safe local file name from a Content-Disposition header.

    ``filename*`` (RFC 6266, UTF-8) wins over ``filename``; any directory part,
    control or reserved character and leading dot is removed, so the name
    cannot point outside the download directory or hide itself.
    """
    name = ""
    if value:
        extended = _DISPOSITION_EXTENDED.search(value)
        quoted = _DISPOSITION_QUOTED.search(value)
        token = _DISPOSITION_TOKEN.search(value)
        if extended:
            charset = extended.group(1).strip() or "utf-8"
            try:
                name = unquote(extended.group(2).strip(), encoding=charset, errors="replace")
            except LookupError:
                name = unquote(extended.group(2).strip())
        elif quoted:
            name = re.sub(r"\\(.)", r"\1", quoted.group(1))
        elif token:
            name = token.group(1)
    return safe_filename(name, default)


def safe_filename(name: str, default: str = "audio.mp3") -> str:
    """Return ``name`` without any directory part, control or reserved character or
    leading dot, so it cannot point outside the directory it is saved in or hide itself.
    """
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = _UNSAFE_CHARS.sub("_", name).strip().lstrip(".").strip()
    return name[:200] or default
