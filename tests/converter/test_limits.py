"""How ffmpeg is confined: its environment, process group, kernel limits, bounds and deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common.errors import PermanentError, TransientError
from common.options import Options
from converter import transcode as transcode_module
from converter.transcode import (
    FFMPEG_ENVIRONMENT,
    MAX_MEDIA_SECONDS,
    MEMORY_LIMIT_BYTES,
    MediaInfo,
    ProcessLimits,
    conversion_limits,
    ffmpeg_exe,
    run_ffmpeg,
    spawn,
    transcode,
)
from tests.support.media import ffmpeg_children

SECRET = "mongodb://converter:S3cr3t-Pa55w0rd@mongo.internal:27017/"


def stereo(seconds: float | None, *, rate: int = 48_000, channels: int = 2) -> MediaInfo:
    return MediaInfo(
        container="flac",
        duration=seconds,
        has_video=False,
        has_audio=True,
        audio_codec="flac",
        audio_sample_rate=rate,
        audio_channels=channels,
    )


def endless_encode(dst: Path) -> list[str]:
    """Return an encode of a tone that never ends: only a limit can stop it."""
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    encode = ["-c:a", "libmp3lame", "-f", "mp3", str(dst)]
    quiet = ["-nostdin", "-loglevel", "error", "-y", "-progress", "pipe:1"]
    return [ffmpeg_exe(), *quiet, *tone, *encode]


# --- the bounds derived from a probe, with the shipped defaults ----------------


def test_the_shipped_duration_limit_is_six_hours() -> None:
    assert MAX_MEDIA_SECONDS == 21_600


@pytest.mark.parametrize(
    ("info", "cpu_seconds", "wall_seconds"),
    [
        # A 4-minute song: the floors dominate.
        (stereo(240.0), 60 + 12, 120 + 24),
        # Exactly the limit: about 19 minutes of CPU for what takes 2 here.
        (stereo(21_600.0), 60 + 1080, 120 + 2160),
        # Unknown length: bounded as if it were as long as the limit.
        (stereo(None), 60 + 1080, 120 + 2160),
        # 7.1 at 48 kHz weighs 4 per second, so gets 4 times the budget.
        (stereo(600.0, channels=8), 60 + 120, 120 + 240),
    ],
    ids=["song", "six-hours", "unknown-length", "7.1"],
)
def test_budgets_grow_with_the_samples_to_decode(
    info: MediaInfo, cpu_seconds: int, wall_seconds: float
) -> None:
    limits = conversion_limits(info, Options())

    assert limits.process.cpu_seconds == cpu_seconds
    assert limits.process.wall_seconds == pytest.approx(wall_seconds)
    assert limits.process.memory_bytes == MEMORY_LIMIT_BYTES


def test_the_mp3_may_hold_six_hours_at_320_kbits() -> None:
    limits = conversion_limits(stereo(60.0), Options())

    assert limits.max_seconds == 21_600
    assert limits.output_bytes == 21_600 * 40_000 + 1024**2  # 865 MB
    assert limits.process.file_bytes == limits.output_bytes + 1024**2


@pytest.mark.parametrize(
    ("info", "options", "reason"),
    [
        (
            stereo(21_601.0),
            Options(),
            r"^the recording is 6:00:01 long, longer than the 6-hour limit$",
        ),
        (
            stereo(86_400.0),
            Options(start=3600.0),
            r"^the trimmed selection is 23:00:00 long, longer than the 6-hour limit$",
        ),
        # 8 channels at 384 kHz weigh 32 stereo seconds each: 45 minutes fit.
        (
            stereo(2_701.0, rate=384_000, channels=8),
            Options(),
            r"^the recording is 0:45:01 long, longer than the 0:45:00 limit "
            r"for 8-channel 384000 Hz sound$",
        ),
    ],
    ids=["recording", "trimmed", "costly-sound"],
)
def test_too_long_is_refused_before_ffmpeg_runs(
    info: MediaInfo, options: Options, reason: str
) -> None:
    with pytest.raises(PermanentError, match=reason):
        conversion_limits(info, options)


def test_a_trim_keeps_a_long_file_within_the_limit() -> None:
    limits = conversion_limits(stereo(8 * 3600.0), Options(start=0.0, end=3600.0))

    assert limits.process.cpu_seconds == 60 + 180


def test_the_limit_is_a_parameter() -> None:
    """A deployment's MAX_MEDIA_SECONDS reaches the check (converter.config reads it)."""
    with pytest.raises(PermanentError, match=r"longer than the 90-minute limit$"):
        conversion_limits(stereo(5401.0), Options(), max_media_seconds=5400.0)
    assert conversion_limits(stereo(5400.0), Options(), max_media_seconds=5400.0)


