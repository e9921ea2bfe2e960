"""A user's wait on a slow line: ``video2mp3 convert FILE --wait`` to the MP3 on disk.

Usage: ``python -m bench.upload [--runs N] [--full-runs-slow N] [--full-runs-fast N]``

Starts an isolated stack (see bench/system.py) and puts a loopback proxy
(devstack/tcp_proxy.py) limited to 20 and then 100 Mbit/s, both ways, in front of its
gateway. The CLI runs as a user runs it, ``python -m video2mp3 convert FILE --wait -o DIR``
in a process of its own logged in through the proxy, and is timed from start to exit
(the MP3 saved), sending only the audio track (the default) against the whole file
(``--full-upload``), with the bytes it sent counted by the proxy. Two files: a phone's
2-minute 1080p recording (16 Mbit/s H.264, 256 kbit/s AAC, 245 MB) and the 10-minute
720p benchmark file, whose testsrc picture compresses unusually well, so its audio share
(audio track bytes / file bytes) bounds what sending the audio alone can save: it is
printed beside the ratio.

A whole upload of the phone's file at 20 Mbit/s takes about 100 s, so the slow full
uploads run once (``--full-runs-slow``) and the fast ones twice, while the audio-only
runs are repeated (``--runs``); the two kinds are interleaved but not paired, so ratios
are of the minima and of the medians.

Then the resume: the proxy is cut (and refuses new connections) when half the phone's
file has gone through during a ``--full-upload`` convert, big enough to go by tus; once
that convert has given up (or been interrupted, as a user would), the same command is run
again, and the bytes it sends are set against the bytes the cut left unsent and the
client's chunk size.

Targets: for the phone's file, audio only within 0.25x the full upload's time at
20 Mbit/s; a resume re-sends at most one chunk.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.media import long_video, phone_video, video
from bench.results import Result, Series, heading, report, series_row
from bench.system import BENCH_PASSWORD, BenchSystem, bench_system
from devstack.tcp_proxy import TcpProxy
from video2mp3 import soundtrack
from video2mp3.tus import CHUNK_SIZE

BENCH = "upload"
MBIT = 1_000_000 / 8  # bytes a second
RATES_MBIT = (20, 100)
MB = 1_000_000
# The target: at 20 Mbit/s, audio only takes at most this share of a full upload.
PHONE_AUDIO_ONLY_TARGET = 0.25
# Past the cut, a client that keeps retrying is interrupted as a user would (Ctrl-C).
GIVE_UP_AFTER_CUT_S = 30.0
CONVERT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Sample:
    """One ``convert``: its wall seconds and the bytes it sent through the proxy."""

    seconds: float
    bytes_up: int


class User:
    """The bench user at a terminal: the CLI, logged in through the proxy to the stack."""

    def __init__(self, system: BenchSystem, proxy: TcpProxy, home: Path) -> None:
        self.proxy = proxy
        self.home = home
        self.server = f"http://127.0.0.1:{proxy.port}"
        # Its login and its unfinished uploads in ``home``; the shipped tus threshold.
        inherited = {
            name: value for name, value in os.environ.items() if not name.startswith("VIDEO2MP3_")
        }
        self.env = {
            **inherited,
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_STATE_HOME": str(home / "state"),
        }
        email, _headers = system.new_user()
        self._run(["login", "--email", email, "--password-stdin"], stdin=BENCH_PASSWORD + "\n")

    def _command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "video2mp3", "--server", self.server, *args]

    def _run(self, args: list[str], stdin: str = "") -> None:
        done = subprocess.run(
            self._command(args),
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CONVERT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"video2mp3 {args[0]} exited {done.returncode}: {done.stderr}")

    def convert_args(self, source: Path, output: Path, *, full: bool) -> list[str]:
        """Return the ``convert`` command line that saves the MP3 in ``output``."""
        return ["convert", str(source), "--wait", "-o", str(output)] + (
            ["--full-upload"] if full else []
        )

    def new_output(self) -> Path:
        """Return an empty folder for one run's MP3."""
        return Path(tempfile.mkdtemp(prefix="mp3-", dir=self.home))

    def convert(self, source: Path, *, full: bool) -> Sample:
        """Convert ``source`` and wait for its MP3; return what it took."""
        output = self.new_output()
        sent_before = self.proxy.bytes_up
        started = time.perf_counter()
        self._run(self.convert_args(source, output, full=full))
        seconds = time.perf_counter() - started
        check_mp3(output)
        return Sample(seconds, self.proxy.bytes_up - sent_before)

    def convert_cut(self, source: Path, cut_at: int) -> tuple[int, bool]:
        """Start a full-upload ``convert`` and cut the line after ``cut_at`` bytes.

        Return its exit status and whether it had to be interrupted.

        The proxy refuses reconnections from the cut on, so nothing more gets through;
        a client still retrying after ``GIVE_UP_AFTER_CUT_S`` is sent SIGINT, as a
        user's Ctrl-C.
        """
        self.proxy.cut_after(cut_at, refuse=True)
        cut_reached = None
        interrupted = False
        with subprocess.Popen(
            self._command(self.convert_args(source, self.new_output(), full=True)),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as convert:
            while convert.poll() is None:
                if cut_reached is None and self.proxy.refusing:
                    cut_reached = time.monotonic()
                if cut_reached and time.monotonic() - cut_reached > GIVE_UP_AFTER_CUT_S:
                    convert.send_signal(signal.SIGINT)
                    interrupted = True
                    convert.wait(timeout=30)
                time.sleep(0.1)
        self.proxy.accept()
        return convert.returncode, interrupted


def check_mp3(folder: Path) -> None:
    """Fail unless ``folder`` holds one non-empty MP3, so an exit 0 is known to mean saved."""
    mp3s = list(folder.glob("*.mp3"))
    if len(mp3s) != 1 or mp3s[0].stat().st_size == 0:
        raise RuntimeError(f"convert exited 0 but {folder} holds {mp3s}")


def audio_bytes(source: Path) -> int:
    """Return the size of the audio track the CLI would send in ``source``'s place."""
    with soundtrack.extracted(source, {}) as track:
        if track is None:
            raise RuntimeError(f"the CLI would send all of {source}: no audio track copied")
        return track.size


@contextlib.contextmanager
def user_through_proxy(system: BenchSystem) -> Iterator[User]:
    """Yield a logged-in CLI user whose every byte goes through a proxy to the gateway."""
    with (
        TcpProxy.in_front_of(system.gateway) as proxy,
        tempfile.TemporaryDirectory(prefix="v2m-bench-cli-") as home,
    ):
        yield User(system, proxy, Path(home))


def measure_file(
    user: User,
    label: str,
    source: Path,
    runs: int,
    full_runs: dict[int, int],
    slow_limit: float | None,
) -> list[Result]:
    """Time audio-only against full uploads of ``source`` at each rate; return the rows.

    ``slow_limit`` is the target for the ratio at the slowest rate, if there is one.
    """
    size = source.stat().st_size
    audio_share = audio_bytes(source) / size
    rows: list[Result] = []
    sent: dict[str, Series] = {"full": Series(), "audio": Series()}
    for rate in RATES_MBIT:
        user.proxy.limit_rate(up=rate * MBIT, down=rate * MBIT)
        times: dict[str, Series] = {"full": Series(), "audio": Series()}
        counts = {"full": full_runs[rate], "audio": runs}
        for round_number in range(max(counts.values())):
            # Each round in turn starts with the other kind, so neither always goes first.
            order = list(counts)[::-1] if round_number % 2 else list(counts)
            for kind in (kind for kind in order if round_number < counts[kind]):
                sample = user.convert(source, full=kind == "full")
                times[kind].add(sample.seconds)
                sent[kind].add(sample.bytes_up / MB)
        limit = slow_limit if rate == RATES_MBIT[0] else None
        rows.append(
            series_row(
                BENCH,
                f"{label} @ {rate} Mbit/s: full upload (baseline)",
                times["full"],
                note=f"runs: {len(times['full'].values)}",
            )
        )
        rows.append(
            unpaired_row(
                f"{label} @ {rate} Mbit/s: audio only",
                times["audio"],
                times["full"],
                target=f"<= {limit}x" if limit else "",
                limit=limit,
                note=f"runs: {len(times['audio'].values)}; audio share {audio_share:.1%}",
            )
        )
    user.proxy.limit_rate(up=None)
    rows.append(
        series_row(
            BENCH,
            f"{label}: MB sent, full upload",
            sent["full"],
            unit="MB",
            note=f"file {size / MB:.1f} MB",
        )
    )
    rows.append(
        unpaired_row(
            f"{label}: MB sent, audio only",
            sent["audio"],
            sent["full"],
            unit="MB",
            note=f"audio share {audio_share:.1%}",
        )
    )
    return rows


def unpaired_row(
    measure: str,
    series: Series,
    baseline: Series,
    *,
    unit: str = "s",
    target: str = "",
    limit: float | None = None,
    note: str = "",
) -> Result:
    """Build a row whose ratios are of the minima and of the medians (runs not in pairs)."""
    row = series_row(BENCH, measure, series, unit=unit, target=target, note=note)
    row.ratio_min = series.min / baseline.min
    row.ratio_median = series.median / baseline.median
    if limit is not None:
        row.met = row.ratio_median <= limit
    return row


def measure_resume(user: User, source: Path) -> list[Result]:
    """Cut a tus upload of ``source`` at half, convert again; return the resume's rows."""
    size = source.stat().st_size
    rate = RATES_MBIT[-1]
    user.proxy.limit_rate(up=rate * MBIT, down=rate * MBIT)
    half = size // 2
    exit_status, interrupted = user.convert_cut(source, half)
    if exit_status == 0:
        raise RuntimeError("convert finished although the line was cut at half the file")
    ended = "interrupted" if interrupted else f"gave up, exit {exit_status}"
    rerun = user.convert(source, full=True)
    user.proxy.limit_rate(up=None)
    # What the cut left unsent is at least the file's second half (the bytes before the cut
    # include the requests' lines and headers); the rest of the rerun is re-sent or overhead.
    remaining = size - half
    resent = rerun.bytes_up - remaining
    return [
        Result(
            BENCH,
            f"resume after a cut at 50% @ {rate} Mbit/s: sent by the rerun",
            "MB",
            rerun.bytes_up / MB,
            rerun.bytes_up / MB,
            note=f"remaining {remaining / MB:.1f} MB; cut run {ended}; "
            f"rerun to MP3 {rerun.seconds:.1f} s",
        ),
        Result(
            BENCH,
            "resume: re-sent beyond the remaining bytes",
            "KB",
            resent / 1000,
            resent / 1000,
            target="<= 1 chunk",
            met=resent <= CHUNK_SIZE,
            note=f"chunk {CHUNK_SIZE / 1000:.0f} KB = {CHUNK_SIZE / 1024**2:g} MiB",
        ),
    ]


def run(runs: int = 3, full_runs_slow: int = 1, full_runs_fast: int = 2) -> list[Result]:
    """Measure and return the table's rows."""
    heading(
        "upload: convert --wait to the MP3 on disk through a 20 / 100 Mbit/s line "
        f"({runs} audio-only runs, {full_runs_slow} / {full_runs_fast} full uploads each)"
    )
    full_runs = dict(zip(RATES_MBIT, (full_runs_slow, full_runs_fast), strict=True))
    files = (
        ("phone 2 min 1080p", phone_video(), PHONE_AUDIO_ONLY_TARGET),
        ("10 min 720p", long_video(), None),
    )
    rows: list[Result] = []
    with bench_system() as system, user_through_proxy(system) as user:
        # One conversion first, so the first measured one pays no cold start.
        user.convert(video(5, "320x240", name="clip-5s.mp4"), full=False)
        for label, source, slow_limit in files:
            rows += measure_file(user, label, source, runs, full_runs, slow_limit)
        rows += measure_resume(user, files[0][1])
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="audio-only runs per file and rate")
    parser.add_argument(
        "--full-runs-slow", type=int, default=1, help="full uploads per file at 20 Mbit/s"
    )
    parser.add_argument(
        "--full-runs-fast", type=int, default=2, help="full uploads per file at 100 Mbit/s"
    )
    args = parser.parse_args()
    report(run(args.runs, args.full_runs_slow, args.full_runs_fast), BENCH)


if __name__ == "__main__":
    main()
