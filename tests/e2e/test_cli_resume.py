"""``video2mp3 convert`` sends large files with tus, and resumes them when it is run again.

The command runs as a user runs it (``python -m video2mp3``, its own config and
state directories) against the four services with the shipped upload limit
(2 GiB: the session's shared system caps uploads at 20 MiB, under the threshold).
The shipped threshold and chunk size hold: the large files are 37 MB, past
``DEFAULT_TUS_THRESHOLD`` (32 MiB), so they go in two chunks of ``tus.CHUNK_SIZE``
(32 MiB) and the rest. Where a line is cut, it is a ``TcpProxy`` in front of the
gateway that cuts it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests
from bson import ObjectId

from devstack.tcp_proxy import TcpProxy
from gateway.config import DEFAULT_MAX_CONTENT_LENGTH
from tests.support.media import make_audio, make_video, probe_duration
from tests.support.polling import wait_until
from tests.support.system import new_user
from video2mp3 import tus
from video2mp3.config import DEFAULT_TUS_THRESHOLD, Credentials, save_credentials
from video2mp3.pending import UPLOADS_DIR, PendingUploads, fingerprint

JOB_LINE = re.compile(r"^(?P<name>.+): queued as job (?P<job_id>[0-9a-f]{32})$", re.MULTILINE)
SECONDS = 210  # of 44.1 kHz 16-bit stereo PCM: 37 MB, two chunks
PCM_BYTES = SECONDS * 44100 * 2 * 2
# The request lines and headers (a bearer token among them) of the run's few dozen requests:
# the HEAD, the PATCHes, the job polls and the download.
REQUEST_OVERHEAD = 64 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def big_system(start_system):
    """The four services, with the shipped upload limit."""
    with start_system("cli-resume", {"MAX_CONTENT_LENGTH": str(DEFAULT_MAX_CONTENT_LENGTH)}) as up:
        yield up


@pytest.fixture
def user(big_system):
    return new_user(big_system)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A video whose sound is PCM: its audio-only upload is a 37 MB WAV, past the threshold."""
    path = tmp_path_factory.mktemp("media") / "holiday.mov"
    return make_video(path, seconds=SECONDS, audio_codec="pcm_s16le", size="160x120", rate=5)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 37 MB WAV: an audio file, sent whole."""
    return make_audio(tmp_path_factory.mktemp("media") / "concert.wav", seconds=SECONDS)


@pytest.fixture
def proxy(big_system):
    with TcpProxy.in_front_of(big_system.gateway) as line:
        yield line


class Command:
    """``python -m video2mp3`` logged in to one server, with its own directories."""

    def __init__(self, tmp_path, user, server: str, **env: str) -> None:
        self.server = server
        self.state = tmp_path / "state"
        self.temp = tmp_path / "tmp"
        self.temp.mkdir(parents=True)
        config = tmp_path / "config"
        save_credentials(
            Credentials(server=server, email=user.email, token=user.token, expires_at=2e9),
            config / "video2mp3" / "credentials.json",
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIDEO2MP3_")},
            "XDG_CONFIG_HOME": str(config),
            "XDG_STATE_HOME": str(self.state),
            "TMPDIR": str(self.temp),
            **env,
        }
        self.cwd = tmp_path

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "video2mp3", "--server", self.server, "convert", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=180,
            check=False,
        )

    def pending(self) -> list[str]:
        """Return the names of the files in the command's store of unfinished uploads."""
        uploads = self.state / "video2mp3" / UPLOADS_DIR
        return sorted(path.name for path in uploads.iterdir()) if uploads.exists() else []


