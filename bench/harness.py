"""What every benchmark shares: media, measurement, statistics, the results table, a stack.

Benchmarks are command-line programs (``python -m bench.<name>``), not tests. This machine
is small (2 cores) and shared, so every comparison is made in one run against a baseline
measured alongside it, the two interleaved (A, B, A, B, ...), and reported as min and
median; ratios are the median of the paired ratios, so a slow spell hits both sides.

``python -m bench.harness call MODULE:FUNCTION ARG...`` runs one function in a fresh
process and prints what it cost as JSON; ``measure_call`` uses it, so each measured run
gets its own peak-RSS counter for the ffmpeg processes it starts.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import imageio_ffmpeg

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
RESULTS_FILE = CACHE / "results.json"

LONG_SECONDS = 600
LONG_SIZE = "1280x720"


def ffmpeg_exe() -> str:
    """Return the ffmpeg binary the converter uses (imageio-ffmpeg's)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


# --- media -------------------------------------------------------------------------------


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


def run_ffmpeg(*args: str) -> None:
    """Run the benchmarks' ffmpeg quietly, overwriting outputs, and fail loudly."""
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


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


def timed_bare_ffmpeg(source: Path) -> float:
    """Return the wall seconds of the reference conversion of ``source``."""
    with tempfile.TemporaryDirectory(prefix="v2m-bench-") as tmp:
        started = time.perf_counter()
        bare_ffmpeg(source, Path(tmp) / "out.mp3")
        return time.perf_counter() - started


# --- measurement -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """What one run cost: wall seconds, CPU seconds (this process and its children), peak RSS."""

    wall: float
    cpu: float
    peak_rss_mb: float


def measure_call(target: str, *args: str) -> Cost:
    """Run ``module:function(*args)`` in a fresh Python and return what the call cost.

    A function that returns a callable has only that callable measured, so it can do
    its preparation first.

    CPU is user+sys of that Python during the call plus that of the processes it waited
    for (ffmpeg); peak RSS is the largest of those child processes.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "bench.harness", "call", target, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{target} failed:\n{completed.stderr[-3000:]}")
    return Cost(**json.loads(completed.stdout.strip().splitlines()[-1]))


def _call(target: str, args: Sequence[str]) -> None:
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = function(*args)
    if callable(result):  # it prepared (e.g. probed); measure only what it returned
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result()
    wall = time.perf_counter() - started
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        getattr(after, name) - getattr(before, name)
        for before, after in ((self_before, self_after), (children_before, children_after))
        for name in ("ru_utime", "ru_stime")
    )
    # Linux reports ru_maxrss in KiB; for children it is the largest one waited for.
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_rss_mb": children_after.ru_maxrss / 1024}))


@dataclass
class Series:
    """Repeated measurements of one thing."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def percentile(self, q: float) -> float:
        """Return the q-th percentile (nearest rank), e.g. 95."""
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def paired_ratio(a: Series, b: Series) -> tuple[float, float]:
    """Return (min(a)/min(b), median of a_i/b_i) for runs taken in pairs."""
    ratios = [x / y for x, y in zip(a.values, b.values, strict=True)]
    return a.min / b.min, statistics.median(ratios)


def interleave(runs: int, **actions: Callable[[], float]) -> dict[str, Series]:
    """Run each action ``runs`` times in turn (A, B, C, A, B, C, ...) and collect the values.

    The order rotates every round so no action always follows the same neighbour.
    """
    names = list(actions)
    series = {name: Series() for name in names}
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            series[name].add(actions[name]())
    return series


# --- results -----------------------------------------------------------------------------


@dataclass
class Result:
    """One row of the results table."""

    bench: str
    measure: str
    unit: str
    min: float | None = None
    median: float | None = None
    ratio_min: float | None = None
    ratio_median: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


def series_row(
    bench: str,
    measure: str,
    series: Series,
    baseline: Series | None = None,
    *,
    unit: str = "s",
    target: str = "",
    limit: float | None = None,
    note: str = "",
) -> Result:
    """Build a row for a series, with its ratio to a paired baseline and a ratio target."""
    ratio_min = ratio_median = None
    if baseline is not None:
        ratio_min, ratio_median = paired_ratio(series, baseline)
    met = None
    if limit is not None and ratio_median is not None:
        met = ratio_median <= limit
    return Result(
        bench, measure, unit, series.min, series.median, ratio_min, ratio_median, target, met, note
    )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def format_table(results: Sequence[Result]) -> str:
    """Return the results as a Markdown table (readable in a terminal too)."""
    header = (
        "bench",
        "measure",
        "min",
        "median",
        "unit",
        "ratio min",
        "ratio med",
        "target",
        "met",
    )
    rows = [header]
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        rows.append(
            (
                r.bench,
                r.measure + (f" ({r.note})" if r.note else ""),
                _number(r.min),
                _number(r.median),
                r.unit,
                _number(r.ratio_min),
                _number(r.ratio_median),
                r.target,
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def report(results: Sequence[Result], name: str) -> None:
    """Print the table and merge the rows into .cache/bench/results.json under ``name``."""
    print(format_table(results), flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {}
    if RESULTS_FILE.exists():
        with contextlib.suppress(ValueError):
            saved = json.loads(RESULTS_FILE.read_text())
    saved[name] = [asdict(r) for r in results]
    RESULTS_FILE.write_text(json.dumps(saved, indent=1))


def heading(text: str) -> None:
    """Print a section heading."""
    print(f"\n== {text} ==", flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "call":
        _call(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: python -m bench.harness call MODULE:FUNCTION ARG...")
