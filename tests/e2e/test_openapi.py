"""The OpenAPI documents are true: every route is in them and real responses match them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_spec_validator import validate

from tests.e2e.test_pipeline import FTYP, convert, fid_in
from tests.support.media import make_video

ROOT = Path(__file__).resolve().parents[2]
SPECS = {"gateway": ROOT / "gateway/openapi.yaml", "auth": ROOT / "auth_service/openapi.yaml"}
# Pages for people, not API operations.
UNDOCUMENTED = {"/", "/assets/<path:name>", "/docs", "/docs/assets/<name>"}


def load(name: str) -> dict:
    return yaml.safe_load(SPECS[name].read_text())


@pytest.mark.parametrize("name", SPECS)
def test_documents_are_valid_openapi(name):
    validate(load(name))


@pytest.fixture
def service_env(system, monkeypatch):
    """Let create_app read the running system's configuration from the environment."""
    for key, value in system.env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", SPECS)
def test_every_route_is_documented_and_every_documented_route_exists(service_env, name):
    from auth_service import create_app as create_auth
    from gateway import create_app as create_gateway

    app = create_gateway() if name == "gateway" else create_auth()
    spec_paths = {path.replace("{", "<").replace("}", ">") for path in load(name)["paths"]}
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.rule in UNDOCUMENTED:
            continue
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        routes.setdefault(rule.rule, set()).update(methods)
    assert set(routes) == spec_paths
    spec = load(name)
    for path, methods in routes.items():
        documented = set(spec["paths"][path.replace("<", "{").replace(">", "}")]) - {"parameters"}
        assert methods == documented, path


def conforms(openapi: OpenAPI, response: requests.Response) -> None:
    openapi.validate_response(
        RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
    )


def test_gateway_responses_match_the_document(system, user, make_user, mail_sink, tmp_path):
    openapi = OpenAPI.from_dict(load("gateway"))
    base, headers = system.gateway, user.headers
    checked = []

    def check(response: requests.Response, status: int) -> requests.Response:
        assert response.status_code == status, response.text
        conforms(openapi, response)
        checked.append((response.request.method, response.request.path_url.split("?")[0], status))
        return response

    check(requests.post(f"{base}/login", auth=(user.email, user.password), timeout=30), 200)
    check(requests.post(f"{base}/login", auth=(user.email, "nope"), timeout=30), 401)
    body, email = convert(system, user, mail_sink, make_video(tmp_path / "a.mp4", seconds=1))
    fid = fid_in(email)
    with (tmp_path / "a.mp4").open("rb") as video:
        check(
            requests.post(
                f"{base}/upload",
                headers=headers,
                files={"file": video},
                data={"bitrate": "7"},
                timeout=30,
            ),
            400,
        )
    check(
        requests.post(
            f"{base}/upload", headers=headers, files={"file": ("t.txt", b"text " * 200)}, timeout=30
        ),
        415,
    )
    check(requests.post(f"{base}/upload", files={"file": ("a.mp4", FTYP)}, timeout=30), 401)
    check(requests.get(f"{base}/download", params={"fid": fid}, headers=headers, timeout=30), 200)
    check(
        requests.get(
            f"{base}/download",
            params={"fid": fid},
            headers={**headers, "Range": "bytes=0-9"},
            timeout=30,
        ),
        206,
    )
    check(
        requests.get(f"{base}/download", params={"fid": "0" * 24}, headers=headers, timeout=30), 404
    )
    check(requests.get(f"{base}/jobs", headers=headers, timeout=30), 200)
    check(requests.get(f"{base}/jobs", params={"limit": 0}, headers=headers, timeout=30), 400)
    check(requests.get(f"{base}/jobs/{body['job_id']}", headers=headers, timeout=30), 200)
    check(requests.get(f"{base}/jobs/unknown", headers=headers, timeout=30), 404)
    check(requests.delete(f"{base}/jobs/{body['job_id']}", headers=headers, timeout=30), 204)
    check(requests.get(f"{base}/health", timeout=30), 200)
    check(requests.get(f"{base}/ready", timeout=30), 200)
    check(requests.get(f"{base}/metrics", timeout=30), 200)
    served = check(requests.get(f"{base}/openapi.json", timeout=30), 200)
    assert served.json() == load("gateway")
    assert len(checked) == 17


