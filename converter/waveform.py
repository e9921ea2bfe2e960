"""Waveforms: the peaks of an output, for a player to draw before it loads the sound.

A waveform is the largest absolute sample of each of a run of equal slices of the
output (its "buckets"), over all channels, as a fraction of full scale (0 silence,
1 a full-scale sample), rounded to 3 decimals. It is computed after the conversion
by one more ffmpeg pass over the file written, run like every other
(``converter.transcode.run_ffmpeg``: confined, within limits): ``asetnsamples`` cuts
the decoded sound into buckets, ``astats`` measures each one's peak across its
channels, and ``ametadata`` writes the peaks to a small text file, one per bucket.
That pass costs about what decoding the output does, 0.13 to 0.2 CPU s a minute of
MP3, M4A or Opus here, and its text is about 80 bytes a bucket.

Reading a low-rate PCM copy into Python instead would cost more (the resampling, a
file of samples, a Python loop over them: 0.35 CPU s of Python alone for 10 minutes
at 8 kHz mono) and be wrong: resampling filters out all above its Nyquist frequency,
so a high-pitched sound would draw flat.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import PermanentError
from common.options import Options
from converter.transcode import (
    MAX_MEDIA_SECONDS,
    ConversionLimits,
    MediaInfo,
    conversion_limits,
    ffmpeg_exe,
    input_restrictions,
    probe,
    run_ffmpeg,
)

log = logging.getLogger(__name__)

# How many points a waveform has: two a second (half a second's detail, enough to see
# a sentence or a bar of music), at least MIN_POINTS so a short clip still has a shape
# at a phone's width, and at most MAX_POINTS, one per pixel of a full-HD-wide player
# (a 1920-px canvas), past which a longer file gets coarser buckets instead of a
# bigger answer: 2000 points are about 14 KB of JSON, 1200 (10 minutes) 8 KB.
POINTS_PER_SECOND = 2.0
MIN_POINTS = 200
MAX_POINTS = 2000
# Decimals kept of each peak: a thousandth of full scale is finer than a pixel.
PEAK_DECIMALS = 3

UNREADABLE = "the output's sound could not be measured"

# What ametadata writes for each bucket: a "frame:… pts:… pts_time:…" line and this key's.
_PEAK_KEY = "lavfi.astats.Overall.Peak_level"
# The most a bucket's two lines take (about 80 bytes), for the text file's size limit.
_BYTES_PER_BUCKET = 256
_SPARE_BUCKETS = 16
# The characters each level of ffmpeg's filter graph syntax gives a meaning to: a
# filter's option value, then the graph that holds it (each escaped with "\").
_OPTION_SPECIALS = "\\':"
_GRAPH_SPECIALS = "\\'[],;"


@dataclass(frozen=True)
class Waveform:
    """An output's peaks, each 0..1, over ``duration`` seconds in equal buckets."""

    duration: float
    peaks: tuple[float, ...]

    @property
    def points(self) -> int:
        """Return how many peaks there are."""
        return len(self.peaks)

    def as_dict(self) -> dict[str, Any]:
        """Return the waveform as the output's metadata and the API keep it."""
        return {"points": self.points, "duration": self.duration, "peaks": list(self.peaks)}


def points_for(duration: float) -> int:
    """Return how many points a waveform of ``duration`` seconds gets."""
    return min(MAX_POINTS, max(MIN_POINTS, round(duration * POINTS_PER_SECOND)))


def peaks(
    path: Path,
    duration: float | None,
    *,
    heartbeat: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    max_media_seconds: float = MAX_MEDIA_SECONDS,
) -> Waveform:
    """Measure the waveform of the audio file at ``path``, ``duration`` seconds long.

    ``duration`` (what the conversion measured, else the file's header's, else what a
    first pass that reads the packets finds) sizes the buckets; they are then merged
    down to ``points_for`` the length decoded. Each pass may spend what a conversion
    of that length may (``conversion_limits``), and stops at the duration limit;
    ``heartbeat`` and ``cancel`` are as for ``run_ffmpeg``.

    Raises:
        PermanentError: ffmpeg cannot read the file's sound, or it holds none.
        TransientError: ffmpeg cannot be run, was killed or cancelled, or missed its
            deadline.
    """
    src = os.path.abspath(path)
    info = probe(src)
    rate = info.audio_sample_rate
    if not rate:
        raise PermanentError(f"{UNREADABLE}: its sample rate is unknown")
    known = duration or info.duration
    if not known:
        known = _length(src, _limits(info, None, max_media_seconds), heartbeat, cancel)
    limits = _limits(info, known, max_media_seconds)
    # Rounded down, so the buckets are at least as many as the points wanted.
    bucket_samples = max(1, math.floor(rate * known / points_for(known)))
    # Room for twice the buckets expected: a file that runs on much longer than it said
    # fills that and is refused, rather than filling the disk.
    most_buckets = 2 * math.ceil(known * rate / bucket_samples) + _SPARE_BUCKETS
    process = dataclasses.replace(limits.process, file_bytes=most_buckets * _BYTES_PER_BUCKET)
    fd, listing = tempfile.mkstemp(prefix="peaks-", suffix=".txt", dir=os.path.dirname(src))
    os.close(fd)
    try:
        command = _peaks_command(src, listing, bucket_samples, limits.max_seconds)
        out_time = run_ffmpeg(
            command, process, paths=(src, listing), heartbeat=heartbeat, cancel=cancel
        )
        with open(listing, encoding="ascii", errors="replace") as lines:
            measured = [_linear(level) for level in _read_levels(lines)]
    finally:
        os.remove(listing)
    if not measured:
        raise PermanentError(f"{UNREADABLE}: ffmpeg decoded none of it")
    # How much sound the pass decoded: what the peaks cover, whatever the file said.
    covered = out_time if out_time is not None else len(measured) * bucket_samples / rate
    folded = _fold(measured, points_for(covered))
    log.info(
        "measured %d peaks of %.1f s of audio in %d-sample buckets",
        len(folded),
        covered,
        bucket_samples,
    )
    return Waveform(
        duration=round(covered, 3), peaks=tuple(round(peak, PEAK_DECIMALS) for peak in folded)
    )


