"""Workers SIGKILLed mid-batch: every job still finishes, with one MP3 and one email each."""

from __future__ import annotations

import time

import pytest

from tests.faults.helpers import (
    Repeatedly,
    emails_per_job,
    jobs_of,
    mp3s_per_job,
    settle,
    upload,
    wait_all_done,
)
from tests.support.media import make_video

pytestmark = pytest.mark.timeout(300)

JOBS = 60


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1)


def crash_and_restart(system, service: str):
    def once() -> None:
        system.stack.kill(service)
        system.stack.restart(service, timeout=60)

    return once


def test_a_converter_killed_every_few_seconds_loses_and_duplicates_nothing(
    fault_system, fault_user, mail_sink, clip
):
    user = fault_user
    with Repeatedly(crash_and_restart(fault_system, "converter"), every=1.0) as killer:
        answers = [upload(fault_system, user, clip).status_code for _ in range(JOBS)]
        assert answers == [202] * JOBS
        wait_all_done(fault_system, user, JOBS, timeout=180)
    assert not killer.errors
    assert killer.runs >= 2, f"only {killer.runs} kills happened"
    mail_sink.wait_for(JOBS, to=user.email, timeout=60)
    settle(2)
    assert set(mp3s_per_job(fault_system, user).values()) == {1}
    emails = emails_per_job(mail_sink, user)
    assert len(emails) == JOBS
    assert set(emails.values()) == {1}
    print(f"converter: {JOBS} jobs, {killer.runs} kills and restarts")


def test_notification_killed_mid_batch_sends_each_email_once(
    fault_system, fault_user, mail_sink, clip
):
    user = fault_user
    jobs = 30
    with Repeatedly(crash_and_restart(fault_system, "notification"), every=1.0) as killer:
        answers = []
        for _ in range(jobs):  # spread over a few seconds, so emails flow while it is killed
            answers.append(upload(fault_system, user, clip).status_code)
            time.sleep(0.25)
        assert answers == [202] * jobs
        wait_all_done(fault_system, user, jobs, timeout=120)
        mail_sink.wait_for(jobs, to=user.email, timeout=120)
    assert not killer.errors
    assert killer.runs >= 3, f"only {killer.runs} kills happened"
    settle(6)  # longer than the claim lease: a dead worker's claim would be re-sent by now
    emails = emails_per_job(mail_sink, user)
    assert len(emails) == jobs
    assert set(emails.values()) == {1}
    assert all(job["notified_at"] is not None for job in jobs_of(fault_system, user))
    print(f"notification: {jobs} jobs, {killer.runs} kills and restarts")
