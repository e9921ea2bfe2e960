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

A conversion that decodes its input measures the same peaks inside its own ffmpeg
run instead (``converter.transcode``: a ``Branch`` of its filter graph fed the very
samples the encoder gets), which costs next to nothing as the decoding is shared;
``peaks`` remains for a stream copy, and for a conversion whose branch came back
without them.
"""

from __future__ import annotations

import contextlib
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
# How many buckets short of the output a conversion's branch may end (the last one's
# rounding, an encoder's padding) and still draw it.
_SHORTFALL_BUCKETS = 2
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
    bucket_samples = _bucket_samples(rate, known)
    # A file that runs on much longer than it said fills the room for twice the buckets
    # expected and is refused, rather than filling the disk.
    process = dataclasses.replace(
        limits.process,
        file_bytes=_most_buckets(rate, known, bucket_samples) * _BYTES_PER_BUCKET,
    )
    listing = _new_listing(os.path.dirname(src))
    try:
        command = _command(src, ["-af", _measure(listing, bucket_samples)], limits.max_seconds)
        out_time = run_ffmpeg(
            command, process, paths=(src, listing), heartbeat=heartbeat, cancel=cancel
        )
        measured = _read_listing(listing)
    finally:
        os.remove(listing)
    if not measured:
        raise PermanentError(f"{UNREADABLE}: ffmpeg decoded none of it")
    # How much sound the pass decoded: what the peaks cover, whatever the file said.
    covered = out_time if out_time is not None else len(measured) * bucket_samples / rate
    return _summarise(measured, covered, bucket_samples)


@dataclass(frozen=True)
class Branch:
    """A waveform measured by a branch of a conversion's own filter graph.

    The conversion splits the samples it hands its encoder and feeds this branch one
    copy (``graph``); the branch writes each bucket's peak to ``listing``, and
    ``waveform`` reads them once ffmpeg is done. Its buckets are sized as ``peaks``
    sizes them, from the duration the conversion expects, and it stops after twice
    that many samples, so its text stays within ``_most_buckets`` lines whatever the
    input does.
    """

    listing: str
    sample_rate: int
    bucket_samples: int
    most_samples: int

    def graph(self) -> str:
        """Return the branch's filters, from the split's copy of the samples to a null sink."""
        return (
            f"atrim=end_sample={self.most_samples},"
            f"{_measure(self.listing, self.bucket_samples)},anullsink"
        )

    def waveform(self, covered: float | None) -> Waveform | None:
        """Return the waveform of the ``covered`` seconds the conversion wrote, or None.

        None when the branch measured less than that (the output ran past the branch's
        bound, or the listing is missing): the caller then measures the file itself.
        """
        try:
            measured = _read_listing(self.listing)
        except OSError as exc:
            log.warning("the conversion's peaks cannot be read: %s", exc)
            return None
        decoded = len(measured) * self.bucket_samples / self.sample_rate
        if covered is None:
            covered = decoded
        short = covered - decoded > _SHORTFALL_BUCKETS * self.bucket_samples / self.sample_rate
        if not measured or short or len(measured) < points_for(covered):
            log.info(
                "the conversion measured %d peaks of %.1f s, too few for %.1f s of output",
                len(measured),
                decoded,
                covered,
            )
            return None
        return _summarise(measured, covered, self.bucket_samples)

    def remove(self) -> None:
        """Delete the branch's listing, if it is still there."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.listing)


def plan_branch(directory: str, duration: float, sample_rate: int) -> Branch:
    """Return a ``Branch`` for ``duration`` seconds at ``sample_rate``, listing in ``directory``.

    Raises:
        OSError: the listing cannot be created in ``directory``.
    """
    bucket_samples = _bucket_samples(sample_rate, duration)
    most_buckets = _most_buckets(sample_rate, duration, bucket_samples)
    return Branch(
        listing=_new_listing(directory),
        sample_rate=sample_rate,
        bucket_samples=bucket_samples,
        most_samples=most_buckets * bucket_samples,
    )


def _bucket_samples(rate: int, duration: float) -> int:
    """Return how many samples a bucket of ``duration`` seconds at ``rate`` holds.

    Rounded down, so the buckets are at least as many as the points wanted.
    """
    return max(1, math.floor(rate * duration / points_for(duration)))


def _most_buckets(rate: int, duration: float, bucket_samples: int) -> int:
    """Return the most buckets a pass may write: room for twice the duration expected."""
    return 2 * math.ceil(duration * rate / bucket_samples) + _SPARE_BUCKETS


def _new_listing(directory: str) -> str:
    """Create an empty file in ``directory`` for a pass's peaks; return its path."""
    fd, listing = tempfile.mkstemp(prefix="peaks-", suffix=".txt", dir=directory)
    os.close(fd)
    return listing


def _read_listing(listing: str) -> list[float]:
    """Return the peaks, 0..1, that a pass wrote to ``listing``, one a bucket."""
    with open(listing, encoding="ascii", errors="replace") as lines:
        return [_linear(level) for level in _read_levels(lines)]


def _summarise(measured: list[float], covered: float, bucket_samples: int) -> Waveform:
    """Return the waveform of ``covered`` seconds measured in these buckets' peaks."""
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


def _measure(listing: str, bucket_samples: int) -> str:
    """Return the filters that write the peak level of each bucket to ``listing``."""
    return (
        f"asetnsamples=n={bucket_samples},"
        "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Peak_level,"
        f"ametadata=mode=print:key={_PEAK_KEY}:file={_graph_value(listing)}"
    )


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
