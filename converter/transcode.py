"""FFmpeg: probe an input file and make an audio file (MP3 by default) from its first audio stream.

This module is the only place that runs ffmpeg, the binary imageio-ffmpeg
ships. It works on local paths: the consumer spools the video to a temp file
first (an MP4/MOV with its index at the end cannot be read from a pipe) and
stores the output written here, into a regular file so the MP3's VBR header,
the M4A's index and the FLAC/WAV sizes can be filled in at the end. A
conversion to a loudness target also measures the input before and the output
after (``converter.loudness`` knows the filters and reads what they report).

ffmpeg parses untrusted input, so every run (probe and conversion) is
confined: local files only and an allowlist of demuxers (no playlists,
manifests, file lists or image sequences that would make it open other paths
or addresses), a bare environment (no service secrets), its own session so the
whole group can be killed, kernel limits on CPU time, memory and file size,
ffmpeg's own bounds on the output's duration and size, and a wall-clock
deadline. See ``spawn`` and ``conversion_limits``.

Failures are classified where they arise. A file that is not media, has no
audio track, is truncated, is longer than the duration limit or costs more than
its budget raises ``PermanentError`` with a reason a user can read. A missing
binary, a failed spawn, a full disk, a killed ffmpeg, a missed deadline or a
cancelled run raises ``TransientError``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import logging
import math
import os
import re
import resource
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

import imageio_ffmpeg
from moviepy.video.io.ffmpeg_reader import FFmpegInfosParser

from common.errors import PermanentError, TransientError
from common.options import Options
from common.procs import cpu_seconds
from converter import loudness

if TYPE_CHECKING:
    from converter.waveform import Branch, Waveform

log = logging.getLogger(__name__)

NO_AUDIO = "the video has no audio track"
NOT_MEDIA = "not a recognised audio/video file"
UNSUPPORTED = (
    "not a supported audio/video file (playlists, manifests, file lists and images are refused)"
)
INTERRUPTED = "conversion interrupted"

# The demuxers ffmpeg may pick for an upload: the containers people send and
# the gateway's sniff admits (mov covers MP4/M4A/3GP, matroska WebM, mpeg the
# MPEG program stream). Anything else is refused before its header is read, so
# the demuxers that open further paths or addresses named inside the file
# (hls, dash, concat, sdp, rtp, image2 and the like) never run.
ALLOWED_DEMUXERS = (
    "mov",
    "matroska",
    "avi",
    "flv",
    "live_flv",
    "mpegts",
    "mpeg",
    "ogg",
    "asf",
    "mp3",
    "aac",
    "flac",
    "wav",
    "aiff",
    "caf",
    "amr",
    "amrnb",
    "amrwb",
)
# Inputs are the spooled local file and nothing else: no network, no pipes.
ALLOWED_PROTOCOLS = ("file",)
# ffmpeg gets these and nothing of the converter's environment (MONGO_URI and
# its password above all); it is run by absolute path and needs no HOME. Two
# malloc arenas instead of one per thread keep its address space (which
# RLIMIT_AS counts) near 350 MB instead of 620 MB here, at the same speed.
FFMPEG_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "MALLOC_ARENA_MAX": "2"}

# The longest audio the converter takes by default: 6 hours holds a whole
# audiobook part, a conference day or a long DJ set, and costs about 2 minutes
# of CPU here (0.006 CPU s per second of 48 kHz stereo: 3.3 s for 10 minutes in
# the "converter | bare ffmpeg CPU" row of docs/performance.md),
# while the 24-hour silent FLAC of the issue cost 915 s. Deployments change it
# with MAX_MEDIA_SECONDS (converter/config.py).
MAX_MEDIA_SECONDS = 6 * 3600.0
# Decoding cost grows with samples, not seconds: a second of 48 kHz stereo
# weighs 1, of 384 kHz 64-channel sound 256. A file may weigh at most this many
# times the duration limit: the whole limit of 8-channel (7.1) 48 kHz film sound.
_STEREO_48K = 2 * 48_000
MAX_WEIGHT_PER_SECOND_OF_LIMIT = 4.0
# CPU and wall budgets per weighted second of input. This machine needs 0.006
# CPU s (AAC decode + LAME encode) and the silent FLAC 0.011; 0.05 (at
# least 20x real time) leaves room for a slower core; wall doubles that, for
# two converters sharing cores and for disk waits. The floors cover a short
# file's fixed costs and demuxing a 2 GiB upload.
CPU_SECONDS_PER_MEDIA_SECOND = 0.05
CPU_FLOOR_S = 60
WALL_SECONDS_PER_MEDIA_SECOND = 0.1
WALL_FLOOR_S = 120.0
# ffmpeg's resident memory peaks near 50 MB here (address space 350 MB
# converting, 210 MB probing a 4K video); the converter's pod has 1 GiB. Past
# this much address space its allocations fail, rather than the OOM killer
# striking inside the pod.
MEMORY_LIMIT_BYTES = 768 * 1024**2
# The output's bound, for the longest allowed duration plus room for tags and
# headers: its format's top bitrate (320 kbit/s for MP3) or a copied source's
# when higher; for FLAC and WAV 4 bytes (32-bit samples, the most a copied FLAC
# holds) per sample and channel.
LOSSLESS_MAX_BYTES_PER_SAMPLE = 4
_OUTPUT_SLACK_BYTES = 1024**2
# ffmpeg's -t runs this far past the limit, so that reaching it means "longer".
_DURATION_MARGIN_S = 1.0

# A probe reads headers only; one that runs this long is stuck, not working.
PROBE_TIMEOUT_S = 60.0
# A truncated file decodes up to the cut and ffmpeg still exits 0, so an
# output this much shorter than the probed input is the only sign of it.
TRUNCATION_RATIO = 0.9
TRUNCATION_MIN_SHORTFALL_S = 1.0
# How often ffmpeg reports progress, so at most how often on_progress runs.
PROGRESS_INTERVAL_S = 0.5
# A normalised conversion's progress, in percent of the whole: its analysis, encode and
# output measurement. The analysis takes about as long as the encode here, the output's
# measurement a fifth of that.
_MEASURE_SHARE = (0, 40)
_ENCODE_SHARE = (40, 95)
_METER_SHARE = (95, 99)
_WHOLE = (0, 100)
# A trimmed re-encode decodes this much before its start and drops it (see _command).
SEEK_PREROLL_US = 1_000_000
_WATCH_POLL_S = 0.05
_CPU_GRACE_S = 5
_STDERR_LINES_KEPT = 40
_REASON_MAX_CHARS = 300
# ffmpeg says these when the machine, not the file, is at fault.
_ENVIRONMENT_ERRORS = (
    "No space left on device",
    "Permission denied",
    "Too many open files",
    "Read-only file system",
    "No such file or directory",
)
# Logging for a pass that reads what a filter reports at level info; "level" tags each
# message with its level, so that errors are still told from the rest (_collect_lines).
INFO_LOGGING = "level+info"
_LEVEL_TAG = re.compile(
    r"^(?:\[[^\]]*\] )*\[(quiet|panic|fatal|error|warning|info|verbose|debug|trace)\]"
)
_ERROR_LEVELS = frozenset({"error", "fatal", "panic"})
# Lines of an analysis pass's log kept for its report: the filters' reports are the
# last messages before ffmpeg's closing summary.
_ANALYSIS_LINES_KEPT = 64
# ffmpeg's consequences of an earlier complaint: a filter graph (a waveform's split) whose
# input stream cannot be decoded says so after the decoder has said why.
_SUMMARY_LINE = re.compile(
    r"^(Error opening (input|output) files?\b|Conversion failed!"
    r"|Error binding (filtergraph inputs/outputs|an input stream to complex filtergraph))"
)
# What ffmpeg logs of the reads and writes a signal cut short (AVERROR_EXIT).
_EXIT_REQUESTED = "Immediate exit requested"
# An output takes the selected audio stream only, not the input's picture, subtitles or data.
_ONLY_AUDIO = ("-vn", "-sn", "-dn")
# The filter graph's output that a conversion with a waveform branch encodes.
_OUTPUT_LABEL = "output"
_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "hexagonal": 6, "octagonal": 8}


def ffmpeg_exe() -> str:
    """Return the path of the ffmpeg binary that imageio-ffmpeg provides.

    Raises:
        TransientError: no ffmpeg binary can be found on this machine.
    """
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise TransientError(f"ffmpeg is not available: {exc}") from exc


@dataclass(frozen=True)
class Chapter:
    """One chapter of the input, in seconds from its start, titled as the file names it."""

    start: float
    end: float
    title: str | None = None


# More chapters than any real video has; a file listing more is read up to this many
# (and refused by a split on chapters, which makes a track of each).
MAX_CHAPTERS_READ = 10_000


@dataclass(frozen=True)
class MediaInfo:
    """What ffmpeg reports about an input's container, its first audio stream and chapters."""

    container: str | None
    duration: float | None
    has_video: bool
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_bitrate: int | None = None
    chapters: tuple[Chapter, ...] = ()


