"""The assembled app: built from config or environment, JSON errors over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask

from auth_service import create_app
from auth_service.config import current_config
from common.errors import ConfigError
from tests.auth_service.conftest import LiveServer
from tests.support import forge


def test_unknown_path_is_json_404_with_a_request_id(live_server: LiveServer) -> None:
    response = live_server.get("/no/such/thing")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"
    assert response.headers["X-Request-ID"]


def test_oversized_body_is_json_413(
    serve: Callable[[Flask], LiveServer], make_app: Callable[..., Flask]
) -> None:
    server = serve(make_app(allow_registration=True))

    response = server.post("/users", data=b"x" * (65 * 1024))

    assert response.status_code == 413
    assert response.json()["error"] == "request_entity_too_large"


def test_create_app_reads_the_environment_when_given_no_config(
    monkeypatch: pytest.MonkeyPatch, signing_key: RSAPrivateKey
) -> None:
    monkeypatch.setenv("JWT_PRIVATE_KEY", forge.private_pem(signing_key))
    monkeypatch.setenv("JWT_ISSUER", "from-the-environment")
    monkeypatch.delenv("JWT_PRIVATE_KEY_FILE", raising=False)

    app = create_app()

    with app.app_context():
        assert current_config().jwt_issuer == "from-the-environment"


def test_create_app_without_a_key_says_how_to_make_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("JWT_PRIVATE_KEY_FILE", raising=False)

    with pytest.raises(ConfigError, match="gen-key"):
        create_app()
