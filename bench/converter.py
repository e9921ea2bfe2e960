"""The converter's conversion function against the bare ffmpeg command it wraps.

Usage: ``python -m bench.converter [--runs N]``

On a 10-minute 1280x720 H.264 + AAC file (made once with ffmpeg's lavfi sources and
cached under .cache/bench), each run in a fresh process, interleaved:

- bare ``ffmpeg -i IN -vn -c:a libmp3lame -b:a 192k OUT.mp3`` (the baseline, same binary);
- ``transcode()`` given a probe already made; ``probe()`` alone; and probe + transcode,
  which is what a job costs (the targets: wall <= 1.05x, CPU <= 1.07x);
- MoviePy's ``AudioFileClip.write_audiofile`` at the same bitrate, as a reference;
- the two halves of the bare command alone, to show where its time goes: decoding the
  AAC (to a null output) and encoding the same sound, already decoded to a WAV, with
  libmp3lame at 192k.

Wall is the call's time; CPU is user+sys of the measuring process during the call plus
that of the ffmpeg processes it ran; peak RSS is the largest of those ffmpeg processes.
Then, on an MKV with MP3 audio made from the same file: ``transcode()``'s stream copy
against ``transcode()`` re-encoding it (target <= 0.05x).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from moviepy import AudioFileClip

from bench.measurement import CostLog, interleave
from bench.media import long_video, mp3_audio_mkv, pcm_wav, run_ffmpeg
from bench.results import Result, heading, report, series_row
from common.options import Options
from converter.transcode import probe, transcode

BENCH = "converter"
MODULE = "bench.converter"  # run by name in a fresh process, also when this is __main__


# --- what runs in the measuring process (python -m bench.measurement call ...) --------
# It imports this module before it starts measuring, so imports cost no measured time.


def transcode_given_probe(source: str, output: str) -> Callable[[], object]:
    """Probe now; return the transcode call to measure (with a no-op progress callback)."""
    info = probe(source)
    return lambda: transcode(source, output, info=info, on_progress=lambda _percent: None)


def probe_and_transcode(source: str, output: str) -> None:
    """Do what one job does with its spooled file: probe it, then transcode it."""
    info = probe(source)
    transcode(source, output, info=info, on_progress=lambda _percent: None)


def probe_only(source: str) -> None:
    """Probe a file the way the handler does."""
    probe(source)


def reencode(source: str, output: str) -> Callable[[], object]:
    """Return a transcode that must re-encode (an explicit bitrate), after probing."""
    info = probe(source)
    return lambda: transcode(source, output, Options(bitrate=192), info=info)


def stream_copy(source: str, output: str) -> Callable[[], object]:
    """Return a default transcode of an MP3-audio file (a stream copy), after probing."""
    info = probe(source)

    def run() -> None:
        result = transcode(source, output, info=info)
        if not result.stream_copied:
            raise RuntimeError("expected a stream copy")

    return run


def bare_stream_copy(source: str, output: str) -> None:
    """Copy the MP3 audio out with the bare ffmpeg command, as a bound for the copy."""
    run_ffmpeg("-i", source, "-vn", "-c:a", "copy", output)


def decode_only(source: str) -> None:
    """Decode the audio and discard it: the decoding half of the bare command."""
    run_ffmpeg("-i", source, "-vn", "-c:a", "pcm_f32le", "-f", "null", "-")


def encode_only(wav: str, output: str) -> None:
    """Encode already decoded sound at 192k: the encoding half of the bare command."""
    run_ffmpeg("-i", wav, "-c:a", "libmp3lame", "-b:a", "192k", output)


def moviepy_write_audiofile(source: str, output: str) -> None:
    """Make the MP3 with MoviePy's own write path at the same bitrate and sample rate."""
    clip = AudioFileClip(source)
    try:
        clip.write_audiofile(output, fps=48000, bitrate="192k", codec="libmp3lame", logger=None)
    finally:
        clip.close()


# --- the benchmark -------------------------------------------------------------------


def run(runs: int = 5) -> list[Result]:
    """Measure and return the table's rows."""
    heading("converter: transcode() vs bare ffmpeg on a 10-minute 720p file")
    source = long_video()
    mkv = mp3_audio_mkv(source)
    wav = pcm_wav(source)
    with tempfile.TemporaryDirectory(prefix="v2m-bench-") as tmp:
        out = str(Path(tmp) / "out.mp3")
        costs = CostLog()
        measured = costs.action

        wall = interleave(
            runs,
            bare=measured("bare", "bench.media:bare_ffmpeg", str(source), out),
            transcode=measured("transcode", f"{MODULE}:transcode_given_probe", str(source), out),
            job=measured("job", f"{MODULE}:probe_and_transcode", str(source), out),
            probe=measured("probe", f"{MODULE}:probe_only", str(source)),
            moviepy=measured("moviepy", f"{MODULE}:moviepy_write_audiofile", str(source), out),
            decode=measured("decode", f"{MODULE}:decode_only", str(source)),
            encode=measured("encode", f"{MODULE}:encode_only", str(wav), out),
        )
        copy = interleave(
            max(3, runs - 2),
            reencode=measured("reencode", f"{MODULE}:reencode", str(mkv), out),
            copy=measured("copy", f"{MODULE}:stream_copy", str(mkv), out),
            bare_copy=measured("bare_copy", f"{MODULE}:bare_stream_copy", str(mkv), out),
        )

    series = costs.series

    bare_cpu, bare_rss = series("bare", "cpu"), series("bare", "peak_rss_mb")

    def wall_and_cpu(name: str, label: str) -> list[Result]:
        """Return a measured call's wall and CPU rows, each against bare ffmpeg's."""
        return [
            series_row(BENCH, f"{label}, wall", wall[name], wall["bare"]),
            series_row(BENCH, f"{label}, CPU", series(name, "cpu"), bare_cpu, unit="cpu s"),
        ]

    rows = [
        series_row(BENCH, "bare ffmpeg wall (baseline)", wall["bare"]),
        series_row(BENCH, "bare ffmpeg CPU (baseline)", bare_cpu, unit="cpu s"),
        series_row(BENCH, "bare ffmpeg peak RSS (baseline)", bare_rss, unit="MB"),
        *wall_and_cpu("probe", "probe()"),
        *wall_and_cpu("transcode", "transcode() with the probe given"),
        series_row(
            BENCH, "transcode() peak RSS", series("transcode", "peak_rss_mb"), bare_rss, unit="MB"
        ),
        series_row(
            BENCH,
            "probe + transcode wall (a job)",
            wall["job"],
            wall["bare"],
            target="<= 1.05x",
            limit=1.05,
        ),
        series_row(
            BENCH,
            "probe + transcode CPU (a job)",
            series("job", "cpu"),
            bare_cpu,
            unit="cpu s",
            target="<= 1.07x",
            limit=1.07,
        ),
        *wall_and_cpu("moviepy", "MoviePy write_audiofile (reference)"),
        *wall_and_cpu("decode", "decoding alone (AAC to null)"),
        *wall_and_cpu("encode", "encoding alone (WAV to MP3 192k)"),
        series_row(BENCH, "re-encode of MKV with MP3 audio (baseline)", copy["reencode"]),
        series_row(
            BENCH,
            "stream copy of the same MKV",
            copy["copy"],
            copy["reencode"],
            target="<= 0.05x",
            limit=0.05,
        ),
        series_row(
            BENCH,
            "bare ffmpeg -c:a copy of the same MKV (bound)",
            copy["bare_copy"],
            copy["reencode"],
        ),
    ]
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    report(run(args.runs), BENCH)


if __name__ == "__main__":
    main()
