"""Split a job's output into tracks: by the source's chapters, or into parts of fixed length.

``plan_tracks`` says where the tracks are, in the output's times (the source trimmed by
the options' start and end); ``cut_tracks`` cuts the made output at those times, one
confined ffmpeg run per track, each file tagged with its own title and number. The
whole output stays the job's main file; the tracks come besides it.

Why one run per track rather than ffmpeg's ``segment`` muxer in one run: the segment
muxer costs less (7-30 ms a track against 50-110 ms here, 10 s parts of a 10-minute
file), but it cannot give each file its own title, and the FLAC files it copies keep
the whole stream's header (its length and MD5) and frame numbers. Per-track runs let
each muxer write its own tags and headers, the same way the whole output got them.

Cuts are stream copies where that gives a correct file (MP3, M4A, Opus, WAV): they land
on packet boundaries, so neighbouring tracks may share one packet (20-26 ms) at most.
FLAC is re-encoded: a copied FLAC piece keeps the whole file's STREAMINFO, so players
would show the whole length; re-encoding is lossless and cuts to the sample.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from common.errors import PermanentError
from common.options import MAX_TAG_LENGTH, SPLIT_CHAPTERS, Format, Options
from converter.transcode import (
    CPU_SECONDS_PER_MEDIA_SECOND,
    MAX_MEDIA_SECONDS,
    WALL_SECONDS_PER_MEDIA_SECOND,
    MediaInfo,
    ProcessLimits,
    ffmpeg_exe,
    input_restrictions,
    probe,
    run_ffmpeg,
)

log = logging.getLogger(__name__)

# Each track is a stored file, a row in the job's record (a MongoDB document holds
# 16 MB; 500 rows take about 100 KB), an ffmpeg run of 50-110 ms and a ZIP entry. 500
# covers an album, a course or a 6-hour audiobook cut into 1-minute parts, and bounds
# the work of one job to about a minute of cutting.
MAX_TRACKS = 500
# A last part of a split by seconds shorter than this joins the one before it: a sliver
# of a second is no track. Chapters (after the trim) shorter than this join their
# neighbour too: a stream copy cannot cut less than a few packets cleanly.
MIN_TRACK_SECONDS = 1.0
# Room a track gets above the whole output's size: a re-encoded FLAC piece may come
# out a little larger than the same samples in the whole file, and headers repeat.
_TRACK_SIZE_FACTOR = 1.25
_TRACK_SLACK_BYTES = 1024**2
# A track's CPU and wall budgets: the conversion's per second of audio, times this for
# sound costlier than 48 kHz stereo (a copy costs far less), above these floors.
_COST_FACTOR = 4
_CPU_FLOOR_S = 30
_WALL_FLOOR_S = 60.0
# What each format's muxer is told, as for the whole output (``transcode._command``):
# ID3v2.3 tags, the M4A index first, an RF64 header past 4 GiB.
_MUXER_OPTIONS = {
    "mp3": ["-id3v2_version", "3"],
    "m4a": ["-movflags", "+faststart"],
    "wav": ["-rf64", "auto"],
}
# Formats whose container holds a cover picture as a stream (Ogg and WAV do not).
_COVER_FORMATS = frozenset({"mp3", "m4a", "flac"})
_WHITESPACE = re.compile(r"\s+")
_UNSAFE_FILENAME = re.compile(r'[<>:"/\\|?*]+')
MAX_FILENAME_CHARS = 200

NO_CHAPTERS = "the video has no chapters; choose split by seconds instead"


@dataclass(frozen=True)
class TrackPlan:
    """One track to cut: its number (from 1), title, and where it is in the output, in seconds.

    ``end`` is None for a track that runs to the end of the output.
    """

    number: int
    title: str
    start: float
    end: float | None


@dataclass(frozen=True)
class Track:
    """One track cut from the output: its file, and what the job lists of it."""

    path: Path
    number: int
    title: str
    start: float
    duration: float
    size: int


def plan_tracks(
    info: MediaInfo, options: Options, *, output_duration: float | None = None
) -> list[TrackPlan]:
    """Return the tracks the options' ``split`` makes of the output, in the output's times.

    The output is the source trimmed by ``options.start``/``end``; ``output_duration``
    is its measured length once it is made, else it is reckoned from the probe. A split
    by seconds of an output whose length is not known yet plans nothing (an empty list):
    call again once the output is made. Without ``split`` there are no tracks.

    Raises:
        PermanentError: a split on chapters of a source without any (or none within the
            trim), or more than ``MAX_TRACKS`` tracks.
    """
    if options.split is None:
        return []
    length = output_duration if output_duration is not None else _output_length(info, options)
    if options.split == SPLIT_CHAPTERS:
        plans = _chapter_plans(info, options, length)
    elif length is None:
        return []
    else:
        plans = _part_plans(float(options.split), length)
    log.info("splitting the output into %d tracks", len(plans))
    return plans


def _output_length(info: MediaInfo, options: Options) -> float | None:
    """Return how long the trimmed output should be, or None when nothing says."""
    start = options.start or 0.0
    ends = [end for end in (info.duration, options.end) if end is not None]
    return max(0.0, min(ends) - start) if ends else None


def _part_plans(seconds: float, length: float) -> list[TrackPlan]:
    """Return consecutive parts of ``seconds``, the last shorter; a sliver joins the one before.

    Raises:
        PermanentError: more than ``MAX_TRACKS`` parts.
    """
    count = max(1, math.ceil(length / seconds))
    if count > 1 and length - (count - 1) * seconds < MIN_TRACK_SECONDS:
        count -= 1
    _check_count(count)
    return [
        TrackPlan(
            number=number,
            title=f"Part {number}",
            start=(number - 1) * seconds,
            end=None if number == count else number * seconds,
        )
        for number in range(1, count + 1)
    ]


def _chapter_plans(info: MediaInfo, options: Options, length: float | None) -> list[TrackPlan]:
    """Return a track per chapter within the trim, in order, without overlaps or slivers.

    Chapters are moved into the output's times and clipped to it; an empty or backwards
    one is dropped; one that starts inside the one before starts where that ends (so a
    chapter nested in another adds nothing), and one shorter than ``MIN_TRACK_SECONDS``
    joins the one before it (the first such joins the next).

    Raises:
        PermanentError: no chapters, none within the trim, or more than ``MAX_TRACKS``.
    """
    if not info.chapters:
        raise PermanentError(NO_CHAPTERS)
    offset = options.start or 0.0
    limit = math.inf if length is None else length
    spans: list[list] = []
    for chapter in sorted(info.chapters, key=lambda chapter: (chapter.start, chapter.end)):
        start = max(0.0, chapter.start - offset)
        end = min(limit, chapter.end - offset)
        if spans:
            start = max(start, spans[-1][1])
        if not (math.isfinite(start) and end > start):
            continue
        spans.append([start, end, chapter.title])
    if not spans:
        raise PermanentError(
            "none of the video's chapters lies within the trim; choose split by seconds instead"
        )
    merged: list[list] = []
    for span in spans:
        if merged and span[1] - span[0] < MIN_TRACK_SECONDS:
            merged[-1][1] = span[1]
        elif merged and merged[-1][1] - merged[-1][0] < MIN_TRACK_SECONDS:
            merged[-1][1:] = span[1:]  # a short first chapter joins the next, titled by it
        else:
            merged.append(span)
    _check_count(len(merged))
    last = len(merged)
    return [
        TrackPlan(
            number=number,
            title=clean_title(title) or f"Chapter {number}",
            start=start,
            # The last chapter runs to the end of the output, whatever the file said.
            end=None if number == last else end,
        )
        for number, (start, end, title) in enumerate(merged, start=1)
    ]


def _check_count(count: int) -> None:
    if count > MAX_TRACKS:
        raise PermanentError(
            f"splitting gives {count} tracks, more than {MAX_TRACKS}; choose longer parts"
        )


def clean_title(title: str | None) -> str:
    """Return a chapter's title as one line of at most ``MAX_TAG_LENGTH`` printable characters."""
    if not title:
        return ""
    printable = "".join(
        " " if unicodedata.category(char).startswith("C") else char for char in title
    )
    return _WHITESPACE.sub(" ", printable).strip()[:MAX_TAG_LENGTH].strip()


