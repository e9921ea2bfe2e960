"""The gateway under its real gunicorn config: JSON log lines, one per event, with ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import requests

from common.config import MongoConfig
from devstack import servers
from gateway import create_app
from gateway.config import Config
from gateway.gunicorn_conf import worker_exit
from gateway.services import EXTENSION


def test_gunicorn_logs_one_json_object_per_line_with_request_ids(tmp_path):
    port = servers.free_port()
    env = {
        "PATH": os.environ["PATH"],
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # Nothing is reached for /health and /metrics; these only need to parse.
        "MONGO_URI": "mongodb://127.0.0.1:1/",
        "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:gateway.gunicorn_conf",
            "gateway:create_app()",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert servers.wait_for_port("127.0.0.1", port, 30)
        health = requests.get(
            f"http://127.0.0.1:{port}/health", headers={"X-Request-ID": "trace-me-123"}, timeout=5
        )
        assert health.headers["X-Request-ID"] == "trace-me-123"
        for _ in range(4):  # whichever worker answers, the counts add up
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        exposition = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert (
            'video2mp3_http_requests_total{endpoint="/health",method="GET",status="200"} 5.0'
            in exposition
        )
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    assert all(entry["service"] == "gateway" for entry in lines)
    assert any(
        entry["logger"] == "gunicorn.error" and "Booting worker" in entry["message"]
        for entry in lines
    )
    [access] = [e for e in lines if e.get("request_id") == "trace-me-123"]
    assert access["logger"] == "video2mp3.access"
    assert access["message"].startswith("GET /health 200")


def test_a_stopping_worker_closes_the_apps_broker_connections(rabbitmq_config):
    app = create_app(
        Config(
            mongo=MongoConfig(uri="mongodb://127.0.0.1:1/", timeout_ms=100), rabbit=rabbitmq_config
        )
    )
    publisher = app.extensions[EXTENSION].publisher
    publisher.check()  # what /ready does: opens this thread's broker connection
    [connection] = publisher._connections

    worker_exit(None, SimpleNamespace(wsgi=app))  # gunicorn calls it as a worker stops

    assert connection.is_closed
    assert publisher._connections == set()