def probe(path: str | os.PathLike[str], *, require_audio: bool = True) -> MediaInfo:
    """Describe a local media file's container, duration and first audio stream.

    Raises:
        PermanentError: the file is not media ffmpeg can read, is missing its
            index, or (with ``require_audio``) has no audio track.
        TransientError: ffmpeg cannot be run, or the file is not there.
    """
    src = _existing_file(path)
    text = _describe(src)
    if "Input #0" not in text:
        log.info("ffmpeg cannot open the input: %s", _tail(text.splitlines()))
        raise PermanentError(_unreadable_reason(text))
    # MoviePy's parser raises on "Duration: N/A" (a WebM written to a pipe, as
    # browsers record them), yet such a file converts fine without a duration.
    knows_duration = re.search(r"^\s+Duration: N/A", text, re.MULTILINE) is None
    try:
        with warnings.catch_warnings():
            # MoviePy warns, with ffmpeg's whole text attached, about each
            # subtitle or attachment stream it skips; only audio matters here.
            warnings.filterwarnings(
                "ignore", r"\w+ stream parsing is not supported by moviepy", UserWarning
            )
            parsed = FFmpegInfosParser(text, src, check_duration=knows_duration).parse()
    except (OSError, LookupError, AttributeError, TypeError, ValueError) as exc:
        log.warning("cannot parse ffmpeg's description of the input: %s", exc)
        raise PermanentError(NOT_MEDIA) from exc
    info = _media_info(text, parsed)
    if require_audio and not info.has_audio:
        raise PermanentError(NO_AUDIO)
    return info


def _describe(src: str) -> str:
    """Return what ``ffmpeg -i`` prints about ``src``.

    Raises:
        TransientError: ffmpeg cannot be run or did not finish in time.
    """
    # ffmpeg_parse_infos would run this too, but it discards the text, and the
    # text is the only place that names the audio codec and ffmpeg's reason
    # for refusing a file; so run it here and give MoviePy's parser the text.
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", *input_restrictions(), "-i", src]
    process = spawn(command, PROBE_LIMITS, stdout=subprocess.DEVNULL, cwd=os.path.dirname(src))
    try:
        _, stderr = process.communicate(timeout=PROBE_LIMITS.wall_seconds)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        process.communicate()
        raise TransientError(f"ffmpeg took over {PROBE_TIMEOUT_S:g} s to read the file") from exc
    # Without an output file ffmpeg always exits 1, so only the text tells.
    return stderr.decode("utf-8", errors="replace")


def input_restrictions() -> list[str]:
    """Return the input options that confine ffmpeg to the one local file, as media."""
    return [
        "-protocol_whitelist",
        ",".join(ALLOWED_PROTOCOLS),
        "-format_whitelist",
        ",".join(ALLOWED_DEMUXERS),
    ]


@dataclass(frozen=True)
class ProcessLimits:
    """What one ffmpeg process may use before the kernel or the deadline stops it."""

    cpu_seconds: int
    wall_seconds: float
    file_bytes: int
    memory_bytes: int = MEMORY_LIMIT_BYTES


# A probe writes no file at all, and reads headers in milliseconds.
PROBE_LIMITS = ProcessLimits(
    cpu_seconds=int(PROBE_TIMEOUT_S), wall_seconds=PROBE_TIMEOUT_S, file_bytes=0
)


