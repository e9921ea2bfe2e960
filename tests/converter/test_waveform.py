"""Waveforms measured with the real ffmpeg, of outputs the converter made, and in the handler."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from common.errors import PermanentError, TransientError
from common.jobs import DONE, PROCESSING, JobStore
from common.options import FORMATS, Options
from converter import waveform as waveform_module
from converter.handler import Converter
from converter.transcode import CPU_FLOOR_S, CPU_SECONDS_PER_MEDIA_SECOND, transcode
from converter.waveform import MAX_POINTS, MIN_POINTS, Waveform, peaks, points_for
from tests.converter.test_handler import RecordingPublisher, delivery, queued_job
from tests.support import media

SECONDS = 8.0
QUIET_DB = -20.0
# A full-scale tone, then the same tone 20 dB down (a tenth of full scale).
LOUD_THEN_QUIET = (
    f"aevalsrc=if(lt(t\\,{SECONDS / 2})\\,1\\,{10 ** (QUIET_DB / 20)})*sin(2*PI*440*t)"
    f":sample_rate=44100:duration={SECONDS}"
)
# lavfi's sine is an eighth of full scale; make_video spreads it over two channels at -3 dB.
SINE_PEAK = 0.125
STEREO_SINE_PEAK = SINE_PEAK / math.sqrt(2)
# Lossy encoders round a peak by a few hundredths of full scale.
LOUD_AT_LEAST = 0.9
QUIET_RANGE = (0.08, 0.12)


def make_sound(path: Path, source: str, *, channels: str = "mono") -> Path:
    """Write a lavfi ``source`` (as mono, or as its first channel beside a silent one)."""
    if channels == "mono":
        graph = source
    else:
        graph = f"{source}[a];anullsrc=r=44100:cl=mono[z];[a][z]amerge=inputs=2,atrim=0:{SECONDS}"
    media.run_ffmpeg("-loglevel", "error", "-y", "-filter_complex", graph, path)
    return path


@pytest.fixture
def jobs(storage) -> JobStore:
    return JobStore(storage.client, storage.config)


@pytest.fixture
def converter(storage, jobs, tmp_path) -> Converter:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return Converter(
        storage=storage,
        jobs=jobs,
        publisher=RecordingPublisher(),
        mp3_queue="mp3",
        workdir=str(workdir),
    )


@pytest.fixture(scope="module")
def loud_then_quiet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sound(tmp_path_factory.mktemp("tone") / "tone.wav", LOUD_THEN_QUIET)


def copied_to_mp3(tmp_path: Path) -> Path:
    """Return a video whose MP3 sound a job copies, so its waveform takes the separate pass."""
    return media.make_video(tmp_path / "clip.mkv", seconds=1, audio_codec="libmp3lame")


def assert_loud_then_quiet(found: Waveform) -> None:
    """Check the first half's peaks are near full scale and the second's near a tenth."""
    half = found.points // 2
    # The buckets next to the step, and the ends (an encoder's delay and fade), may mix both.
    loud, quiet = found.peaks[2 : half - 2], found.peaks[half + 2 : -2]
    assert min(loud) >= LOUD_AT_LEAST, loud
    assert max(loud) <= 1.0
    low, high = QUIET_RANGE
    assert all(low <= peak <= high for peak in quiet), quiet


@pytest.mark.parametrize("output", list(FORMATS))
def test_each_output_format_draws_the_loud_half_and_the_quiet_half(
    loud_then_quiet, tmp_path, output
):
    made = tmp_path / f"made.{output}"
    result = transcode(loud_then_quiet, made, Options(format=output))

    found = peaks(made, result.duration)

    assert found.points == MIN_POINTS
    assert found.duration == pytest.approx(SECONDS, abs=0.1)
    assert_loud_then_quiet(found)
    assert all(peak == round(peak, 3) for peak in found.peaks)


def test_the_peak_of_each_bucket_is_the_loudest_channels(tmp_path):
    stereo = make_sound(tmp_path / "left-only.wav", LOUD_THEN_QUIET, channels="left")
    assert "stereo" in media.audio_stream(stereo)

    assert_loud_then_quiet(peaks(stereo, SECONDS))


def test_high_pitched_sound_keeps_its_peaks(tmp_path):
    # A bucket of a resampled, low-rate copy would have lost this tone altogether.
    whistle = make_sound(
        tmp_path / "whistle.flac", f"sine=frequency=15000:sample_rate=44100:duration={SECONDS}"
    )

    found = peaks(whistle, SECONDS)

    assert all(peak == pytest.approx(SINE_PEAK, abs=0.01) for peak in found.peaks)


def test_silence_is_all_zeros(tmp_path):
    silent = make_sound(tmp_path / "silent.opus", f"anullsrc=r=48000:cl=stereo:d={SECONDS}")

    found = peaks(silent, None)

    assert found.points == MIN_POINTS
    assert set(found.peaks) == {0.0}


@pytest.mark.parametrize(
    ("seconds", "points"),
    [
        (0.5, MIN_POINTS),
        (100, MIN_POINTS),
        (150, 300),
        (600, 1200),
        (1000, MAX_POINTS),
        (21600, MAX_POINTS),
    ],
)
def test_points_grow_with_the_duration_within_bounds(seconds, points):
    assert points_for(seconds) == points


def test_a_long_output_gets_the_most_points_each_the_peak_of_its_span(tmp_path):
    # 25 minutes of quiet tone with a full-scale click one second after each 5 minutes.
    seconds, every = 1500, 300
    click = f"if(lt(mod(t\\,{every})-1\\,0.01)*gte(mod(t\\,{every})\\,1)\\,1\\,0.05)"
    sound = make_sound(
        tmp_path / "long.mp3",
        f"aevalsrc={click}*sin(2*PI*440*t):sample_rate=8000:duration={seconds}",
    )

    found = peaks(sound, seconds)

    assert found.points == MAX_POINTS
    assert found.duration == pytest.approx(seconds, abs=0.2)
    loud = [i for i, peak in enumerate(found.peaks) if peak > 0.5]
    # Each click lands in the bucket that covers its time, and nowhere else.
    bucket = seconds / MAX_POINTS
    assert loud == [int((n * every + 1) / bucket) for n in range(seconds // every)]
    assert max(peak for i, peak in enumerate(found.peaks) if i not in loud) < 0.1


def test_a_file_of_unknown_length_is_measured_as_it_is_read(tmp_path):
    # A WebM recorded to a pipe, as browsers make them, says no duration.
    stream = media.make_audio(tmp_path / "live.webm", seconds=SECONDS, seekable=False)
    assert "Duration: N/A" in media.describe(stream)

    found = peaks(stream, None)

    assert found.duration == pytest.approx(SECONDS, abs=0.1)
    assert found.points == points_for(SECONDS)
    assert all(peak == pytest.approx(STEREO_SINE_PEAK, abs=0.01) for peak in found.peaks[1:-1])


def test_the_pass_is_bounded_by_limits_derived_from_the_duration(loud_then_quiet, monkeypatch):
    used = []

    def recording_run_ffmpeg(command, limits, **kwargs):
        used.append((command, limits))
        return run_ffmpeg(command, limits, **kwargs)

    run_ffmpeg = waveform_module.run_ffmpeg
    monkeypatch.setattr(waveform_module, "run_ffmpeg", recording_run_ffmpeg)

    peaks(loud_then_quiet, SECONDS)

    [(command, limits)] = used
    assert limits.cpu_seconds == CPU_FLOOR_S + math.ceil(CPU_SECONDS_PER_MEDIA_SECOND * SECONDS)
    # Room for the peaks' text (about 80 bytes a bucket), not for any sound.
    assert 200 * 80 < limits.file_bytes < 1024**2
    assert command[command.index("-t") + 1] == "21600.000"
    assert "-protocol_whitelist" in command
    assert command[-3:] == ["-f", "null", "-"]


def test_a_file_longer_than_the_duration_limit_is_refused(loud_then_quiet):
    with pytest.raises(PermanentError, match="longer than"):
        peaks(loud_then_quiet, SECONDS, max_media_seconds=SECONDS / 2)


def test_a_cancelled_pass_is_transient_and_leaves_nothing(long_wav, tmp_path):
    copy = tmp_path / "long.wav"
    copy.write_bytes(long_wav.read_bytes())
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(TransientError, match="interrupted"):
        peaks(copy, None, cancel=cancel)

    assert sorted(tmp_path.iterdir()) == [copy]


def test_a_file_that_is_not_sound_is_permanent(tmp_path):
    text = tmp_path / "notes.mp3"
    text.write_text("not a song\n" * 100)

    with pytest.raises(PermanentError):
        peaks(text, None)


def test_a_directory_with_filter_graph_specials_in_its_name_works(loud_then_quiet, tmp_path):
    odd = tmp_path / "it's: [a,b];c\\d"
    odd.mkdir()
    copy = odd / "tone.wav"
    copy.write_bytes(loud_then_quiet.read_bytes())

    assert_loud_then_quiet(peaks(copy, SECONDS))
    assert sorted(odd.iterdir()) == [copy]


def test_the_handler_stores_the_waveform_with_the_output(converter, storage, jobs, tmp_path):
    source = media.make_video(tmp_path / "clip.mp4", seconds=3)
    message = queued_job(storage, jobs, source)

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == DONE
    stored = storage.mp3s.metadata_of(job["mp3_fid"], "waveform")
    assert stored["points"] == MIN_POINTS == len(stored["peaks"])
    assert stored["duration"] == pytest.approx(3.0, abs=0.1)
    assert all(peak == pytest.approx(STEREO_SINE_PEAK, abs=0.02) for peak in stored["peaks"][2:-2])


def test_an_output_the_pass_cannot_measure_is_kept_without_a_waveform(
    converter,
    storage,
    jobs,
    tmp_path,
    monkeypatch,
    caplog,
):
    # Fault injection: the pass refuses the output the conversion made and checked.
    def refuse(*args, **kwargs):
        raise PermanentError("the output's sound could not be measured: injected")

    monkeypatch.setattr("converter.handler.peaks", refuse)
    source = copied_to_mp3(tmp_path)
    message = queued_job(storage, jobs, source)

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == DONE
    assert storage.mp3s.metadata_of(job["mp3_fid"], "waveform") is None
    assert "no waveform" in caplog.text
    assert "injected" in caplog.text


def test_a_machine_fault_in_the_pass_retries_the_job(
    converter,
    storage,
    jobs,
    tmp_path,
    monkeypatch,
):
    # Fault injection: ffmpeg is killed during the pass.
    def killed(*args, **kwargs):
        raise TransientError("ffmpeg was killed by SIGKILL")

    monkeypatch.setattr("converter.handler.peaks", killed)
    source = copied_to_mp3(tmp_path)
    message = queued_job(storage, jobs, source)

    with pytest.raises(TransientError):
        converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == PROCESSING
    # Nothing was stored: the next delivery converts afresh.
    assert storage.mp3s.find_one({"metadata.job_id": message["job_id"]}) is None


# --- the waveform measured in the conversion's own run ------------------------------

# The in-run peaks are of the samples the encoder gets, the pass's of the file decoded.
# Lossless files decode to those very samples. A lossy file's peaks are a few per cent
# off its encoder's input, which the relative part allows: on this half-scale 440 Hz
# tone, 3 % under it at LAME's 192k (5.6 % at 22.05 kHz mono), up to 7 % over it in AAC
# at 22.05 kHz mono and 8 % in Opus at 24 kHz mono (its quiet half).
SAME_PEAK = 0.01
LOSSY_SHIFT = 0.09
SOURCE_RATE = 48000


@pytest.fixture(scope="module")
def loud_then_quiet_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a video whose stereo sound at 48 kHz is loud, then quiet (LOUD_THEN_QUIET).

    Its sound is Vorbis, which no format copies, so every conversion of it re-encodes.
    """
    path = tmp_path_factory.mktemp("video") / "clip.mkv"
    # Half scale at most, so that no encoder clips it, even mixed down to mono.
    tone = LOUD_THEN_QUIET.replace("sample_rate=44100", f"sample_rate={SOURCE_RATE}")
    tone = tone.replace("aevalsrc=", "aevalsrc=0.5*")
    media.run_ffmpeg(
        "-loglevel",
        "error",
        "-y",
        *("-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={SECONDS}"),
        *("-filter_complex", f"{tone},aformat=channel_layouts=stereo[a]"),
        *("-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast"),
        *("-c:a", "libvorbis", path),
    )
    return path


