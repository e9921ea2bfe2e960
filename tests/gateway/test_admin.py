"""The admin API for dead letters, through the gateway app, on the real broker and MongoDB."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import requests
import yaml
from flask.testing import FlaskClient
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder, TestResponse

from common.config import MongoConfig
from common.messaging import dead_letter_queue
from common.tokens import TokenVerifier
from gateway import create_app
from gateway.config import Config
from gateway.services import EXTENSION
from tests.support import forge
from tests.support.deadletters import dead_letter, job_message, take_all
from tests.support.polling import wait_until
from tests.support.rabbit import queue_depth

SPEC = Path(__file__).resolve().parents[2] / "gateway/openapi.yaml"
KEY = forge.new_rsa_key()


def bearer(**claims) -> dict[str, str]:
    """Return headers with a fresh token (forged tokens last 10 minutes: never make them early)."""
    return {"Authorization": f"Bearer {forge.sign(KEY, forge.claims(**claims))}"}


def admin() -> dict[str, str]:
    return bearer(sub="root@x.test", admin=True)


@pytest.fixture
def queues(queue_name) -> dict[str, str]:
    """Give the three work queues names of this test's own on the broker."""
    return {name: queue_name(name) for name in ("video", "mp3", "webhook")}


def gateway_client(rabbit, queues: dict[str, str], mongo: MongoConfig) -> FlaskClient:
    config = Config(
        mongo=mongo,  # the audit log
        rabbit=rabbit,
        video_queue=queues["video"],
        mp3_queue=queues["mp3"],
        webhook_queue=queues["webhook"],
    )
    app = create_app(config)
    services = app.extensions[EXTENSION]
    verifier = TokenVerifier.from_public_key(
        KEY.public_key(), issuer=forge.ISSUER, audience=forge.AUDIENCE
    )
    app.extensions[EXTENSION] = dataclasses.replace(services, verifier=verifier)
    return app.test_client()


@pytest.fixture
def client(rabbitmq_config, queues, mongo_config) -> FlaskClient:
    return gateway_client(rabbitmq_config, queues, mongo_config)


def conforms(openapi: OpenAPI, response: TestResponse, sent: EnvironBuilder) -> None:
    # The app has read the body of response.request; the document checker reads a copy.
    openapi.validate_response(
        WerkzeugOpenAPIRequest(sent.get_request()), WerkzeugOpenAPIResponse(response)
    )


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(yaml.safe_load(SPEC.read_text()))


@pytest.fixture
def call(client, openapi):
    """Send a request as the admin (unless told otherwise) and check it against the document."""

    def send(method: str, path: str, *, headers=None, **kwargs):
        headers = admin() if headers is None else headers
        response = client.open(path, method=method, headers=headers, **kwargs)
        conforms(openapi, response, EnvironBuilder(path, method=method, headers=headers, **kwargs))
        return response

    return send


def test_an_admin_sees_each_queues_dead_letters(rabbitmq_config, queues, call):
    messages = [job_message(n) for n in range(3)]
    dead_letter(rabbitmq_config, queues["video"], messages)
    dead_letter(rabbitmq_config, queues["mp3"], [job_message(9)])

    counts = call("GET", "/admin/dead-letters")
    assert counts.status_code == 200
    assert counts.json == {
        "queues": [
            {"queue": "video", "dead_letter_queue": f"{queues['video']}.dead", "messages": 3},
            {"queue": "mp3", "dead_letter_queue": f"{queues['mp3']}.dead", "messages": 1},
            {"queue": "webhook", "dead_letter_queue": f"{queues['webhook']}.dead", "messages": 0},
        ]
    }

    listing = call("GET", "/admin/dead-letters/video", query_string={"limit": 2})
    assert listing.status_code == 200
    body = listing.json
    assert (body["queue"], body["total"], body["limit"]) == ("video", 3, 2)
    assert [m["message_id"] for m in body["messages"]] == [messages[0][0], messages[1][0]]
    first = body["messages"][0]
    assert first["job_id"] == messages[0][1]["job_id"]
    assert (first["reason"], first["died_in"], first["attempt"]) == ("rejected", queues["video"], 3)
    assert json.loads(first["preview"]) == messages[0][1]
    wait_until(lambda: queue_depth(rabbitmq_config, dead_letter_queue(queues["video"])) == 3)


