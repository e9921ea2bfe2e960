"""A video's audio track, copied out with ffmpeg so that only the sound is uploaded.

The only module of the client that runs ffmpeg: the ``ffmpeg`` on PATH, else
the one the optional ``video2mp3[cli-audio]`` extra installs (imageio-ffmpeg).
The track is copied, never re-encoded, into a container that holds its codec
and that the gateway's sniff recognises (MP4/M4A, MP3, Ogg, FLAC, WAV,
Matroska). A trim (``--start``/``--end``) is copied with a margin on both
sides and the server still trims, at the shifted times: a stream copy cuts
at packet boundaries, and a decoder started mid-stream garbles its first
packet, so the margin keeps both away from the MP3. For an M4A (AAC, as
phones record) the times account for where the copy's first packet lies, and
the MP3 is the one the whole video gives; other containers cut within a
packet of it. (PCM, whose packets can be long, is written again sample for
sample and cut exactly.)

Nothing here may stop an upload: whatever goes wrong (no ffmpeg, not a video,
no audio track, an unreadable file, a full disk, a slow run) means "send the
whole file", said in a debug log line at most. Some options need the video
itself (``whole_video_reason``): a cover is a frame of its picture, and its
chapters are its container's.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Audio kept on each side of a trim: the server cuts inside it, sample-exact.
TRIM_MARGIN_SECONDS = 1.0
# The form field that tells the server where in the video the copy begins.
CLIP_START = "clip_start"
PROBE_TIMEOUT_SECONDS = 15.0
# A stream copy only reads and writes: allow a slow disk's pace plus a start-up.
COPY_TIMEOUT_SECONDS = 20.0
COPY_BYTES_PER_SECOND = 20 * 1024**2

# The codec ffmpeg names -> (muxer, extension) of a container that holds it as it is.
_CONTAINERS = {
    "aac": ("mp4", ".m4a"),
    "alac": ("mp4", ".m4a"),
    "mp3": ("mp3", ".mp3"),
    "vorbis": ("ogg", ".ogg"),
    "flac": ("flac", ".flac"),
    **{
        f"pcm_{kind}": ("wav", ".wav")
        for kind in ("u8", "s16le", "s24le", "s32le", "f32le", "f64le", "alaw", "mulaw")
    },
}
# Matroska holds nearly every other codec (Opus, AC-3, E-AC-3, DTS, MP2, big-endian PCM,
# ...); an Opus track copied into Ogg loses its timing, so a trim would find no audio.
_ANY_CODEC = ("matroska", ".mka")
_MIME_TYPES = {
    ".m4a": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".mka": "audio/x-matroska",
}

_STREAM = re.compile(
    r"^\s*Stream #0:\d+(?:\[\w+\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio): (?P<codec>\w+)(?P<rest>.*)$",
    re.MULTILINE,
)
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)", re.MULTILINE)
_START = re.compile(r"^\s*Duration: .*?, start: (-?\d+(?:\.\d+)?)", re.MULTILINE)
_TIME = re.compile(r"\s*(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d+)?)\s*")


@dataclass(frozen=True)
class SourceInfo:
    """What ``ffmpeg -i`` tells about a file: a picture or not, its first audio codec, length."""

    has_video: bool
    audio_codec: str | None
    duration: float | None
    start: float = 0.0  # the time of the file's first packet


@dataclass(frozen=True)
class AudioTrack:
    """The copied audio track of a video, and how to ask the server to trim it."""

    path: Path
    codec: str
    content_type: str
    size: int
    # The conversion options for this file in place of the source's start/end, and with a
    # trim, ``clip_start``: where in the video the copy begins.
    options: dict[str, str]


def whole_video_reason(options: Mapping[str, str]) -> str | None:
    """Return why the options need the whole video, not a copy of its sound; None if they do not.

    The server's rule (``Options.needs_whole_video``, in a package the client does not
    import), read from the options as sent: a cover (``cover`` frame, or ``cover_at``
    alone) is a still of the picture, and ``split`` by chapters needs the container's.
    """
    cover = options.get("cover", "").strip().lower()
    if cover == "frame" or (not cover and options.get("cover_at", "").strip()):
        return "the cover is a frame of the video"
    if options.get("split", "").strip().lower() == "chapters":
        return "the chapters are in the video's container"
    return None


def find_ffmpeg() -> str | None:
    """Return the ffmpeg to run: the one on PATH, else imageio-ffmpeg's, else None."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg  # optional: the cli-audio extra

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def probe(ffmpeg: str, source: Path) -> SourceInfo | None:
    """Read a file's streams and duration from ``ffmpeg -i``; None if it is not media."""
    command = [ffmpeg, "-nostdin", "-hide_banner", "-i", _file_url(source)]
    try:
        # ffmpeg exits 1 here (no output file is given): only its report counts.
        report = subprocess.run(  # noqa: S603 - an argument list, no shell
            command, capture_output=True, timeout=PROBE_TIMEOUT_SECONDS, check=False
        ).stderr.decode("utf-8", errors="replace")
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("cannot probe %s with %s: %s", source, ffmpeg, exc)
        return None
    if "Input #0" not in report:
        return None
    streams = list(_STREAM.finditer(report))
    audio = next((s["codec"] for s in streams if s["kind"] == "Audio"), None)
    has_video = any(
        s["kind"] == "Video" and "(attached pic)" not in s["rest"] for s in streams
    )  # cover art in an audio file is no video
    duration = _DURATION.search(report)
    seconds = (
        int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else None
    )
    start = _START.search(report)
    return SourceInfo(
        has_video=has_video,
        audio_codec=audio,
        duration=seconds,
        start=float(start[1]) if start else 0.0,
    )


