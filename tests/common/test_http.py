"""The shared HTTP edge on a bare Flask app: JSON errors of every kind, request ids."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from common.errors import TransientError
from common.http.errors import ApiError, install_error_handlers
from common.http.observe import install_request_id
from common.logs import current_context


@pytest.fixture
def client() -> FlaskClient:
    app = Flask(__name__)
    install_request_id(app)
    install_error_handlers(app)

    @app.get("/teapot")
    def teapot() -> None:
        raise ApiError(418, "teapot", "I am a teapot.", {"X-Brew": "earl grey"})

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("a bug with a secret detail")

    @app.get("/dependency-down")
    def dependency_down() -> None:
        raise TransientError("the broker at amqp://guest:guest@host went away")

    @app.get("/log-context")
    def log_context() -> object:
        return jsonify(current_context())

    return app.test_client()


def test_api_error_renders_its_status_code_message_and_headers(client: FlaskClient) -> None:
    response = client.get("/teapot")

    assert response.status_code == 418
    assert response.json == {"error": "teapot", "message": "I am a teapot."}
    assert response.headers["X-Brew"] == "earl grey"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/thing", 404, "not_found"),
        ("POST", "/teapot", 405, "method_not_allowed"),
    ],
)
def test_werkzeug_errors_are_json(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    response = client.open(path, method=method)

    assert response.status_code == status
    assert response.content_type == "application/json"
    assert response.json["error"] == code
    assert response.json["message"]


def test_405_keeps_the_allow_header(client: FlaskClient) -> None:
    assert "GET" in client.post("/teapot").headers["Allow"]


def test_unexpected_error_is_logged_and_a_plain_500(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/crash")

    assert response.status_code == 500
    assert response.json == {
        "error": "internal_error",
        "message": "The server failed to handle the request.",
    }
    assert "secret detail" not in response.text
    assert "RuntimeError: a bug with a secret detail" in caplog.text


def test_transient_error_is_503_with_retry_after_and_no_details(client: FlaskClient) -> None:
    response = client.get("/dependency-down")

    assert response.status_code == 503
    assert response.json["error"] == "service_unavailable"
    assert "guest" not in response.text
    assert int(response.headers["Retry-After"]) > 0


def test_request_id_is_made_up_and_echoed(client: FlaskClient) -> None:
    first = client.get("/log-context")
    second = client.get("/log-context")

    assert len(first.headers["X-Request-ID"]) == 32
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    assert first.json == {"request_id": first.headers["X-Request-ID"]}


def test_sane_request_id_is_kept_in_logs_and_response(client: FlaskClient) -> None:
    response = client.get("/log-context", headers={"X-Request-ID": "gw-1234.abc"})

    assert response.headers["X-Request-ID"] == "gw-1234.abc"
    assert response.json == {"request_id": "gw-1234.abc"}


def test_request_context_ends_with_the_request(client: FlaskClient) -> None:
    client.get("/log-context", headers={"X-Request-ID": "gw-1234.abc"})

    assert current_context() == {}


@pytest.mark.parametrize(
    "supplied", ["", "has space", "x" * 200, "<script>", "-leading-dash", "new\\nline"]
)
def test_insane_request_id_is_replaced(client: FlaskClient, supplied: str) -> None:
    response = client.get("/log-context", headers={"X-Request-ID": supplied})

    assert response.headers["X-Request-ID"] != supplied
    assert len(response.headers["X-Request-ID"]) == 32


def test_errors_carry_the_request_id_too(client: FlaskClient) -> None:
    assert client.get("/crash", headers={"X-Request-ID": "trace-me"}).headers["X-Request-ID"] == (
        "trace-me"
    )