# --- the process: environment, session, kernel limits ------------------------


def test_spawn_gives_the_child_no_secret_of_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", SECRET)
    monkeypatch.setenv("RABBITMQ_URL", "amqp://converter:S3cr3t@rabbit/")
    program = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    limits = ProcessLimits(cpu_seconds=60, wall_seconds=60.0, file_bytes=0)

    process = spawn(program, limits, stdout=subprocess.PIPE)
    stdout, _ = process.communicate(timeout=30)

    environ = json.loads(stdout)
    # Python adds LC_CTYPE when it coerces the C locale; the rest is ours.
    assert set(environ) - {"LC_CTYPE"} == set(FFMPEG_ENVIRONMENT)
    assert "S3cr3t" not in stdout.decode()


def test_a_running_conversion_has_a_bare_environment_its_own_group_and_limits(
    tmp_path: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGO_URI", SECRET)
    monkeypatch.setattr(transcode_module, "PROGRESS_INTERVAL_S", 0.1)
    seen: dict[str, str] = {}
    cancel = threading.Event()

    def inspect_ffmpeg(percent: int) -> None:
        if not seen:
            [pid] = ffmpeg_children()
            seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes().decode()
            seen["limits"] = Path(f"/proc/{pid}/limits").read_text()
            seen["own_group"] = str(os.getpgid(pid) == pid != os.getpgid(0))
        cancel.set()

    with pytest.raises(TransientError, match="interrupted"):
        transcode(long_wav, tmp_path / "out.mp3", on_progress=inspect_ffmpeg, cancel=cancel)

    assert seen["environ"].split("\0")[:-1] == [f"{k}={v}" for k, v in FFMPEG_ENVIRONMENT.items()]
    assert "S3cr3t" not in seen["environ"]
    assert seen["own_group"] == "True"
    limits = {line[:26].strip(): line[26:].split()[:2] for line in seen["limits"].splitlines()[1:]}
    # 300 s of 44.1 kHz stereo: 60 + 15 s of CPU, then the kernel's grace.
    assert limits["Max cpu time"] == ["80", "85"]
    assert limits["Max address space"] == [str(MEMORY_LIMIT_BYTES)] * 2
    assert limits["Max file size"] == [str(21_600 * 40_000 + 2 * 1024**2)] * 2
    assert limits["Max core file size"] == ["0", "0"]


# --- the runner: deadline, CPU time, file size ---------------------------------


def test_a_conversion_past_its_deadline_is_killed_with_a_readable_reason(tmp_path: Path) -> None:
    """A 1-second deadline stands for the shipped 120 s + 0.1 s per second of audio."""
    dst = tmp_path / "out.mp3"
    limits = ProcessLimits(cpu_seconds=600, wall_seconds=1.0, file_bytes=10**9)
    started = time.monotonic()

    with pytest.raises(TransientError, match=r"^the conversion took longer than its 1 s deadline$"):
        run_ffmpeg(endless_encode(dst), limits, paths=(str(tmp_path / "in"), str(dst)))

    assert time.monotonic() - started < 3.0


def test_a_conversion_past_its_cpu_time_is_killed_and_blamed_on_the_input(tmp_path: Path) -> None:
    """A 1-second CPU budget stands for the shipped 60 s + 0.05 s per weighted second."""
    dst = tmp_path / "out.mp3"
    limits = ProcessLimits(cpu_seconds=1, wall_seconds=600.0, file_bytes=10**9)

    with pytest.raises(PermanentError, match=r"^converting the file took more than its 1 s of pro"):
        run_ffmpeg(endless_encode(dst), limits, paths=(str(tmp_path / "in"), str(dst)))


def test_the_kernel_stops_a_file_past_its_size_limit(tmp_path: Path) -> None:
    """100 kB stands for the shipped 6 hours at 320 kbit/s plus slack (866 MB)."""
    dst = tmp_path / "out.mp3"
    limits = ProcessLimits(cpu_seconds=600, wall_seconds=600.0, file_bytes=100_000)

    with pytest.raises(PermanentError, match=r"^the output would exceed the 0\.1 MB limit$"):
        run_ffmpeg(endless_encode(dst), limits, paths=(str(tmp_path / "in"), str(dst)))

    assert dst.stat().st_size <= 100_000