def parse_time(text: str | None) -> float | None:
    """Read a --start/--end value (90, 1:30, 0:01:30.5) as the server does; None if unreadable."""
    if text is None:
        return None
    match = _TIME.fullmatch(text)
    if not match:
        return None
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    if (match[2] and seconds >= 60) or (match[1] and minutes >= 60):
        return None  # "1:75" is no time to the server either
    return hours * 3600 + minutes * 60 + seconds


@contextlib.contextmanager
def extracted(source: Path, options: Mapping[str, str]) -> Iterator[AudioTrack | None]:
    """Copy the audio track of a video into a private temp dir; yield it, or None to send the file.

    ``options`` are the conversion options as sent (their ``start``/``end`` choose
    the range to copy). The temp dir and all in it are removed on leaving.
    """
    with tempfile.TemporaryDirectory(prefix="video2mp3-") as directory:
        try:
            track = _extract(source, options, Path(directory))
        except OSError as exc:  # e.g. the temp dir's disk is full
            log.debug("no audio-only upload of %s: %s", source, exc)
            track = None
        yield track


def _extract(source: Path, options: Mapping[str, str], directory: Path) -> AudioTrack | None:
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        log.debug("no ffmpeg: sending all of %s", source)
        return None
    info = probe(ffmpeg, source)
    if info is None or not info.has_video or info.audio_codec is None:
        log.debug("sending all of %s: not a video with sound (%s)", source, info)
        return None
    start, end = parse_time(options.get("start")), parse_time(options.get("end"))
    if (options.get("start") and start is None) or (options.get("end") and end is None):
        return None  # the server names what is wrong with the value
    if start is not None and info.duration is not None and start >= info.duration:
        return None  # the server says the trim starts past the end
    if end is not None and end <= (start or 0.0):
        return None  # the server refuses the range in the user's own figures
    copy_from = max(0.0, start - TRIM_MARGIN_SECONDS) if start else 0.0
    muxer, extension = _CONTAINERS.get(info.audio_codec, _ANY_CODEC)
    target = directory / f"audio{extension}"
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if copy_from:
        command += ["-ss", f"{copy_from:.3f}"]  # input seeking: what is before is not read
    command += ["-i", _file_url(source)]
    if end is not None:
        command += ["-t", f"{end + TRIM_MARGIN_SECONDS - copy_from:.3f}"]
    # PCM comes in packets of up to a second or more, too coarse to cut a copy at: it is
    # decoded and written again in the same sample format, the same samples cut exactly.
    codec = info.audio_codec if info.audio_codec.startswith("pcm_") else "copy"
    command += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", codec]
    if copy_from:
        # The demuxer may seek back to the video's keyframe, seconds early; the audio packets
        # before the seek point are dropped, or the copy would start there under shifted
        # times. (Not from the start: an AAC track's priming packet is timed before 0.)
        command += ["-copypriorss", "0"]
    if muxer == "mp4":
        command += ["-movflags", "+faststart"]  # the index first, where the sniff looks
    command += ["-f", muxer, "-y", _file_url(target)]
    size = source.stat().st_size
    try:
        completed = subprocess.run(  # noqa: S603 - an argument list, no shell
            command,
            capture_output=True,
            timeout=COPY_TIMEOUT_SECONDS + size / COPY_BYTES_PER_SECOND,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("copying the audio of %s failed: %s", source, exc)
        return None
    if completed.returncode != 0 or not target.is_file():
        log.debug(
            "copying the audio of %s failed (exit %s): %s",
            source,
            completed.returncode,
            completed.stderr.decode("utf-8", errors="replace").strip()[-500:],
        )
        return None
    copied = target.stat().st_size
    if not 0 < copied < size:
        return None  # nothing gained: send the original as it is
    # The server reads a trim from the copy's first packet. In an M4A (AAC, ALAC: what
    # phones record) that packet is timed from the copy's seek point, and not at 0 when
    # the packet across that point was dropped: its time is subtracted, and the cut falls
    # on the sample it would in the whole video. (FLAC keeps the source's times and MP3,
    # Ogg and Matroska copies their own ways: there the cut is within a packet, 20-60 ms.)
    copied_trim = muxer == "mp4" and (start is not None or end is not None)
    copy_info = probe(ffmpeg, target) if copied_trim else None
    offset = copy_from + (copy_info.start if copy_info else 0.0)
    trimmed = dict(options)
    if start is not None:
        trimmed["start"] = _seconds(start - offset)
    if end is not None:
        trimmed["end"] = _seconds(end - offset)
    if (start is not None or end is not None) and offset > 0:
        trimmed[CLIP_START] = _seconds(offset)  # so the job shows the user's own times
    return AudioTrack(
        path=target,
        codec=info.audio_codec,
        content_type=_MIME_TYPES[extension],
        size=copied,
        options=trimmed,
    )


def _seconds(value: float) -> str:
    # To the microsecond, as the converter cuts: a millisecond is 44 samples off.
    return f"{max(value, 0.0):.6f}".rstrip("0").rstrip(".")


def _file_url(path: Path) -> str:
    # "file:" keeps ffmpeg from reading a name such as "rtp:x.mov" as a protocol.
    return f"file:{path.resolve()}"
