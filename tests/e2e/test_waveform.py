"""An output's waveform end to end: upload, convert, GET /jobs/<id>/waveform as a player does."""

from __future__ import annotations

import pytest
import requests
from openapi_core import OpenAPI

from tests.e2e.test_openapi import conforms, load
from tests.e2e.test_pipeline import convert
from tests.support import media

SECONDS = 6.0
# A full-scale tone for the first half, the same tone 20 dB down (a tenth) for the second.
LOUD_THEN_QUIET = (
    f"aevalsrc=if(lt(t\\,{SECONDS / 2})\\,1\\,0.1)*sin(2*PI*440*t)"
    f":sample_rate=44100:duration={SECONDS}"
)


def make_tone(path):
    media.run_ffmpeg("-loglevel", "error", "-y", "-f", "lavfi", "-i", LOUD_THEN_QUIET, path)
    return path


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(load("gateway"))


def get(system, user, path, **headers):
    return requests.get(f"{system.gateway}{path}", headers={**user.headers, **headers}, timeout=10)


def test_a_done_job_serves_the_waveform_of_its_output(system, user, mail_sink, tmp_path, openapi):
    body, _email = convert(system, user, mail_sink, make_tone(tmp_path / "tone.wav"))
    shown = get(system, user, body["status_url"])
    conforms(openapi, shown)
    job = shown.json()
    assert job["status"] == "done"
    assert job["waveform_url"] == f"/jobs/{body['job_id']}/waveform"

    response = get(system, user, job["waveform_url"])

    assert response.status_code == 200, response.text
    conforms(openapi, response)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "private, max-age=0"
    waveform = response.json()
    assert set(waveform) == {"job_id", "duration", "points", "peaks"}
    assert waveform["job_id"] == body["job_id"]
    assert abs(waveform["duration"] - SECONDS) <= 0.1
    assert waveform["points"] == len(waveform["peaks"]) == 200
    half = waveform["points"] // 2
    # Away from the step and the ends (the MP3 encoder's delay and padding).
    assert min(waveform["peaks"][2 : half - 2]) >= 0.9
    assert all(0.08 <= peak <= 0.12 for peak in waveform["peaks"][half + 2 : -2])


def test_a_waveform_is_revalidated_by_its_etag(system, user, mail_sink, tmp_path):
    body, _email = convert(system, user, mail_sink, make_tone(tmp_path / "tone.wav"))
    url = f"/jobs/{body['job_id']}/waveform"
    first = get(system, user, url)
    etag = first.headers["ETag"]
    job = get(system, user, body["status_url"]).json()
    assert etag == f'"{job["mp3_fid"]}"'

    unchanged = get(system, user, url, **{"If-None-Match": etag})

    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert get(system, user, url, **{"If-None-Match": '"other"'}).status_code == 200


def test_another_users_job_has_no_waveform_for_you(system, make_user, mail_sink, tmp_path):
    owner, stranger = make_user(), make_user()
    body, _email = convert(system, owner, mail_sink, make_tone(tmp_path / "tone.wav"))

    for job_id in (body["job_id"], "no-such-job"):
        response = get(system, stranger, f"/jobs/{job_id}/waveform")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert get(system, owner, f"/jobs/{body['job_id']}/waveform").status_code == 200


def test_a_job_that_is_not_done_has_no_waveform_yet(system, user, mail_sink, tmp_path, openapi):
    silent_film = media.make_video(tmp_path / "silent.mp4", seconds=1, audio_codec=None)
    body, _email = convert(system, user, mail_sink, silent_film)
    job = get(system, user, body["status_url"]).json()
    assert job["status"] == "failed"
    assert job["waveform_url"] is None

    response = get(system, user, f"/jobs/{body['job_id']}/waveform")

    assert response.status_code == 409
    conforms(openapi, response)
    assert response.json()["error"] == "not_ready"
    assert response.json()["status"] == "failed"
    assert "no audio track" in response.json()["reason"]


def test_an_output_made_before_waveforms_says_it_has_none(
    system, user, mail_sink, tmp_path, openapi
):
    body, _email = convert(system, user, mail_sink, make_tone(tmp_path / "tone.wav"))
    # What an output stored by an older converter looks like: no waveform in its metadata.
    files = system.mp3s["fs.files"]
    assert files.update_one(
        {"metadata.job_id": body["job_id"]}, {"$unset": {"metadata.waveform": ""}}
    ).modified_count

    response = get(system, user, f"/jobs/{body['job_id']}/waveform")

    assert response.status_code == 404
    conforms(openapi, response)
    assert response.json()["error"] == "no_waveform"
    assert "made before waveforms" in response.json()["message"]
