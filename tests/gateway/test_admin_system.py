"""The admin API's view of the system (jobs, queues, storage, audit), on real MongoDB and broker.

Through the gateway app with forged tokens: none of these routes calls auth.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pika
import pytest
from bson import ObjectId
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from common.audit import AuditLog
from common.jobs import DONE, FAILED, PROCESSING, QUEUED, JobStore, jobs_collection, new_job_id
from common.messaging import connection_parameters, dead_letter_queue, declare_queue
from common.mongo import utcnow
from tests.gateway.test_admin import admin, bearer, conforms, gateway_client
from tests.gateway.test_admin import openapi as openapi  # a fixture
from tests.gateway.test_admin import queues as queues  # a fixture
from tests.support.deadletters import dead_letter, job_message

ROUTES = ["/admin/jobs", "/admin/queues", "/admin/storage", "/admin/audit"]


@pytest.fixture
def client(rabbitmq_config, queues, mongo_config) -> FlaskClient:
    return gateway_client(rabbitmq_config, queues, mongo_config)


@pytest.fixture
def get(client, openapi):
    """GET as the admin and check the answer against the document."""

    def send(path: str, **query):
        response = client.get(path, headers=admin(), query_string=query)
        conforms(openapi, response, EnvironBuilder(path, headers=admin(), query_string=query))
        return response

    return send


@pytest.fixture
def jobs(storage, mongo_config):
    """Record jobs as the gateway would, then put them in the state and age a test needs."""
    store = JobStore(storage.client, mongo_config)
    records = jobs_collection(storage.client, mongo_config)

    def make(owner: str, status: str, minutes_ago: int, error: str | None = None) -> str:
        job = store.create(
            job_id=new_job_id(),
            owner=owner,
            video_fid=ObjectId(),
            filename=f"{status}-{minutes_ago}.mp4",
            size=10,
            options={},
        )
        created = utcnow() - timedelta(minutes=minutes_ago)
        records.update_one(
            {"_id": job["_id"]}, {"$set": {"status": status, "error": error, "created_at": created}}
        )
        return job["_id"]

    return make


@pytest.mark.parametrize("path", ROUTES)
def test_only_admins_with_a_session_may_look(client, path):
    anonymous = client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.json["error"] == "missing_token"
    refused = client.get(path, headers=bearer(sub="someone@x.test"))
    assert refused.status_code == 403
    assert refused.json == {"error": "forbidden", "message": "Only admins may use the admin API."}


def test_an_admin_sees_every_job_newest_first_with_failures_reasons(get, jobs):
    oldest = jobs("ada@x.test", DONE, 30)
    failed = jobs("bob@x.test", FAILED, 20, error="The file has no audio track.")
    running = jobs("ada@x.test", PROCESSING, 10)
    newest = jobs("cy@x.test", QUEUED, 1)

    every = get("/admin/jobs")
    assert every.status_code == 200
    assert every.json["total"] == 4
    assert [job["job_id"] for job in every.json["jobs"]] == [newest, running, failed, oldest]
    assert [job["owner"] for job in every.json["jobs"]] == [
        "cy@x.test",
        "ada@x.test",
        "bob@x.test",
        "ada@x.test",
    ]

    failures = get("/admin/jobs", status="failed").json
    assert failures["total"] == 1
    assert failures["jobs"][0]["error"] == "The file has no audio track."
    adas = get("/admin/jobs", owner="ada@x.test").json
    assert [job["job_id"] for job in adas["jobs"]] == [running, oldest]
    assert get("/admin/jobs", owner="ada@x.test", status="done").json["total"] == 1

    second_page = get("/admin/jobs", limit=2, offset=2).json
    assert [job["job_id"] for job in second_page["jobs"]] == [failed, oldest]
    assert (second_page["total"], second_page["limit"], second_page["offset"]) == (4, 2, 2)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "lost"}, "invalid_status"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "101"}, "invalid_limit"),
        ({"offset": "-1"}, "invalid_offset"),
        ({"owner": "x" * 256}, "invalid_owner"),
    ],
)
def test_bad_job_queries_are_refused_naming_the_fault(client, query, code):
    response = client.get("/admin/jobs", headers=admin(), query_string=query)
    assert response.status_code == 400
    assert response.json["error"] == code


def test_an_admin_sees_each_queues_depth_consumers_and_dead_letters(rabbitmq_config, queues, get):
    before = get("/admin/queues").json["queues"]
    assert [(q["queue"], q["messages"], q["consumers"]) for q in before] == [
        ("video", None, None),
        ("mp3", None, None),
        ("webhook", None, None),
    ]

    dead_letter(rabbitmq_config, queues["video"], [job_message(n) for n in range(2)])
    connection = pika.BlockingConnection(connection_parameters(rabbitmq_config, "test-consumer"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_queue(channel, queues["mp3"], delivery_limit=rabbitmq_config.delivery_limit)
        for n in range(3):
            channel.basic_publish("", queues["video"], f"message {n}".encode())
        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=1)
        consumer.basic_consume(queues["mp3"], lambda *_: None)

        after = {q["queue"]: q for q in get("/admin/queues").json["queues"]}
    finally:
        connection.close()

    assert after["video"] == {
        "queue": "video",
        "broker_queue": queues["video"],
        "messages": 3,
        "consumers": 0,
        "dead_letter_queue": dead_letter_queue(queues["video"]),
        "dead_letters": 2,
    }
    assert (after["mp3"]["consumers"], after["mp3"]["dead_letters"]) == (1, 0)


def test_an_admin_sees_the_buckets_and_the_jobs_in_each_state(get, storage, jobs):
    storage.videos.put(io.BytesIO(b"v" * 1000), "a.mp4", {"owner": "ada@x.test"})
    storage.videos.put(io.BytesIO(b"v" * 24), "b.mp4", {"owner": "bob@x.test"})
    storage.mp3s.put(io.BytesIO(b"m" * 100), "a.mp3", {"owner": "ada@x.test"})
    jobs("ada@x.test", DONE, 3)
    jobs("ada@x.test", DONE, 2)
    jobs("bob@x.test", FAILED, 1, error="bad")

    totals = get("/admin/storage").json

    assert totals["buckets"] == [
        {"bucket": "videos", "files": 2, "bytes": 1024},
        {"bucket": "mp3s", "files": 1, "bytes": 100},
    ]
    assert totals["jobs_by_status"] == {"queued": 0, "processing": 0, "done": 2, "failed": 1}


def test_the_audit_log_is_newest_first_and_paged(get, storage, mongo_config):
    log = AuditLog(storage.client, mongo_config)
    for n in range(3):
        log.record(
            actor="root@x.test", action="quotas.set", target=f"u{n}@x.test", details={"n": n}
        )

    page = get("/admin/audit", limit=2).json
    assert page["total"] == 3
    assert [entry["target"] for entry in page["entries"]] == ["u2@x.test", "u1@x.test"]
    assert page["entries"][0]["details"] == {"n": 2}
    assert page["entries"][0]["actor"] == "root@x.test"
    assert page["entries"][0]["at"].endswith("Z")
    rest = get("/admin/audit", limit=2, offset=2).json
    assert [entry["target"] for entry in rest["entries"]] == ["u0@x.test"]
