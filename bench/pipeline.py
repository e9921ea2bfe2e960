"""End to end: upload accepted -> MP3 downloadable, against bare ffmpeg on the same file.

Usage: ``python -m bench.pipeline [--runs N] [--long-runs N]``

Starts an isolated stack (the four services as processes, as ``make run`` starts them;
see bench/system.py) and, for a 5-second 320x240 clip and the 10-minute 1280x720 file,
interleaves: the bare ``ffmpeg -i IN -vn -c:a libmp3lame -b:a 192k OUT.mp3`` on the file,
then one upload through the gateway, timed from the 202 to the job being seen done by
``GET /jobs/<id>`` (polled every 10 ms for the clip, 50 ms for the long file; the MP3 is
downloadable from that moment) and to its email reaching the SMTP sink.

Targets: the 10-minute file done within 1.3x the bare ffmpeg time; the clip's p50 under
300 ms, nearly all of it overhead (ffmpeg alone: the "pipeline | 5 s clip: bare ffmpeg"
row of docs/performance.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import requests

from bench.measurement import timed_bare_ffmpeg
from bench.media import long_video, video
from bench.results import Result, Series, heading, report, series_row
from bench.system import BenchSystem, bench_system

BENCH = "pipeline"
CLIP_POLL_S = 0.01
LONG_POLL_S = 0.05


def through_pipeline(
    system: BenchSystem, source: Path, headers: dict[str, str], poll: float
) -> tuple[float, float]:
    """Upload ``source``; return seconds from acceptance to done, and to its email."""
    mails_before = len(system.mail.arrivals())
    accepted_body = system.upload(source, headers)
    accepted = time.perf_counter()
    done = system.wait_done(accepted_body["job_id"], headers, interval=poll)
    mailed = system.wait_mail(mails_before + 1)
    return done - accepted, mailed - accepted


def check_download(system: BenchSystem, headers: dict[str, str]) -> None:
    """Download the newest job's MP3 once, so "done" is known to mean downloadable."""
    jobs = requests.get(f"{system.gateway}/jobs?limit=1", headers=headers, timeout=30).json()
    url = system.gateway + jobs["jobs"][0]["download_url"]
    response = requests.get(url, headers=headers, timeout=60)
    if response.status_code != 200 or not response.content:
        raise RuntimeError(f"the MP3 of a done job is not downloadable: {response.status_code}")


def run(runs: int = 15, long_runs: int = 3) -> list[Result]:
    """Measure and return the table's rows."""
    heading("pipeline: upload accepted -> MP3 downloadable, through the whole stack")
    clip = video(5, "320x240", name="clip-5s.mp4")
    long = long_video()
    rows: list[Result] = []
    with bench_system() as system:
        _email, headers = system.new_user()
        # One conversion first, so the first measured one pays no cold start.
        through_pipeline(system, clip, headers, CLIP_POLL_S)
        for label, source, count, poll, limit in (
            ("5 s clip", clip, runs, CLIP_POLL_S, None),
            ("10 min 720p", long, long_runs, LONG_POLL_S, 1.3),
        ):
            bare, done, mailed = Series(), Series(), Series()
            for _ in range(count):
                bare.add(timed_bare_ffmpeg(source))
                to_done, to_mail = through_pipeline(system, source, headers, poll)
                done.add(to_done)
                mailed.add(to_mail)
            check_download(system, headers)
            rows.append(series_row(BENCH, f"{label}: bare ffmpeg (baseline)", bare))
            rows.append(
                series_row(
                    BENCH,
                    f"{label}: accepted -> done",
                    done,
                    bare,
                    target="<= 1.3x" if limit else "",
                    limit=limit,
                    note=f"p95 {done.percentile(95):.3g} s",
                )
            )
            rows.append(series_row(BENCH, f"{label}: accepted -> email", mailed, bare))
            if limit is None:
                overhead = Series([d - b for d, b in zip(done.values, bare.values, strict=True)])
                rows.append(
                    series_row(BENCH, f"{label}: done minus bare ffmpeg", overhead, unit="s")
                )
                p50_ms = done.median * 1000
                rows[-3].target = "p50 < 300 ms"
                rows[-3].met = p50_ms < 300
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of the 5-second clip")
    parser.add_argument("--long-runs", type=int, default=3, help="runs of the 10-minute file")
    args = parser.parse_args()
    report(run(args.runs, args.long_runs), BENCH)


if __name__ == "__main__":
    main()
