"""Import by URL (POST /jobs) through the real stack, from an origin on 127.0.0.1.

The shared system runs as development does, with EGRESS_ALLOW_PRIVATE=true and
EGRESS_PORTS=any (devstack.system), the shipped way to let the guard reach an origin
on this machine. The refusals of loopback and private addresses are tested on a
second system started with the shipped egress policy (EGRESS_ALLOW_PRIVATE=false,
EGRESS_PORTS=80,443), where nothing can reach the test origin.

Where a refusal shows: what can be told from the URL alone (scheme, credentials,
length, port, an address literal or ``localhost``) is a 400 ``invalid_url`` before
anything is queued; what needs a lookup (a name that resolves to loopback, a
redirect to a refused URL) is a failed job with the reason, since only the lookup
made at fetch time means anything.
"""

from __future__ import annotations

import pytest
import requests
from bson import ObjectId
from openapi_core import OpenAPI
from playwright.sync_api import expect

from common.egress import MAX_URL_LENGTH
from tests.e2e.test_openapi import conforms, load
from tests.e2e.test_pipeline import download_mp3
from tests.e2e.test_web import ARTIFACTS, CONVERSION_TIMEOUT_MS, api_jobs, job_row, log_in, new_tab
from tests.support.media import make_video, probe_duration
from tests.support.origin import MediaOrigin
from tests.support.polling import wait_until
from tests.support.system import MAX_UPLOAD_BYTES, new_user

CLIP_SECONDS = 3.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("import") / "clip.mp4"
    return make_video(path, seconds=CLIP_SECONDS).read_bytes()


@pytest.fixture
def origin(clip):
    with MediaOrigin({"clip.mp4": clip, "page.html": b"<!doctype html><p>a web page"}) as server:
        yield server


def post_import(system, user, url, **body):
    return requests.post(
        f"{system.gateway}/jobs", headers=user.headers, json={"url": url, **body}, timeout=30
    )


def finished_job(system, user, job_id, timeout=90.0) -> dict:
    """Wait until the job is done or failed; return it."""
    url = f"{system.gateway}/jobs/{job_id}"
    seen: list[dict] = []

    def finished() -> bool:
        seen.append(requests.get(url, headers=user.headers, timeout=10).json())
        return seen[-1]["status"] in ("done", "failed")

    wait_until(finished, timeout=timeout, interval=0.2, describe=lambda: seen[-1])
    return seen[-1]


def stored_video(system, video_fid: str):
    return system.videos["fs.files"].find_one({"_id": ObjectId(video_fid)})


def test_a_url_becomes_an_mp3(system, user, origin, clip, tmp_path):
    url = origin.url("clip.mp4")
    answer = post_import(system, user, url, options={"bitrate": 128})
    assert answer.status_code == 202, answer.text
    openapi = OpenAPI.from_dict(load("gateway"))
    conforms(openapi, answer)
    body = answer.json()
    assert body["source_url"] == url
    assert answer.headers["Location"] == body["status_url"]

    job = finished_job(system, user, body["job_id"])
    assert job["status"] == "done", job["error"]
    assert job["source_url"] == url
    conforms(
        openapi,
        requests.get(f"{system.gateway}{body['status_url']}", headers=user.headers, timeout=10),
    )
    assert job["filename"] == "clip.mp4"
    assert job["size"] == len(clip)
    assert job["options"]["bitrate"] == 128
    assert stored_video(system, body["video_fid"])["length"] == len(clip)
    mp3 = download_mp3(system, user, job["mp3_fid"], tmp_path / "clip.mp3")
    assert probe_duration(mp3) == pytest.approx(CLIP_SECONDS, abs=0.15)
    assert origin.requests["/clip.mp4"] == 1


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("nothing.mp4", "answered 404"),
        ("page.html", "does not look like an audio or video file"),
        ("endless", f"larger than the {MAX_UPLOAD_BYTES}-byte limit"),
        # Refused under the test policy too: a hop is checked as if the user had given it.
        ("redirect?to=http://someone:secret@127.0.0.1/clip.mp4", "must not carry credentials"),
    ],
)
def test_a_source_that_cannot_be_imported_fails_the_job_with_the_reason(
    system, user, origin, path, reason
):
    answer = post_import(system, user, origin.url(path))
    assert answer.status_code == 202, answer.text
    job = finished_job(system, user, answer.json()["job_id"])
    assert job["status"] == "failed"
    assert reason in job["error"]
    assert stored_video(system, job["video_fid"]) is None
    chunks = system.videos["fs.chunks"].count_documents({"files_id": ObjectId(job["video_fid"])})
    assert chunks == 0


def test_a_too_big_source_is_cut_off_at_the_limit(system, user, origin):
    answer = post_import(system, user, origin.url("endless"))
    job = finished_job(system, user, answer.json()["job_id"])
    assert job["status"] == "failed"
    # The origin keeps writing until the converter hangs up: what it sent is the limit
    # plus what the sockets' buffers held, never the 64 GiB it would have sent.
    assert origin.sent["/endless"] < MAX_UPLOAD_BYTES + 16 * 1024**2


