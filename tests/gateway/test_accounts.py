"""Self-service routes through the gateway app on the real MongoDB, auth out of reach.

What needs auth to answer (keys, logout, password, a deletion that goes through) is
tested end to end in tests/e2e/test_accounts.py; here, what the gateway does alone.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from common.accounts import COLLECTION as ACCOUNT_DELETIONS
from common.jobs import JobStore
from common.tokens import TokenVerifier
from gateway import create_app
from gateway.accounts import EXPORT_PAGE_SIZE, MAX_BODY_BYTES
from gateway.auth_client import AuthClient
from gateway.config import Config
from gateway.services import EXTENSION
from tests.support import forge

KEY = forge.new_rsa_key()
ANN = "ann@example.com"


def closed_port() -> int:
    """Return a local port nothing listens on (auth is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def app(mongo_config, rabbitmq_config) -> Iterator:
    app = create_app(Config(mongo=mongo_config, rabbit=rabbitmq_config))
    services = app.extensions[EXTENSION]
    app.extensions[EXTENSION] = dataclasses.replace(
        services,
        verifier=TokenVerifier.from_public_key(
            KEY.public_key(), issuer=forge.ISSUER, audience=forge.AUDIENCE
        ),
        auth=AuthClient(f"http://127.0.0.1:{closed_port()}"),
    )
    yield app
    services.close()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


def session() -> dict[str, str]:
    return {"Authorization": f"Bearer {forge.sign(KEY, forge.claims(sub=ANN))}"}


def record_jobs(app, count: int) -> list[str]:
    jobs: JobStore = app.extensions[EXTENSION].jobs
    storage = app.extensions[EXTENSION].storage
    ids = []
    for number in range(count):
        video_fid = storage.videos.put(io.BytesIO(b"v"), f"{number}.mp4", {})
        job_id = f"job-{number:04d}"
        jobs.create(
            job_id=job_id, owner=ANN, video_fid=video_fid, filename="a.mp4", size=1, options={}
        )
        ids.append(job_id)
    return ids


def test_a_deletion_auth_cannot_confirm_is_503_and_erases_nothing(app, client):
    ids = record_jobs(app, 2)

    response = client.delete("/me", json={"confirm": ANN.upper()}, headers=session())

    assert response.status_code == 503
    jobs = app.extensions[EXTENSION].jobs
    assert all(jobs.get(job_id) is not None for job_id in ids)
    storage = app.extensions[EXTENSION].storage
    record = storage.client[storage.config.videos_db][ACCOUNT_DELETIONS].find_one({"_id": ANN})
    assert record["state"] == "requested"


@pytest.mark.parametrize(
    "body", [None, b"not json", b"[]", b'{"confirm": 1}', b'{"confirm": "bob@example.com"}']
)
def test_a_deletion_needs_the_callers_email(client, body):
    response = client.delete(
        "/me", data=body, headers={**session(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["error"] == "confirmation_required"


def test_a_large_body_is_refused_before_auth_is_asked(client):
    response = client.post("/api-keys", data=b"{" + b" " * MAX_BODY_BYTES + b"}", headers=session())
    assert response.status_code == 413


def test_the_export_walks_page_after_page_without_losing_or_repeating_a_job(app, client):
    ids = record_jobs(app, 2 * EXPORT_PAGE_SIZE + 1)

    response = client.get("/me/export", headers=session())

    assert response.status_code == 200
    assert response.is_streamed
    export = json.loads(response.get_data())
    assert sorted(job["job_id"] for job in export["jobs"]) == ids
    created = [job["created_at"] for job in export["jobs"]]
    assert created == sorted(created, reverse=True)