def jobs_of(system, user) -> list[dict]:
    response = requests.get(f"{system.gateway}/jobs", headers=user.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def settled_upload(system, user) -> dict:
    """Return the user's one resumable upload once no request is writing to it."""
    uploads = system.videos["tus_uploads"]
    wait_until(
        lambda: uploads.count_documents({"owner": user.email, "lock_holder": None}) == 1,
        timeout=30,
        describe=lambda: list(uploads.find({"owner": user.email}, {"tail": 0})),
    )
    return uploads.find_one({"owner": user.email}, {"tail": 0})


def test_a_video_past_the_threshold_goes_by_tus_and_its_mp3_is_saved(
    big_system, user, video, tmp_path
):
    command = Command(tmp_path, user, big_system.gateway)
    out = tmp_path / "out"

    done = command.run(str(video), "--wait", "-o", str(out))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"holiday.mov: saved {out / 'holiday.mp3'}\n"
    assert "holiday.mov: sending the audio only (pcm_s16le)" in done.stderr
    job_id = JOB_LINE.search(done.stderr)["job_id"]
    [job] = jobs_of(big_system, user)
    assert (job["job_id"], job["status"], job["filename"]) == (job_id, "done", "holiday.mov")
    # The server's side: the bytes came by tus, in more than one chunk.
    record = big_system.videos["tus_uploads"].find_one({"job_id": job_id})
    assert record is not None, "no resumable upload made this job"
    assert record["accepted"]
    assert record["length"] == record["offset"] == job["size"] >= DEFAULT_TUS_THRESHOLD
    assert job["size"] > tus.CHUNK_SIZE
    assert abs(probe_duration(out / "holiday.mp3") - SECONDS) <= 0.1
    # The kept track and its entry went with the upload's end; nothing is left in TMPDIR.
    assert command.pending() == []
    assert list(command.temp.iterdir()) == []


def test_an_upload_cut_midway_resumes_when_the_command_runs_again(
    big_system, user, video, proxy, tmp_path
):
    command = Command(tmp_path, user, f"http://127.0.0.1:{proxy.port}")
    out = tmp_path / "out"
    # Half-way through the audio track, the network goes away for good: the run's own
    # retries (RETRY_DELAYS, 15 s in all) find no server and it gives up.
    proxy.cut_after(PCM_BYTES // 2, refuse=True)

    first = command.run(str(video), "--wait", "-o", str(out))

    assert first.returncode == 4, first.stderr
    assert "trying again in 1 s" in first.stderr
    assert "trying again in 8 s" in first.stderr
    [failure] = [line for line in first.stderr.splitlines() if line.startswith("video2mp3: ")]
    assert re.fullmatch(
        r"video2mp3: (The connection to|Cannot reach the server at) http://127\.0\.0\.1:\d+"
        r"( broke)?: .+\. "
        r"[\d.]+ MiB of 35\.3 MiB were sent; run the same command again to resume the upload\.",
        failure,
    ), failure
    assert jobs_of(big_system, user) == []
    # The kept track and its entry wait for the rerun.
    [entry_name, track_name] = command.pending()
    assert entry_name.endswith(".json")
    assert track_name.endswith(".wav")
    cut = settled_upload(big_system, user)
    size = cut["length"]
    assert size > DEFAULT_TUS_THRESHOLD
    assert 0.4 * size < cut["offset"] < 0.6 * size

    proxy.accept()
    before = proxy.bytes_up
    second = command.run(str(video), "--wait", "-o", str(out))

    assert second.returncode == 0, second.stderr
    assert second.stdout == f"holiday.mov: saved {out / 'holiday.mp3'}\n"
    # The track kept from the first run was sent, not copied out again.
    assert "sending the audio only" not in second.stderr
    assert "uploading holiday.mov: resuming at " in second.stderr
    sent = proxy.bytes_up - before
    print(f"second run: {sent} bytes sent for {size - cut['offset']} still missing of {size}")
    # Nothing the server had was sent again (a resume may re-send at most one chunk).
    assert size - cut["offset"] <= sent <= size - cut["offset"] + REQUEST_OVERHEAD
    [job] = jobs_of(big_system, user)
    assert job["status"] == "done"
    assert job["video_fid"] == str(cut["_id"])
    assert abs(probe_duration(out / "holiday.mp3") - SECONDS) <= 0.1
    assert command.pending() == []
    assert list(command.temp.iterdir()) == []


def test_a_file_below_the_threshold_goes_in_one_post_unless_the_threshold_is_lowered(
    big_system, user, tmp_path
):
    clip = make_video(tmp_path / "clip.mp4", seconds=2)
    uploads = big_system.videos["tus_uploads"]

    posted = Command(tmp_path / "a", user, big_system.gateway).run(str(clip))

    assert posted.returncode == 0, posted.stderr
    assert JOB_LINE.search(posted.stdout)
    assert uploads.count_documents({"owner": user.email}) == 0

    lowered = Command(tmp_path / "b", user, big_system.gateway, VIDEO2MP3_TUS_THRESHOLD="0").run(
        str(clip)
    )

    assert lowered.returncode == 0, lowered.stderr
    job_id = JOB_LINE.search(lowered.stdout)["job_id"]
    assert uploads.count_documents({"owner": user.email, "job_id": job_id}) == 1
    assert len(jobs_of(big_system, user)) == 2


def test_an_upload_the_server_no_longer_has_starts_over(big_system, user, song, proxy, tmp_path):
    command = Command(tmp_path, user, f"http://127.0.0.1:{proxy.port}")
    size = song.stat().st_size
    proxy.cut_after(size // 2, refuse=True)
    # The user gives up on the dead line with Ctrl-C while the command waits to retry: as
    # soon as it says so (its first wait is 1 s, and it gives up after 15 s in all).
    messages = tmp_path / "interrupted.stderr"
    with messages.open("w") as stderr_file:
        interrupted = subprocess.Popen(
            command.argv(str(song)),
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            text=True,
            env=command.env,
            cwd=command.cwd,
        )
        try:
            wait_until(
                lambda: "trying again in" in messages.read_text() or interrupted.poll() is not None,
                timeout=60,
            )
            interrupted.send_signal(signal.SIGINT)
            interrupted.wait(timeout=30)
        finally:
            if interrupted.poll() is None:
                interrupted.kill()
    stderr = messages.read_text()
    assert interrupted.returncode == 130, stderr
    assert "concert.wav: run the same command again to resume the upload" in stderr
    [entry_name] = command.pending()  # the file itself is sent: nothing else is kept
    stale = settled_upload(big_system, user)
    url = json.loads((command.state / "video2mp3" / "uploads" / entry_name).read_text())["url"]
    assert url.endswith(f"/files/{stale['_id']}")
    # The upload is deleted on the server (tus termination), as its expiry would.
    deleted = requests.delete(
        f"{big_system.gateway}/files/{stale['_id']}",
        headers={**user.headers, **TUS},
        timeout=10,
    )
    assert deleted.status_code == 204, deleted.text

    proxy.accept()
    before = proxy.bytes_up
    again = command.run(str(song))

    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stderr
    assert "Traceback" not in again.stderr
    sent = proxy.bytes_up - before
    assert size <= sent <= size + REQUEST_OVERHEAD  # all of it, once
    [job] = jobs_of(big_system, user)
    assert job["job_id"] == JOB_LINE.search(again.stdout)["job_id"]
    assert ObjectId(job["video_fid"]) != stale["_id"]
    assert big_system.videos["tus_uploads"].count_documents({"_id": stale["_id"]}) == 0
    assert command.pending() == []


def test_an_upload_finished_before_a_crash_gives_its_job_not_another(big_system, user, tmp_path):
    command = Command(tmp_path, user, big_system.gateway, VIDEO2MP3_TUS_THRESHOLD="0")
    clip = make_audio(tmp_path / "clip.wav", seconds=2)
    first = command.run(str(clip))
    assert first.returncode == 0, first.stderr
    job_id = JOB_LINE.search(first.stdout)["job_id"]
    record = big_system.videos["tus_uploads"].find_one({"job_id": job_id})
    # As a run that died between the last byte and forgetting the entry leaves it.
    key = fingerprint(
        server=command.server, user=user.email, source=clip, options={}, audio_only=True
    )
    store = PendingUploads(command.state / "video2mp3" / UPLOADS_DIR)
    size = clip.stat().st_size
    started = store.start(key, clip, size=size, metadata={"filename": "clip.wav"}, keep=False)
    store.save(started, url=f"{big_system.gateway}/files/{record['_id']}", expires_at=None)

    again = command.run(str(clip))

    assert again.returncode == 0, again.stderr
    assert again.stdout == f"clip.wav: queued as job {job_id}\n"
    assert [job["job_id"] for job in jobs_of(big_system, user)] == [job_id]
    assert command.pending() == []