def lower_rate(output: str) -> int:
    """Return a rate below the source's that ``output``'s encoder takes."""
    return 24000 if output == "opus" else 22050


CONVERSIONS = {
    "plain": lambda output: Options(format=output),
    # Past the pre-roll: the input seek lands a second early and the filters drop it.
    "trimmed": lambda output: Options(format=output, start=1.3, end=6.1),
    "trimmed-from-0.4": lambda output: Options(format=output, start=0.4, end=SECONDS - 1),
    "loudness": lambda output: Options(format=output, loudness=-16),
    "mono-lower-rate": lambda output: Options(
        format=output, channels=1, sample_rate=lower_rate(output)
    ),
}


@pytest.mark.parametrize("case", list(CONVERSIONS))
@pytest.mark.parametrize("output", list(FORMATS))
def test_a_re_encode_measures_the_peaks_the_separate_pass_finds_in_its_output(
    loud_then_quiet_video, tmp_path, output, case
):
    options = CONVERSIONS[case](output)
    made = tmp_path / f"made.{output}"

    result = transcode(loud_then_quiet_video, made, options)

    assert not result.stream_copied
    in_run = result.waveform
    assert in_run is not None
    separate = peaks(made, result.duration)
    assert in_run.points == separate.points == points_for(result.duration)
    # The pass's length rounds up to a whole bucket (asetnsamples pads the last one).
    assert in_run.duration == pytest.approx(separate.duration, abs=SECONDS / MIN_POINTS)
    start = options.start or 0.0
    assert in_run.duration == pytest.approx((options.end or SECONDS) - start, abs=0.05)
    shift = 0.0 if FORMATS[output].lossless else LOSSY_SHIFT
    for ours, theirs in zip(in_run.peaks, separate.peaks, strict=True):
        assert ours == pytest.approx(theirs, abs=SAME_PEAK, rel=shift)
    assert_steps_down_at(in_run, SECONDS / 2 - start)
    assert sorted(path.name for path in tmp_path.iterdir()) == [made.name]


