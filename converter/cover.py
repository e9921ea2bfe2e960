"""Cover art: a still of the video, taken by ffmpeg and written into the output by mutagen.

``take_cover`` makes one JPEG of the uploaded file's picture: the frame at the
user's ``cover_at``, or an automatic pick past black and near-uniform frames,
scaled so its longest side is at most ``MAX_SIDE_PX``. A file whose only
picture is its cover art (an MP3 or M4A with an attached picture) gives that.
Every run goes through ``converter.transcode.run_ffmpeg``: the allowlisted
demuxers, a bare environment, the converter's memory limit and a small CPU and
wall-clock budget (``COVER_LIMITS``).

``embed_cover`` writes the JPEG into the converted file as its front cover,
each format its own way: an ID3 APIC frame in an MP3, a ``covr`` atom in an
M4A, a picture block in a FLAC, and a base64 FLAC picture in an Opus file's
Vorbis comment (METADATA_BLOCK_PICTURE). The file's other tags are kept.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from mutagen import MutagenError
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, Encoding, ID3NoHeaderError, PictureType
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggopus import OggOpus

from common.errors import PermanentError, TransientError
from common.options import Format, Options
from converter.transcode import MediaInfo, ProcessLimits, ffmpeg_exe, input_restrictions, run_ffmpeg

log = logging.getLogger(__name__)

NO_PICTURE = "the upload has no picture to take a cover from; upload the whole video"
MIME_JPEG = "image/jpeg"

# Big enough for any player's or phone's cover view, small enough to add little to the
# file: 40 KB for a 1000x563 frame of ffmpeg's testsrc2 pattern.
MAX_SIDE_PX = 1000
# A cover larger than this is made again at a coarser quality, and refused if still larger.
MAX_COVER_BYTES = 1024**2
# ffmpeg's MJPEG quantiser scale, 2 (best) to 31: 3 looks like the frame; 10, for a frame
# that 3 makes too large, takes about half the bytes of a scene (22 KB for that frame)
# and two thirds of those of pure noise (430 KB for 1000x1000 of random luma, 650 at 3).
JPEG_QUALITIES = (3, 10)
# Where the automatic pick looks: shares of the part converted, in order. An input of
# unknown length (a WebM a browser recorded to a pipe) is looked at these seconds in.
CANDIDATE_SHARES = (0.1, 0.25, 0.5, 0.75)
UNKNOWN_LENGTH_CANDIDATES_S = (2.0, 10.0, 30.0)
# Each candidate is also shrunk to this many pixels a side, as RGB, to be measured here.
SAMPLE_SIDE_PX = 64
# A frame is black when this share of its pixels have no channel at this level or above:
# the defaults of ffmpeg's blackframe filter (98 %, 32), on the brightest channel rather
# than on luma so that a saturated blue (luma 29) is a colour, not black.
DARK_LEVEL = 32
DARK_SHARE = 0.98
# And near-uniform (a fade, a title card's plain background) when no channel's levels
# vary by this much (standard deviation out of 255): ffmpeg's test patterns measure 120,
# a plain colour after H.264 under 1.
MIN_CONTRAST = 8.0
# Each ffmpeg run's budget. A keyframe costs 0.12 s of CPU at 1080p and 1.6 s at 8K
# (ffmpeg's start, decoding, scaling and the JPEG; 8K peaks at 240 MB resident); an
# exact seek (cover_at) decodes every frame from the keyframe before it: 0.5 s at 1080p
# with 10-second keyframe spacing, 1.4 s for 1000 frames of 720p. A run past this is the
# input's doing (a single keyframe and hours of frames, or a hostile file), not the
# machine's. The files written are one JPEG and a 12 KB sample.
COVER_LIMITS = ProcessLimits(cpu_seconds=20, wall_seconds=60.0, file_bytes=8 * 1024**2)

# Where ffmpeg writes its candidate, in the job's working directory.
_JPEG_NAME = "cover.jpg"
_SAMPLE_NAME = "cover-sample.rgb"
_ATTACHED_PICTURE = "0:v:disp:attached_pic?"


@dataclass(frozen=True)
class _Place:
    """Where in the file a frame is taken: ffmpeg's seek and stream options, and a name for logs."""

    seek: tuple[str, ...] = ()
    stream: str | None = None
    name: str = "the start"