def spawn(
    command: list[str], limits: ProcessLimits, *, stdout: int, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a program that parses untrusted input, bare and bounded; stderr is a pipe.

    The child gets ``FFMPEG_ENVIRONMENT`` only, a session (and so a process
    group) of its own that can be killed whole, and kernel limits on CPU
    time, address space and the size of any file it writes; it dumps no core.
    Enforcing the wall-clock deadline is the caller's part.

    Raises:
        TransientError: the program cannot be started.
    """
    try:
        process = subprocess.Popen(  # noqa: S603 - an argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=FFMPEG_ENVIRONMENT,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise TransientError(f"cannot run ffmpeg: {exc}") from exc
    try:
        _limit(process.pid, limits)
    except BaseException:
        _kill_group(process)
        process.communicate()
        raise
    return process


def _limit(pid: int, limits: ProcessLimits) -> None:
    """Lower the child's resource limits.

    Set from here with prlimit(2) right after the exec, not by a preexec_fn:
    that runs Python between fork and exec, which CPython documents as unsafe
    in a process with threads (the consumer, janitor and health server). The
    child runs unlimited only until Popen returns, before it has read its input.
    """
    # The kernel's CPU limit is a backstop that trails the watch in run_ffmpeg,
    # which tells why it killed: ffmpeg ends quietly on the soft limit's
    # SIGXCPU, and the hard limit's SIGKILL could be anyone's.
    cpu = limits.cpu_seconds + _CPU_GRACE_S
    wanted = {
        resource.RLIMIT_CPU: (cpu, cpu + _CPU_GRACE_S),
        resource.RLIMIT_AS: (limits.memory_bytes, limits.memory_bytes),
        resource.RLIMIT_FSIZE: (limits.file_bytes, limits.file_bytes),
        resource.RLIMIT_CORE: (0, 0),
    }
    try:
        for kind, (soft, hard) in wanted.items():
            _, current_hard = resource.prlimit(pid, kind)
            if current_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, current_hard), min(hard, current_hard)
            resource.prlimit(pid, kind, (soft, hard))
    except ProcessLookupError:
        pass  # it has already exited; its exit status tells the rest


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``spawn`` gave ``process``, if it still runs."""
    if process.poll() is not None:
        return  # reaped: its pid (and group id) may already belong to another process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _unreadable_reason(text: str) -> str:
    """Say why ffmpeg could not open a file, in words for the person who uploaded it."""
    if "not on whitelist" in text:
        return UNSUPPORTED
    guessed = "misdetection possible" in text
    if "moov atom not found" in text and not guessed:
        return "the file is truncated or corrupt: its MP4/MOV index (moov atom) is missing"
    if guessed or "Invalid data found when processing input" in text:
        return NOT_MEDIA
    reason = _meaningful_line(text.splitlines(), ())
    return f"{NOT_MEDIA} ({reason})" if reason else NOT_MEDIA


def _media_info(text: str, parsed: Mapping[str, Any]) -> MediaInfo:
    """Combine MoviePy's parse with the fields it leaves out of ffmpeg's text."""
    container = re.search(r"^Input #0, (.+?), from ", text, re.MULTILINE)
    duration = parsed.get("duration") if parsed.get("duration") else None
    info = {
        "container": container.group(1) if container else None,
        "duration": duration,
        "has_video": bool(parsed.get("video_found")),
        "has_audio": bool(parsed.get("audio_found")),
        "chapters": _chapters(text),
    }
    stream = re.search(r"^\s+Stream #0:\d+\S*: Audio: (\w+)(.*)$", text, re.MULTILINE)
    if info["has_audio"] and stream:
        sample_rate = re.search(r"(\d+) Hz", stream.group(2))
        bitrate = re.search(r"(\d+) kb/s", stream.group(2))
        info.update(
            audio_codec=stream.group(1),
            audio_sample_rate=int(sample_rate.group(1)) if sample_rate else None,
            audio_channels=_channel_count(stream.group(2)),
            audio_bitrate=int(bitrate.group(1)) if bitrate else None,
        )
    return MediaInfo(**info)


_CHAPTER = re.compile(
    r"^ {4}Chapter #\d+:\d+: start (-?[\d.]+), end (-?[\d.]+)\n"
    r"(?: {6}Metadata:\n(?: {8}.*\n)*? {8}title +: (.*)\n)?",
    re.MULTILINE,
)


def _chapters(text: str) -> tuple[Chapter, ...]:
    """Read the chapters ``ffmpeg -i`` lists (start, end and title of each), in file order."""
    found = []
    for match in _CHAPTER.finditer(text):
        if len(found) == MAX_CHAPTERS_READ:
            break
        start, end = float(match.group(1)), float(match.group(2))
        title = (match.group(3) or "").strip() or None
        found.append(Chapter(start=start, end=end, title=title))
    return tuple(found)


def _channel_count(stream_details: str) -> int | None:
    """Read the channel count from the layout that follows the sample rate."""
    layout = re.search(r"\d+ Hz, ([^,]+)", stream_details)
    if not layout:
        return None
    name = layout.group(1).strip()
    if name in _CHANNEL_LAYOUTS:
        return _CHANNEL_LAYOUTS[name]
    counted = re.match(r"(\d+) channels", name)
    if counted:
        return int(counted.group(1))
    surround = re.match(r"(\d+)\.(\d+)", name)
    return int(surround.group(1)) + int(surround.group(2)) if surround else None


def needs_reencode(options: Options, info: MediaInfo) -> bool:
    """Tell whether the audio must be encoded afresh rather than copied as it is.

    A copy needs the source's codec to be the output format's (AAC for M4A, Opus
    for Opus...) and no option that changes the sound.
    """
    if info.audio_codec != options.output.copies:
        return True
    if options.bitrate is not None or options.quality is not None:
        return True
    if options.sample_rate not in (None, info.audio_sample_rate):
        return True
    if options.channels not in (None, info.audio_channels):
        return True
    if options.loudness is not None:
        return True
    # Copied frames can only be cut where the container can seek (a video
    # keyframe in MKV), which can be seconds off; re-encoding cuts exactly.
    return options.trimmed


@dataclass(frozen=True)
class TranscodeResult:
    """What one conversion produced and what it cost."""

    duration: float | None
    stream_copied: bool
    elapsed: float
    output_bytes: int
    # With a loudness target: the target and the measured input and output (loudness.report).
    loudness: dict[str, Any] | None = None
    # The output's peaks, measured in the conversion's own run; None when it did not
    # decode (a stream copy) or could not measure them (see transcode).
    waveform: Waveform | None = None


@dataclass(frozen=True)
class ConversionLimits:
    """The bounds of one conversion, derived from its probe and the duration limit."""

    max_seconds: float
    output_bytes: int
    process: ProcessLimits
    # How long the output should be (the part converted), None when the input does not say.
    expected: float | None = None


def conversion_limits(
    info: MediaInfo, options: Options, *, max_media_seconds: float = MAX_MEDIA_SECONDS
) -> ConversionLimits:
    """Check the part to convert against the duration limit; return the run's bounds.

    The limit applies to what is converted (a trim that keeps one hour of an
    eight-hour file is fine: ffmpeg seeks past the rest), and shrinks for sound
    that is costlier to decode than 8-channel 48 kHz. An input of unknown
    length is bounded by ``max_seconds`` when it runs instead. With a loudness
    target each of the conversion's passes may also spend loudnorm's budget.

    Raises:
        PermanentError: the part to convert is longer than its limit, or the
            trim starts past the end.
    """
    weight = _weight(info)
    allowed = min(max_media_seconds, max_media_seconds * MAX_WEIGHT_PER_SECOND_OF_LIMIT / weight)
    expected = _expected_duration(info, options)
    if expected is not None and expected > allowed:
        raise PermanentError(
            f"the {_subject(info, options)} is {_clock(expected)} long, "
            f"longer than {_limit_phrase(allowed, max_media_seconds, info)}"
        )
    seconds = allowed if expected is None else expected
    output_bytes = math.ceil(allowed * _max_bytes_per_second(info, options)) + _OUTPUT_SLACK_BYTES
    cpu_per_second = CPU_SECONDS_PER_MEDIA_SECOND * weight
    wall_per_second = WALL_SECONDS_PER_MEDIA_SECOND * weight
    if options.loudness is not None:
        loudnorm_weight = max(weight, loudness.weight(info.audio_channels))
        cpu_per_second += loudness.CPU_SECONDS_PER_MEDIA_SECOND * loudnorm_weight
        wall_per_second += loudness.WALL_SECONDS_PER_MEDIA_SECOND * loudnorm_weight
    return ConversionLimits(
        max_seconds=allowed,
        expected=expected,
        output_bytes=output_bytes,
        process=ProcessLimits(
            cpu_seconds=CPU_FLOOR_S + math.ceil(cpu_per_second * seconds),
            wall_seconds=WALL_FLOOR_S + wall_per_second * seconds,
            # ffmpeg's -fs stops it cleanly; this is the kernel's backstop.
            file_bytes=output_bytes + _OUTPUT_SLACK_BYTES,
        ),
    )


def _max_bytes_per_second(info: MediaInfo, options: Options) -> float:
    """Return the most bytes a second of the output can take in its format."""
    output = options.output
    if output.lossless:
        rate = options.sample_rate or info.audio_sample_rate or 48_000
        channels = options.channels or info.audio_channels or 2
        return rate * channels * LOSSLESS_MAX_BYTES_PER_SAMPLE
    top = max(output.bitrates or (0,)) * 1000 / 8
    if needs_reencode(options, info):
        return top
    # A copied stream keeps the source's bitrate, which may be above what we encode at.
    return max(top, (info.audio_bitrate or 0) * 1000 / 8)


def _weight(info: MediaInfo) -> float:
    """Return how much a second of the input's audio costs next to 48 kHz stereo (at least 1)."""
    if not info.audio_sample_rate or not info.audio_channels:
        return 1.0
    return max(1.0, info.audio_sample_rate * info.audio_channels / _STEREO_48K)


def _subject(info: MediaInfo, options: Options) -> str:
    if options.trimmed:
        return "trimmed selection"
    return "video" if info.has_video else "recording"


def _limit_phrase(allowed: float, max_media_seconds: float, info: MediaInfo) -> str:
    """Name the limit a file broke: "the 6-hour limit", or the shorter one its sound costs."""
    if allowed >= max_media_seconds:
        return f"the {_span(max_media_seconds)} limit"
    return (
        f"the {_clock(allowed)} limit for {info.audio_channels}-channel "
        f"{info.audio_sample_rate} Hz sound"
    )


def _span(seconds: float) -> str:
    """Say a limit as people do: "6-hour", "90-minute", "45-second"."""
    for unit, name in ((3600, "hour"), (60, "minute")):
        if seconds >= unit and seconds % unit == 0:
            return f"{int(seconds // unit)}-{name}"
    return f"{seconds:g}-second"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def transcode(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: Options | None = None,
    *,
    info: MediaInfo | None = None,
    on_progress: Callable[[int], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    max_media_seconds: float = MAX_MEDIA_SECONDS,
    waveform: bool = True,
) -> TranscodeResult:
    """Write the first audio stream of ``src`` in the options' format to the regular file ``dst``.

    ``info`` saves a probe the caller already made. ``on_progress(percent)``
    is called on this thread, at most every ``PROGRESS_INTERVAL_S``, and with
    100 once the output is complete and checked; ``heartbeat()`` each time ffmpeg
    reports more audio written, known length or not. Setting ``cancel`` kills
    ffmpeg at once. The part converted may last ``max_media_seconds``
    (``conversion_limits`` says what else bounds the run). On any failure
    ffmpeg is gone and ``dst`` removed.

    With ``options.loudness`` the conversion runs three passes: loudnorm measures
    the part to convert, the encode normalises it with what was measured, and
    ebur128 measures the output (``converter.loudness``); progress counts the
    three as shares of the whole (``_MEASURE_SHARE`` and the next).

    With ``waveform`` a re-encode also measures the output's waveform in the same run
    (``converter.waveform.Branch``, in the job's directory beside ``dst``), from the
    samples its encoder gets: the result's ``waveform``. It is None for a stream copy
    (nothing is decoded), for an input of unknown length, sample rate or (past stereo)
    channel count, and when the branch measured less than the output holds; the caller
    then measures the file (``converter.waveform.peaks``).

    Raises:
        PermanentError: the input is not media or not an allowed format, has no
            audio, is truncated or corrupt, is longer than the limit, costs
            more CPU or makes a bigger output than its bounds, or the trim starts
            past its end; with a loudness target, the audio is silent.
        TransientError: ffmpeg cannot be run or was killed, missed its
            deadline, the machine is out of space, or ``cancel`` was set.
    """
    options = options or Options()
    src_path = _existing_file(src)
    dst_path = os.path.abspath(os.fspath(dst))
    info = info or probe(src_path)
    if not info.has_audio:
        raise PermanentError(NO_AUDIO)
    limits = conversion_limits(info, options, max_media_seconds=max_media_seconds)
    expected = limits.expected
    copy = not needs_reencode(options, info)
    log.info(
        "converting %s (%s audio, %s) by %s within %s",
        info.container,
        info.audio_codec,
        _length(info.duration),
        "stream copy" if copy else "re-encoding",
        limits,
    )
    started = time.monotonic()
    branch = None
    try:
        if cancel is not None and cancel.is_set():
            raise TransientError(INTERRUPTED)
        if waveform and not copy:
            branch = _plan_waveform(dst_path, options, info, expected)
        measurement = audio_filter = None
        if options.loudness is not None:
            rate = loudness.output_rate(options, info.audio_sample_rate)
            measurement = _measure_source(
                src_path,
                options,
                rate,
                limits,
                _share(on_progress, _MEASURE_SHARE),
                heartbeat,
                cancel,
            )
            audio_filter = loudness.normalising_filter(measurement, options, rate)
        elif branch is not None:
            audio_filter = _output_format(options, info, branch.sample_rate)
        command = _command(
            src_path,
            dst_path,
            options,
            copy=copy,
            limits=limits,
            audio_filter=audio_filter,
            branch=branch,
        )
        out_time = run_ffmpeg(
            command,
            limits.process,
            paths=(src_path, dst_path),
            expected=expected,
            on_progress=_share(on_progress, _WHOLE if measurement is None else _ENCODE_SHARE),
            heartbeat=heartbeat,
            cancel=cancel,
        )
        output_bytes = os.path.getsize(dst_path)
        _check_bounds(out_time, output_bytes, limits, info, options, max_media_seconds)
        duration = out_time if out_time is not None else probe(dst_path).duration
        _check_complete(duration, expected, info, options)
        report = None
        if measurement is not None:
            level = _measure_output(
                dst_path, duration, limits, _share(on_progress, _METER_SHARE), heartbeat, cancel
            )
            report = loudness.report(options, measurement, level)
        result = TranscodeResult(
            duration=duration,
            stream_copied=copy,
            elapsed=time.monotonic() - started,
            output_bytes=output_bytes,
            loudness=report,
            waveform=None if branch is None else branch.waveform(duration),
        )
        if on_progress is not None:
            on_progress(100)
    except BaseException:
        _remove_partial(dst_path)
        raise
    finally:
        if branch is not None:
            branch.remove()
    log.info(
        "made the %s output of %s, %s bytes, in %.2f s",
        options.output.label,
        _length(result.duration),
        result.output_bytes,
        result.elapsed,
    )
    return result


def _plan_waveform(
    dst: str, options: Options, info: MediaInfo, expected: float | None
) -> Branch | None:
    """Plan the waveform branch of a re-encode, or return None where it cannot be planned.

    Its buckets are sized from the expected duration and the output's sample rate
    (``loudness.output_rate``: what the options ask, else the source's where the
    encoder takes it, else the format's highest), which ``_output_format`` or the
    loudness chain then gives the samples before the split. The channels must be
    known as well: every format keeps mono and stereo, but past those the encoder may
    mix down after the split (libmp3lame to stereo), so only an explicit count will do.

    Raises:
        TransientError: the branch's listing cannot be made beside the output.
    """
    channels_known = options.channels is not None or (info.audio_channels or 3) <= 2
    if expected is None or not expected > 0 or not info.audio_sample_rate or not channels_known:
        log.info("the waveform will be measured after the conversion")
        return None
    # Imported here: the waveform's own pass runs ffmpeg through this module.
    from converter.waveform import plan_branch

    rate = loudness.output_rate(options, info.audio_sample_rate)
    try:
        return plan_branch(os.path.dirname(dst), expected, rate)
    except OSError as exc:
        # Where the peaks cannot be written, neither can the output.
        raise TransientError(f"cannot write beside the output: {exc.strerror}") from exc


def _output_format(options: Options, info: MediaInfo, sample_rate: int) -> str | None:
    """Return the filter that gives the samples the output's rate and channels, if they change.

    In the graph, ahead of the waveform's split, rather than left to ``-ar`` and
    ``-ac``, which act after it: the branch then measures what the encoder gets.
    """
    if sample_rate == info.audio_sample_rate and options.channels in (None, info.audio_channels):
        return None
    # The loudness passes' head: the same aformat, so both kinds of encode convert alike.
    return loudness.format_chain(options, sample_rate)


def _measure_source(
    src: str,
    options: Options,
    sample_rate: int,
    limits: ConversionLimits,
    on_progress: Callable[[int], None] | None,
    heartbeat: Callable[[], None] | None,
    cancel: threading.Event | None,
) -> loudness.Measurement:
    """Measure the loudness of the part of ``src`` the options convert, at the output's rate.

    Raises:
        PermanentError: ffmpeg failed on the input, or it is silent.
        TransientError: as ``run_ffmpeg``.
    """
    audio_filter = loudness.analysis_filter(options, sample_rate)
    selection = _selection(src, options, audio_filter=audio_filter)
    log_lines = _analyse(selection, src, limits, limits.expected, on_progress, heartbeat, cancel)
    measurement = loudness.read_analysis(log_lines)
    log.info("measured the input: %s", measurement)
    return measurement


def _measure_output(
    dst: str,
    duration: float | None,
    limits: ConversionLimits,
    on_progress: Callable[[int], None] | None,
    heartbeat: Callable[[], None] | None,
    cancel: threading.Event | None,
) -> loudness.Level:
    """Measure the loudness of the output just written to ``dst``.

    Raises:
        PermanentError: ffmpeg failed on the output.
        TransientError: as ``run_ffmpeg``.
    """
    selection = _selection(dst, Options(), audio_filter=loudness.output_meter())
    level = loudness.read_meter(
        _analyse(selection, dst, limits, duration, on_progress, heartbeat, cancel)
    )
    log.info("measured the output: %s", level)
    return level


def _analyse(
    selection: list[str],
    path: str,
    limits: ConversionLimits,
    expected: float | None,
    on_progress: Callable[[int], None] | None,
    heartbeat: Callable[[], None] | None,
    cancel: threading.Event | None,
) -> collections.deque[str]:
    """Run the selection's filter over ``path`` and return the last lines ffmpeg logged.

    Raises:
        PermanentError, TransientError: as ``run_ffmpeg``.
    """
    log_lines: collections.deque[str] = collections.deque(maxlen=_ANALYSIS_LINES_KEPT)
    run_ffmpeg(
        _analysis_command(selection, limits),
        # It writes no file: its output is the null muxer's.
        dataclasses.replace(limits.process, file_bytes=0),
        paths=(path, path),
        expected=expected,
        on_progress=on_progress,
        heartbeat=heartbeat,
        cancel=cancel,
        log_lines=log_lines,
    )
    return log_lines


def _share(
    on_progress: Callable[[int], None] | None, share: tuple[int, int]
) -> Callable[[int], None] | None:
    """Return an ``on_progress`` for one pass: its 0-100 % reported as ``share`` of the whole."""
    if on_progress is None or share == _WHOLE:
        return on_progress
    low, high = share
    reported = low

    def report(percent: int) -> None:
        nonlocal reported
        overall = low + percent * (high - low) // 100
        if overall > reported:
            on_progress(overall)
            reported = overall

    return report


def _check_bounds(
    out_time: float | None,
    output_bytes: int,
    limits: ConversionLimits,
    info: MediaInfo,
    options: Options,
    max_media_seconds: float,
) -> None:
    """Refuse an output that ffmpeg's own ``-fs`` or ``-t`` bound cut short.

    Both stop ffmpeg cleanly with exit status 0, so only the result tells.
    Either is the input's fault: a file of unknown length ran past the limit,
    or its timestamps kept ``-t`` from acting.

    Raises:
        PermanentError: naming the bound.
    """
    if output_bytes >= limits.output_bytes:
        raise PermanentError(
            f"the {options.output.label} would exceed the {_megabytes(limits.output_bytes)} limit"
        )
    if out_time is not None and out_time > limits.max_seconds + _DURATION_MARGIN_S / 2:
        raise PermanentError(
            f"the {_subject(info, options)} is longer than "
            f"{_limit_phrase(limits.max_seconds, max_media_seconds, info)}"
        )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 10**7 else f"{size / 1e6:.1f} MB"


def _existing_file(path: str | os.PathLike[str]) -> str:
    """Return ``path`` made absolute, so ffmpeg never reads it as an option or a protocol.

    Raises:
        TransientError: the file is not there; a fresh spool of the job can fix that.
    """
    absolute = os.path.abspath(os.fspath(path))
    if not os.path.isfile(absolute):
        raise TransientError(f"the input file {absolute} is missing")
    return absolute


def _expected_duration(info: MediaInfo, options: Options) -> float | None:
    """Return how long the output should be, or None when the input does not say.

    Raises:
        PermanentError: the trim starts at or past the end of the input.
    """
    if info.duration is None:
        return None
    start = options.start or 0.0
    if start >= info.duration:
        raise PermanentError(
            f"the trim start ({start:g} s) is past the end of the {info.duration:.1f} s input"
        )
    end = info.duration if options.end is None else min(options.end, info.duration)
    return end - start


def _command(
    src: str,
    dst: str,
    options: Options,
    *,
    copy: bool,
    limits: ConversionLimits,
    audio_filter: str | None = None,
    branch: Branch | None = None,
) -> list[str]:
    """Return the ffmpeg argument list for one conversion, through ``audio_filter`` if given.

    With a waveform ``branch`` the filtered samples are split: one copy to the encoder,
    the other to the branch.
    """
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    command += _progress_arguments()
    command += _selection(
        src,
        options,
        copy=copy,
        audio_filter=audio_filter,
        branch=None if branch is None else branch.graph(),
    )
    # The source stream's own tags (a WebM's DURATION, an MP4's handler) would become
    # an Ogg or FLAC file's comments, and be wrong after a trim; the file's tags stay.
    command += ["-map_metadata:s:a", "-1"]
    output = options.output
    if copy:
        command += ["-c:a", "copy"]
    else:
        command += ["-c:a", output.encoder]
        if options.quality is not None:
            command += ["-q:a", str(options.quality)]
        elif output.default_bitrate is not None:
            command += ["-b:a", f"{options.bitrate or output.default_bitrate}k"]
        if options.sample_rate is not None:
            command += ["-ar", str(options.sample_rate)]
        if options.channels is not None:
            command += ["-ac", str(options.channels)]
    # Each muxer writes these its own way: ID3v2 frames in an MP3, an ilst atom
    # in an M4A, Vorbis comments in Opus and FLAC, a RIFF INFO list in a WAV.
    for tag in ("title", "artist", "album"):
        value = getattr(options, tag)
        if value is not None:
            command += ["-metadata", f"{tag}={value}"]
    # The output's own bounds: ffmpeg stops cleanly at either (_check_bounds).
    command += ["-t", f"{limits.max_seconds + _DURATION_MARGIN_S:.3f}"]
    command += ["-fs", str(limits.output_bytes)]
    if output.name == "mp3":
        # ID3v2.3 because v2.4 tags are still unread by some car stereos and players.
        command += ["-id3v2_version", "3"]
    elif output.name == "m4a":
        # The index first, so a player can start before the whole download is in.
        command += ["-movflags", "+faststart"]
    elif output.name == "wav":
        # RIFF sizes are 32-bit: past 4 GiB (6 hours of 48 kHz 16-bit stereo is 4.1 GB)
        # only an RF64 header still tells the truth.
        command += ["-rf64", "auto"]
    command += ["-f", output.muxer, dst]
    return command


def _analysis_command(selection: list[str], limits: ConversionLimits) -> list[str]:
    """Return the ffmpeg argument list that runs the selection's filter and keeps no output."""
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", INFO_LOGGING]
    command += [*_progress_arguments(), *selection]
    command += ["-t", f"{limits.max_seconds + _DURATION_MARGIN_S:.3f}", "-f", "null", "-"]
    return command


def _progress_arguments() -> list[str]:
    """Return the options that have ffmpeg report progress on stdout (``_follow_progress``)."""
    return ["-progress", "pipe:1", "-stats_period", f"{PROGRESS_INTERVAL_S:g}", "-nostats"]


def _selection(
    src: str,
    options: Options,
    *,
    copy: bool = False,
    audio_filter: str | None = None,
    branch: str | None = None,
) -> list[str]:
    """Return the options that select the audio to convert, trimmed, through ``audio_filter``.

    With ``branch`` (filters ending in a sink) the trimmed, filtered samples are also
    fed to it, in a filter graph whose ``_OUTPUT_LABEL`` output is the one mapped.
    """
    command: list[str] = []
    # As input options the trim skips reading what is cut. A stream copy cuts at the
    # packet the input seek lands on. A re-encode seeks SEEK_PREROLL_US early and drops
    # the pre-roll on the output side, sample-exact: a decoder started at the packet
    # holding the start loses its first samples (AAC's overlap, an MP3 frame's bit
    # reservoir), and in an M4A whose every packet is a sync sample, as ffmpeg writes the
    # copies of a video's sound the clients send, ffmpeg's seek goes straight there.
    # Times go to ffmpeg to the microsecond, so a client's shifted times cut where the
    # user's would have in the whole video.
    start_us = round((options.start or 0.0) * 1e6)
    seek_us = start_us if copy else max(0, start_us - SEEK_PREROLL_US)
    if seek_us:
        command += ["-ss", _timestamp(seek_us)]
    if options.end is not None:
        command += ["-to", _timestamp(round(options.end * 1e6))]
    command += [*input_restrictions(), "-i", src]
    preroll_us = start_us - seek_us
    if audio_filter is None and branch is None:
        command += ["-map", "0:a:0", *_ONLY_AUDIO]
        if preroll_us:
            command += ["-ss", _timestamp(preroll_us)]
        return command
    # An output -ss trims after the filters, which would then measure the pre-roll too.
    filters = [] if audio_filter is None else [audio_filter]
    if preroll_us:
        filters.insert(0, f"atrim=start={_timestamp(preroll_us)},asetpts=PTS-STARTPTS")
    if branch is None:
        return [*command, "-map", "0:a:0", *_ONLY_AUDIO, "-af", ",".join(filters)]
    split = ",".join([*filters, "asplit=2"])
    graph = f"[0:a:0]{split}[{_OUTPUT_LABEL}][waveform];[waveform]{branch}"
    return [*command, "-filter_complex", graph, "-map", f"[{_OUTPUT_LABEL}]"]


def _timestamp(microseconds: int) -> str:
    """Return a time for ffmpeg's ``-ss``/``-to``: seconds, to the microsecond."""
    return f"{microseconds // 1_000_000}.{microseconds % 1_000_000:06d}"


def run_ffmpeg(
    command: list[str],
    limits: ProcessLimits,
    *,
    paths: tuple[str, str],
    expected: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    log_lines: collections.deque[str] | None = None,
) -> float | None:
    """Run an ffmpeg ``command`` within ``limits`` and return the seconds of audio it wrote.

    ``paths`` (input, output) are shortened to their names in error reasons.
    ``log_lines`` receives the last lines ffmpeg logs, as many as it holds, for a
    command that logs at ``INFO_LOGGING`` to report what a filter measured; its
    errors are still told apart by their level.

    Raises:
        PermanentError: ffmpeg rejected the input, or used up its CPU time.
        TransientError: ffmpeg could not start, was killed or cancelled, ran
            out of room, or missed its wall-clock deadline.
    """
    process = spawn(command, limits, stdout=subprocess.PIPE, cwd=os.path.dirname(paths[0]))
    # Both are pipes: spawn asked for them.
    stdout, stderr = cast(IO[bytes], process.stdout), cast(IO[bytes], process.stderr)
    stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
    watch = _Watch(process, limits, cancel)
    helpers: list[threading.Thread] = []
    try:
        # Progress arrives on stdout, read here; stderr must be drained
        # alongside or a chatty ffmpeg blocks on a full pipe.
        helpers.append(
            _thread(_collect_lines, stderr, stderr_tail, log_lines, name="ffmpeg-stderr")
        )
        helpers.append(_thread(watch.run, name="ffmpeg-watch"))
        out_time = _follow_progress(stdout, expected, on_progress, heartbeat)
        returncode = process.wait()
    finally:
        watch.finished.set()
        _kill_group(process)
        process.wait()
        for helper in helpers:
            helper.join()
        stdout.close()
        stderr.close()
    _raise_for_exit(returncode, list(stderr_tail), paths, cancel, watch)
    return out_time


def _thread(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    """Start a daemon thread that keeps the caller's log context (its job id)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
    thread.start()
    return thread


def _collect_lines(
    stream: IO[bytes],
    errors: collections.deque[str],
    logged: collections.deque[str] | None = None,
) -> None:
    """Keep ffmpeg's error lines in ``errors``, and every line in ``logged`` if given.

    Without ``logged`` the command logs errors only. With it, it logs at
    ``INFO_LOGGING``, which tags the first line of each message with its level.
    """
    level = None
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            continue
        line = line[:1000]
        if logged is None:
            errors.append(line)
            continue
        logged.append(line)
        tagged = _LEVEL_TAG.match(line)
        if tagged:
            level = tagged.group(1)
        if level in _ERROR_LEVELS:
            errors.append(line)


class _Watch:
    """Kill ffmpeg's process group on cancel, past its deadline or past its CPU time."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        limits: ProcessLimits,
        cancel: threading.Event | None,
    ) -> None:
        self.finished = threading.Event()
        self.overdue = False
        self.over_cpu = False
        self.limits = limits
        self._process = process
        self._cancel = cancel
        self._deadline = time.monotonic() + limits.wall_seconds

    def run(self) -> None:
        while not self.finished.wait(_WATCH_POLL_S):
            if self._cancel is not None and self._cancel.is_set():
                log.info("cancelling ffmpeg (pid %s)", self._process.pid)
            elif time.monotonic() >= self._deadline:
                log.warning("ffmpeg passed its %.0f s deadline", self.limits.wall_seconds)
                self.overdue = True
            elif cpu_seconds(self._process.pid) >= self.limits.cpu_seconds:
                log.warning("ffmpeg used its %d s of CPU time", self.limits.cpu_seconds)
                self.over_cpu = True
            else:
                continue
            # SIGKILL, not SIGTERM: on SIGTERM ffmpeg first finishes the file,
            # which is about to be deleted anyway.
            _kill_group(self._process)
            return


def _follow_progress(
    stdout: IO[bytes],
    expected: float | None,
    on_progress: Callable[[int], None] | None,
    heartbeat: Callable[[], None] | None,
) -> float | None:
    """Read ffmpeg's ``-progress`` blocks, report percentages, and return the last output time."""
    out_time_us: int | None = None
    beaten_at: int | None = None
    reported = 0
    for raw in stdout:
        key, _, value = raw.decode("ascii", errors="replace").strip().partition("=")
        # out_time_ms is microseconds too (a misnomer ffmpeg keeps); read
        # either, as older builds lack out_time_us. Early blocks say N/A.
        if key in ("out_time_us", "out_time_ms"):
            with contextlib.suppress(ValueError):
                out_time_us = max(int(value), 0)
        elif key == "progress":
            # Blocks keep coming while ffmpeg loops without writing; only more
            # audio is progress.
            if heartbeat is not None and out_time_us is not None and out_time_us != beaten_at:
                heartbeat()
                beaten_at = out_time_us
            if on_progress and expected and out_time_us is not None:
                # ffmpeg already spaces blocks by -stats_period; passing on only
                # a risen whole percent spares the job record needless writes.
                percent = min(99, int(out_time_us / 1e6 / expected * 100))
                if percent > reported:
                    on_progress(percent)
                    reported = percent
    return None if out_time_us is None else out_time_us / 1e6


def _raise_for_exit(
    returncode: int,
    stderr_lines: list[str],
    paths: tuple[str, str],
    cancel: threading.Event | None,
    watch: _Watch,
) -> None:
    """Classify how ffmpeg ended.

    Raises:
        PermanentError: ffmpeg failed on the input, or the input cost more
            than the CPU time, memory or file size it was allowed.
        TransientError: ffmpeg was cancelled, killed, or failed for want of
            resources, or missed its deadline.
    """
    limits = watch.limits
    if cancel is not None and cancel.is_set():
        raise TransientError(INTERRUPTED)
    if watch.over_cpu:
        # CPU time does not stretch when the machine is busy, so using up a
        # budget many times what such a file needs is the input's doing.
        raise PermanentError(
            f"converting the file took more than its {limits.cpu_seconds} s of processor time, "
            "far more than a file of its length needs"
        )
    if watch.overdue:
        # With the CPU budget unspent, the wall clock ran out while ffmpeg
        # waited for a busy machine or a slow disk: another try may finish.
        raise TransientError(
            f"the conversion took longer than its {limits.wall_seconds:.0f} s deadline"
        )
    if returncode == 0:
        if stderr_lines:
            log.warning("ffmpeg decoded the input with errors: %s", _tail(stderr_lines))
        return
    log.warning("ffmpeg exited with status %s: %s", returncode, _tail(stderr_lines))
    if returncode == -signal.SIGXFSZ:
        raise PermanentError(f"the output would exceed the {_megabytes(limits.file_bytes)} limit")
    if returncode < 0:
        raise TransientError(f"ffmpeg was killed by {signal.Signals(-returncode).name}")
    if any("not on whitelist" in line for line in stderr_lines):
        raise PermanentError(UNSUPPORTED)
    if any("Cannot allocate memory" in line for line in stderr_lines):
        # Under RLIMIT_AS this is ffmpeg's own cap, not the machine, speaking
        # (the kernel's OOM killer would have sent SIGKILL): the input asks
        # for more than a conversion may use, and will again.
        raise PermanentError(
            f"converting the file needs more than the {_megabytes(limits.memory_bytes)} "
            "memory limit"
        )
    reason = _meaningful_line(stderr_lines, paths)
    # ffmpeg exits 255 when it stops on SIGTERM or SIGINT, saying nothing at -loglevel error
    # or only that the signal cut its reads and writes short (as it may with a filter graph).
    interrupted = reason is None or any(_EXIT_REQUESTED in line for line in stderr_lines)
    if returncode == 255 and interrupted:
        raise TransientError("ffmpeg was interrupted by a signal")
    if any(error in line for line in stderr_lines for error in _ENVIRONMENT_ERRORS):
        raise TransientError(f"ffmpeg failed: {reason}")
    raise PermanentError(
        f"ffmpeg could not convert the file: {reason or f'exit status {returncode}'}"
    )


def _meaningful_line(lines: list[str], paths: Iterable[str]) -> str | None:
    """Return ffmpeg's most specific complaint, without log prefixes or our temp paths.

    ffmpeg states the cause first and then sums up ("Error opening output
    files: Invalid argument"), so the last line that is not a summary wins.
    """
    cleaned = [_strip_prefixes(line) for line in lines]
    specific = [line for line in cleaned if line and not _SUMMARY_LINE.match(line)]
    chosen = (specific or [line for line in cleaned if line] or [None])[-1]
    if chosen is None:
        return None
    for path in paths:
        chosen = chosen.replace(path, os.path.basename(path))
    return chosen[:_REASON_MAX_CHARS]


def _strip_prefixes(line: str) -> str:
    """Drop "[in#0 @ 0x55…] [dec:aac @ 0x55…]"-style prefixes naming ffmpeg's internals."""
    text = line.strip()
    while text.startswith("[") and "]" in text:
        text = text[text.index("]") + 1 :].strip()
    return text


def _length(seconds: float | None) -> str:
    return "unknown length" if seconds is None else f"{seconds:.2f} s"


def _tail(lines: list[str]) -> str:
    return " | ".join(lines[-5:])


def _check_complete(
    duration: float | None, expected: float | None, info: MediaInfo, options: Options
) -> None:
    """Refuse an output much shorter than the input says it should be.

    Raises:
        PermanentError: the input ended early, so it is truncated or corrupt.
    """
    if duration is None or expected is None:
        return
    if duration < expected * TRUNCATION_RATIO and expected - duration > TRUNCATION_MIN_SHORTFALL_S:
        source = f"{expected:.1f} s {'video' if info.has_video else 'recording'}"
        if options.trimmed:
            source = f"{expected:.1f} s trimmed selection"
        raise PermanentError(
            f"the file is truncated or corrupt: got {duration:.1f} s of audio from a {source}"
        )


def _remove_partial(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove the partial output %s: %s", path, exc)
