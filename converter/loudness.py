"""EBU R128 loudness: the filters that measure and normalise a conversion's sound.

A conversion asked for a ``loudness`` runs three ffmpeg passes (``converter.transcode``
runs them, as it runs every ffmpeg): ``loudnorm`` in analysis mode measures the part to
convert; the encode applies ``loudnorm`` again with those measurements, as one linear
gain when the gain keeps the true peak under the ceiling and the source's loudness range
is within the target's (and not zero, as a steady tone's is), else with loudnorm's
dynamic gain and true-peak limiter; ``ebur128`` then measures the file written, so the
job records the loudness the user gets, after the lossy encoder, not the filter's
estimate of it. Silent audio has no loudness to bring anywhere: the job fails, saying so.

This module reads what those filters log (at level info, on stderr); everything in it
comes from a file a user sent, so every number is checked and clamped before it goes
back into a filter's arguments.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import PermanentError
from common.options import Options

# The true-peak ceiling, dBTP. Streaming services ask for at most -1 dBTP; a lossy
# encoder (MP3, AAC, Opus) raises inter-sample peaks by a few tenths of a dB more
# than the PCM it is given, so the filter aims half a dB lower.
TRUE_PEAK_CEILING_DBTP = -1.5
# The loudness range target, LU. loudnorm stays linear (one gain, the sound's dynamics
# untouched) only while the source's range is within the target; its default of 7
# would put most music and film sound (LRA 8 to 15) through its dynamic gain, which
# compresses and audibly pumps. 11 keeps speech and most music linear and still tames
# the widest film mixes.
LOUDNESS_RANGE_TARGET_LU = 11.0

# What the passes cost here, in CPU s per second of 48 kHz stereo AAC (2 minutes of it,
# into MP3 and Opus): the analysis 0.038 to 0.045 (loudnorm resamples to 192 kHz and runs
# its dynamic gain and limiter to measure); the normalising encode 0.021 to 0.029 when
# linear, 0.053 to 0.058 when dynamic (a steady tone), against 0.014 to 0.017 for the
# plain encode; the output's measurement 0.007 to 0.009. So loudnorm adds up to 0.045 to
# a pass, and each pass of a normalised conversion gets this much more than the
# conversion's own budget per weighted second: over 4 times that cost, as the
# conversion's budget is over its own. Wall time doubles it, as the conversion's does.
CPU_SECONDS_PER_MEDIA_SECOND = 0.2
WALL_SECONDS_PER_MEDIA_SECOND = 0.4
# loudnorm works at 192 kHz whatever the input's rate, so its cost follows the channel
# count: a weight of one per pair of channels.
_CHANNELS_PER_WEIGHT = 2

# The ranges loudnorm's measured_* and offset options take (ffmpeg -h filter=loudnorm).
_MEASURED_I = (-99.0, 0.0)
_MEASURED_TP = (-99.0, 99.0)
_MEASURED_LRA = (0.0, 99.0)
_MEASURED_THRESH = (-99.0, 0.0)
_OFFSET = (-99.0, 99.0)
# ffmpeg's "level" log flag tags a message's first line, e.g. "[Parsed_loudnorm_0 @ 0x5] [info]".
_LOUDNORM_HEADER = re.compile(r"^\[Parsed_loudnorm_\d+ @ [^\]]*\] \[info\]")
_EBUR128_HEADER = re.compile(r"^\[Parsed_ebur128_\d+ @ [^\]]*\] \[info\] Summary:")
_JSON_BLOCK = re.compile(r"\{[^{}]*\}")
_SUMMARY_VALUES = {
    "integrated": re.compile(r"^\s+I:\s+(\S+) LUFS"),
    "lra": re.compile(r"^\s+LRA:\s+(\S+) LU$"),
    "true_peak": re.compile(r"^\s+Peak:\s+(\S+) dBFS"),
}
_CHANNEL_LAYOUTS = {1: "mono", 2: "stereo"}
# The rate an output gets when neither the options nor the source give one its encoder takes.
_FALLBACK_RATE = 48_000
_ROUNDING = 1  # decimals: a loudness meter is good to a tenth of a dB

SILENT = "the audio is silent (or too short to measure), so it has no loudness to normalise"
UNMEASURED = "the audio could not be measured: ffmpeg decoded none of it"


@dataclass(frozen=True)
class Measurement:
    """What loudnorm's analysis found in the part to convert, as its second pass takes it."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float
    offset: float


@dataclass(frozen=True)
class Level:
    """A file's loudness as ebur128 measures it: integrated (LUFS), true peak (dBTP), range (LU)."""

    integrated: float | None
    true_peak: float | None
    lra: float | None


def weight(channels: int | None) -> float:
    """Return how much a second of loudnorm on ``channels`` costs next to stereo (at least 1)."""
    return max(1.0, (channels or _CHANNELS_PER_WEIGHT) / _CHANNELS_PER_WEIGHT)


def analysis_filter(options: Options, sample_rate: int) -> str:
    """Return the filter chain that measures the sound as the options will encode it."""
    # The targets matter to the analysis: its target_offset is the gain that is left
    # after its own pass, which the second pass adds.
    return format_chain(options, sample_rate, _loudnorm(options, print_format="json"))


