"""Loudness normalisation end to end: a form field in, a measured job and a file at the target."""

from __future__ import annotations

import pytest

from converter.loudness import TRUE_PEAK_CEILING_DBTP
from tests.e2e.test_formats import download
from tests.e2e.test_import import finished_job
from tests.e2e.test_options import upload_with
from tests.support.media import loudness_of, make_video

TARGET = -16.0
TOLERANCE_LU = 1.0
# A lossy encoder may lift the true peak this far past the ceiling loudnorm keeps.
PEAK_MARGIN_DB = 0.5


def test_a_normalised_job_records_its_loudness_and_downloads_at_the_target(system, user, tmp_path):
    # A steady tone at about -21 LUFS: no loudness range, so loudnorm's dynamic mode.
    source = make_video(tmp_path / "talk.mp4", seconds=4)

    accepted = upload_with(system, user, source, loudness="-16")

    assert accepted.status_code == 202, accepted.text
    job = finished_job(system, user, accepted.json()["job_id"])
    assert job["status"] == "done", job
    assert job["options"]["loudness"] == TARGET
    report = job["loudness"]
    assert set(report) == {
        "target",
        "input_i",
        "input_tp",
        "input_lra",
        "output_i",
        "output_tp",
        "output_lra",
    }
    assert report["target"] == TARGET
    assert report["input_i"] == pytest.approx(loudness_of(source).integrated, abs=0.5)
    assert abs(report["output_i"] - TARGET) <= TOLERANCE_LU

    saved = tmp_path / "talk.mp3"
    saved.write_bytes(download(system, user, job["mp3_fid"]).content)
    measured = loudness_of(saved)
    assert abs(measured.integrated - TARGET) <= TOLERANCE_LU
    assert measured.integrated == pytest.approx(report["output_i"], abs=0.2)
    assert measured.true_peak <= TRUE_PEAK_CEILING_DBTP + PEAK_MARGIN_DB


def test_a_job_without_a_target_records_no_loudness(system, user, tmp_path):
    source = make_video(tmp_path / "talk.mp4", seconds=1)

    accepted = upload_with(system, user, source)

    assert accepted.status_code == 202, accepted.text
    job = finished_job(system, user, accepted.json()["job_id"])
    assert job["status"] == "done", job
    assert job["loudness"] is None


@pytest.mark.parametrize("value", ["-3", "-71", "loud", "-16 dB"])
def test_an_invalid_loudness_is_refused_before_anything_is_stored(system, user, tmp_path, value):
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    response = upload_with(system, user, source, loudness=value)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_option"
    assert response.json()["field"] == "loudness"
    assert "loudness" in response.json()["message"]
    assert system.videos.jobs.count_documents({"owner": user.email}) == 0
    assert system.videos["fs.files"].count_documents({"metadata.owner": user.email}) == 0
