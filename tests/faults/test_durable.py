"""Durable under production defaults: long outages, a hostile receiver, a kill mid-send.

The system runs with the shipped attempt limits; only waits are scaled
(``tests/faults/conftest.py``): the retry ladders by CONVERT_SCALE and
NOTIFY_SCALE, which keep each ladder's number of attempts; the claim lease is shipped.
The outages themselves are real seconds, so each one here stands for an outage
1/scale times longer against the shipped settings.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from datetime import UTC

import pytest
import requests

from common.messaging import dead_letter_queue
from notification.config import CLAIM_LEASE_SECONDS
from tests.faults.conftest import (
    CONVERT_SCALE,
    NOTIFY_SCALE,
    SCALED_CONVERT_RETRY,
    SCALED_NOTIFY_RETRY,
)
from tests.faults.helpers import (
    emails_per_job,
    jobs_of,
    mp3s_per_job,
    settle,
    upload,
    wait_all_done,
)
from tests.support.media import make_video
from tests.support.polling import wait_until
from tests.support.rabbit import queue_depth
from tests.support.receiver import WebhookReceiver
from tests.support.system import new_user

pytestmark = pytest.mark.timeout(400)

# Before retries moved into the broker, a notification's 8 in-process attempts spanned
# 45-91 s: an SMTP outage longer than that lost the email for good.
OLD_NOTIFY_WINDOW = 91.0
WEBHOOK_TIMEOUT = 10.0  # the shipped WEBHOOK_TIMEOUT, which the fault system keeps


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1)


def dead_letters(system, rabbitmq_config, queue_variable: str) -> int:
    return queue_depth(rabbitmq_config, dead_letter_queue(system.env[queue_variable]))


def test_smtp_refusing_longer_than_the_old_retry_window_loses_no_email(
    fault_system, fault_user, mail_sink, clip, rabbitmq_config
):
    smtp = fault_system.proxies["smtp"]
    outage = OLD_NOTIFY_WINDOW + 4  # real seconds: 2.6 hours against the shipped ladder
    smtp.refuse()
    started = time.monotonic()
    try:
        for _ in range(5):
            assert upload(fault_system, fault_user, clip).status_code == 202
        wait_all_done(fault_system, fault_user, 5, timeout=60)
        time.sleep(max(0.0, outage - (time.monotonic() - started)))
        assert mail_sink.messages(to=fault_user.email) == []
        assert dead_letters(fault_system, rabbitmq_config, "MP3_QUEUE") == 0
    finally:
        smtp.accept()
    back = time.monotonic()
    # Each email waits in the broker for its next step, at most the ladder's longest.
    mail_sink.wait_for(5, to=fault_user.email, timeout=SCALED_NOTIFY_RETRY.delays[-1] + 30)
    late = time.monotonic() - back
    settle(3)
    emails = emails_per_job(mail_sink, fault_user)
    assert len(emails) == 5
    assert set(emails.values()) == {1}
    assert dead_letters(fault_system, rabbitmq_config, "MP3_QUEUE") == 0
    print(
        f"smtp refused {outage:.0f} s (shipped-equivalent {outage / NOTIFY_SCALE / 3600:.1f} h):"
        f" 5/5 emails, each once, the last {late:.1f} s after the server came back"
    )


def upload_with_callback(system, user, clip, callback_url: str) -> str:
    with clip.open("rb") as video:
        answer = requests.post(
            f"{system.gateway}/upload",
            headers=user.headers,
            files={"file": (clip.name, video)},
            data={"callback_url": callback_url},
            timeout=30,
        )
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def test_a_dripping_webhook_receiver_delays_nobody_else(fault_system, mail_sink, clip):
    dripper = WebhookReceiver(drip=1.0, host="localhost")  # a byte a second, never done
    good = WebhookReceiver()
    victim, other = new_user(fault_system, admin=True), new_user(fault_system, admin=True)
    jobs = 6
    try:
        for _ in range(jobs):  # interleaved, so both receivers' calls compete
            upload_with_callback(fault_system, victim, clip, dripper.url)
            upload_with_callback(fault_system, other, clip, good.url)
        wait_all_done(fault_system, other, jobs, timeout=90)
        good.wait_for(jobs, timeout=30)
        mail_sink.wait_for(jobs, to=other.email, timeout=30)
        mail_sink.wait_for(jobs, to=victim.email, timeout=30)
        wait_until(lambda: len(dripper.hung_up) >= 2, timeout=3 * WEBHOOK_TIMEOUT)
    finally:
        dripper.close()
        good.close()
    finished = {job["_id"]: job["finished_at"] for job in jobs_of(fault_system, other)}
    latencies = []  # wall clock both: the job's finished_at and the call's arrival
    for call in good.calls:
        job_id = json.loads(call.body)["job_id"]
        latencies.append(call.at - finished[job_id].replace(tzinfo=UTC).timestamp())
    # Stuck behind the dripper, a call would wait a whole webhook deadline or more.
    assert max(latencies) < WEBHOOK_TIMEOUT / 2, latencies
    # The dripper holds a call no longer than the deadline, and only its own slots.
    assert max(dripper.hung_up) < WEBHOOK_TIMEOUT + 1.5, dripper.hung_up
    assert set(emails_per_job(mail_sink, other).values()) == {1}
    assert set(emails_per_job(mail_sink, victim).values()) == {1}
    print(
        f"dripping receiver: other users' webhooks {statistics.median(latencies):.2f} s median,"
        f" {max(latencies):.2f} s max after their jobs finished; the dripper's calls cut after"
        f" {max(dripper.hung_up):.1f} s; emails 2x{jobs}, each once"
    )


def test_a_notification_worker_killed_between_claim_and_send_still_emails(
    fault_system, fault_user, mail_sink, clip, rabbitmq_config
):
    smtp = fault_system.proxies["smtp"]
    smtp.hold()  # the SMTP server takes the connection and never says hello
    try:
        assert upload(fault_system, fault_user, clip).status_code == 202

        def claimed_and_sending() -> bool:
            [job] = jobs_of(fault_system, fault_user) or [{}]
            return bool(job.get("notify_lease_until")) and smtp.held > 0

        wait_until(claimed_and_sending, timeout=60)
        assert jobs_of(fault_system, fault_user)[0].get("notified_at") is None
        fault_system.stack.kill("notification")  # holding the claim, mid-send
    finally:
        smtp.accept()
    killed = time.monotonic()
    fault_system.stack.restart("notification")
    # The redelivered message finds the dead worker's claim held (the shipped lease,
    # CLAIM_LEASE_SECONDS), waits in the broker without spending an attempt, then sends.
    mail_sink.wait_for(1, to=fault_user.email, timeout=CLAIM_LEASE_SECONDS + 60)
    assert time.monotonic() - killed >= CLAIM_LEASE_SECONDS - 10  # not before the lease lapsed
    took = time.monotonic() - killed
    settle(3)
    assert set(emails_per_job(mail_sink, fault_user).values()) == {1}
    assert dead_letters(fault_system, rabbitmq_config, "MP3_QUEUE") == 0
    print(f"notification killed mid-send: the email went out once, {took:.1f} s later")


def test_the_converter_retries_through_a_minute_long_mongodb_outage(
    fault_system, fault_user, mail_sink, clip, rabbitmq_config
):
    mongo = fault_system.proxies["mongo"]
    converter = fault_system.stack.processes["converter"].pid
    outage = 60.0  # real seconds: 10 minutes against the shipped ladder
    os.killpg(converter, signal.SIGSTOP)  # so the outage begins before it sees the job
    try:
        assert upload(fault_system, fault_user, clip).status_code == 202
        mongo.refuse()
        started = time.monotonic()
    finally:
        os.killpg(converter, signal.SIGCONT)
    try:
        time.sleep(outage)
        # A minute of failed attempts: still retrying, nothing given up.
        assert dead_letters(fault_system, rabbitmq_config, "VIDEO_QUEUE") == 0
    finally:
        mongo.accept()
    assert time.monotonic() - started >= outage
    wait_all_done(fault_system, fault_user, 1, timeout=SCALED_CONVERT_RETRY.delays[-1] + 60)
    mail_sink.wait_for(1, to=fault_user.email, timeout=60)
    settle(2)
    assert set(mp3s_per_job(fault_system, fault_user).values()) == {1}
    assert set(emails_per_job(mail_sink, fault_user).values()) == {1}
    assert dead_letters(fault_system, rabbitmq_config, "VIDEO_QUEUE") == 0
    print(
        f"mongodb away {outage:.0f} s (shipped-equivalent {outage / CONVERT_SCALE / 60:.0f} min):"
        " the job finished, one MP3, one email"
    )
