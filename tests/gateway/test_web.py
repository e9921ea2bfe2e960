"""The page's assets as gateway.web serves them: modules pinned to versions, private files kept."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.http.errors import install_error_handlers
from gateway import web

IMMUTABLE = "public, max-age=31536000, immutable"
# Every way a module can name another, pinned or not: static and dynamic imports, re-exports.
IMPORT_SPECIFIER = re.compile(r"""\b(?:from|import)\s*\(?\s*["'`]([^"'`]+)["'`]""")
ASSET_URL = re.compile(r'(?:src|href)="(/assets/[\w.-]+\?v=[0-9a-f]{16})"')
# Each page and the module it starts with: the main page and the admin console.
PAGES = {"/": "app.js", "/admin": "admin.js"}


@pytest.fixture
def static_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the page's folder, for a test to change; the app serves it."""
    folder = tmp_path / "static"
    shutil.copytree(web.STATIC_DIR, folder)
    monkeypatch.setattr(web, "STATIC_DIR", folder)
    return folder


@pytest.fixture
def client() -> Iterator[FlaskClient]:
    """A test client of an app with the web blueprint and the shared JSON errors."""
    app = Flask(__name__, static_folder=None)
    install_error_handlers(app)
    app.register_blueprint(web.bp)
    with app.test_client() as client:
        yield client


def page_urls(client: FlaskClient, page: str = "/") -> dict[str, str]:
    """Return the versioned URL the page names for each asset, by file name."""
    html = client.get(page).text
    urls = {}
    for url in ASSET_URL.findall(html):
        urls.setdefault(url.split("/")[-1].split("?")[0], url)
    return urls


def imported_urls(client: FlaskClient, module_url: str) -> list[str]:
    """Return the URLs a served module's imports resolve to, as a browser resolves them."""
    body = client.get(module_url).text
    specifiers = IMPORT_SPECIFIER.findall(body)
    assert all(specifier.startswith("./") for specifier in specifiers), specifiers
    return [f"/assets/{specifier[2:]}" for specifier in specifiers]


@pytest.mark.parametrize(("page", "entry"), PAGES.items())
def test_every_module_is_preloaded_and_imported_by_its_current_version(client, page, entry):
    urls = page_urls(client, page)
    modules = {path.name for path in web.STATIC_DIR.glob("*.js")} & set(urls)
    assert entry in modules

    html = client.get(page).text
    preloaded = re.findall(r'<link rel="modulepreload" href="([^"]+)">', html)
    assert sorted(preloaded) == sorted(urls[name] for name in modules - {entry})

    for name in modules:
        response = client.get(urls[name])
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert response.headers["Cache-Control"] == IMMUTABLE
        for url in imported_urls(client, urls[name]):
            # The same URL everywhere: one version of each module, and one instance of it.
            assert url in urls.values(), f"{name} imports {url}"


def test_every_module_belongs_to_a_page(client):
    modules = {path.name for path in web.STATIC_DIR.glob("*.js")}
    loaded = {name for page in PAGES for name in page_urls(client, page)}
    assert modules <= loaded, "a module no page loads or preloads"


def test_the_admin_console_is_a_page_under_the_same_policy(client):
    main, console = client.get("/"), client.get("/admin")

    assert console.status_code == 200
    assert console.mimetype == "text/html"
    assert "<script>" not in console.text
    assert " style=" not in console.text
    for header in web.SECURITY_HEADERS:
        assert console.headers[header] == main.headers[header]
    assert console.headers["Cache-Control"] == "no-cache"


def test_a_changed_module_changes_the_version_of_every_module_above_it(client, static_dir):
    before = page_urls(client)
    with (static_dir / "format.js").open("a", encoding="utf-8") as module:
        module.write("// changed\n")
    after = page_urls(client)

    changed = {name for name in before if before[name] != after[name]}
    # format.js, what imports it, what imports those, up to the entry in the HTML.
    assert {"format.js", "job-row.js", "jobs.js", "api.js", "app.js"} <= changed
    assert {"dom.js", "messages.js", "app.css", "icon.svg"}.isdisjoint(changed)

    stale = client.get(before["app.js"])
    assert stale.headers["Cache-Control"] == "no-cache"
    assert stale.data == client.get(after["app.js"]).data


def test_an_unversioned_module_is_revalidated(client):
    plain = client.get("/assets/jobs.js")
    assert plain.status_code == 200
    assert plain.headers["Cache-Control"] == "no-cache"
    assert plain.data == client.get(page_urls(client)["jobs.js"]).data
    again = client.get("/assets/jobs.js", headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("name", ["index.html", ".hidden.js", "notes.txt", "nope.js"])
def test_only_scripts_styles_and_images_are_served(client, static_dir, name):
    (static_dir / ".hidden.js").write_text("export const secret = 1;\n")
    (static_dir / "notes.txt").write_text("not for the page\n")
    response = client.get(f"/assets/{name}")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_modules_that_import_each_other_in_a_cycle_are_named(static_dir):
    (static_dir / "chicken.js").write_text(
        'import { egg } from "./egg.js";\nexport const hen = 1;\n'
    )
    (static_dir / "egg.js").write_text(
        'import { hen } from "./chicken.js";\nexport const egg = 1;\n'
    )
    with pytest.raises(RuntimeError, match=r"chicken\.js -> egg\.js -> chicken\.js"):
        web._assets()


def test_vendored_scripts_are_served_by_version_as_published(client):
    html = client.get("/").text
    urls = re.findall(r'src="(/assets/vendor/[\w./@-]+\?v=[0-9a-f]{16})"', html)
    assert urls, "the page names no vendored script"
    for url in urls:
        response = client.get(url)
        path = web.STATIC_DIR / url.removeprefix("/assets/").split("?")[0]
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == IMMUTABLE
        assert response.data == path.read_bytes()
    assert client.get("/assets/vendor/packages.json").status_code == 404
    assert client.get("/assets/vendor/tus-js-client/LICENSE").status_code == 404


def test_a_module_may_import_a_vendored_module_by_version(client, static_dir):
    vendored = static_dir / "vendor" / "lib"
    vendored.mkdir(parents=True)
    (vendored / "lib.js").write_text('import { b } from "./part.js";\nexport const a = b;\n')
    (vendored / "part.js").write_text("export const b = 1;\n")
    (static_dir / "uses-lib.js").write_text(
        'import { a } from "./vendor/lib/lib.js";\nexport const c = a;\n'
    )
    with (static_dir / "app.js").open("a", encoding="utf-8") as module:
        module.write('import "./uses-lib.js";\n')

    html = client.get("/").text
    preloaded = re.findall(r'<link rel="modulepreload" href="([^"]+)">', html)
    lib_url = next(url for url in preloaded if url.startswith("/assets/vendor/lib/lib.js?v="))
    assert any(url.startswith("/assets/vendor/lib/part.js?v=") for url in preloaded)
    user = client.get(
        next(url for url in preloaded if url.startswith("/assets/uses-lib.js?v="))
    ).text
    assert f'from "./vendor/lib/lib.js?v={lib_url.split("?v=")[1]}"' in user
    assert '"./part.js?v=' in client.get(lib_url).text