def normalising_filter(measurement: Measurement, options: Options, sample_rate: int) -> str:
    """Return the filter chain of the encode: loudnorm with the measurements, then resampling.

    ``sample_rate`` is the output's (``output_rate``).
    """
    measured = {
        "measured_I": _clamped(measurement.integrated, _MEASURED_I),
        "measured_TP": _clamped(measurement.true_peak, _MEASURED_TP),
        "measured_LRA": _clamped(measurement.lra, _MEASURED_LRA),
        "measured_thresh": _clamped(measurement.threshold, _MEASURED_THRESH),
        "offset": _clamped(measurement.offset, _OFFSET),
    }
    loudnorm = _loudnorm(options, linear="true", **{k: f"{v:.2f}" for k, v in measured.items()})
    # loudnorm hands on 192 kHz sound, which no output should keep.
    return format_chain(options, sample_rate, loudnorm, f"aresample={sample_rate}")


def output_meter() -> str:
    """Return the filter that measures the output: ebur128 with true peaks, its summary only."""
    # framelog=verbose keeps its ten lines a second out of the info log.
    return "ebur128=peak=true:framelog=verbose"


def output_rate(options: Options, source_rate: int | None) -> int:
    """Return the sample rate a normalised output gets: the one asked for, else the source's.

    The source's rate is kept where the output's encoder takes it (any rate for FLAC and
    WAV); otherwise (a 44.1 kHz source into Opus, a 96 kHz one into MP3) the format's
    highest rate.
    """
    output = options.output
    if options.sample_rate is not None:
        return options.sample_rate
    if source_rate and (output.lossless or source_rate in output.sample_rates):
        return source_rate
    return max(output.sample_rates, default=_FALLBACK_RATE)


def read_analysis(log_lines: Iterable[str]) -> Measurement:
    """Read loudnorm's measurements from what ffmpeg logged, its last JSON block.

    Raises:
        PermanentError: the audio is silent or too short to have a loudness, or
            ffmpeg measured none of it.
    """
    lines = list(log_lines)
    headers = [index for index, line in enumerate(lines) if _LOUDNORM_HEADER.match(line)]
    block = _JSON_BLOCK.search("\n".join(lines[headers[-1] + 1 :])) if headers else None
    try:
        report = json.loads(block.group(0)) if block else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise PermanentError(UNMEASURED)
    integrated = _number(report.get("input_i"))
    if integrated is None:
        raise PermanentError(SILENT)
    return Measurement(
        integrated=integrated,
        # -inf: no peak worth the name; loudnorm's lowest then.
        true_peak=_number(report.get("input_tp"), _MEASURED_TP[0]),
        lra=_number(report.get("input_lra"), 0.0),
        threshold=_number(report.get("input_thresh"), _MEASURED_THRESH[0]),
        offset=_number(report.get("target_offset"), 0.0),
    )


def read_meter(log_lines: Iterable[str]) -> Level:
    """Read ebur128's summary from what ffmpeg logged; a value it could not measure is None."""
    lines = list(log_lines)
    headers = [index for index, line in enumerate(lines) if _EBUR128_HEADER.match(line)]
    found: dict[str, float | None] = dict.fromkeys(_SUMMARY_VALUES)
    for line in lines[headers[-1] + 1 :] if headers else ():
        for name, pattern in _SUMMARY_VALUES.items():
            match = pattern.match(line)
            if match and found[name] is None:
                found[name] = _number(match.group(1))
    return Level(**found)


def report(options: Options, measurement: Measurement, output: Level) -> dict[str, Any]:
    """Return what the job records: the target, the source's and the output's loudness."""
    values: Mapping[str, float | None] = {
        "input_i": measurement.integrated,
        "input_tp": measurement.true_peak,
        "input_lra": measurement.lra,
        "output_i": output.integrated,
        "output_tp": output.true_peak,
        "output_lra": output.lra,
    }
    rounded = {k: None if v is None else round(v, _ROUNDING) for k, v in values.items()}
    return {"target": options.loudness, **rounded}


def _loudnorm(options: Options, **extra: str) -> str:
    settings = {
        "I": f"{options.loudness:g}",
        "TP": f"{TRUE_PEAK_CEILING_DBTP:g}",
        "LRA": f"{LOUDNESS_RANGE_TARGET_LU:g}",
        **extra,
    }
    return "loudnorm=" + ":".join(f"{name}={value}" for name, value in settings.items())


def format_chain(options: Options, sample_rate: int, *filters: str) -> str:
    """Join filters after the output's sample rate and the channel conversion the options ask for.

    ffmpeg's own ``-ar`` and ``-ac`` act at the end of the chain, after loudnorm. There
    they would change the loudness just measured and set: a mono downmix measures 3 LU
    under its stereo source, and a lower rate drops the highs that the K-weighting of
    the loudness counts most (2.6 LU of white noise resampled to 22.05 kHz). So they
    come first, in both passes.
    """
    head = f"aformat=sample_rates={sample_rate}"
    layout = _CHANNEL_LAYOUTS.get(options.channels or 0)
    if layout:
        head += f":channel_layouts={layout}"
    return ",".join([head, *filters])


def _number(text: object, default: float | None = None) -> float | None:
    """Return a logged number, or ``default`` if it is not finite ("-inf") or not a number."""
    try:
        value = float(str(text))
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def _clamped(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return min(max(value, low), high)