def test_an_origin_answering_503_is_retried_on_the_ladder_and_the_job_finishes(
    system, user, origin
):
    answer = post_import(system, user, origin.url("flaky/clip.mp4"))
    # The converter's ladder waits 5 s before the second attempt (CONVERT_RETRY).
    job = finished_job(system, user, answer.json()["job_id"], timeout=120)
    assert job["status"] == "done", job["error"]
    assert origin.requests["/flaky/clip.mp4"] == 2
    assert job["attempts"] >= 2


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "invalid_url", "url"),
        ({"url": "ftp://media.example/clip.mp4"}, "invalid_url", "url"),
        ({"url": "https://someone:secret@media.example/clip.mp4"}, "invalid_url", "url"),
        ({"url": "https://media.example/" + "a" * MAX_URL_LENGTH}, "invalid_url", "url"),
        (
            {"url": "https://media.example/clip.mp4", "options": {"bitrate": "x"}},
            "invalid_option",
            "bitrate",
        ),
        (
            {"url": "https://media.example/clip.mp4", "options": {"clip_start": 3}},
            "invalid_option",
            "clip_start",
        ),
        (
            {"url": "https://media.example/clip.mp4", "callback_url": "ftp://x/"},
            "invalid_callback_url",
            "callback_url",
        ),
    ],
)
def test_bad_imports_are_400_naming_the_field_and_queue_nothing(system, user, body, code, field):
    answer = requests.post(f"{system.gateway}/jobs", headers=user.headers, json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code
    assert answer.json()["field"] == field
    listed = requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=10).json()
    assert listed["jobs"] == []


def test_an_import_needs_a_token_and_a_json_object(system, user):
    url = f"{system.gateway}/jobs"
    assert (
        requests.post(url, json={"url": "https://media.example/v.mp4"}, timeout=10).status_code
        == 401
    )
    answer = requests.post(url, headers=user.headers, data="not json", timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


@pytest.fixture(scope="module")
def shipped_egress(start_system):
    """A system with the shipped egress policy: no private addresses, ports 80 and 443."""
    with start_system(
        "import-shipped", {"EGRESS_ALLOW_PRIVATE": "false", "EGRESS_PORTS": "80,443"}
    ) as running:
        yield running


@pytest.fixture
def shipped_user(shipped_egress):
    return new_user(shipped_egress)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/clip.mp4",
        "http://localhost/clip.mp4",
        "http://[::1]/clip.mp4",
        "http://10.0.0.8/clip.mp4",
    ],
)
def test_the_shipped_guard_refuses_private_literals_at_once(shipped_egress, shipped_user, url):
    answer = post_import(shipped_egress, shipped_user, url)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_url"
    assert "not a public address" in answer.json()["message"]


def test_the_shipped_guard_fails_a_name_that_resolves_to_loopback(shipped_egress, shipped_user):
    # /etc/hosts names this machine "vm"; the converter resolves it when it fetches.
    answer = post_import(shipped_egress, shipped_user, "http://vm/clip.mp4")
    assert answer.status_code == 202, answer.text
    job = finished_job(shipped_egress, shipped_user, answer.json()["job_id"])
    assert job["status"] == "failed"
    assert "vm resolves to 127.0.0.1, which is loopback" in job["error"]


@pytest.mark.slow
def test_the_page_converts_a_video_from_a_link(system, user, browser, origin, tmp_path):
    with new_tab(browser, system.gateway) as page:
        log_in(page, user.email, user.password)
        expect(page.get_by_text("Nothing here yet")).to_be_visible()
        page.get_by_label("Artist").fill("The Linkers")

        # A link the server refuses is named on the link field, and nothing is queued.
        page.get_by_label("From a link").fill("ftp://media.example/clip.mp4")
        page.get_by_role("button", name="Convert from link").click()
        expect(page.locator("#message")).to_contain_text("http:// or https:// URL")
        expect(page.get_by_label("From a link")).to_have_attribute("aria-invalid", "true")
        assert api_jobs(system, user) == []

        page.get_by_label("From a link").fill(origin.url("clip.mp4"))
        page.get_by_label("From a link").press("Enter")
        expect(page.locator("#notice")).to_contain_text(f"Queued {origin.url('clip.mp4')}")
        expect(page.get_by_label("From a link")).to_have_value("")
        row = job_row(page, "clip.mp4")
        expect(row).to_have_attribute("data-status", "done", timeout=CONVERSION_TIMEOUT_MS)

        [job] = api_jobs(system, user)
        assert job["source_url"] == origin.url("clip.mp4")
        assert job["options"]["artist"] == "The Linkers"
        mp3 = download_mp3(system, user, job["mp3_fid"], tmp_path / "clip.mp3")
        assert probe_duration(mp3) == pytest.approx(CLIP_SECONDS, abs=0.15)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "web-import.png", full_page=True)
        assert (ARTIFACTS / "web-import.png").stat().st_size > 10_000
