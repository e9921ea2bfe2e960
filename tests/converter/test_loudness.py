"""Loudness normalisation on real media: each output measured again, independently, with ebur128."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from common.errors import PermanentError, TransientError
from common.options import Options
from converter import loudness
from converter.transcode import MediaInfo, conversion_limits, transcode
from tests.support import media
from tests.support.media import loudness_of

# Pink noise (a quiet recording, about -35 LUFS) and white noise (a loud master, about
# -8 LUFS), each swelling slowly so that its loudness range is not zero, as real sound's
# is not. Fixed seeds: the same samples every run.
QUIET = "anoisesrc=color=pink:amplitude=1:seed=7:sample_rate=44100:duration={s},volume=-17.3dB"
LOUD = "anoisesrc=color=white:amplitude=0.68:seed=7:sample_rate=44100:duration={s}"
SWELL = "tremolo=f=0.5:d=0.6"
SECONDS = 4.0
# How close the output must come: within 1 LU of the target, its true peak at most the
# ceiling plus the margin a lossy encoder may add.
TOLERANCE_LU = 1.0
PEAK_MARGIN_DB = 0.5


def make_noise(path: Path, *parts: str, seconds: float = SECONDS) -> Path:
    """Write ``parts`` (QUIET, LOUD) one after another as stereo sound, each ``seconds`` long.

    The codec is the file name's: AAC in an M4A, PCM in a WAV (quicker to make).
    """
    chains = [f"{part.format(s=seconds)},{SWELL}[p{n}]" for n, part in enumerate(parts)]
    joined = "".join(f"[p{n}]" for n in range(len(parts)))
    graph = ";".join(
        [*chains, f"{joined}concat=n={len(parts)}:v=0:a=1,aformat=channel_layouts=stereo"]
    )
    media.run_ffmpeg("-loglevel", "error", "-y", "-filter_complex", graph, path)
    return path


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_noise(tmp_path_factory.mktemp("quiet") / "quiet.m4a", QUIET)


@pytest.fixture(scope="module")
def loud(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_noise(tmp_path_factory.mktemp("loud") / "loud.m4a", LOUD)


@pytest.fixture(scope="module")
def loud_then_quiet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_noise(tmp_path_factory.mktemp("both") / "both.m4a", LOUD, QUIET)


def assert_normalised(path: Path, target: float) -> media.Loudness:
    """Check that ``path`` measures within TOLERANCE_LU of ``target``, peaks under the ceiling."""
    measured = loudness_of(path)
    assert abs(measured.integrated - target) <= TOLERANCE_LU, measured
    assert measured.true_peak <= loudness.TRUE_PEAK_CEILING_DBTP + PEAK_MARGIN_DB, measured
    return measured


def test_the_sources_are_as_quiet_and_as_loud_as_meant(quiet: Path, loud: Path) -> None:
    assert loudness_of(quiet).integrated == pytest.approx(-35, abs=1.5)
    assert loudness_of(loud).integrated == pytest.approx(-8, abs=1.5)


@pytest.mark.parametrize(
    ("source", "target", "output", "rate"),
    [
        ("quiet", -16, "mp3", "44100 Hz"),
        ("loud", -23, "m4a", "44100 Hz"),
        # Opus codes at 48 kHz, not at the source's 44.1.
        ("quiet", -23, "opus", "48000 Hz"),
        ("loud", -16, "flac", "44100 Hz"),
    ],
)
def test_each_format_reaches_the_target_and_records_what_it_measured(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    source: str,
    target: float,
    output: str,
    rate: str,
) -> None:
    src = request.getfixturevalue(source)
    dst = tmp_path / f"out.{output}"

    result = transcode(src, dst, Options(format=output, loudness=target))

    measured = assert_normalised(dst, target)
    # loudnorm works at 192 kHz; the output is resampled back to a rate its format takes.
    assert rate in media.audio_stream(dst)
    assert media.probe_duration(dst) == pytest.approx(SECONDS, abs=0.1)
    report = result.loudness
    assert report is not None
    assert set(report) == {
        "target",
        "input_i",
        "input_tp",
        "input_lra",
        "output_i",
        "output_tp",
        "output_lra",
    }
    assert report["target"] == target
    assert report["input_i"] == pytest.approx(loudness_of(src).integrated, abs=0.5)
    assert report["output_i"] == pytest.approx(measured.integrated, abs=0.2)
    assert report["output_tp"] == pytest.approx(measured.true_peak, abs=0.2)
    assert all(isinstance(value, float) for key, value in report.items() if key != "target")


def test_a_sample_rate_and_a_downmix_are_applied_before_the_target_is_set(
    tmp_path: Path, loud: Path
) -> None:
    dst = tmp_path / "out.m4a"

    result = transcode(
        loud, dst, Options(format="m4a", loudness=-16, sample_rate=22050, channels=1)
    )

    # A mono downmix measures 3 LU under its stereo source: it is normalised as mono.
    assert_normalised(dst, -16)
    stream = media.audio_stream(dst)
    assert "22050 Hz" in stream
    assert "mono" in stream
    assert result.loudness is not None


@pytest.mark.parametrize(
    ("trim", "source_lufs"),
    [
        pytest.param({"end": SECONDS}, -8, id="keep-the-loud-first-half"),
        # Seeking 1 s early and dropping that pre-roll: the loud second before is not measured.
        pytest.param({"start": SECONDS}, -35, id="keep-the-quiet-second-half"),
    ],
)
def test_a_trimmed_conversion_measures_only_the_part_it_keeps(
    tmp_path: Path, loud_then_quiet: Path, trim: dict, source_lufs: float
) -> None:
    dst = tmp_path / "out.mp3"

    result = transcode(loud_then_quiet, dst, Options(loudness=-16, **trim))

    assert result.loudness is not None
    assert result.loudness["input_i"] == pytest.approx(source_lufs, abs=1.5)
    assert_normalised(dst, -16)
    assert media.probe_duration(dst) == pytest.approx(SECONDS, abs=0.1)


def test_a_silent_source_fails_with_a_reason_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "silence.m4a"
    silence = "anullsrc=channel_layout=stereo:sample_rate=44100"
    media.run_ffmpeg("-loglevel", "error", "-f", "lavfi", "-i", silence, "-t", "3", src)
    dst = tmp_path / "out.mp3"

    with pytest.raises(PermanentError, match=r"^the audio is silent .* no loudness to normalise$"):
        transcode(src, dst, Options(loudness=-16))

    assert not dst.exists()
    # Without a target the same file converts.
    transcode(src, dst)
    assert media.probe_duration(dst) == pytest.approx(3, abs=0.1)


def test_progress_rises_through_all_three_passes_to_100(
    tmp_path: Path, fast_progress: None
) -> None:
    src = make_noise(tmp_path / "long.wav", QUIET, seconds=20)
    reports: list[int] = []
    beats: list[float] = []

    transcode(
        src,
        tmp_path / "out.mp3",
        Options(loudness=-16),
        on_progress=reports.append,
        heartbeat=lambda: beats.append(time.monotonic()),
    )

    assert reports == sorted(set(reports))
    assert reports[-1] == 100
    assert any(0 < percent < 40 for percent in reports)  # the analysis
    assert any(40 < percent < 95 for percent in reports)  # the encode
    assert len(beats) >= 3


@pytest.mark.parametrize(
    "cancel_from",
    [pytest.param(1, id="while-measuring"), pytest.param(41, id="while-encoding")],
)
def test_a_cancelled_run_stops_and_removes_the_output(
    tmp_path: Path, fast_progress: None, cancel_from: int
) -> None:
    src = make_noise(tmp_path / "long.wav", QUIET, seconds=30)
    dst = tmp_path / "out.mp3"
    cancel = threading.Event()
    reports: list[int] = []

    def cancel_when_reached(percent: int) -> None:
        reports.append(percent)
        if percent >= cancel_from:
            cancel.set()

    with pytest.raises(TransientError, match=r"^conversion interrupted$"):
        transcode(src, dst, Options(loudness=-16), on_progress=cancel_when_reached, cancel=cancel)

    assert max(reports) < 95  # the output was never measured
    assert not dst.exists()
    # (conftest's autouse fixture checks that no ffmpeg is left.)


def test_a_loudness_target_raises_the_budget_by_loudnorm_per_channel_pair() -> None:
    stereo = MediaInfo("mov", 3600.0, False, True, "aac", 48000, 2)
    surround = MediaInfo("mov", 3600.0, False, True, "aac", 48000, 8)

    plain = conversion_limits(stereo, Options()).process
    normalised = conversion_limits(stereo, Options(loudness=-16)).process
    normalised_surround = conversion_limits(surround, Options(loudness=-16)).process

    added = loudness.CPU_SECONDS_PER_MEDIA_SECOND * 3600
    assert normalised.cpu_seconds - plain.cpu_seconds == pytest.approx(added, abs=1)
    assert normalised.wall_seconds > plain.wall_seconds
    # 8 channels: 4 times loudnorm's stereo cost, on top of the plain budget of 8-channel sound.
    surround_plain = conversion_limits(surround, Options()).process
    assert normalised_surround.cpu_seconds - surround_plain.cpu_seconds == pytest.approx(
        4 * added, abs=1
    )


# --- reading what the filters log (pure) ---------------------------------------------

LOUDNORM_LOG = """\
[info]     title           : [Parsed_loudnorm_0 @ 0x1] [info]
[info]     comment         : { "input_i" : "-5.00" }
[Parsed_loudnorm_0 @ 0x7f5a2c001b40] [info]
{
\t"input_i" : "{input_i}",
\t"input_tp" : "-41.06",
\t"input_lra" : "3.20",
\t"input_thresh" : "-51.75",
\t"output_i" : "-24.03",
\t"output_tp" : "-23.27",
\t"output_lra" : "0.00",
\t"output_thresh" : "-34.03",
\t"normalization_type" : "dynamic",
\t"target_offset" : "0.03"
}
[out#0/null @ 0x55ae584b3b80] [info] video:0KiB audio:3750KiB subtitle:0KiB
[info] size=N/A time=00:00:05.00 bitrate=N/A speed=29.9x elapsed=0:00:00.16
"""


def test_the_last_loudnorm_block_is_read_not_text_the_file_put_before_it() -> None:
    lines = LOUDNORM_LOG.replace("{input_i}", "-41.75").splitlines()

    measurement = loudness.read_analysis(lines)

    assert measurement == loudness.Measurement(
        integrated=-41.75, true_peak=-41.06, lra=3.2, threshold=-51.75, offset=0.03
    )


def test_silence_and_a_missing_report_are_refused_with_reasons() -> None:
    silent = LOUDNORM_LOG.replace("{input_i}", "-inf").splitlines()

    with pytest.raises(PermanentError, match="silent"):
        loudness.read_analysis(silent)
    with pytest.raises(PermanentError, match="could not be measured"):
        loudness.read_analysis(LOUDNORM_LOG.splitlines()[:2])


def test_measurements_are_clamped_to_what_loudnorm_takes() -> None:
    measured = loudness.Measurement(
        integrated=6.0, true_peak=-120.0, lra=140.0, threshold=-4.0, offset=150.0
    )

    chain = loudness.normalising_filter(measured, Options(loudness=-16, channels=1), 48000)

    assert chain == (
        "aformat=sample_rates=48000:channel_layouts=mono,loudnorm=I=-16:TP=-1.5:LRA=11:"
        "linear=true:measured_I=0.00:measured_TP=-99.00:measured_LRA=99.00:"
        "measured_thresh=-4.00:offset=99.00,aresample=48000"
    )


@pytest.mark.parametrize(
    ("options", "source_rate", "rate"),
    [
        (Options(format="mp3"), 44100, 44100),
        (Options(format="mp3"), 96000, 48000),
        (Options(format="opus"), 44100, 48000),
        (Options(format="flac"), 96000, 96000),
        (Options(format="m4a", sample_rate=22050), 48000, 22050),
        (Options(format="wav"), None, 48000),
    ],
)
def test_a_normalised_output_keeps_the_source_rate_where_its_format_takes_it(
    options: Options, source_rate: int | None, rate: int
) -> None:
    assert loudness.output_rate(options, source_rate) == rate