@dataclass(frozen=True)
class _Still:
    """One candidate frame: its JPEG, where it was taken and how it measured."""

    jpeg: bytes
    place: _Place
    dark_share: float
    contrast: float

    @property
    def dark(self) -> bool:
        return self.dark_share >= DARK_SHARE

    @property
    def usable(self) -> bool:
        """Tell whether the frame is neither black nor near-uniform."""
        return not self.dark and self.contrast >= MIN_CONTRAST

    @property
    def rank(self) -> tuple[bool, float]:
        """Order candidates when none is usable: any colour over black, then contrast."""
        return (not self.dark, self.contrast)

    def __str__(self) -> str:
        return f"{self.place.name} ({self.dark_share:.0%} dark, contrast {self.contrast:.1f})"


def take_cover(video: Path, info: MediaInfo, options: Options, workdir: Path) -> bytes:
    """Return a JPEG of one frame of ``video``, at ``options.cover_at`` or picked past black.

    ``cover_at`` is a time in the video itself, whatever part of it is converted; the
    automatic pick looks within the part converted (``options.start``/``end``).

    Raises:
        PermanentError: the file has no picture, ``cover_at`` is past its end or has no
            picture, or ffmpeg failed on the file or ran past its budget.
        TransientError: ffmpeg cannot be run, was killed or missed its deadline.
    """
    if not info.has_video:
        raise PermanentError(NO_PICTURE)
    src = os.path.abspath(video)
    try:
        if options.cover_at is not None:
            still = _frame_at(src, workdir, options.cover_at, info)
        else:
            still = _pick(src, workdir, _candidate_times(info, options))
        if len(still.jpeg) > MAX_COVER_BYTES:
            still = _coarser(src, workdir, still)
    except PermanentError as exc:
        raise PermanentError(f"could not take a cover from the video: {exc}") from exc
    log.info("took a %d-byte cover at %s", len(still.jpeg), still)
    return still.jpeg


def _frame_at(src: str, workdir: Path, at: float, info: MediaInfo) -> _Still:
    """Return the frame shown at ``at`` seconds, or the file's cover art if it has no frame there.

    Raises:
        PermanentError: ``at`` is past the end, or the file has no picture there.
    """
    if info.duration is not None and at >= info.duration:
        raise PermanentError(
            f"the cover time ({at:g} s) is past the end of the {info.duration:.1f} s video"
        )
    # An exact seek: ffmpeg decodes from the keyframe before ``at`` up to it.
    still = _grab(src, workdir, _Place(seek=("-ss", _seconds(at)), name=f"{at:g} s"))
    # An attached picture (an MP3's cover art) is not at any time: seeking skips it.
    still = still or _grab(src, workdir, _Place(stream=_ATTACHED_PICTURE, name="its cover art"))
    if still is None:
        raise PermanentError(f"the video has no picture at {at:g} s")
    return still


def _pick(src: str, workdir: Path, times: list[float]) -> _Still:
    """Return the first candidate that is neither black nor uniform, else the best one.

    Raises:
        PermanentError: the file shows no picture at all.
    """
    seen: list[_Still] = []
    for at in times:
        # The first keyframe at or after each time: ffmpeg reads on to it but decodes
        # nothing else, where a seek to the time itself decodes every frame from the
        # keyframe before it (ffmpeg 9 does so even with -noaccurate_seek).
        seek = ("-skip_frame", "nokey", "-ss", _seconds(at))
        still = _grab(src, workdir, _Place(seek=seek, name=f"the keyframe after {at:.2f} s"))
        if still is None:
            continue  # no keyframe after it: past the end of the picture, or of its last one
        log.debug("cover candidate: %s", still)
        if still.usable:
            return still
        seen.append(still)
    if not seen:
        # No keyframe after any candidate: an attached picture (seeking skips it), a picture
        # track that ends early, or one with a single keyframe. The file's first picture then.
        first = _grab(src, workdir, _Place())
        if first is None:
            raise PermanentError("it shows no picture")
        return first
    log.info("every cover candidate is dark or uniform; taking the best of %d", len(seen))
    return max(seen, key=lambda still: still.rank)