def _limits(info: MediaInfo, seconds: float | None, max_media_seconds: float) -> ConversionLimits:
    """Return the bounds of a pass over ``seconds`` of the file ``info`` describes.

    A pass decodes the output as a conversion decodes its input, so it gets the same
    budget for its length, sample rate and channels, and the same duration limit.

    Raises:
        PermanentError: the sound is longer than the duration limit.
    """
    measured = dataclasses.replace(info, duration=seconds)
    return conversion_limits(measured, Options(), max_media_seconds=max_media_seconds)


def _length(
    src: str,
    limits: ConversionLimits,
    heartbeat: Callable[[], None] | None,
    cancel: threading.Event | None,
) -> float:
    """Return how long the sound of a file that does not say is, by reading its packets.

    Copying the packets to nowhere reads their timestamps without decoding them: a
    sixth of the peaks pass's cost for an hour of MP3 (1.3 against 7.9 CPU s).

    Raises:
        PermanentError: the file holds no sound ffmpeg can read.
        TransientError: as ``run_ffmpeg``.
    """
    command = _command(src, ["-c:a", "copy"], limits.max_seconds)
    length = run_ffmpeg(
        command,
        dataclasses.replace(limits.process, file_bytes=0),
        paths=(src, src),
        heartbeat=heartbeat,
        cancel=cancel,
    )
    if not length:
        raise PermanentError(f"{UNREADABLE}: ffmpeg found none of it")
    return length


def _peaks_command(src: str, listing: str, bucket_samples: int, max_seconds: float) -> list[str]:
    """Return the ffmpeg command that writes the peak level of each bucket to ``listing``."""
    measure = (
        f"asetnsamples=n={bucket_samples},"
        "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Peak_level,"
        f"ametadata=mode=print:key={_PEAK_KEY}:file={_graph_value(listing)}"
    )
    return _command(src, ["-af", measure], max_seconds)


def _command(src: str, processing: list[str], max_seconds: float) -> list[str]:
    """Return an ffmpeg command that reads the first sound of ``src`` and writes nothing."""
    return [
        ffmpeg_exe(),
        *("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats"),
        # Its progress blocks say how much sound went through.
        *("-progress", "pipe:1"),
        # One decoding thread: FLAC's frame threads double the pass's CPU time (measured:
        # 2.7 against 1.5 CPU s a minute of 24-bit stereo, on two busy cores).
        *("-threads", "1", *input_restrictions()),
        *("-i", src, "-map", "0:a:0", *processing),
        *("-t", f"{max_seconds:.3f}", "-f", "null", "-"),
    ]


def _graph_value(value: str) -> str:
    """Escape ``value`` as a filter option's value inside a filter graph."""
    for specials in (_OPTION_SPECIALS, _GRAPH_SPECIALS):
        for char in specials:  # the backslash first, so added ones stay single
            value = value.replace(char, "\\" + char)
    return value


def _read_levels(lines: Iterable[str]) -> Iterable[float]:
    """Yield the peak level, in dBFS, that ametadata printed for each bucket.

    astats says "-inf" for a silent bucket and "nan" for one with NaN samples.
    """
    prefix = f"{_PEAK_KEY}="
    for line in lines:
        if line.startswith(prefix):
            try:
                yield float(line[len(prefix) :])
            except ValueError:
                yield math.nan  # still a bucket: the ones after it keep their places


def _fold(peaks: list[float], points: int) -> list[float]:
    """Merge consecutive buckets, keeping each group's highest peak, into ``points`` of them."""
    count = len(peaks)
    if count <= points:
        return peaks
    return [max(peaks[i * count // points : (i + 1) * count // points]) for i in range(points)]


def _linear(level: float) -> float:
    """Return a peak level in dBFS as a fraction of full scale, 0..1 (an unreadable one 0)."""
    return 0.0 if math.isnan(level) else min(1.0, 10 ** (level / 20))
