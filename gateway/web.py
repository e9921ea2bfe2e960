"""The web page at ``/`` and the admin console at ``/admin``: HTML, ES modules, styles, no build.

The page talks to the same JSON API as any other client (``/login``,
``/upload``, ``/jobs``, ``/download``) with the token it keeps in the tab's
``sessionStorage``. Every asset URL carries a hash of the bytes served for it
(``/assets/app.js?v=…``), so a browser may keep an asset for a year and still
never runs a stale script after a deploy; the HTML itself is always revalidated.

The modules import each other as ``from "./name.js"``, and a browser resolves
that against ``/assets/`` without the importer's ``?v=``. So each module is
served with its imports pinned to the imported module's version: a module's
hash covers everything it imports, one URL names one version of each module (and
so one instance of it in the page), and the entry's URL in the HTML changes
whenever any module does. The page preloads all the entry's modules beside it,
so a first visit fetches them at once instead of one level of imports at a time.

Third-party scripts live in ``static/vendor/<package>/``, exactly as npm publishes them
(``devstack.vendor`` writes them and their manifest), and are served the same way at
``/assets/vendor/<package>/<file>``: versioned by hash, named from the HTML
(``src="/assets/vendor/…"``) or imported as ``"./vendor/<package>/<file>.js"``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, request

from common.http.errors import ApiError

bp = Blueprint("web", __name__)

STATIC_DIR = Path(__file__).parent / "static"
# The one folder below STATIC_DIR whose files are served too, by their path under it.
VENDOR_FOLDER = "vendor"
# Served by suffix: the page's template (index.html) and anything else stay private.
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
ONE_YEAR = 365 * 24 * 3600
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        # The player plays an output fetched with the token, from an object URL.
        "media-src 'self' blob:",
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
# An asset's name: a file in STATIC_DIR, or a path below its vendor folder.
_NAME = r"[\w.@-]+(?:/[\w.@-]+)*"
_ASSET_REFERENCE = re.compile(rf'(?P<attr>href|src)="/assets/(?P<name>{_NAME})"')
_MODULE_SCRIPT = re.compile(
    rf'^(?P<indent>[ \t]*)<script type="module" src="/assets/(?P<name>{_NAME})"></script>$',
    re.MULTILINE,
)
# A static import of a module beside or below the importer, written the one way modules write it.
_MODULE_IMPORT = re.compile(rf'\b(?P<keyword>from|import)(?P<space>\s*)"\./(?P<name>{_NAME}\.js)"')


@dataclass(frozen=True)
class Asset:
    """One asset as served: its bytes, a hash of them, and the modules it imports."""

    body: bytes
    media_type: str
    version: str
    imports: tuple[str, ...] = ()


@bp.get("/")
def index() -> Response:
    """Serve the page."""
    return _html("index.html")


@bp.get("/admin")
def admin_console() -> Response:
    """Serve the admin console (its API, under ``/admin/``, answers admins only)."""
    return _html("admin.html")


def _html(template: str) -> Response:
    """Answer with one of the page templates, its assets versioned."""
    response = Response(_page(template), mimetype="text/html")
    # Revalidated on every visit: it names the current assets' versions.
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/assets/<path:name>")
def asset(name: str) -> Response:
    """Serve one of the page's assets; long-lived when asked for by its current version."""
    found = _assets().get(name)
    if found is None:
        raise ApiError(404, "not_found", "No such asset.")
    response = Response(found.body, mimetype=found.media_type)
    if request.args.get("v") == found.version:
        response.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    response.set_etag(found.version)
    return response.make_conditional(request)


@bp.after_request
def add_security_headers(response: Response) -> Response:
    """Give every response of the page the headers that confine what it may load and do."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _page(template: str) -> str:
    """Return a template with the entry's modules preloaded and each asset URL versioned."""
    assets = _assets()
    html = (STATIC_DIR / template).read_text(encoding="utf-8")

    def preload(match: re.Match[str]) -> str:
        links = (
            f'{match["indent"]}<link rel="modulepreload" href="/assets/{name}">'
            for name in _imported(match["name"], assets)
        )
        return "\n".join((match[0], *links))

    def pin(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in assets:
            return match[0]
        return f'{match["attr"]}="/assets/{name}?v={assets[name].version}"'

    return _ASSET_REFERENCE.sub(pin, _MODULE_SCRIPT.sub(preload, html))


def _imported(entry: str, assets: dict[str, Asset]) -> list[str]:
    """Return every module ``entry`` imports, directly or through another, each once."""
    found: dict[str, None] = {}

    def visit(name: str) -> None:
        for imported in assets[name].imports:
            if imported not in found:
                found[imported] = None
                visit(imported)

    if entry in assets:
        visit(entry)
    return list(found)


def _assets() -> dict[str, Asset]:
    """Return the servable assets by name, read again only when a file of them changes."""
    files: list[tuple[str, int, int]] = []

    def scan(folder: Path, prefix: str, recurse: bool) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if recurse and entry.is_dir():
                    scan(Path(entry.path), f"{prefix}{entry.name}/", recurse)
                elif Path(entry.name).suffix in MEDIA_TYPES and entry.is_file():
                    stat = entry.stat()
                    files.append((prefix + entry.name, stat.st_mtime_ns, stat.st_size))

    scan(STATIC_DIR, "", recurse=False)
    if (STATIC_DIR / VENDOR_FOLDER).is_dir():
        scan(STATIC_DIR / VENDOR_FOLDER, f"{VENDOR_FOLDER}/", recurse=True)
    return _read_assets(STATIC_DIR, tuple(sorted(files)))


@functools.lru_cache(maxsize=4)
def _read_assets(folder: Path, files: tuple[tuple[str, int, int], ...]) -> dict[str, Asset]:
    """Read the assets in ``files``, each module's imports pinned to their versions.

    Raises:
        RuntimeError: modules import each other in a cycle, so no version covers the others.
    """
    names = {name for name, _mtime_ns, _size in files}
    assets: dict[str, Asset] = {}

    def read(name: str, importers: tuple[str, ...]) -> Asset:
        if name in assets:
            return assets[name]
        if name in importers:
            cycle = " -> ".join((*importers[importers.index(name) :], name))
            raise RuntimeError(f"the modules in {folder} import each other in a cycle: {cycle}")
        body = (folder / name).read_bytes()
        imports: dict[str, None] = {}  # in order, each once

        def pin(match: re.Match[str]) -> str:
            imported = posixpath.normpath(posixpath.join(posixpath.dirname(name), match["name"]))
            if imported not in names:
                return match[0]  # the browser's 404 names the missing module
            imports[imported] = None
            version = read(imported, (*importers, name)).version
            return f'{match["keyword"]}{match["space"]}"./{match["name"]}?v={version}"'

        if name.endswith(".js"):
            body = _MODULE_IMPORT.sub(pin, body.decode("utf-8")).encode("utf-8")
        version = hashlib.sha256(body).hexdigest()[:16]
        assets[name] = Asset(body, MEDIA_TYPES[Path(name).suffix], version, tuple(imports))
        return assets[name]

    for name in sorted(names):
        read(name, ())
    return assets