def assert_steps_down_at(found: Waveform, seconds: float) -> None:
    """Check the peaks fall by the tone's 20 dB where ``seconds`` falls, not a bucket away."""
    step = seconds / found.duration * found.points
    before, after = found.peaks[math.floor(step) - 1], found.peaks[math.ceil(step) + 1]
    assert before > 8 * after, found.peaks


def test_a_normalised_trim_measures_the_normalised_output_without_its_pre_roll(
    loud_then_quiet_video, tmp_path
):
    made = tmp_path / "made.wav"

    result = transcode(loud_then_quiet_video, made, Options(format="wav", loudness=-16, start=1.3))

    in_run = result.waveform
    assert in_run is not None
    # The loudness encode's progress says 0.1 s more than the file holds (loudnorm's
    # frames), so the pass is told the file's own length here.
    separate = peaks(made, media.probe_duration(made))
    assert in_run.points == separate.points == MIN_POINTS
    for ours, theirs in zip(in_run.peaks, separate.peaks, strict=True):
        assert ours == pytest.approx(theirs, abs=SAME_PEAK)
    # Normalised: the loud half well under the source's half scale.
    assert max(in_run.peaks) < 0.3
    assert_steps_down_at(in_run, SECONDS / 2 - 1.3)


def test_the_branch_stops_at_twice_the_expected_length_and_then_draws_nothing(long_wav, tmp_path):
    # An input that runs on far longer than it said: the branch planned for 10 s.
    planned = waveform_module.plan_branch(str(tmp_path), 10.0, 48000)
    media.run_ffmpeg(
        *("-loglevel", "error", "-i", long_wav),
        *("-filter_complex", f"[0:a]asplit=2[out][waveform];[waveform]{planned.graph()}"),
        *("-map", "[out]", "-f", "null", "-"),
    )

    listing = Path(planned.listing)
    buckets = listing.read_text().count("Peak_level=")
    assert buckets == planned.most_samples // planned.bucket_samples
    assert buckets * planned.bucket_samples / 48000 == pytest.approx(20, abs=1)
    assert listing.stat().st_size < 100 * buckets
    assert planned.waveform(media.probe_duration(long_wav)) is None
    planned.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_branch_that_measured_too_few_buckets_draws_nothing(tmp_path):
    planned = waveform_module.plan_branch(str(tmp_path), 10.0, 1000)
    line = "frame:0 pts:0 pts_time:0\nlavfi.astats.Overall.Peak_level=-6.0\n"
    listing = Path(planned.listing)
    listing.write_text(line * (MIN_POINTS + 10))
    drawn = planned.waveform(10.0)
    assert drawn is not None
    assert drawn.points == MIN_POINTS
    assert set(drawn.peaks) == {0.501}

    listing.write_text(line * (MIN_POINTS - 10))
    assert planned.waveform(10.0) is None  # fewer buckets than the points wanted
    planned.remove()
    assert planned.waveform(10.0) is None  # a listing gone is a branch without peaks


