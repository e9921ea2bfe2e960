"""The web page at ``/``: one HTML file and its script, styles and icon, no build step.

The page talks to the same JSON API as any other client (``/login``,
``/upload``, ``/jobs``, ``/download``) with the token it keeps in the tab's
``sessionStorage``. Asset URLs in the HTML carry a hash of the file's content,
so a browser may keep an asset for a year and still never runs a stale script
after a deploy; the HTML itself is always revalidated.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory

from common.web import ApiError

bp = Blueprint("web", __name__)

STATIC_DIR = Path(__file__).parent / "static"
# Only these files are served: the folder may hold anything else without exposing it.
ASSET_TYPES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "icon.svg": "image/svg+xml",
}
ONE_YEAR = 365 * 24 * 3600
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_ASSET_REFERENCE = re.compile(r'(?P<attr>href|src)="/assets/(?P<name>[\w.-]+)"')


@bp.get("/")
def index() -> Response:
    """Serve the page."""
    response = Response(_page(), mimetype="text/html")
    # Revalidated on every visit: it names the current assets' versions.
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    """Serve one of the page's assets; long-lived when asked for by its current version."""
    if name not in ASSET_TYPES:
        raise ApiError(404, "not_found", "No such asset.")
    current = request.args.get("v") == _fingerprint(name)
    response = send_from_directory(STATIC_DIR, name, mimetype=ASSET_TYPES[name])
    if current:
        response.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    return response


@bp.after_request
def add_security_headers(response: Response) -> Response:
    """Give every response of the page the headers that confine what it may load and do."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _page() -> str:
    """Return index.html with each asset URL pinned to the asset's current version."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    def pin(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in ASSET_TYPES:
            return match[0]
        return f'{match["attr"]}="/assets/{name}?v={_fingerprint(name)}"'

    return _ASSET_REFERENCE.sub(pin, html)


def _fingerprint(name: str) -> str:
    """Return a short hash of an asset's content, read again only when the file changes."""
    stat = (STATIC_DIR / name).stat()
    return _hash_file(name, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _hash_file(name: str, _mtime_ns: int, _size: int) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:16]