def test_an_admin_replays_chosen_dead_letters_to_their_work_queue(rabbitmq_config, queues, call):
    messages = [job_message(n) for n in range(4)]
    dead_letter(rabbitmq_config, queues["mp3"], messages)
    chosen = [messages[1][0], messages[3][0]]

    response = call("POST", "/admin/dead-letters/mp3/replay", json={"ids": [*chosen, "nope"]})

    assert response.status_code == 200
    assert response.json["action"] == "replay"
    assert response.json["queue"] == "mp3"
    assert response.json["message_ids"] == chosen
    assert response.json["not_found"] == ["nope"]
    assert response.json["complete"] is True
    replayed = take_all(rabbitmq_config, queues["mp3"], 2)
    assert [properties.message_id for properties, _ in replayed] == chosen
    assert all("x-death" not in (properties.headers or {}) for properties, _ in replayed)
    assert queue_depth(rabbitmq_config, dead_letter_queue(queues["mp3"])) == 2

    everything = call("POST", "/admin/dead-letters/mp3/replay", json={"all": True})
    assert everything.json["count"] == 2
    wait_until(lambda: queue_depth(rabbitmq_config, queues["mp3"]) == 2)
    assert queue_depth(rabbitmq_config, dead_letter_queue(queues["mp3"])) == 0
    audit = call("GET", "/admin/audit").json["entries"]
    assert [(e["actor"], e["action"], e["target"]) for e in audit] == [
        ("root@x.test", "dead_letters.replay", "mp3"),
        ("root@x.test", "dead_letters.replay", "mp3"),
    ]
    assert audit[1]["details"]["message_ids"] == chosen
    assert audit[1]["details"]["not_found"] == ["nope"]
    assert (audit[0]["details"]["all"], audit[0]["details"]["count"]) == (True, 2)