def test_the_handler_stores_the_conversions_own_waveform_without_a_pass(
    converter, storage, jobs, tmp_path, monkeypatch
):
    passes = []
    monkeypatch.setattr("converter.handler.peaks", lambda *args, **kwargs: passes.append(args))
    source = media.make_video(tmp_path / "clip.mp4", seconds=3)
    message = queued_job(storage, jobs, source)

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == DONE
    stored = storage.mp3s.metadata_of(job["mp3_fid"], "waveform")
    assert stored["points"] == MIN_POINTS == len(stored["peaks"])
    assert all(peak == pytest.approx(STEREO_SINE_PEAK, abs=0.02) for peak in stored["peaks"][2:-2])
    assert passes == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(copied_to_mp3, id="stream-copy"),
        pytest.param(
            lambda tmp_path: media.make_audio(tmp_path / "live.webm", seconds=2, seekable=False),
            id="unknown-length",
        ),
    ],
)
def test_the_handler_measures_the_file_where_the_conversion_did_not(
    converter, storage, jobs, tmp_path, monkeypatch, make
):
    passes = []

    def recording_peaks(*args, **kwargs):
        passes.append(args)
        return peaks(*args, **kwargs)

    monkeypatch.setattr("converter.handler.peaks", recording_peaks)
    message = queued_job(storage, jobs, make(tmp_path))

    converter.handle(message, delivery())

    job = jobs.get(message["job_id"])
    assert job["status"] == DONE
    stored = storage.mp3s.metadata_of(job["mp3_fid"], "waveform")
    assert stored["points"] == len(stored["peaks"]) > 0
    assert len(passes) == 1
