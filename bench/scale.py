"""A batch of conversions with one converter against two.

Usage: ``python -m bench.scale [--runs N] [--videos N]``

Starts an isolated stack without converters, uploads a batch of 20 one-minute 1280x720
H.264 + AAC videos (each its own job; the file is made once with ffmpeg and cached),
then starts 1 or 2 converter processes at once and waits for every job to be done. The
batch time is from the first job's ``started_at`` to the last job's ``finished_at``, as
the converters recorded them, so start-up and polling do not count. Batches with one and
with two converters alternate; the target is two taking <= 0.6x the time of one.

As the bound the machine sets, the same 20 conversions by bare ffmpeg, one at a time and
two at a time: one ffmpeg alone already keeps more than one core busy (its demuxer,
decoder, encoder and muxer are threads), so two cannot halve the time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.media import bare_ffmpeg, video
from bench.results import Result, Series, heading, report, series_row
from bench.system import BenchSystem, bench_system
from common.jobs import DONE, FAILED

BENCH = "scale"


def one_minute_video() -> Path:
    """Return the cached one-minute 1280x720 H.264 + AAC file."""
    return video(60, "1280x720", name="video-1min-720p.mp4")


def bare_batch_seconds(videos: int, parallel: int) -> float:
    """Convert the file ``videos`` times with bare ffmpeg, ``parallel`` at a time."""
    source = one_minute_video()
    with tempfile.TemporaryDirectory(prefix="v2m-bench-") as tmp:
        outputs = [Path(tmp) / f"out-{index}.mp3" for index in range(videos)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(lambda output: bare_ffmpeg(source, output), outputs))
        return time.perf_counter() - started


def batch_seconds(
    system: BenchSystem, headers: dict[str, str], videos: int, converters: int
) -> float:
    """Queue ``videos`` jobs, convert them with ``converters`` workers; return the batch time."""
    source = one_minute_video()
    job_ids = [system.upload(source, headers)["job_id"] for _ in range(videos)]
    jobs = system.videos_db["jobs"]
    system.start_converters(converters)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            finished = list(jobs.find({"_id": {"$in": job_ids}, "status": {"$in": [DONE, FAILED]}}))
            if len(finished) == videos:
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the batch of {videos} was not done after 600 s")
    finally:
        system.stop_converters()
    failed = [job["_id"] for job in finished if job["status"] != DONE]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[0]}")
    first = min(job["started_at"] for job in finished)
    last = max(job["finished_at"] for job in finished)
    return (last - first).total_seconds()


def run(runs: int = 2, videos: int = 20) -> list[Result]:
    """Measure and return the table's rows."""
    heading(f"scale: a batch of {videos} one-minute videos, 1 converter vs 2")
    one, two, bare_one, bare_two = Series(), Series(), Series(), Series()
    with bench_system(("auth", "gateway", "notification")) as system:
        _email, headers = system.new_user()
        for round_number in range(runs):
            steps = [
                lambda: one.add(batch_seconds(system, headers, videos, 1)),
                lambda: two.add(batch_seconds(system, headers, videos, 2)),
                lambda: bare_one.add(bare_batch_seconds(videos, 1)),
                lambda: bare_two.add(bare_batch_seconds(videos, 2)),
            ]
            for step in steps if round_number % 2 == 0 else steps[::-1]:
                step()
    return [
        series_row(BENCH, f"{videos} x 1 min 720p, 1 converter (baseline)", one),
        series_row(
            BENCH, f"{videos} x 1 min 720p, 2 converters", two, one, target="<= 0.6x", limit=0.6
        ),
        series_row(BENCH, f"bare ffmpeg, same {videos} files, 1 at a time (baseline)", bare_one),
        series_row(
            BENCH, f"bare ffmpeg, same {videos} files, 2 at a time (bound)", bare_two, bare_one
        ),
    ]


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--videos", type=int, default=20)
    args = parser.parse_args()
    report(run(args.runs, args.videos), BENCH)


if __name__ == "__main__":
    main()
