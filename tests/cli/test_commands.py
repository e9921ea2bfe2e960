"""The ``video2mp3`` command, run as a user runs it, against the four services as processes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import stat
import subprocess
import sys
import threading
import time

import pytest
import requests

from devstack.servers import free_port
from tests.support.media import audio_stream, make_audio, make_video, probe_duration, read_tags
from tests.support.quotas import (
    account,
    active_jobs_filled,
    storage_filled,
    upload_rate_filled,
)
from tests.support.system import ADMIN, MAX_UPLOAD_BYTES
from video2mp3.client import Client
from video2mp3.config import Credentials, save_credentials
from video2mp3.multipart import CHUNK_SIZE
from video2mp3.progress import human_size

JOB_LINE = re.compile(r"^(?P<name>.+): queued as job (?P<job_id>[0-9a-f]{32})$", re.MULTILINE)


def credentials_file(config_home):
    return config_home / "video2mp3" / "credentials.json"


def assert_one_line_error(result, code):
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("video2mp3: ")]
    assert len(errors) == 1, result.err
    return errors[0]


def test_login_stores_a_private_token_and_says_when_it_expires(cli, user, config_home, system):
    result = cli("login", "--email", user.email, "--password-stdin", stdin=f"{user.password}\n")

    assert result.code == 0, result.err
    assert f"Logged in to {system.gateway} as {user.email}" in result.out
    assert "expires at" in result.out
    assert "(in 1 h 00 min)" in result.out  # the stack's tokens live an hour
    path = credentials_file(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["server"] == system.gateway
    assert stored["email"] == user.email
    assert 3500 < stored["expires_at"] - time.time() <= 3600
    works = requests.get(
        f"{system.gateway}/jobs",
        headers={"Authorization": f"Bearer {stored['token']}"},
        timeout=10,
    )
    assert works.status_code == 200


def test_a_wrong_password_exits_3_and_stores_nothing(cli, user, config_home):
    result = cli("login", "--email", user.email, "--password-stdin", stdin="not-the-password\n")

    message = assert_one_line_error(result, 3)
    assert "invalid" in message.lower()
    assert not credentials_file(config_home).exists()


def test_commands_without_a_login_exit_3_and_say_how_to_log_in(cli, system):
    for argv in (
        ("jobs",),
        ("status", "0" * 32),
        ("download", "0" * 24),
        ("delete", "0" * 32),
        ("usage",),
    ):
        message = assert_one_line_error(cli(*argv), 3)
        assert message == (
            f"video2mp3: not logged in to {system.gateway}; "
            f"run 'video2mp3 --server {system.gateway} login' first"
        )


def test_an_expired_or_refused_token_exits_3(cli, system, config_home):
    save_credentials(
        Credentials(server=system.gateway, email="a@b.c", token="x", expires_at=time.time() - 5),
        credentials_file(config_home),
    )
    assert "expired" in assert_one_line_error(cli("jobs"), 3)

    save_credentials(
        Credentials(server=system.gateway, email="a@b.c", token="forged", expires_at=2e9),
        credentials_file(config_home),
    )
    message = assert_one_line_error(cli("jobs"), 3)
    assert "log in again" in message


def test_an_unreachable_server_exits_4(run_cli, config_home):
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    login = run_cli(
        "--server", server, "login", "--email", "a@b.c", "--password-stdin", stdin="pw\n"
    )
    assert f"Cannot reach the server at {server}" in assert_one_line_error(login, 4)

    save_credentials(
        Credentials(server=server, email="a@b.c", token="t", expires_at=2e9),
        credentials_file(config_home),
    )
    # The server of the last login is used when none is given.
    assert "Cannot reach" in assert_one_line_error(run_cli("jobs"), 4)


def test_convert_wait_applies_the_options_and_saves_the_mp3(cli, logged_in, tmp_path):
    source = make_video(tmp_path / "Concert.mp4", seconds=4, sample_rate=48000)
    out_dir = tmp_path / "out"

    result = cli(
        "convert",
        str(source),
        "--bitrate", "128",
        "--sample-rate", "22050",
        "--channels", "1",
        "--start", "0.5",
        "--end", "0:03",
        "--title", "Live",
        "--artist", "The Band",
        "--album", "Tour",
        "--wait",
        "-o", str(out_dir),
    )  # fmt: skip

    assert result.code == 0, result.err
    mp3 = out_dir / "Concert.mp3"
    assert result.out.strip() == f"Concert.mp4: saved {mp3}"
    assert abs(probe_duration(mp3) - 2.5) <= 0.1
    stream = audio_stream(mp3)
    assert stream.startswith("mp3")
    assert "22050 Hz" in stream
    assert "mono" in stream
    assert "128 kb/s" in stream
    tags = read_tags(mp3)
    assert (tags["title"], tags["artist"], tags["album"]) == ("Live", "The Band", "Tour")
    # stderr is no terminal here: plain progress lines, no redrawn bars.
    assert "\r" not in result.err
    assert "uploading Concert.mp4: " in result.err
    assert "converting Concert.mp4: done in" in result.err
    assert "downloading Concert.mp3: " in result.err
    assert not list(out_dir.glob(".*.part"))


def test_a_non_media_file_is_refused_with_the_servers_message(cli, logged_in, tmp_path):
    junk = tmp_path / "random.mp4"
    junk.write_bytes(os.urandom(100_000))
    good = make_video(tmp_path / "good.mp4", seconds=1)

    result = cli("convert", str(junk), str(good))

    message = assert_one_line_error(result, 1)
    assert message == (f"video2mp3: {junk}: The file does not look like an audio or video file.")
    # The other file still went through.
    assert [match["name"] for match in JOB_LINE.finditer(result.out)] == ["good.mp4"]


def test_an_option_the_server_refuses_names_its_flag_and_exits_2(cli, logged_in, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)

    message = assert_one_line_error(cli("convert", str(source), "--bitrate", "100"), 2)

    assert "bitrate" in message
    assert message.endswith("(--bitrate)")


def test_usage_errors_exit_2_before_anything_is_sent(cli, logged_in, tmp_path):
    assert "no such file" in assert_one_line_error(cli("convert", str(tmp_path / "nope.mp4")), 2)
    both = cli("convert", str(tmp_path), "--bitrate", "128", "--quality", "2")
    assert both.code == 2
    assert "not allowed with argument" in both.err


def test_a_failed_conversion_under_wait_exits_1_with_the_reason(cli, logged_in, tmp_path):
    silent = make_video(tmp_path / "silent.mp4", seconds=1, audio_codec=None)

    result = cli("convert", str(silent), "--wait", "-o", str(tmp_path / "out"))

    message = assert_one_line_error(result, 1)
    assert message.startswith("video2mp3: silent.mp4: conversion failed: ")
    assert "no audio" in message.lower()
    assert not list((tmp_path / "out").glob("*.mp3"))


def test_jobs_status_download_and_delete(cli, logged_in, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    queued = cli("convert", str(source))
    assert queued.code == 0, queued.err
    job_id = JOB_LINE.search(queued.out)["job_id"]

    deadline = time.monotonic() + 30
    while "status:    done (100%)" not in (status := cli("status", job_id)).out:
        assert status.code == 0, status.err
        assert time.monotonic() < deadline, status.out
        time.sleep(0.2)
    mp3_fid = re.search(r"^mp3 fid:\s+([0-9a-f]{24})$", status.out, re.MULTILINE)[1]
    assert re.search(rf"^download:\s+video2mp3 download {mp3_fid}$", status.out, re.MULTILINE)

    listing = cli("jobs")
    assert listing.code == 0, listing.err
    header, row = listing.out.splitlines()
    assert header.split() == ["JOB", "ID", "STATUS", "PROGRESS", "CREATED", "MP3", "FID", "FILE"]
    assert row.split()[:3] == [job_id, "done", "100%"]
    assert row.split()[-2:] == [mp3_fid, "clip.mp4"]
    assert cli("jobs", "--status", "done").out == listing.out
    nothing = cli("jobs", "--status", "failed")
    assert (nothing.code, nothing.out, nothing.err) == (0, "", "No failed jobs.\n")

    downloads = tmp_path / "downloads"
    first = cli("download", mp3_fid, "-o", str(downloads))
    assert (first.code, first.out) == (0, f"saved {downloads / 'clip.mp3'}\n")
    # By the job's id this time; an existing file is never overwritten.
    second = cli("download", job_id, "-o", str(downloads))
    assert (second.code, second.out) == (0, f"saved {downloads / 'clip (1).mp3'}\n")
    assert (downloads / "clip.mp3").read_bytes() == (downloads / "clip (1).mp3").read_bytes()
    assert abs(probe_duration(downloads / "clip.mp3") - probe_duration(source)) <= 0.1

    deleted = cli("delete", job_id)
    assert (deleted.code, deleted.out) == (0, f"deleted job {job_id}\n")
    assert assert_one_line_error(cli("status", job_id), 1) == "video2mp3: No such job."
    assert assert_one_line_error(cli("download", mp3_fid), 1) == "video2mp3: No such file."
    assert assert_one_line_error(cli("delete", job_id), 1) == f"video2mp3: {job_id}: No such job."


def test_usage_shows_what_the_user_stores_and_runs_against_the_quotas(
    cli, logged_in, system, tmp_path
):
    quotas = account(system, logged_in)["quotas"]
    storage_quota = human_size(quotas["stored_bytes"])

    fresh = cli("usage")

    assert (fresh.code, fresh.err) == (0, "")
    assert fresh.out.splitlines() == [
        f"account:     {logged_in.email}",
        f"storage:     0 B of {storage_quota}",
        f"active jobs: 0 of {quotas['active_jobs']}",
        f"uploads:     0 in the last minute (at most {quotas['uploads_per_minute']})",
    ]

    source = make_video(tmp_path / "clip.mp4", seconds=1)
    converted = cli("convert", str(source), "--wait", "-o", str(tmp_path / "out"))
    assert converted.code == 0, converted.err
    after = cli("usage")

    assert after.code == 0, after.err
    usage = account(system, logged_in)["usage"]
    # The video and its MP3 are both stored.
    assert usage["stored_bytes"] > source.stat().st_size
    assert after.out.splitlines() == [
        f"account:     {logged_in.email}",
        f"storage:     {human_size(usage['stored_bytes'])} of {storage_quota}",
        f"active jobs: 0 of {quotas['active_jobs']}",
        f"uploads:     1 in the last minute (at most {quotas['uploads_per_minute']})",
    ]


def test_an_admin_has_no_quotas(cli):
    login = cli("login", "--email", ADMIN[0], "--password-stdin", stdin=f"{ADMIN[1]}\n")
    assert login.code == 0, login.err

    result = cli("usage")

    assert result.code == 0, result.err
    lines = dict(line.split(":", 1) for line in result.out.splitlines())
    assert lines["account"].strip() == f"{ADMIN[0]} (admin)"
    assert lines["storage"].endswith(" (unlimited)")
    assert lines["active jobs"].endswith(" (unlimited)")
    assert lines["uploads"].endswith(" in the last minute (unlimited)")


def refusal(system, user, source) -> requests.Response:
    """Upload ``source`` without the CLI, to read the answer the server gives it."""
    return requests.post(
        f"{system.gateway}/upload",
        headers=user.headers,
        files={"file": ("clip.mp4", source.read_bytes())},
        timeout=10,
    )


def test_convert_past_the_active_jobs_quota_exits_1_with_the_servers_message(
    cli, logged_in, system, tmp_path
):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    limit = account(system, logged_in)["quotas"]["active_jobs"]
    with active_jobs_filled(system, logged_in):
        refused = refusal(system, logged_in, source)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_active_jobs"

        result = cli("convert", str(source), "--wait", "-o", str(tmp_path / "out"))

        message = assert_one_line_error(result, 1)
        server_message = refused.json()["message"].rstrip(".")
        assert re.fullmatch(
            rf"video2mp3: {re.escape(str(source))}: {re.escape(server_message)}; "
            r"try again in \d+ s\.",
            message,
        ), message
        assert result.out == ""
        assert not (tmp_path / "out").exists()
        full = cli("usage")
        assert f"active jobs: {limit} of {limit} (full)\n" in full.out

    assert f"active jobs: 0 of {limit}\n" in cli("usage").out
    assert cli("jobs").err == "No jobs.\n"


def test_convert_past_the_upload_rate_says_when_to_try_again_once(cli, logged_in, system, tmp_path):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    with upload_rate_filled(system, logged_in):
        result = cli("convert", str(source))

    message = assert_one_line_error(result, 1)
    # The server's message already says when; the command does not say it twice.
    assert re.fullmatch(
        rf"video2mp3: {re.escape(str(source))}: You may start \d+ uploads a minute; "
        r"try again in \d+ s\.",
        message,
    ), message


def test_convert_past_the_storage_quota_exits_1_with_the_servers_message(
    cli, logged_in, system, tmp_path
):
    source = make_video(tmp_path / "clip.mp4", seconds=1)
    with storage_filled(system, logged_in):
        refused = refusal(system, logged_in, source)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"] == "storage_quota_exceeded"

        result = cli("convert", str(source))

        message = assert_one_line_error(result, 1)
        assert message == f"video2mp3: {source}: {refused.json()['message']}"
        assert result.out == ""
        usage = cli("usage").out
        assert re.search(r"^storage: +\S+ GiB of \S+ GiB \(full\)$", usage, re.MULTILINE), usage

    assert cli("convert", str(source)).code == 0


def test_the_installed_command_logs_in_converts_and_lists(system, user, config_home, tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    env.pop("VIDEO2MP3_URL", None)

    def video2mp3(*argv, stdin=""):
        return subprocess.run(
            [sys.executable, "-m", "video2mp3", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    login = video2mp3(
        "--server", system.gateway, "login", "--email", user.email, "--password-stdin",
        stdin=f"{user.password}\n",
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    source = make_video(tmp_path / "talk.webm", seconds=1.5)
    # No --server from here on: the server of the login is remembered; -o defaults to the cwd.
    converted = video2mp3("convert", "--wait", str(source))
    assert converted.returncode == 0, converted.stderr
    assert converted.stdout == "talk.webm: saved talk.mp3\n"
    assert abs(probe_duration(tmp_path / "talk.mp3") - probe_duration(source)) <= 0.1
    listing = video2mp3("jobs")
    assert listing.returncode == 0, listing.stderr
    assert "talk.webm" in listing.stdout
    logout = video2mp3("logout")
    assert (logout.returncode, logout.stdout) == (0, f"Logged out of {system.gateway}.\n")
    after = video2mp3("--server", system.gateway, "jobs")
    assert after.returncode == 3
    assert "not logged in" in after.stderr


class RecordingFile:
    """A binary file that remembers the size of every read asked of it."""

    def __init__(self, file):
        self._file = file
        self.reads: list[int] = []

    def read(self, size=-1):
        self.reads.append(size)
        return self._file.read(size)


def test_the_upload_streams_the_file_a_chunk_at_a_time(system, user, tmp_path):
    source = make_audio(tmp_path / "tone.wav", seconds=8)  # ~1.4 MB of PCM
    size = source.stat().st_size
    assert size > 4 * CHUNK_SIZE
    progress: list[int] = []

    with source.open("rb") as file, Client(system.gateway, user.token) as client:
        recording = RecordingFile(file)
        accepted = client.upload(
            recording, filename="tone.wav", size=size, on_progress=progress.append
        )

    assert accepted["message"] == "success"
    assert recording.reads, "the file was never read"
    assert max(recording.reads) <= CHUNK_SIZE
    assert all(read > 0 for read in recording.reads)  # never "read everything"
    assert len(recording.reads) >= size // CHUNK_SIZE
    assert progress[-1] == size
    assert progress == sorted(progress)
    job = requests.get(
        f"{system.gateway}/jobs/{accepted['job_id']}", headers=user.headers, timeout=10
    ).json()
    assert job["size"] == size
    assert job["filename"] == "tone.wav"


@pytest.mark.parametrize("argv", [("--help",), ("convert", "--help"), ("--version",)])
def test_help_and_version_exit_0(run_cli, argv):
    result = run_cli(*argv)
    assert result.code == 0
    assert result.out.startswith(("usage: video2mp3", "video2mp3 "))


def test_a_file_over_the_servers_limit_is_refused_with_its_message(cli, logged_in, tmp_path):
    big = tmp_path / "big.mp4"
    with big.open("wb") as file:
        file.write(make_video(tmp_path / "head.mp4", seconds=1).read_bytes())
        file.truncate(MAX_UPLOAD_BYTES + 1)

    # The whole file: its audio track alone would be well within the limit.
    message = assert_one_line_error(cli("convert", "--full-upload", str(big)), 1)

    assert message == f"video2mp3: {big}: The upload exceeds the {MAX_UPLOAD_BYTES}-byte limit."


def test_a_terminal_sees_progress_bars(system, user, config_home, tmp_path):
    save_credentials(
        Credentials(server=system.gateway, email=user.email, token=user.token, expires_at=2e9),
        credentials_file(config_home),
    )
    source = make_video(tmp_path / "bars.mp4", seconds=1)
    controller, terminal = pty.openpty()
    seen = bytearray()

    def read_terminal():
        with contextlib.suppress(OSError):  # EIO once the command has closed its end
            while chunk := os.read(controller, 4096):
                seen.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "video2mp3", "convert", "--wait", str(source)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "XDG_CONFIG_HOME": str(config_home), "COLUMNS": "100"},
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    drawn = seen.decode(errors="replace")
    assert completed.returncode == 0, drawn
    for label in ("uploading bars.mp4", "converting bars.mp4", "downloading bars.mp3"):
        assert re.search(rf"\r\x1b\[K{re.escape(label)}  \[#+\]\s+100%", drawn), drawn
    assert (tmp_path / "bars.mp3").exists()
