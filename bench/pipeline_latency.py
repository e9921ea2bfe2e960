"""Time upload-accepted -> MP3-downloadable, and -> email, against a running ``make run``.

Usage: start ``make run`` in one terminal, then
    .venv/bin/python -m bench.pipeline_latency [--runs N] [--long-minutes M]

It makes a 5-second clip and an M-minute 720p H.264+AAC file with ffmpeg
(cached under .cache/bench), and prints for each: the bare ffmpeg time for
``-vn -c:a libmp3lame -b:a 192k`` on the same file, the time from the upload
being accepted to the job being done, and to its email landing in .run/mail,
with the ratio to bare ffmpeg. Runs are interleaved (ffmpeg, pipeline, ...)
because the machine is shared and noisy; the table shows min and median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import requests

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
RUN = ROOT / ".run"
GATEWAY = "http://127.0.0.1:8000"


def make_source(path: Path, seconds: int, size: str) -> Path:
    """Write a test clip (testsrc picture, sine tone) unless it is cached."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-loglevel",
                "error",
                "-y",
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
                str(path),
            ],
            check=True,
        )
    return path


def bare_ffmpeg(source: Path) -> float:
    """Time the reference conversion with the same ffmpeg binary."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(source),
                "-vn",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "192k",
                str(Path(tmp) / "out.mp3"),
            ],
            check=True,
        )
        return time.perf_counter() - started


def login() -> dict[str, str]:
    """Log in as make run's demo user."""
    password = (RUN / "demo-password").read_text().strip()
    response = requests.post(
        f"{GATEWAY}/login", auth=("demo@video2mp3.local", password), timeout=30
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def through_pipeline(source: Path, headers: dict[str, str]) -> tuple[float, float]:
    """Upload ``source``; return seconds from acceptance to done and to its email."""
    mails_before = set((RUN / "mail").glob("*.eml"))
    with source.open("rb") as video:
        response = requests.post(
            f"{GATEWAY}/upload", headers=headers, files={"file": (source.name, video)}, timeout=600
        )
    accepted = time.perf_counter()
    response.raise_for_status()
    status_url = GATEWAY + response.json()["status_url"]
    done_at = mailed_at = None
    while done_at is None or mailed_at is None:
        if done_at is None:
            status = requests.get(status_url, headers=headers, timeout=10).json()["status"]
            if status == "failed":
                raise RuntimeError(f"job failed: {status_url}")
            if status == "done":
                done_at = time.perf_counter()
        if mailed_at is None and set((RUN / "mail").glob("*.eml")) - mails_before:
            mailed_at = time.perf_counter()
        time.sleep(0.01)
    return done_at - accepted, mailed_at - accepted


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--long-minutes", type=int, default=10)
    args = parser.parse_args()
    headers = login()
    sources = {
        "5 s clip, 320x240": (make_source(CACHE / "clip-5s.mp4", 5, "320x240"), args.runs),
        f"{args.long_minutes} min, 1280x720": (
            make_source(
                CACHE / f"long-{args.long_minutes}min-720p.mp4", args.long_minutes * 60, "1280x720"
            ),
            max(1, args.runs // 2),
        ),
    }
    print(
        f"{'file':<22} {'ffmpeg s':>9} {'done s':>9} {'email s':>9} {'done/ffmpeg':>12}"
        "   (min / median)"
    )
    for label, (source, runs) in sources.items():
        bare, done, mailed = [], [], []
        for _ in range(runs):
            bare.append(bare_ffmpeg(source))
            to_done, to_mail = through_pipeline(source, headers)
            done.append(to_done)
            mailed.append(to_mail)
        ratio = [d / b for d, b in zip(done, bare, strict=True)]
        print(
            f"{label:<22} "
            f"{min(bare):>4.2f}/{statistics.median(bare):<4.2f} "
            f"{min(done):>4.2f}/{statistics.median(done):<4.2f} "
            f"{min(mailed):>4.2f}/{statistics.median(mailed):<4.2f} "
            f"{min(ratio):>5.2f}/{statistics.median(ratio):<5.2f}"
        )


if __name__ == "__main__":
    main()