def test_an_admin_discards_chosen_or_all_dead_letters_with_confirmation(
    rabbitmq_config, queues, call
):
    messages = [job_message(n) for n in range(3)]
    dead_letter(rabbitmq_config, queues["webhook"], messages)
    dead_queue = dead_letter_queue(queues["webhook"])

    one = call("POST", "/admin/dead-letters/webhook/discard", json={"ids": [messages[0][0]]})
    assert one.status_code == 200
    assert one.json["message_ids"] == [messages[0][0]]

    unconfirmed = call("POST", "/admin/dead-letters/webhook/discard", json={"all": True})
    assert unconfirmed.status_code == 400
    assert unconfirmed.json["error"] == "confirmation_required"
    wrong = call(
        "POST", "/admin/dead-letters/webhook/discard", json={"all": True, "confirm": "video"}
    )
    assert wrong.status_code == 400
    wait_until(lambda: queue_depth(rabbitmq_config, dead_queue) == 2)

    confirmed = call(
        "POST", "/admin/dead-letters/webhook/discard", json={"all": True, "confirm": "webhook"}
    )
    assert confirmed.status_code == 200
    assert confirmed.json["count"] == 2
    wait_until(lambda: queue_depth(rabbitmq_config, dead_queue) == 0)
    assert queue_depth(rabbitmq_config, queues["webhook"]) == 0
    # Refused requests changed nothing and are not in the log.
    audit = call("GET", "/admin/audit").json["entries"]
    assert [(e["action"], e["target"], e["details"]["count"]) for e in audit] == [
        ("dead_letters.discard", "webhook", 2),
        ("dead_letters.discard", "webhook", 1),
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/dead-letters"),
        ("GET", "/admin/dead-letters/video"),
        ("POST", "/admin/dead-letters/video/replay"),
        ("POST", "/admin/dead-letters/video/discard"),
        ("POST", "/admin/dead-letters/nonsense/discard"),
    ],
)
def test_only_admins_may_touch_dead_letters(rabbitmq_config, queues, call, method, path):
    dead_letter(rabbitmq_config, queues["video"], [job_message(1)])

    anonymous = call(method, path, headers={}, json={"all": True})
    assert anonymous.status_code == 401
    assert anonymous.json["error"] == "missing_token"
    someone = bearer(sub="someone@x.test")
    refused = call(method, path, headers=someone, json={"all": True, "confirm": "video"})
    assert refused.status_code == 403
    assert refused.json == {"error": "forbidden", "message": "Only admins may use the admin API."}
    assert queue_depth(rabbitmq_config, dead_letter_queue(queues["video"])) == 1
    assert queue_depth(rabbitmq_config, queues["video"]) == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("GET", "/admin/dead-letters/video.dead", None, "unknown_queue"),
        ("GET", "/admin/dead-letters/nonsense", None, "unknown_queue"),
        ("POST", "/admin/dead-letters/auth/replay", {"all": True}, "unknown_queue"),
        ("GET", "/admin/dead-letters/video?limit=0", None, "invalid_limit"),
        ("GET", "/admin/dead-letters/video?limit=101", None, "invalid_limit"),
        ("GET", "/admin/dead-letters/video?limit=x", None, "invalid_limit"),
        ("POST", "/admin/dead-letters/video/replay", None, "invalid_json"),
        ("POST", "/admin/dead-letters/video/replay", [], "invalid_json"),
        ("POST", "/admin/dead-letters/video/replay", {}, "invalid_request"),
        (
            "POST",
            "/admin/dead-letters/video/replay",
            {"ids": ["a"], "all": True},
            "invalid_request",
        ),
        ("POST", "/admin/dead-letters/video/replay", {"all": "yes"}, "invalid_request"),
        ("POST", "/admin/dead-letters/video/replay", {"id": "a"}, "invalid_request"),
        ("POST", "/admin/dead-letters/video/replay", {"ids": []}, "invalid_ids"),
        ("POST", "/admin/dead-letters/video/replay", {"ids": "a"}, "invalid_ids"),
        ("POST", "/admin/dead-letters/video/replay", {"ids": [1]}, "invalid_ids"),
        ("POST", "/admin/dead-letters/video/discard", {"ids": ["x" * 256]}, "invalid_ids"),
        ("POST", "/admin/dead-letters/video/discard", {"all": True}, "confirmation_required"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(client, method, path, body, code):
    kwargs = {} if body is None else {"json": body}
    response = client.open(path, method=method, headers=admin(), **kwargs)

    assert response.status_code == 400
    assert response.json["error"] == code
    assert response.json["message"]


def test_a_broker_outage_is_a_503(queues, rabbitmq_config, mongo_config, openapi):
    down = dataclasses.replace(rabbitmq_config, url="amqp://guest:guest@127.0.0.1:1/%2F")
    client = gateway_client(down, queues, mongo_config)

    for method, path in (
        ("GET", "/admin/dead-letters"),
        ("GET", "/admin/dead-letters/video"),
        ("POST", "/admin/dead-letters/video/replay"),
    ):
        sent = {"method": method, "headers": admin(), "json": {"all": True}}
        response = client.open(path, **sent)
        assert response.status_code == 503
        assert response.json["error"] == "service_unavailable"
        assert response.headers["Retry-After"]
        conforms(openapi, response, EnvironBuilder(path, **sent))


def test_the_running_gateway_serves_admins_and_refuses_users(system, user):
    url = f"{system.gateway}/admin/dead-letters"

    admin = {"Authorization": f"Bearer {system.admin_token}"}
    as_admin = requests.get(url, headers=admin, timeout=30)
    as_user = requests.get(url, headers=user.headers, timeout=30)

    assert as_admin.status_code == 200, as_admin.text
    counts = {row["queue"]: row for row in as_admin.json()["queues"]}
    assert set(counts) == {"video", "mp3", "webhook"}
    assert counts["video"]["dead_letter_queue"] == dead_letter_queue(system.env["VIDEO_QUEUE"])
    assert counts["mp3"]["dead_letter_queue"] == dead_letter_queue(system.env["MP3_QUEUE"])
    webhook_queue = system.env.get("WEBHOOK_QUEUE", "webhook")
    assert counts["webhook"]["dead_letter_queue"] == dead_letter_queue(webhook_queue)
    assert as_user.status_code == 403
    assert as_user.json()["error"] == "forbidden"
