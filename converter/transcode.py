"""FFmpeg: probe an input file and make an MP3 from its first audio stream.

This module is the only place that runs ffmpeg, the binary imageio-ffmpeg
ships. It works on local paths: the consumer spools the video to a temp file
first (an MP4/MOV with its index at the end cannot be read from a pipe) and
stores the MP3 written here, into a regular file so the VBR header can be
filled in at the end.

Failures are classified where they arise. A file that is not media, has no
audio track or is truncated raises ``PermanentError`` with a reason a user can
read. A missing binary, a failed spawn, a full disk, a killed ffmpeg or a
cancelled run raises ``TransientError``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import os
import re
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, cast

import imageio_ffmpeg
from moviepy.video.io.ffmpeg_reader import FFmpegInfosParser

from common.errors import PermanentError, TransientError
from common.options import DEFAULT_BITRATE_KBPS, Options

log = logging.getLogger(__name__)

NO_AUDIO = "the video has no audio track"
NOT_MEDIA = "not a recognised audio/video file"
INTERRUPTED = "conversion interrupted"

# A probe reads headers only; one that runs this long is stuck, not working.
PROBE_TIMEOUT_S = 60.0
# A truncated file decodes up to the cut and ffmpeg still exits 0, so an
# output this much shorter than the probed input is the only sign of it.
TRUNCATION_RATIO = 0.9
TRUNCATION_MIN_SHORTFALL_S = 1.0
# How often ffmpeg reports progress, so at most how often on_progress runs.
PROGRESS_INTERVAL_S = 0.5
_CANCEL_POLL_S = 0.05
_STDERR_LINES_KEPT = 40
_REASON_MAX_CHARS = 300
# ffmpeg says these when the machine, not the file, is at fault.
_ENVIRONMENT_ERRORS = (
    "No space left on device",
    "Cannot allocate memory",
    "Permission denied",
    "Too many open files",
    "Read-only file system",
    "No such file or directory",
)
_SUMMARY_LINE = re.compile(r"^(Error opening (input|output) files?\b|Conversion failed!)")
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
class MediaInfo:
    """What ffmpeg reports about an input's container and its first audio stream."""

    container: str | None
    duration: float | None
    has_video: bool
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_bitrate: int | None = None


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
    """Return what ``ffmpeg -i`` prints about ``src``."""
    # ffmpeg_parse_infos would run this too, but it discards the text, and the
    # text is the only place that names the audio codec and ffmpeg's reason
    # for refusing a file; so run it here and give MoviePy's parser the text.
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", src]
    try:
        completed = subprocess.run(  # noqa: S603 - an argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"ffmpeg took over {PROBE_TIMEOUT_S:g} s to read the file") from exc
    except OSError as exc:
        raise TransientError(f"cannot run ffmpeg: {exc}") from exc
    # Without an output file ffmpeg always exits 1, so only the text tells.
    return completed.stderr.decode("utf-8", errors="replace")


def _unreadable_reason(text: str) -> str:
    """Say why ffmpeg could not open a file, in words for the person who uploaded it."""
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
    """Tell whether the audio must be encoded afresh rather than copied as it is."""
    if info.audio_codec != "mp3":
        return True
    if options.bitrate is not None or options.quality is not None:
        return True
    if options.sample_rate not in (None, info.audio_sample_rate):
        return True
    if options.channels not in (None, info.audio_channels):
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


def transcode(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: Options | None = None,
    *,
    info: MediaInfo | None = None,
    on_progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> TranscodeResult:
    """Write an MP3 of the first audio stream of ``src`` to the regular file ``dst``.

    ``info`` saves a probe the caller already made. ``on_progress(percent)``
    is called on this thread, at most every ``PROGRESS_INTERVAL_S``, and with
    100 once the MP3 is complete and checked. Setting ``cancel`` kills ffmpeg
    at once. On any failure ffmpeg is gone and ``dst`` removed.

    Raises:
        PermanentError: the input is not media, has no audio, is truncated or
            corrupt, or the trim starts past its end.
        TransientError: ffmpeg cannot be run or was killed, the machine is out
            of space or memory, or ``cancel`` was set.
    """
    options = options or Options()
    src_path = _existing_file(src)
    dst_path = os.path.abspath(os.fspath(dst))
    info = info or probe(src_path)
    if not info.has_audio:
        raise PermanentError(NO_AUDIO)
    expected = _expected_duration(info, options)
    copy = not needs_reencode(options, info)
    log.info(
        "converting %s (%s audio, %s) by %s",
        info.container,
        info.audio_codec,
        _length(info.duration),
        "stream copy" if copy else "re-encoding",
    )
    started = time.monotonic()
    try:
        if cancel is not None and cancel.is_set():
            raise TransientError(INTERRUPTED)
        command = _command(src_path, dst_path, options, copy=copy)
        out_time = _run_ffmpeg(
            command, (src_path, dst_path), expected=expected, on_progress=on_progress, cancel=cancel
        )
        duration = out_time if out_time is not None else probe(dst_path).duration
        _check_complete(duration, expected, info, options)
        result = TranscodeResult(
            duration=duration,
            stream_copied=copy,
            elapsed=time.monotonic() - started,
            output_bytes=os.path.getsize(dst_path),
        )
        if on_progress is not None:
            on_progress(100)
    except BaseException:
        _remove_partial(dst_path)
        raise
    log.info(
        "made an MP3 of %s, %s bytes, in %.2f s",
        _length(result.duration),
        result.output_bytes,
        result.elapsed,
    )
    return result


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
    """Return how long the MP3 should be, or None when the input does not say.

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


def _command(src: str, dst: str, options: Options, *, copy: bool) -> list[str]:
    """Return the ffmpeg argument list for one conversion."""
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-progress", "pipe:1", "-stats_period", f"{PROGRESS_INTERVAL_S:g}", "-nostats"]
    # As input options the trim skips reading what is cut; ffmpeg still
    # decodes from the seek point on, so a re-encoded cut is exact.
    if options.start:
        command += ["-ss", f"{options.start:.3f}"]
    if options.end is not None:
        command += ["-to", f"{options.end:.3f}"]
    command += ["-i", src, "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if copy:
        command += ["-c:a", "copy"]
    else:
        command += ["-c:a", "libmp3lame"]
        if options.quality is not None:
            command += ["-q:a", str(options.quality)]
        else:
            command += ["-b:a", f"{options.bitrate or DEFAULT_BITRATE_KBPS}k"]
        if options.sample_rate is not None:
            command += ["-ar", str(options.sample_rate)]
        if options.channels is not None:
            command += ["-ac", str(options.channels)]
    for tag in ("title", "artist", "album"):
        value = getattr(options, tag)
        if value is not None:
            command += ["-metadata", f"{tag}={value}"]
    # ID3v2.3 because v2.4 tags are still unread by some car stereos and players.
    command += ["-id3v2_version", "3", "-f", "mp3", dst]
    return command


def _run_ffmpeg(
    command: list[str],
    paths: tuple[str, str],
    *,
    expected: float | None,
    on_progress: Callable[[int], None] | None,
    cancel: threading.Event | None,
) -> float | None:
    """Run ffmpeg to the end and return the seconds of audio it says it wrote.

    Raises:
        PermanentError: ffmpeg rejected the input.
        TransientError: ffmpeg could not start, was killed or cancelled, or ran out of room.
    """
    try:
        process = subprocess.Popen(  # noqa: S603 - an argument list, no shell
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise TransientError(f"cannot run ffmpeg: {exc}") from exc
    # Both are pipes: Popen was asked for them above.
    stdout, stderr = cast(IO[bytes], process.stdout), cast(IO[bytes], process.stderr)
    stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
    finished = threading.Event()
    helpers: list[threading.Thread] = []
    try:
        # Progress arrives on stdout, read here; stderr must be drained
        # alongside or a chatty ffmpeg blocks on a full pipe.
        helpers.append(_thread(_collect_lines, stderr, stderr_tail, name="ffmpeg-stderr"))
        if cancel is not None:
            helpers.append(
                _thread(_kill_on_cancel, process, cancel, finished, name="ffmpeg-cancel")
            )
        out_time = _follow_progress(stdout, expected, on_progress)
        returncode = process.wait()
    finally:
        finished.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        for helper in helpers:
            helper.join()
        stdout.close()
        stderr.close()
    _raise_for_exit(returncode, list(stderr_tail), paths, cancel)
    return out_time


def _thread(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    """Start a daemon thread that keeps the caller's log context (its job id)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
    thread.start()
    return thread


def _collect_lines(stream: IO[bytes], lines: collections.deque[str]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            lines.append(line[:1000])


def _kill_on_cancel(
    process: subprocess.Popen[bytes], cancel: threading.Event, finished: threading.Event
) -> None:
    while not finished.wait(_CANCEL_POLL_S):
        if cancel.is_set():
            log.info("cancelling ffmpeg (pid %s)", process.pid)
            # SIGKILL, not SIGTERM: on SIGTERM ffmpeg first finishes the file,
            # which is about to be deleted anyway.
            process.kill()
            return


def _follow_progress(
    stdout: IO[bytes], expected: float | None, on_progress: Callable[[int], None] | None
) -> float | None:
    """Read ffmpeg's ``-progress`` blocks, report percentages, and return the last output time."""
    out_time_us: int | None = None
    reported = 0
    for raw in stdout:
        key, _, value = raw.decode("ascii", errors="replace").strip().partition("=")
        # out_time_ms is microseconds too (a misnomer ffmpeg keeps); read
        # either, as older builds lack out_time_us. Early blocks say N/A.
        if key in ("out_time_us", "out_time_ms"):
            with contextlib.suppress(ValueError):
                out_time_us = max(int(value), 0)
        elif key == "progress" and on_progress and expected and out_time_us is not None:
            # ffmpeg already spaces blocks by -stats_period; passing on only a
            # risen whole percent spares the job record needless writes.
            percent = min(99, int(out_time_us / 1e6 / expected * 100))
            if percent > reported:
                on_progress(percent)
                reported = percent
    return None if out_time_us is None else out_time_us / 1e6


def _raise_for_exit(
    returncode: int, stderr_lines: list[str], paths: tuple[str, str], cancel: threading.Event | None
) -> None:
    """Classify how ffmpeg ended.

    Raises:
        PermanentError: ffmpeg failed on the input.
        TransientError: ffmpeg was cancelled, killed, or failed for want of resources.
    """
    if cancel is not None and cancel.is_set():
        raise TransientError(INTERRUPTED)
    if returncode == 0:
        if stderr_lines:
            log.warning("ffmpeg decoded the input with errors: %s", _tail(stderr_lines))
        return
    log.warning("ffmpeg exited with status %s: %s", returncode, _tail(stderr_lines))
    if returncode < 0:
        raise TransientError(f"ffmpeg was killed by {signal.Signals(-returncode).name}")
    reason = _meaningful_line(stderr_lines, paths)
    # ffmpeg exits 255 when it stops on SIGTERM or SIGINT, saying nothing at -loglevel error.
    if returncode == 255 and reason is None:
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
    """Refuse an MP3 much shorter than the input says it should be.

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
        log.warning("cannot remove the partial MP3 %s: %s", path, exc)
