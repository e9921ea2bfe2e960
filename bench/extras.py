"""What loudness, a cover, tracks and a waveform add to a conversion.

Usage: ``python -m bench.extras [--runs N]``

On the converter benchmark's 10-minute 1280x720 H.264 + AAC file, each run in a fresh
process, interleaved with the baseline, a plain conversion to MP3 (probe + transcode, what
a job without these options costs, its waveform measured in the same ffmpeg run):

- the same conversion without the waveform's branch (``transcode(..., waveform=False)``),
  which is what the waveform adds to a re-encoded job;
- the same conversion with ``loudness=-16`` (its three passes, the waveform in the encode);
- ``take_cover``'s automatic pick (a frame that is neither black nor flat);
- cutting the made MP3 into 10 one-minute tracks (``split=60``), without storing them;
- ``peaks`` of the made MP3: the separate pass a stream copy's waveform takes.

Each row is wall or CPU (this process and the ffmpeg processes it ran) against the plain
conversion's, so what an option costs reads as a share of a job.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.measurement import CostLog, interleave
from bench.media import LONG_SECONDS, long_video
from bench.results import Result, Series, heading, report, series_row
from common.options import Options
from converter.cover import take_cover
from converter.tracks import cut_tracks, plan_tracks
from converter.transcode import probe, transcode
from converter.waveform import peaks

BENCH = "extras"
MODULE = "bench.extras"  # run by name in a fresh process, also when this is __main__
SPLIT_SECONDS = 60.0


# --- what runs in the measuring process (python -m bench.measurement call ...) --------


def plain(source: str, output: str) -> None:
    """Convert as a job without options does: probe, then transcode to MP3 with its waveform."""
    transcode(source, output, info=probe(source))


def without_waveform(source: str, output: str) -> None:
    """Convert as ``plain`` does, without the waveform's branch in the run."""
    transcode(source, output, info=probe(source), waveform=False)


def normalised(source: str, output: str) -> None:
    """Convert with a loudness target of -16 LUFS: measure, encode, measure the output."""
    transcode(source, output, Options(loudness=-16), info=probe(source))


def cover(source: str, workdir: str) -> Callable[[], object]:
    """Return the automatic cover pick, after probing."""
    info = probe(source)
    return lambda: take_cover(Path(source), info, Options(cover="frame"), Path(workdir))


def tracks(source: str, mp3: str, workdir: str) -> Callable[[], object]:
    """Return the cut of a made MP3 into one-minute tracks, after probing and planning."""
    info = probe(source)
    options = Options(split=SPLIT_SECONDS)
    plans = plan_tracks(info, options, output_duration=probe(mp3).duration)
    output = options.output
    return lambda: cut_tracks(Path(mp3), plans, output, options, Path(workdir))


def waveform(mp3: str) -> Callable[[], object]:
    """Return the peaks pass over a made MP3, its duration known as the handler knows it."""
    duration = probe(mp3).duration
    return lambda: peaks(Path(mp3), duration)


# --- the benchmark -------------------------------------------------------------------


def run(runs: int = 3) -> list[Result]:
    """Measure and return the table's rows."""
    heading("extras: loudness, cover, tracks and waveform against a plain conversion")
    source = str(long_video())
    with tempfile.TemporaryDirectory(prefix="v2m-bench-") as tmp:
        made = str(Path(tmp) / "made.mp3")
        plain(source, made)  # what the cover-less passes read
        out = str(Path(tmp) / "out.mp3")
        costs = CostLog()
        measured = costs.action

        wall = interleave(
            runs,
            plain=measured("plain", f"{MODULE}:plain", source, out),
            bare=measured("bare", f"{MODULE}:without_waveform", source, out),
            loudness=measured("loudness", f"{MODULE}:normalised", source, out),
            cover=measured("cover", f"{MODULE}:cover", source, tmp),
            tracks=measured("tracks", f"{MODULE}:tracks", source, made, tmp),
            waveform=measured("waveform", f"{MODULE}:waveform", made),
        )

    def cpu(name: str) -> Series:
        return costs.series(name, "cpu")

    rows = [
        series_row(BENCH, "plain conversion wall (baseline)", wall["plain"]),
        series_row(BENCH, "plain conversion CPU (baseline)", cpu("plain"), unit="cpu s"),
    ]
    for name, label in (
        ("bare", "plain conversion without the waveform branch"),
        ("loudness", "loudness=-16 conversion (3 passes)"),
        ("cover", "automatic cover pick"),
        ("tracks", f"cut into {int(LONG_SECONDS // SPLIT_SECONDS)} tracks"),
        ("waveform", "separate waveform pass (stream copies only)"),
    ):
        rows.append(series_row(BENCH, f"{label}, wall", wall[name], wall["plain"]))
        rows.append(
            series_row(BENCH, f"{label}, CPU", cpu(name), cpu("plain"), unit="cpu s"),
        )
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report(run(args.runs), BENCH)


if __name__ == "__main__":
    main()
