"""Output options: the audio format and what a user may ask of it, validated in one place.

The gateway checks the form fields of an upload with these rules (400 naming
the field) and the converter applies the same object to ffmpeg, so the two can
never disagree about what is valid. Each format has its own rules
(``FORMATS``): which of bitrate, VBR quality and sample rate its encoder takes,
and in what range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from common.errors import PermanentError

DEFAULT_BITRATE_KBPS = 192
BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# libopus codes at these rates only (Opus is 48 kHz inside); others are resampled to 48 kHz.
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
CHANNELS = (1, 2)
VBR_QUALITIES = range(10)
MAX_TAG_LENGTH = 200
# Far beyond any real video; keeps a typo such as 1e9 from reaching ffmpeg.
MAX_SECONDS = 48 * 3600.0
# Integrated loudness targets, in LUFS: the range ffmpeg's loudnorm filter takes. Common
# ones: -23 (EBU R128 broadcast), -16 (podcasts), -14 (music streaming).
LOUDNESS_RANGE_LUFS = (-70.0, -5.0)
# Cover art: a still of the video ("frame"), or none (the default: the output is audio only).
COVERS = ("frame", "none")
# ``split``: one track per chapter of the source, or parts of a fixed number of seconds.
SPLIT_CHAPTERS = "chapters"
MIN_SPLIT_SECONDS = 10.0


@dataclass(frozen=True)
class Format:
    """One output format: its encoder's rules, and how its files are named and served.

    ``bitrates`` is None for a lossless format, ``qualities`` None for an encoder
    without a VBR scale the API offers. ``copies`` is the source codec (as ffmpeg
    names it) whose packets go into this container unchanged when nothing asks
    for re-encoding.
    """

    name: str
    label: str
    encoder: str
    muxer: str
    extension: str
    content_type: str
    copies: str
    sample_rates: tuple[int, ...]
    bitrates: range | tuple[int, ...] | None = None
    default_bitrate: int | None = None
    qualities: range | None = None

    @property
    def lossless(self) -> bool:
        """Tell whether the format keeps every sample (and so has no bitrate)."""
        return self.bitrates is None


DEFAULT_FORMAT = "mp3"
FORMATS: dict[str, Format] = {
    output.name: output
    for output in (
        Format(
            name="mp3",
            label="MP3",
            encoder="libmp3lame",
            muxer="mp3",
            extension="mp3",
            content_type="audio/mpeg",
            copies="mp3",
            sample_rates=SAMPLE_RATES,
            bitrates=BITRATES_KBPS,
            default_bitrate=DEFAULT_BITRATE_KBPS,
            qualities=VBR_QUALITIES,
        ),
        # ffmpeg's native AAC encoder, CBR only: its VBR mode is experimental. The
        # ipod muxer writes an M4A (brand "M4A ") with its tags in an ilst atom.
        Format(
            name="m4a",
            label="M4A",
            encoder="aac",
            muxer="ipod",
            extension="m4a",
            content_type="audio/mp4",
            copies="aac",
            sample_rates=SAMPLE_RATES,
            bitrates=range(16, 321),
            default_bitrate=DEFAULT_BITRATE_KBPS,
        ),
        # libopus is VBR around the bitrate given; it has no quality scale.
        Format(
            name="opus",
            label="Opus",
            encoder="libopus",
            muxer="opus",
            extension="opus",
            content_type="audio/ogg",
            copies="opus",
            sample_rates=OPUS_SAMPLE_RATES,
            bitrates=range(6, 511),
            default_bitrate=128,
        ),
        Format(
            name="flac",
            label="FLAC",
            encoder="flac",
            muxer="flac",
            extension="flac",
            content_type="audio/flac",
            copies="flac",
            sample_rates=SAMPLE_RATES,
        ),
        Format(
            name="wav",
            label="WAV",
            encoder="pcm_s16le",
            muxer="wav",
            extension="wav",
            content_type="audio/wav",
            copies="pcm_s16le",
            sample_rates=SAMPLE_RATES,
        ),
    )
}


def format_named(name: str | None) -> Format:
    """Return the format a job record names, MP3 for a record without one."""
    return FORMATS[name or DEFAULT_FORMAT]


class InvalidOption(PermanentError):
    """An output option is unknown or has a value that is not allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Options:
    """How to make the output; None means the default: an MP3 at 192 kbit/s CBR, the source's
    rate and channels.

    ``bitrate`` (kbit/s, CBR) and ``quality`` (LAME VBR, 0 best to 9 smallest)
    exclude each other, and each format takes only some (``FORMATS``).
    ``start``/``end`` trim the input, in seconds. ``loudness`` is a target integrated
    loudness in LUFS (two-pass EBU R128 normalisation). ``cover`` ("frame" or "none")
    embeds a still of the video, taken at ``cover_at`` seconds (which alone implies
    "frame") or picked automatically. ``split`` is "chapters" or a part length in seconds.
    """

    format: str | None = None
    bitrate: int | None = None
    quality: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    start: float | None = None
    end: float | None = None
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    loudness: float | None = None
    cover: str | None = None
    cover_at: float | None = None
    split: str | float | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise _invalid("format", f"must be one of {', '.join(FORMATS)}, got {self.format!r}")
        output = self.output
        _check_allowed("bitrate", self.bitrate, output.bitrates, output)
        _check_allowed("quality", self.quality, output.qualities, output)
        if self.bitrate is not None and self.quality is not None:
            raise _invalid("quality", "choose either a bitrate (CBR) or a quality (VBR), not both")
        _check_choice("sample_rate", self.sample_rate, output.sample_rates, output)
        _check_choice("channels", self.channels, CHANNELS)
        for name in ("start", "end"):
            _check_seconds(name, getattr(self, name))
        if self.end is not None and self.end <= (self.start or 0.0):
            raise _invalid(
                "end", f"must be after start ({self.start or 0.0:g} s), got {self.end:g}"
            )
        for name in ("title", "artist", "album"):
            _check_tag(name, getattr(self, name))
        self._check_loudness()
        self._check_cover()
        self._check_split()

    def _check_loudness(self) -> None:
        if self.loudness is None:
            return
        low, high = LOUDNESS_RANGE_LUFS
        value = self.loudness
        if not _is_number(value):
            raise _invalid("loudness", f"must be a loudness in LUFS, got {value!r}")
        if not low <= value <= high:
            raise _invalid("loudness", f"must be from {low:g} to {high:g} LUFS, got {value:g}")

    def _check_cover(self) -> None:
        if self.cover is not None and self.cover not in COVERS:
            raise _invalid("cover", f"must be one of {', '.join(COVERS)}, got {self.cover!r}")
        _check_seconds("cover_at", self.cover_at)
        if self.cover_at is not None and self.cover == "none":
            raise _invalid("cover_at", "picks the cover's frame, but cover is none")
        if self.wants_cover and self.output.name == "wav":
            raise _invalid("cover", "WAV files have no place for cover art")

    def _check_split(self) -> None:
        value = self.split
        if value is None or value == SPLIT_CHAPTERS:
            return
        if not _is_number(value):
            raise _invalid("split", f"must be {SPLIT_CHAPTERS!r} or a number of seconds")
        if not MIN_SPLIT_SECONDS <= value <= MAX_SECONDS:
            raise _invalid(
                "split",
                f"parts must last from {MIN_SPLIT_SECONDS:g} to {MAX_SECONDS:g} seconds, "
                f"got {value:g}",
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Options:
        """Build options from a job's ``options`` object; empty values mean the default.

        Raises:
            PermanentError: naming the first field that is unknown or invalid.
        """
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidOption("options", "invalid options: expected an object of named options")
        known = {field.name for field in fields(cls)}
        unknown = sorted(str(name) for name in raw if name not in known)
        if unknown:
            raise InvalidOption(unknown[0], f"unknown option '{unknown[0]}'")
        values = {
            name: _COERCE[name](name, value)
            for name, value in raw.items()
            if value is not None and value != ""
        }
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the explicitly set options, in the form ``from_dict`` reads."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @property
    def output(self) -> Format:
        """Return the output format (MP3 unless one is chosen)."""
        return format_named(self.format)

    @property
    def trimmed(self) -> bool:
        """Tell whether a start or end trim is set."""
        return self.start is not None or self.end is not None

    @property
    def wants_cover(self) -> bool:
        """Tell whether the output gets a still of the video as its cover."""
        return self.cover == "frame" or (self.cover is None and self.cover_at is not None)

    @property
    def needs_whole_video(self) -> bool:
        """Tell whether the job needs the video itself, not a client's copy of its sound.

        A cover is a frame of the picture, and chapters are the container's; a client that
        uploads only the sound (the page, the CLI) sends the whole file for these.
        """
        return self.wants_cover or self.split == SPLIT_CHAPTERS


def _invalid(name: str, problem: str) -> InvalidOption:
    return InvalidOption(name, f"invalid option '{name}': {problem}")


def _check_allowed(
    name: str,
    value: object,
    choices: range | tuple[int, ...] | None,
    output: Format,
) -> None:
    """Refuse an option the format's encoder does not take, or a value out of its range."""
    if value is None:
        return
    if choices is None:
        if output.lossless:
            refusal = "is lossless: it takes no bitrate or quality"
        else:
            refusal = "takes a bitrate, not a VBR quality"
        raise _invalid(name, f"{output.label} {refusal}")
    _check_choice(name, value, choices, output)


def _check_choice(
    name: str, value: object, choices: range | tuple[int, ...], output: Format | None = None
) -> None:
    if value is not None and (isinstance(value, bool) or value not in choices):
        if isinstance(choices, range):
            allowed = f"a whole number from {choices.start} to {choices.stop - 1}"
        else:
            allowed = "one of " + ", ".join(map(str, choices))
        scope = "" if output is None or output.name == DEFAULT_FORMAT else f" for {output.label}"
        raise _invalid(name, f"must be {allowed}{scope}, got {value!r}")


def _is_number(value: object) -> bool:
    """Tell whether ``value`` is a finite int or float (a bool is neither)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if not _is_number(value):
        raise _invalid(name, f"must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_SECONDS:
        raise _invalid(name, f"must be between 0 and {MAX_SECONDS:g} seconds, got {value:g}")


def _check_tag(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise _invalid(name, f"must be text, got {type(value).__name__}")
    if len(value) > MAX_TAG_LENGTH:
        raise _invalid(name, f"must be at most {MAX_TAG_LENGTH} characters, got {len(value)}")
    # A NUL cannot travel in ffmpeg's argv, and other controls have no place in a tag.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise _invalid(name, "must not contain control characters")


def _whole_number(name: str, value: object) -> int:
    """Read an int from JSON or a form field, refusing fractions and booleans."""
    if isinstance(value, bool):
        raise _invalid(name, f"must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _invalid(name, f"must be a whole number, got {value!r}")


def _seconds(name: str, value: object) -> float:
    """Read seconds given as a number, "90.5", "1:30" or "01:02:03.5"."""
    if isinstance(value, bool):
        raise _invalid(name, f"must be a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        clock = re.fullmatch(r"\s*(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d+)?)\s*", value)
        if clock:
            hours, minutes, seconds = (float(part or 0) for part in clock.groups())
            if (clock.group(2) and seconds >= 60) or (clock.group(1) and minutes >= 60):
                raise _invalid(name, f"must be a time like 90, 1:30 or 1:02:03, got {value!r}")
            return hours * 3600 + minutes * 60 + seconds
    raise _invalid(name, f"must be a time like 90, 1:30 or 1:02:03, got {value!r}")


def _lufs(name: str, value: object) -> float:
    """Read a loudness given as a number, "-16" or "-16 LUFS"."""
    if isinstance(value, str):
        number = re.fullmatch(r"\s*([-+]?\d+(?:\.\d+)?)\s*(?:LUFS)?\s*", value, re.IGNORECASE)
        if number:
            return float(number.group(1))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _invalid(name, f"must be a loudness in LUFS such as -16, got {value!r}")


def _split(name: str, value: object) -> str | float:
    """Read ``split``: "chapters", or a part length as seconds or a time like 10:00."""
    if isinstance(value, str) and value.strip().lower() == SPLIT_CHAPTERS:
        return SPLIT_CHAPTERS
    try:
        return _seconds(name, value)
    except InvalidOption:
        raise _invalid(
            name, f"must be {SPLIT_CHAPTERS!r} or a part length like 600 or 10:00, got {value!r}"
        ) from None


def _choice(name: str, value: object) -> str | None:
    """Read a named choice (a format, a cover) in any case: "FLAC" is flac."""
    text = _text(name, value)
    return text.lower() if text else None


def _text(name: str, value: object) -> str | None:
    if not isinstance(value, str):
        raise _invalid(name, f"must be text, got {type(value).__name__}")
    return value.strip() or None


_COERCE: dict[str, Callable[[str, object], Any]] = {
    "format": _choice,
    "bitrate": _whole_number,
    "quality": _whole_number,
    "sample_rate": _whole_number,
    "channels": _whole_number,
    "start": _seconds,
    "end": _seconds,
    "title": _text,
    "artist": _text,
    "album": _text,
    "loudness": _lufs,
    "cover": _choice,
    "cover_at": _seconds,
    "split": _split,
}