def track_filename(original: str | None, track: Track, count: int, output: Format) -> str:
    """Return a track's download name: "<stem> - 01 - <title>.<ext>", safe on any system."""
    stem = PurePosixPath(original or "audio").stem or "audio"
    width = max(2, len(str(count)))
    name = f"{stem} - {track.number:0{width}d} - {track.title}"
    name = _UNSAFE_FILENAME.sub("_", clean_title(name)).strip(" .")
    suffix = f".{output.extension}"
    return name[: MAX_FILENAME_CHARS - len(suffix)].rstrip(" .") + suffix


def cut_tracks(
    output_path: Path,
    plans: Sequence[TrackPlan],
    output: Format,
    options: Options,
    workdir: Path,
    *,
    heartbeat: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    on_track: Callable[[Track], None] | None = None,
) -> list[Track]:
    """Cut the made output into a file per planned track, tagged, in ``workdir``.

    ``on_track(track)`` is called with each track as soon as it is cut (to store it
    while the next is cut, and to show the job is alive); ``heartbeat()`` as ffmpeg
    writes; setting ``cancel`` kills ffmpeg at once.

    Each track keeps the output's tags (artist, cover where the format holds one) and
    gets its own title, its number as "n/N", and the album: ``options.album``, else the
    output's title. Durations are what ffmpeg wrote (or a probe of the file says).

    Raises:
        PermanentError: ffmpeg could not cut the output, or a track broke its bounds.
        TransientError: ffmpeg could not run, was killed or cancelled, or missed its
            deadline; the machine ran out of room.
    """
    album = options.album or options.title
    size_bound = int(output_path.stat().st_size * _TRACK_SIZE_FACTOR) + _TRACK_SLACK_BYTES
    tracks = []
    for plan in plans:
        path = workdir / f"track-{plan.number:03d}.{output.extension}"
        command = _cut_command(output_path, path, plan, len(plans), output, album)
        # The last track's length is not planned: it is bounded by the whole output's.
        seconds = (plan.end - plan.start) if plan.end is not None else _whole_length(options)
        limits = ProcessLimits(
            cpu_seconds=_CPU_FLOOR_S
            + math.ceil(CPU_SECONDS_PER_MEDIA_SECOND * _COST_FACTOR * seconds),
            wall_seconds=_WALL_FLOOR_S + WALL_SECONDS_PER_MEDIA_SECOND * _COST_FACTOR * seconds,
            file_bytes=size_bound,
        )
        written = run_ffmpeg(
            command,
            limits,
            paths=(str(output_path), str(path)),
            heartbeat=heartbeat,
            cancel=cancel,
        )
        duration = written if written is not None else probe(path).duration
        track = Track(
            path=path,
            number=plan.number,
            title=plan.title,
            start=plan.start,
            duration=duration or 0.0,
            size=path.stat().st_size,
        )
        tracks.append(track)
        if on_track is not None:
            on_track(track)
    return tracks


