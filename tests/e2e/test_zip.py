"""``GET /download.zip``: several done jobs' MP3s as one streamed ZIP, through the real stack.

The ZIPs are read with ``zipfile`` (every CRC checked) and compared byte for byte with
the single downloads; every refusal is JSON, so it came before the archive's first byte.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from openapi_core import OpenAPI

from common.jobs import output_filename, output_format
from devstack.procs import RssSampler, child_pids
from gateway.archive import MAX_JOBS, entry_name
from tests.e2e.test_openapi import conforms, load
from tests.e2e.test_pipeline import upload, wait_for_mail
from tests.e2e.test_web import ARTIFACTS, job_row, log_in, new_tab
from tests.support.media import make_audio, make_video, probe_duration

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Page = expect = None

ZIP_NAME = re.compile(r'^attachment; filename="video2mp3-\d{8}-\d{6}\.zip"$')
MiB = 1024 * 1024
# A ZIP several times this size streams through the gateway: a worker that held it whole
# would grow by at least its size. Reading from GridFS holds 4 MiB (READ_BATCH_CHUNKS).
MAX_WORKER_GROWTH_MB = 12

pytestmark = pytest.mark.slow


def finished_jobs(system, user, mail_sink, uploads: list[tuple[Path, str]]) -> list[str]:
    """Upload each (file, name), wait until all are finished; return their job ids in order."""
    job_ids = []
    for path, name in uploads:
        accepted = upload(system, user, path, name=name)
        assert accepted.status_code == 202, accepted.text
        job_ids.append(accepted.json()["job_id"])
    wait_for_mail(mail_sink, user, count=len(uploads))
    return job_ids


def get_zip(system, user, job_ids, **kwargs) -> requests.Response:
    return requests.get(
        f"{system.gateway}/download.zip",
        params=[("job_id", job_id) for job_id in job_ids],
        headers=user.headers,
        timeout=60,
        **kwargs,
    )


def job(system, user, job_id) -> dict:
    return requests.get(f"{system.gateway}/jobs/{job_id}", headers=user.headers, timeout=10).json()


def single_download(system, user, job_id) -> bytes:
    response = requests.get(
        f"{system.gateway}/download",
        params={"fid": job(system, user, job_id)["mp3_fid"]},
        headers=user.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.content


def assert_refused(response: requests.Response, status: int, code: str) -> dict:
    """Assert a JSON refusal as documented: the archive never started."""
    assert response.status_code == status, response.text[:200]
    assert response.headers["Content-Type"] == "application/json"
    conforms(OpenAPI.from_dict(load("gateway")), response)
    body = response.json()
    assert body["error"] == code, body
    return body


def test_a_zip_holds_each_done_jobs_mp3_byte_for_byte_under_unique_safe_names(
    system, user, mail_sink, tmp_path
):
    clip = make_video(tmp_path / "clip.mp4", seconds=2)
    job_ids = finished_jobs(
        system,
        user,
        mail_sink,
        [(clip, "clip.mp4"), (clip, "clip.mp4"), (clip, "CLIP.mp4"), (clip, "a:b?c*été.mp4")],
    )
    odd_job = job(system, user, job_ids[3])
    odd = entry_name(output_filename(odd_job["filename"], output_format(odd_job)))

    response = get_zip(system, user, [*job_ids, job_ids[0]])  # the repeat counts once

    assert response.status_code == 200, response.text
    conforms(OpenAPI.from_dict(load("gateway")), response)
    assert response.headers["Content-Type"] == "application/zip"
    assert ZIP_NAME.match(response.headers["Content-Disposition"])
    assert int(response.headers["Content-Length"]) == len(response.content)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == ["clip.mp3", "clip (1).mp3", "CLIP (2).mp3", odd]
        assert not set(odd) & set('<>:"|?*\\/')
        assert "été" in odd
        assert {info.compress_type for info in infos} == {zipfile.ZIP_STORED}
        for job_id, name in zip(job_ids, names, strict=True):
            data = archive.read(name)
            assert data == single_download(system, user, job_id)
            unpacked = tmp_path / "unpacked" / f"{job_id}.mp3"
            unpacked.parent.mkdir(exist_ok=True)
            unpacked.write_bytes(data)
            assert abs(probe_duration(unpacked) - 2.0) <= 0.1  # decodes as the MP3 it is


def test_other_users_and_unknown_jobs_are_404_naming_the_job(
    system, make_user, mail_sink, tmp_path
):
    owner, stranger = make_user(), make_user()
    [mine] = finished_jobs(
        system, owner, mail_sink, [(make_video(tmp_path / "m.mp4", seconds=1), "m.mp4")]
    )
    unknown = "0" * 32

    body = assert_refused(get_zip(system, stranger, [mine]), 404, "not_found")
    assert body["job_id"] == mine
    body = assert_refused(get_zip(system, owner, [mine, unknown]), 404, "not_found")
    assert body["job_id"] == unknown
    # Someone else's job hidden in a list of one's own is refused all the same.
    [theirs] = finished_jobs(
        system, stranger, mail_sink, [(make_video(tmp_path / "t.mp4", seconds=1), "t.mp4")]
    )
    body = assert_refused(get_zip(system, owner, [mine, theirs]), 404, "not_found")
    assert body["job_id"] == theirs
    unauthenticated = requests.get(
        f"{system.gateway}/download.zip", params={"job_id": mine}, timeout=10
    )
    assert_refused(unauthenticated, 401, "missing_token")


def test_bad_lists_are_400_and_one_job_named_many_times_counts_once(
    system, user, mail_sink, tmp_path
):
    assert_refused(get_zip(system, user, []), 400, "missing_job_id")
    too_many = [f"{n:032x}" for n in range(MAX_JOBS + 1)]
    body = assert_refused(get_zip(system, user, too_many), 400, "too_many_jobs")
    assert str(MAX_JOBS) in body["message"]
    body = assert_refused(get_zip(system, user, ["not-a-job"]), 400, "invalid_job_id")
    assert body["job_id"] == "not-a-job"

    [job_id] = finished_jobs(
        system, user, mail_sink, [(make_video(tmp_path / "x.mp4", seconds=1), "x.mp4")]
    )
    response = get_zip(system, user, [job_id] * MAX_JOBS)  # the longest list that fits
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["x.mp3"]


def test_a_done_job_whose_mp3_is_gone_is_404_before_any_byte(system, user, mail_sink, tmp_path):
    [job_id] = finished_jobs(
        system, user, mail_sink, [(make_video(tmp_path / "x.mp4", seconds=1), "x.mp4")]
    )
    mp3_fid = system.videos.jobs.find_one({"_id": job_id})["mp3_fid"]
    system.mp3s["fs.files"].delete_one({"_id": mp3_fid})  # as a delete racing the request

    body = assert_refused(get_zip(system, user, [job_id]), 404, "not_found")
    assert body["job_id"] == job_id


def test_failed_and_unfinished_jobs_are_409_with_their_status(system, user, mail_sink, tmp_path):
    done, failed = finished_jobs(
        system,
        user,
        mail_sink,
        [
            (make_video(tmp_path / "ok.mp4", seconds=1), "ok.mp4"),
            (make_video(tmp_path / "silent.mp4", seconds=1, audio_codec=None), "silent.mp4"),
        ],
    )
    body = assert_refused(get_zip(system, user, [done, failed]), 409, "not_ready")
    assert (body["job_id"], body["status"]) == (failed, "failed")
    assert body["reason"]

    system.stack.stop(("converter",))
    try:
        queued = upload(system, user, make_video(tmp_path / "later.mp4", seconds=1))
        assert queued.status_code == 202, queued.text
        queued_id = queued.json()["job_id"]
        body = assert_refused(get_zip(system, user, [done, queued_id]), 409, "not_ready")
        assert (body["job_id"], body["status"]) == (queued_id, "queued")
    finally:
        system.stack.restart("converter")
    wait_for_mail(mail_sink, user, count=3)
    assert get_zip(system, user, [done, queued_id]).status_code == 200


def test_a_zip_of_tens_of_mib_streams_without_the_gateway_holding_it(
    system, user, mail_sink, tmp_path
):
    # MP3 in, MP3 out by stream copy: big outputs without a long conversion.
    song = make_audio(tmp_path / "song.mp3", seconds=600, codec="libmp3lame")
    job_ids = finished_jobs(system, user, mail_sink, [(song, f"song{n}.mp3") for n in range(3)])
    workers = child_pids(system.stack.processes["gateway"].pid)

    received = 0
    started = time.monotonic()
    with RssSampler(workers) as memory, get_zip(system, user, job_ids, stream=True) as response:
        assert response.status_code == 200, response.text
        length = int(response.headers["Content-Length"])
        for chunk in response.iter_content(256 * 1024):
            received += len(chunk)

    zip_seconds = time.monotonic() - started
    started = time.monotonic()
    singles = sum(len(single_download(system, user, job_id)) for job_id in job_ids)
    singles_seconds = time.monotonic() - started

    assert received == length
    assert length > 3 * 8 * MiB
    print(
        f"ZIP of {length / MiB:.1f} MiB in {zip_seconds:.2f} s; the same {singles / MiB:.1f} MiB "
        f"as single downloads in {singles_seconds:.2f} s; largest worker RSS growth "
        f"{memory.growth_mb():.1f} MB"
    )
    assert memory.growth_mb() < MAX_WORKER_GROWTH_MB


@pytest.fixture
def page(browser, system) -> Iterator[Page]:
    """Open a fresh browser profile on the gateway."""
    with new_tab(browser, system.gateway) as tab:
        yield tab


def test_the_page_downloads_the_picked_done_jobs_as_one_zip(
    system, user, mail_sink, page, tmp_path
):
    first, second = finished_jobs(
        system,
        user,
        mail_sink,
        [
            (make_video(tmp_path / "first.mp4", seconds=1), "first take.mp4"),
            (make_video(tmp_path / "second.mp4", seconds=1), "second take.mp4"),
        ],
    )
    mute = upload(system, user, make_video(tmp_path / "mute.mp4", seconds=1, audio_codec=None))
    assert mute.status_code == 202, mute.text
    wait_for_mail(mail_sink, user, count=3)

    log_in(page, user.email, user.password)
    expect(job_row(page, "mute.mp4")).to_have_attribute("data-status", "failed")
    zip_button = page.get_by_role("button", name=re.compile("as ZIP$"))
    expect(zip_button).to_be_disabled()
    expect(zip_button).to_have_text("Download as ZIP")
    # A failed job cannot be picked: its box is not offered.
    expect(page.get_by_role("checkbox", name="Select mute.mp4 for a ZIP")).to_be_hidden()

    page.get_by_role("checkbox", name="Select first take.mp4 for a ZIP").check()
    expect(zip_button).to_have_text("Download 1 as ZIP")
    page.get_by_role("checkbox", name="Select all done").check()
    expect(page.get_by_role("checkbox", name="Select second take.mp4 for a ZIP")).to_be_checked()
    expect(zip_button).to_have_text("Download 2 as ZIP")

    with page.expect_download() as started:
        zip_button.click()
    download = started.value
    assert re.fullmatch(r"video2mp3-\d{8}-\d{6}\.zip", download.suggested_filename)
    saved = tmp_path / "browser" / download.suggested_filename
    download.save_as(saved)
    expect(page.locator("#notice")).to_contain_text("(2 conversions)")
    expect(zip_button).to_be_enabled()
    with zipfile.ZipFile(saved) as archive:
        assert sorted(archive.namelist()) == ["first take.mp3", "second take.mp3"]
        assert archive.read("first take.mp3") == single_download(system, user, first)
        assert archive.read("second take.mp3") == single_download(system, user, second)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "web-zip.png", full_page=True)
