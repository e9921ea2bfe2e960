"""The benchmarks' media, made once with ffmpeg and cached, and the reference conversion.

Videos come from ffmpeg's lavfi sources (testsrc picture, 440 Hz sine) and everything is
cached under .cache/bench, so only the first run pays for making it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg

from bench import CACHE, ROOT

LONG_SECONDS = 600
LONG_SIZE = "1280x720"
# A phone's recording: what a user's camera app writes for 1080p at 30 frames a second.
PHONE_SECONDS = 120
PHONE_VIDEO_BITRATE = "16M"
PHONE_AUDIO_BITRATE = "256k"
RANDOM_PIECE = 1024 * 1024


def ffmpeg_exe() -> str:
    """Return the ffmpeg binary the converter uses (imageio-ffmpeg's)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(*args: str) -> None:
    """Run the benchmarks' ffmpeg quietly, overwriting outputs, and fail loudly."""
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _cached(path: Path, make: Callable[[Path], None]) -> Path:
    """Return ``path``, making it first (through a temp name, so a cut run leaves no junk)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial{path.suffix}")
        started = time.perf_counter()
        make(partial)
        partial.rename(path)
        print(f"  made {path.relative_to(ROOT)} in {time.perf_counter() - started:.1f} s")
    return path


def video(seconds: int, size: str, name: str | None = None) -> Path:
    """Return a cached H.264 + AAC MP4 (testsrc picture, sine tone) of that length and size."""
    path = CACHE / (name or f"video-{seconds}s-{size}.mp4")

    def make(out: Path) -> None:
        run_ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size={size}:rate=30:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "160k",
            "-ac",
            "2",
            "-f",
            "mp4",
            str(out),
        )

    return _cached(path, make)


def long_video() -> Path:
    """Return the 10-minute 1280x720 H.264 + AAC file the converter targets are set on."""
    return video(LONG_SECONDS, LONG_SIZE, name="long-10min-720p.mp4")


def phone_video() -> Path:
    """Return a cached 2-minute phone-like recording: 1080p30 H.264 at 16 Mbit/s, AAC 256k.

    A camera's picture is full of sensor noise and motion, which is why phones need
    16 Mbit/s; testsrc alone would compress to a fraction of that, so the picture is
    testsrc2 with fresh noise in every frame, and the rate is held with a VBV buffer. The
    sound is pink noise, which the AAC encoder, like real sound, spends its 256 kbit/s on
    (a sine would come out far smaller). About 2 min x 16.3 Mbit/s = 245 MB.
    """
    path = CACHE / "phone-2min-1080p.mp4"

    def make(out: Path) -> None:
        run_ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1920x1080:rate=30:duration={PHONE_SECONDS},noise=alls=12:allf=t",
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:sample_rate=48000:amplitude=0.2:duration={PHONE_SECONDS}",
            "-c:v",
            "libx264",
            # ultrafast: the two cores make it in under a minute; the bytes are what matter.
            "-preset",
            "ultrafast",
            "-b:v",
            PHONE_VIDEO_BITRATE,
            "-maxrate",
            PHONE_VIDEO_BITRATE,
            "-bufsize",
            PHONE_VIDEO_BITRATE,
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            PHONE_AUDIO_BITRATE,
            "-ac",
            "2",
            "-ar",
            "48000",
            "-f",
            "mp4",
            str(out),
        )

    return _cached(path, make)


def mp3_audio_mkv(source: Path) -> Path:
    """Return a cached MKV with ``source``'s picture and its sound as 192 kbit/s MP3."""
    path = CACHE / f"{source.stem}-mp3audio.mkv"

    def make(out: Path) -> None:
        run_ffmpeg(
            "-i",
            str(source),
            "-c:v",
            "copy",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "192k",
            "-f",
            "matroska",
            str(out),
        )

    return _cached(path, make)


def pcm_wav(source: Path) -> Path:
    """Return a cached WAV of ``source``'s sound, decoded to 32-bit float PCM (as decoded)."""
    path = CACHE / f"{source.stem}-pcm.wav"

    def make(out: Path) -> None:
        run_ffmpeg("-i", str(source), "-vn", "-c:a", "pcm_f32le", "-f", "wav", str(out))

    return _cached(path, make)


def big_file(mib: int) -> Path:
    """Return a cached file of ``mib`` MiB: an MP4's first 4 KiB, then random bytes."""
    path = CACHE / f"random-{mib}MiB.mp4"
    if not path.exists() or path.stat().st_size != mib * 1024 * 1024:
        head = video(5, "320x240", name="clip-5s.mp4").read_bytes()[:4096]
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            out.write(head)
            remaining = mib * 1024 * 1024 - len(head)
            while remaining > 0:
                piece = os.urandom(min(RANDOM_PIECE, remaining))
                out.write(piece)
                remaining -= len(piece)
        partial.rename(path)
    return path


def bare_ffmpeg_command(source: Path | str, output: Path | str) -> list[str]:
    """Return the reference conversion the targets compare against."""
    return [
        ffmpeg_exe(),
        "-nostdin",
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(source),
        "-vn",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "192k",
        str(output),
    ]


def bare_ffmpeg(source: Path | str, output: Path | str) -> None:
    """Run the reference conversion (a function ``measure_call`` can run)."""
    subprocess.run(bare_ffmpeg_command(source, output), check=True)