def _whole_length(options: Options) -> float:
    """Return the most a track can last: the output's own bound, the longest allowed."""
    return MAX_MEDIA_SECONDS if options.end is None else options.end - (options.start or 0.0)


def _cut_command(
    src: Path, dst: Path, plan: TrackPlan, count: int, output: Format, album: str | None
) -> list[str]:
    """Return the ffmpeg argument list that cuts one track out of the output."""
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-progress", "pipe:1", "-nostats"]
    # As input options the cut seeks straight to its start instead of reading up to it.
    if plan.start > 0:
        command += ["-ss", f"{plan.start:.6f}"]
    if plan.end is not None:
        command += ["-to", f"{plan.end:.6f}"]
    command += [*input_restrictions(), "-i", str(src), "-map", "0:a:0"]
    # The output's chapter marks are the whole's: a track is one of them.
    command += ["-map_chapters", "-1"]
    if output.name in _COVER_FORMATS:
        command += ["-map", "0:v?", "-c:v", "copy"]
    if output.name == "flac":
        # The encoder takes its block size from the first frame, which after an exact
        # seek may hold a few samples only; so the size is fixed (FLAC's usual 4096).
        command += ["-c:a", "flac", "-frame_size", "4096"]
    else:
        command += ["-c:a", "copy"]
    # The other tags (artist, and the title, album the new ones replace) come from the
    # output. An Ogg file keeps them as its stream's comments, which win over the file's.
    where = "-metadata:s:a:0" if output.name == "opus" else "-metadata"
    tags = {"title": plan.title, "track": f"{plan.number}/{count}"}
    if album:
        tags["album"] = album
    for name, value in tags.items():
        command += [where, f"{name}={value}"]
    command += [*_MUXER_OPTIONS.get(output.name, []), "-f", output.muxer, str(dst)]
    return command