def test_auth_responses_match_the_document(system, user):
    openapi = OpenAPI.from_dict(load("auth"))
    base = system.auth
    admin = {"Authorization": f"Bearer {system.admin_token}"}

    def check(response: requests.Response, status: int) -> requests.Response:
        assert response.status_code == status, response.text
        conforms(openapi, response)
        return response

    token = check(
        requests.post(f"{base}/login", auth=(user.email, user.password), timeout=30), 200
    ).json()["token"]
    check(requests.post(f"{base}/login", headers={"Authorization": "Basic !!"}, timeout=30), 400)
    for method in (requests.get, requests.post):
        check(
            method(f"{base}/validate", headers={"Authorization": f"Bearer {token}"}, timeout=30),
            200,
        )
        check(method(f"{base}/validate", timeout=30), 401)
    check(requests.get(f"{base}/.well-known/jwks.json", timeout=30), 200)
    new_user = {"email": f"doc-{token[-8:].lower()}@e2e.test", "password": "long enough pw"}
    created = check(
        requests.post(f"{base}/users", json=new_user, headers=admin, timeout=30), 201
    ).json()
    check(requests.post(f"{base}/users", json=new_user, headers=admin, timeout=30), 409)
    check(requests.post(f"{base}/users", json={"email": "x"}, headers=admin, timeout=30), 400)
    check(requests.post(f"{base}/users", json=new_user, timeout=30), 401)
    check_accounts(check, base, admin, created["id"], new_user)
    check(requests.get(f"{base}/health", timeout=30), 200)
    check(requests.get(f"{base}/ready", timeout=30), 200)
    check(requests.get(f"{base}/metrics", timeout=30), 200)
    assert check(requests.get(f"{base}/openapi.json", timeout=30), 200).json() == load("auth")


def check_accounts(check, base: str, admin: dict, user_id: int, account: dict) -> None:
    """Check auth's account routes (keys, sessions, admin users) against the document."""

    def session() -> dict[str, str]:
        login = requests.post(
            f"{base}/login", auth=(account["email"], account["password"]), timeout=30
        )
        return {"Authorization": f"Bearer {login.json()['token']}"}

    mine = session()
    keys = f"{base}/api-keys"
    key = check(
        requests.post(
            keys, json={"name": "doc", "scopes": ["jobs:read"]}, headers=mine, timeout=30
        ),
        201,
    ).json()
    by_key = {"Authorization": f"Bearer {key['key']}"}
    check(requests.get(f"{base}/validate", headers=by_key, timeout=30), 200)
    check(requests.get(keys, headers=mine, timeout=30), 200)
    check(requests.get(keys, headers=by_key, timeout=30), 403)
    check(
        requests.post(keys, json={"name": "", "scopes": ["jobs:read"]}, headers=mine, timeout=30),
        400,
    )
    check(requests.get(keys, timeout=30), 401)
    check(requests.delete(f"{keys}/{key['id']}", headers=mine, timeout=30), 204)
    check(requests.delete(f"{keys}/{key['id']}", headers=mine, timeout=30), 404)
    users = f"{base}/users"
    check(requests.get(users, params={"q": "doc-"}, headers=admin, timeout=30), 200)
    check(requests.get(users, params={"limit": 0}, headers=admin, timeout=30), 400)
    check(requests.get(users, headers=mine, timeout=30), 403)
    check(
        requests.patch(f"{users}/{user_id}", json={"disabled": True}, headers=admin, timeout=30),
        200,
    )
    check(
        requests.patch(f"{users}/{user_id}", json={"disabled": 1}, headers=admin, timeout=30), 400
    )
    check(
        requests.patch(f"{users}/{user_id}", json={"disabled": False}, headers=admin, timeout=30),
        200,
    )
    check(requests.post(f"{users}/{user_id}/revoke", headers=admin, timeout=30), 204)
    check(requests.post(f"{users}/0/revoke", headers=admin, timeout=30), 404)
    check(requests.get(f"{base}/revocations", timeout=30), 200)
    check(requests.get(f"{base}/revocations", params={"after": "x"}, timeout=30), 400)
    mine = session()
    change = {"current_password": account["password"], "new_password": "another long pw"}
    check(
        requests.post(
            f"{base}/password",
            json={**change, "current_password": "wrong"},
            headers=mine,
            timeout=30,
        ),
        401,
    )
    check(
        requests.post(
            f"{base}/password", json={**change, "new_password": "short"}, headers=mine, timeout=30
        ),
        400,
    )
    renewed = check(requests.post(f"{base}/password", json=change, headers=mine, timeout=30), 200)
    check(
        requests.post(
            f"{base}/logout",
            headers={"Authorization": f"Bearer {renewed.json()['token']}"},
            timeout=30,
        ),
        204,
    )
    check(requests.post(f"{base}/logout", headers=mine, timeout=30), 401)
    account = {**account, "password": change["new_password"]}
    check(requests.delete(f"{base}/me", headers=session(), timeout=30), 204)
    check(requests.delete(f"{users}/{user_id}", headers=admin, timeout=30), 404)


@pytest.mark.parametrize("service", ["gateway", "auth"])
def test_the_docs_page_is_served_without_any_cdn(system, service):
    base = system.gateway if service == "gateway" else system.auth
    page = requests.get(f"{base}/docs", timeout=10)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http" not in page.text.replace('charset="utf-8"', "")  # no external URLs at all
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "docs.js"):
        response = requests.get(f"{base}/docs/assets/{asset}", timeout=10)
        assert response.status_code == 200
        assert len(response.content) > 50
    assert requests.get(f"{base}/docs/assets/secret.txt", timeout=10).status_code == 404
    json.loads(requests.get(f"{base}/openapi.json", timeout=10).text)