def _coarser(src: str, workdir: Path, still: _Still) -> _Still:
    """Make ``still`` again at the coarser JPEG quality.

    Raises:
        PermanentError: it is still over ``MAX_COVER_BYTES``.
    """
    smaller = _grab(src, workdir, still.place, quality=JPEG_QUALITIES[-1])
    if smaller is None or len(smaller.jpeg) > MAX_COVER_BYTES:
        size = len((smaller or still).jpeg)
        raise PermanentError(
            f"the cover would be {size / 1e6:.1f} MB, over the {MAX_COVER_BYTES / 1e6:.1f} MB limit"
        )
    return smaller


def _candidate_times(info: MediaInfo, options: Options) -> list[float]:
    """Return where the automatic pick looks: shares of the part that is converted."""
    start = options.start or 0.0
    if info.duration is None:
        return [start + offset for offset in UNKNOWN_LENGTH_CANDIDATES_S]
    end = info.duration if options.end is None else min(options.end, info.duration)
    # A trim starting past the end is the conversion's to report; the first picture serves.
    return [start + share * (end - start) for share in CANDIDATE_SHARES if end > start]


def _grab(
    src: str, workdir: Path, place: _Place, *, quality: int = JPEG_QUALITIES[0]
) -> _Still | None:
    """Write one frame as the cover JPEG and a small RGB sample; None if there was no frame.

    Without a ``place.stream`` ffmpeg picks the stream, preferring a video to an
    attached picture.

    Raises:
        PermanentError: ffmpeg failed on the input or used up its CPU time.
        TransientError: ffmpeg could not run, was killed, or missed its deadline.
    """
    jpeg_path, sample_path = workdir / _JPEG_NAME, workdir / _SAMPLE_NAME
    for path in (jpeg_path, sample_path):
        path.unlink(missing_ok=True)
    picture = ["-map", place.stream] if place.stream else ["-an", "-sn", "-dn"]
    # iw*sar is the width shown: an anamorphic DVD's 720x576 is 4:3 or 16:9 on screen.
    fit = f"min(1,{MAX_SIDE_PX}/max(iw*sar,ih))"
    scale = f"scale=w='max(1,round(iw*sar*{fit}))':h='max(1,round(ih*{fit}))',setsar=1"
    sample = f"scale={SAMPLE_SIDE_PX}:{SAMPLE_SIDE_PX}:flags=area,format=rgb24"
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    # One decoding thread: a frame needs no more, and each thread holds its own frames
    # (an 8K frame is 50 MB) inside the memory limit.
    command += ["-threads", "1", *place.seek, *input_restrictions(), "-i", src]
    # yuvj420p (full range, as JPEG has it) named here, not negotiated: past the end of
    # the picture no frame comes to negotiate with, and the encoder must still open.
    command += [*picture, "-vf", scale, "-pix_fmt", "yuvj420p", "-frames:v", "1"]
    command += ["-q:v", str(quality)]
    command += ["-update", "1", "-f", "image2", str(jpeg_path)]
    command += [*picture, "-vf", sample, "-frames:v", "1", "-f", "rawvideo", str(sample_path)]
    run_ffmpeg(command, COVER_LIMITS, paths=(src, str(jpeg_path)))
    # With no frame to take, ffmpeg ends without error and writes nothing.
    if not jpeg_path.is_file() or not sample_path.is_file():
        return None
    jpeg, pixels = jpeg_path.read_bytes(), sample_path.read_bytes()
    if not jpeg or len(pixels) != SAMPLE_SIDE_PX * SAMPLE_SIDE_PX * 3:
        return None
    return _measure(jpeg, pixels, place)


