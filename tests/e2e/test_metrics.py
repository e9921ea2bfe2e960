"""Metrics through the real path: services scraped over HTTP, and by a real Prometheus."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack import servers
from tests.conftest import unavailable
from tests.e2e.test_pipeline import convert
from tests.support.media import make_video
from tests.support.polling import wait_until


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a /metrics page keyed by name and sorted labels."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_each_service_counts_its_part_of_a_conversion(system, user, mail_sink, tmp_path):
    env = system.env
    gateway_url = f"{system.gateway}/metrics"
    converter_url = f"http://127.0.0.1:{env['CONVERTER_PORT']}/metrics"
    notification_url = f"http://127.0.0.1:{env['NOTIFICATION_PORT']}/metrics"
    before = {url: scrape(url) for url in (gateway_url, converter_url, notification_url)}

    body, _ = convert(system, user, mail_sink, make_video(tmp_path / "count.mp4", seconds=1))
    requests.get(f"{system.gateway}/jobs/{body['job_id']}", headers=user.headers, timeout=10)

    gateway = scrape(gateway_url)
    assert (
        value(gateway, "video2mp3_uploads_total", outcome="accepted")
        == value(before[gateway_url], "video2mp3_uploads_total", outcome="accepted") + 1
    )
    # Requests are labelled by route template, whichever gunicorn worker answered them.
    assert (
        value(
            gateway,
            "video2mp3_http_requests_total",
            endpoint="/jobs/<job_id>",
            method="GET",
            status="200",
        )
        >= 1
    )
    assert value(gateway, "video2mp3_upload_size_bytes_count") >= 1

    converter = scrape(converter_url)
    assert (
        value(converter, "video2mp3_jobs_finished_total", status="done")
        == value(before[converter_url], "video2mp3_jobs_finished_total", status="done") + 1
    )
    assert value(converter, "video2mp3_conversion_seconds_count", mode="reencode") >= 1
    assert ("video2mp3_queue_messages_ready", (("queue", env["VIDEO_QUEUE"]),)) in converter
    assert (
        value(converter, "video2mp3_messages_total", queue=env["VIDEO_QUEUE"], outcome="ack") >= 1
    )

    notification = scrape(notification_url)
    assert (
        value(notification, "video2mp3_emails_total", outcome="sent")
        == value(before[notification_url], "video2mp3_emails_total", outcome="sent") + 1
    )

    auth = scrape(f"{system.auth}/metrics")
    assert (
        value(auth, "video2mp3_http_requests_total", endpoint="/login", method="POST", status="200")
        >= 1
    )


@pytest.fixture
def prometheus(system, tmp_path):
    """Run a real Prometheus that scrapes the test system every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("prometheus is not installed (Debian package prometheus; make deploy-tools)")
    env = system.env
    targets = {
        "gateway": env["GATEWAY_PORT"],
        "auth": env["AUTH_PORT"],
        "converter": env["CONVERTER_PORT"],
        "notification": env["NOTIFICATION_PORT"],
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n"
        + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in targets.items()
        )
    )
    port = servers.free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        assert servers.wait_for_port("127.0.0.1", port, 30), "prometheus did not start"
        url = f"http://127.0.0.1:{port}"
        # The port opens before the TSDB is loaded; until then the API answers 503 in text.
        wait_until(
            lambda: ready(url),
            timeout=30,
            describe=lambda: (tmp_path / "prometheus.log").read_text()[-2000:],
        )
        yield url
    finally:
        process.terminate()
        process.wait(20)


def ready(prometheus_url: str) -> bool:
    """Tell whether Prometheus answers its readiness check."""
    try:
        return requests.get(f"{prometheus_url}/-/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def query(prometheus_url: str, promql: str) -> float | None:
    result = requests.get(
        f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10
    ).json()
    assert result["status"] == "success", result
    vector = result["data"]["result"]
    return float(vector[0]["value"][1]) if vector else None


def test_prometheus_scrapes_the_services_and_sees_a_conversion(
    system, user, mail_sink, tmp_path, prometheus
):
    wait_until(lambda: query(prometheus, "count(up == 1)") == 4, timeout=30)
    done = 'sum(video2mp3_jobs_finished_total{status="done"})'
    before = query(prometheus, done) or 0.0

    convert(system, user, mail_sink, make_video(tmp_path / "scraped.mp4", seconds=1))

    wait_until(lambda: (query(prometheus, done) or 0.0) >= before + 1, timeout=30)
    # Each counter lands with its own service's next scrape (every second).
    wait_until(
        lambda: (query(prometheus, 'sum(video2mp3_emails_total{outcome="sent"})') or 0) >= 1,
        timeout=10,
    )
    wait_until(
        lambda: (query(prometheus, 'sum(video2mp3_uploads_total{outcome="accepted"})') or 0) >= 1,
        timeout=10,
    )
