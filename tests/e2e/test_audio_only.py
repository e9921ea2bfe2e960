"""Audio-only uploads, end to end: the installed command, the real system, the email, the MP3."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from tests.support.media import make_video, probe_duration
from video2mp3.config import Credentials, save_credentials

SENDING = re.compile(r"^holiday\.mov: sending the audio only \(aac\): .+ of .+$", re.MULTILINE)


@pytest.mark.parametrize(
    ("flags", "seconds", "audio_only"),
    [
        ((), 8.0, True),
        (("--start", "2", "--end", "5.5"), 3.5, True),
        (("--full-upload",), 8.0, False),
    ],
    ids=["audio-only", "audio-only-trimmed", "full-upload"],
)
def test_the_mp3_and_the_email_are_named_after_the_video(
    system, user, mail_sink, tmp_path, flags, seconds, audio_only
):
    config_home, temp = tmp_path / "config", tmp_path / "tmp"
    temp.mkdir()
    save_credentials(
        Credentials(server=system.gateway, email=user.email, token=user.token, expires_at=2e9),
        config_home / "video2mp3" / "credentials.json",
    )
    source = make_video(tmp_path / "holiday.mov", seconds=8, size="1280x720")

    completed = subprocess.run(
        [sys.executable, "-m", "video2mp3", "convert", str(source), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(config_home), "TMPDIR": str(temp)},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert bool(SENDING.search(completed.stderr)) == audio_only, completed.stderr
    assert list(temp.iterdir()) == [], "the copied track is removed"
    job_id = re.search(r"queued as job ([0-9a-f]{32})", completed.stdout)[1]
    [email] = mail_sink.wait_for(1, to=user.email, timeout=60)
    assert email["Subject"].startswith("Your MP3 is ready")
    assert "holiday.mov" in email["Subject"]
    fid = re.search(r"fid: ([0-9a-f]{24})", email.get_body(("plain",)).get_content())[1]
    download = requests.get(
        f"{system.gateway}/download", params={"fid": fid}, headers=user.headers, timeout=30
    )
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == 'attachment; filename="holiday.mp3"'
    mp3 = tmp_path / "holiday.mp3"
    mp3.write_bytes(download.content)
    assert abs(probe_duration(mp3) - seconds) <= 0.1
    job = requests.get(f"{system.gateway}/jobs/{job_id}", headers=user.headers, timeout=10).json()
    assert job["filename"] == "holiday.mov"
    if audio_only:
        # testsrc pictures compress unusually well; a phone video is ~98% picture
        assert job["size"] < source.stat().st_size / 2
    else:
        assert job["size"] == source.stat().st_size