def _measure(jpeg: bytes, pixels: bytes, place: _Place) -> _Still:
    """Measure an RGB sample: the share of dark pixels, and the spread of each channel."""
    brightest = [max(pixels[i : i + 3]) for i in range(0, len(pixels), 3)]
    dark = sum(level < DARK_LEVEL for level in brightest) / len(brightest)
    contrast = max(statistics.pstdev(pixels[channel::3]) for channel in range(3))
    return _Still(jpeg=jpeg, place=place, dark_share=dark, contrast=contrast)


def _seconds(value: float) -> str:
    """Return seconds for ffmpeg's ``-ss``, to the millisecond."""
    return f"{math.floor(value * 1000) / 1000:.3f}"


def embed_cover(path: Path, output: Format, jpeg: bytes) -> None:
    """Write ``jpeg`` into the audio file at ``path`` as its front cover, keeping its tags.

    Raises:
        ValueError: the format has no place for a cover (WAV), or ``jpeg`` is not a JPEG.
        TransientError: the file cannot be read or written; ffmpeg made it, so the fault
            is the machine's (a full disk) or ours, never the upload's.
    """
    width, height = _jpeg_size(jpeg)
    try:
        if output.name == "mp3":
            _embed_id3(path, jpeg)
        elif output.name == "m4a":
            _embed_mp4(path, jpeg)
        elif output.name == "flac":
            flac = FLAC(path)
            flac.clear_pictures()
            flac.add_picture(_flac_picture(jpeg, width, height))
            flac.save()
        elif output.name == "opus":
            opus = OggOpus(path)
            # The Ogg way: a FLAC picture block, base64 in a Vorbis comment.
            block = _flac_picture(jpeg, width, height).write()
            opus["METADATA_BLOCK_PICTURE"] = [base64.b64encode(block).decode("ascii")]
            opus.save()
        else:
            raise ValueError(f"{output.label} files have no place for cover art")
    except (MutagenError, OSError) as exc:
        raise TransientError(f"could not write the cover into the {output.label}: {exc}") from exc
    log.info("embedded a %dx%d cover of %d bytes in the %s", width, height, len(jpeg), output.label)


def _embed_id3(path: Path, jpeg: bytes) -> None:
    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        tags = ID3()
    cover = APIC(
        encoding=Encoding.UTF16, mime=MIME_JPEG, type=PictureType.COVER_FRONT, desc="", data=jpeg
    )
    tags.setall("APIC", [cover])
    # ffmpeg wrote ID3v2.3 (see transcode): some car stereos and players still read no v2.4.
    tags.save(path, v2_version=3)


def _embed_mp4(path: Path, jpeg: bytes) -> None:
    m4a = MP4(path)
    if m4a.tags is None:
        m4a.add_tags()
    m4a.tags["covr"] = [MP4Cover(jpeg, imageformat=MP4Cover.FORMAT_JPEG)]
    m4a.save()


def _flac_picture(jpeg: bytes, width: int, height: int) -> Picture:
    picture = Picture()
    picture.type = PictureType.COVER_FRONT
    picture.mime = MIME_JPEG
    picture.width, picture.height, picture.depth = width, height, 24
    picture.data = jpeg
    return picture


# The JPEG markers that start a frame header (SOF0-SOF15 but DHT, JPG and DAC).
_START_OF_FRAME = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """Return a JPEG's width and height in pixels, read from its frame header.

    Raises:
        ValueError: the bytes are not a JPEG with a frame header.
    """
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("the cover is not a JPEG")
    offset = 2
    while offset + 9 <= len(jpeg):
        if jpeg[offset] != 0xFF:
            break
        marker = jpeg[offset + 1]
        if marker in _START_OF_FRAME:
            height = int.from_bytes(jpeg[offset + 5 : offset + 7], "big")
            width = int.from_bytes(jpeg[offset + 7 : offset + 9], "big")
            return width, height
        offset += 2 + int.from_bytes(jpeg[offset + 2 : offset + 4], "big")
    raise ValueError("the cover is not a JPEG: it has no frame header")
