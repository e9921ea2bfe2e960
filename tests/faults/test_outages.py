"""Dependencies going away under load: clear 503s meanwhile, nothing lost, recovery alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.helpers import emails_per_job, jobs_of, settle, upload, wait_all_done
from tests.support.media import make_video
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1)


def upload_through_an_outage(system, user, clip, proxy, *, before=1.0, outage=4.0, after=2.0):
    """Upload continuously while ``proxy`` refuses connections for ``outage`` seconds.

    Return every answer, and the answer to one more upload started during the outage:
    an upload already under way may ride out a short outage (the gateway waits a little
    to settle what it stored), one that starts while the store or broker is away cannot.
    """
    answers: list[requests.Response] = []
    stop = threading.Event()

    def keep_uploading() -> None:
        while not stop.is_set():
            answers.append(upload(system, user, clip, timeout=60))

    uploader = threading.Thread(target=keep_uploading, daemon=True)
    uploader.start()
    time.sleep(before)
    proxy.refuse()
    time.sleep(0.2)
    # Its answer may come after the outage: the gateway waits a while to clean up.
    with ThreadPoolExecutor(max_workers=1) as pool:
        during = pool.submit(upload, system, user, clip, timeout=60)
        time.sleep(outage - 0.2)
        proxy.accept()
        time.sleep(after)
        stop.set()
        uploader.join(90)
        refused = during.result()
    return [*answers, refused], refused


def assert_clear_answers(system, user, answers, during, mail_sink):
    """Every answer is 202 or a JSON 503, the one during the outage 503; every accepted
    job completes with one email."""
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {202, 503}, statuses
    assert during.status_code == 503, "an upload during the outage was not refused"
    assert statuses.count(202) >= 2, "nothing got through around the outage"
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"] == "service_unavailable"
    accepted = {answer.json()["job_id"] for answer in answers if answer.status_code == 202}
    wait_all_done(system, user, len(accepted), timeout=120)

    # Refused uploads leave nothing behind: what the gateway could not remove during the
    # outage (an insert that landed although pymongo saw an error) the janitor removes.
    def unexpected_jobs() -> list[dict]:
        jobs = {job["_id"]: job for job in jobs_of(system, user)}
        missing = [{"_id": job_id, "missing": True} for job_id in accepted - jobs.keys()]
        return missing + [job for job_id, job in jobs.items() if job_id not in accepted]

    wait_until(lambda: not unexpected_jobs(), timeout=30, describe=unexpected_jobs)
    wait_until(
        lambda: stored_video_jobs(system, user) == accepted,
        timeout=30,
        describe=lambda: stored_video_jobs(system, user) ^ accepted,
    )
    mail_sink.wait_for(len(accepted), to=user.email, timeout=120)
    settle(1)
    assert set(emails_per_job(mail_sink, user).values()) == {1}
    return statuses


def stored_video_jobs(system, user) -> set[str]:
    """Return the job ids of the videos stored for ``user``."""
    stored = system.videos["fs.files"].find({"metadata.owner": user.email})
    return {video["metadata"]["job_id"] for video in stored}


def services_ready(system) -> bool:
    urls = [
        f"{system.gateway}/ready",
        f"{system.auth}/ready",
        f"http://127.0.0.1:{system.env['CONVERTER_PORT']}/ready",
        f"http://127.0.0.1:{system.env['NOTIFICATION_PORT']}/ready",
    ]
    return all(requests.get(url, timeout=5).status_code == 200 for url in urls)


def test_broker_outage_under_load(fault_system, fault_user, mail_sink, clip):
    broker = fault_system.proxies["broker"]
    answers, during = upload_through_an_outage(fault_system, fault_user, clip, broker)
    statuses = assert_clear_answers(fault_system, fault_user, answers, during, mail_sink)
    wait_until(lambda: services_ready(fault_system), timeout=30)
    assert not fault_system.stack.dead()  # every service reconnected by itself
    print(f"broker outage: {statuses.count(202)} accepted, {statuses.count(503)} refused")


def test_broker_connections_cut_mid_stream(fault_system, fault_user, mail_sink, clip):
    broker = fault_system.proxies["broker"]
    answers = []
    for round_ in range(10):
        answers.append(upload(fault_system, fault_user, clip))
        if round_ % 3 == 1:
            broker.drop()  # like `rabbitmqctl close_all_connections` for our services
    assert {a.status_code for a in answers} <= {202, 503}
    accepted = sum(a.status_code == 202 for a in answers)
    wait_all_done(fault_system, fault_user, accepted, timeout=120)
    mail_sink.wait_for(accepted, to=fault_user.email, timeout=120)
    wait_until(lambda: services_ready(fault_system), timeout=30)


def test_mongodb_outage_under_load(fault_system, fault_user, mail_sink, clip):
    mongo = fault_system.proxies["mongo"]
    answers, during = upload_through_an_outage(fault_system, fault_user, clip, mongo, outage=5.0)
    statuses = assert_clear_answers(fault_system, fault_user, answers, during, mail_sink)
    assert not any(job["status"] == "processing" for job in jobs_of(fault_system, fault_user))
    wait_until(lambda: services_ready(fault_system), timeout=30)
    assert not fault_system.stack.dead()
    print(f"mongodb outage: {statuses.count(202)} accepted, {statuses.count(503)} refused")


def test_gateway_readiness_follows_mongodb(fault_system):
    mongo = fault_system.proxies["mongo"]
    mongo.refuse()
    try:
        wait_until(
            lambda: requests.get(f"{fault_system.gateway}/ready", timeout=10).status_code == 503,
            timeout=20,
        )
        down = requests.get(f"{fault_system.gateway}/ready", timeout=10).json()
        assert down["checks"]["mongodb"] == "unavailable"
    finally:
        mongo.accept()
    wait_until(
        lambda: requests.get(f"{fault_system.gateway}/ready", timeout=10).status_code == 200,
        timeout=30,
    )


def test_mysql_outage_stops_logins_not_tokens(fault_system, fault_user, clip, mail_sink):
    mysql = fault_system.proxies["mysql"]
    mysql.refuse()
    try:
        login = requests.post(
            f"{fault_system.gateway}/login",
            auth=(fault_user.email, fault_user.password),
            timeout=30,
        )
        assert login.status_code == 503
        assert login.json()["error"] == "service_unavailable"
        direct = requests.post(
            f"{fault_system.auth}/login", auth=(fault_user.email, fault_user.password), timeout=30
        )
        assert direct.status_code == 503
        assert requests.get(f"{fault_system.auth}/ready", timeout=10).status_code == 503
        # Tokens already issued keep working: the gateway never asks auth about them.
        assert (
            requests.get(
                f"{fault_system.gateway}/jobs", headers=fault_user.headers, timeout=10
            ).status_code
            == 200
        )
        assert upload(fault_system, fault_user, clip).status_code == 202
    finally:
        mysql.accept()
    wait_until(
        lambda: (
            requests.post(
                f"{fault_system.gateway}/login",
                auth=(fault_user.email, fault_user.password),
                timeout=30,
            ).status_code
            == 200
        ),
        timeout=30,
    )
    mail_sink.wait_for(1, to=fault_user.email, timeout=60)
