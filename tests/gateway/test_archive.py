"""The ZIP writer of ``gateway.archive``: names, layout, exact length and ZIP64, without servers.

The archives are read back with ``zipfile``, which checks every CRC it reads. The
ZIP64 cases stream their gigabytes of zeros lazily (one shared buffer, never stored):
the test keeps the archive's headers and stands the zeros in when ``zipfile`` reads.
"""

from __future__ import annotations

import bisect
import io
import os
import struct
import zipfile
from datetime import UTC, datetime

import pytest

from gateway.archive import (
    _CENTRAL_HEADER,
    _END_RECORD,
    _LOCAL_HEADER,
    _ZIP64_END_RECORD,
    _ZIP64_LOCATOR,
    Entry,
    archive_length,
    archive_name,
    entry_name,
    outputs_of,
    stream,
    unique_name,
)

CHUNK = 4 * 1024 * 1024
ZEROS = bytes(CHUNK)
FINISHED = datetime(2026, 12, 1, 12, 30, 4, tzinfo=UTC)


def test_record_sizes_are_zipfiles_own():
    assert struct.calcsize(zipfile.structFileHeader) == _LOCAL_HEADER
    assert struct.calcsize(zipfile.structCentralDir) == _CENTRAL_HEADER
    assert struct.calcsize(zipfile.structEndArchive) == _END_RECORD
    assert struct.calcsize(zipfile.structEndArchive64) == _ZIP64_END_RECORD
    assert struct.calcsize(zipfile.structEndArchive64Locator) == _ZIP64_LOCATOR


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("holiday.mp3", "holiday.mp3"),
        ("../../etc/passwd.mp3", "passwd.mp3"),
        ("C:\\Users\\me\\clip.mp3", "clip.mp3"),
        ('a<b>c:d"e|f?g*h.mp3', "a_b_c_d_e_f_g_h.mp3"),
        ("tab\there\x00.mp3", "tab_here_.mp3"),
        ("..hidden.mp3", "hidden.mp3"),
        ("été à Zürich.mp3", "été à Zürich.mp3"),
        (".mp3", "mp3"),
        ("", "audio.mp3"),
        ("x" * 300 + ".mp3", "x" * 196 + ".mp3"),
    ],
)
def test_entry_names_are_plain_files_that_unpack_in_place(given, expected):
    assert entry_name(given) == expected


def test_duplicate_names_get_numbers_whatever_their_case():
    taken: set[str] = set()
    names = [unique_name(n, taken) for n in ("a.mp3", "a.mp3", "A.mp3", "a (1).mp3", "b.mp3")]
    assert names == ["a.mp3", "a (1).mp3", "A (2).mp3", "a (1) (1).mp3", "b.mp3"]


def test_archive_names_carry_the_moment():
    assert archive_name(FINISHED) == "video2mp3-20261201-123004.zip"


def read_from(contents: dict[str, bytes]):
    return lambda fid: (contents[fid][i : i + 1000] for i in range(0, len(contents[fid]), 1000))


def test_a_small_archive_is_stored_exactly_as_long_as_announced_and_checks_out():
    contents = {"one": os.urandom(250_000), "two": b"", "three": os.urandom(1234)}
    entries = [
        Entry("one.mp3", 250_000, FINISHED, "one"),
        Entry("zwei ü ½.mp3", 0, None, "two"),
        Entry("three.mp3", 1234, FINISHED, "three"),
    ]
    pieces = list(stream(entries, read_from(contents)))
    data = b"".join(pieces)

    assert len(data) == archive_length(entries)
    assert max(len(piece) for piece in pieces) <= 1000  # handed on as written, never gathered
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None  # every CRC matches
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["one.mp3", "zwei ü ½.mp3", "three.mp3"]
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert all(i.flag_bits & 0x08 for i in infos)  # data descriptors: written streaming
        assert infos[0].date_time == (2026, 12, 1, 12, 30, 4)
        assert infos[1].date_time == (1980, 1, 1, 0, 0, 0)
        assert archive.read("one.mp3") == contents["one"]
        assert archive.read("three.mp3") == contents["three"]
    assert b"PK\x06\x06" not in data[-200:]  # no ZIP64 end record where none is needed


def test_more_than_65535_entries_get_zip64_end_records():
    entries = [Entry(f"{n}.mp3", 0, None, "empty") for n in range(zipfile.ZIP_FILECOUNT_LIMIT + 1)]
    data = b"".join(stream(entries, lambda fid: iter(())))

    assert len(data) == archive_length(entries)
    tail = data[-(_ZIP64_END_RECORD + _ZIP64_LOCATOR + _END_RECORD) :]
    assert tail.startswith(zipfile.stringEndArchive64)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.infolist()) == zipfile.ZIP_FILECOUNT_LIMIT + 1


class LazyArchive(io.RawIOBase):
    """An archive kept as its header pieces, with its runs of zeros made up on reading."""

    def __init__(self, pieces):
        self.starts, self.parts, self.extents, self.length = [], [], [], 0
        for piece in pieces:
            size = len(piece)
            if piece is ZEROS and self.parts and self.parts[-1] is None:
                self.extents[-1] += size
            else:
                self.starts.append(self.length)
                self.parts.append(None if piece is ZEROS else piece)
                self.extents.append(size)
            self.length += size
        self.position = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        self.position = {0: 0, 1: self.position, 2: self.length}[whence] + offset
        return self.position

    def tell(self):
        return self.position

    def readinto(self, buffer):
        if self.position >= self.length:
            return 0
        index = bisect.bisect_right(self.starts, self.position) - 1
        inside = self.position - self.starts[index]
        count = min(len(buffer), self.extents[index] - inside)
        part = self.parts[index]
        buffer[:count] = bytes(count) if part is None else part[inside : inside + count]
        self.position += count
        return count


def zeros(size: int):
    whole, rest = divmod(size, CHUNK)
    yield from (ZEROS for _ in range(whole))
    if rest:
        yield bytes(rest)


def test_sizes_and_offsets_past_4_gib_get_zip64_records_and_the_length_still_matches():
    near = 4_100_000_000  # under 4 GiB, but zipfile gives it ZIP64 headers to be safe
    past = zipfile.ZIP64_LIMIT + 1
    head, tail = os.urandom(3000), os.urandom(5000)
    entries = [
        Entry("head.mp3", len(head), FINISHED, "head"),
        Entry("near.mp3", near, FINISHED, "near"),
        Entry("past.mp3", past, FINISHED, "past"),
        Entry("tail.mp3", len(tail), FINISHED, "tail"),
    ]
    sources = {
        "head": lambda: iter([head]),
        "near": lambda: zeros(near),
        "past": lambda: zeros(past),
        "tail": lambda: iter([tail]),
    }
    lazy = LazyArchive(stream(entries, lambda fid: sources[fid]()))

    assert lazy.length == archive_length(entries)
    with zipfile.ZipFile(io.BufferedReader(lazy)) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert infos["near.mp3"].file_size == near
        assert infos["past.mp3"].file_size == past
        assert infos["tail.mp3"].header_offset > zipfile.ZIP64_LIMIT
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
        assert archive.read("head.mp3") == head
        assert archive.read("tail.mp3") == tail  # found past 4 GiB, its CRC checked
        with archive.open("past.mp3") as member:
            assert member.read(1024) == bytes(1024)


def test_a_split_job_offers_its_output_then_its_tracks():
    job = {
        "mp3_fid": "whole",
        "filename": "talk.mp4",
        "options": {"format": "opus"},
        "tracks": [
            {"fid": "t1", "filename": "talk - 01 - Intro.opus"},
            {"fid": "t2", "filename": "talk - 02 - End.opus"},
        ],
    }

    outputs = outputs_of(job)

    assert [(o.fid, o.name) for o in outputs] == [
        ("whole", "talk.opus"),
        ("t1", "talk - 01 - Intro.opus"),
        ("t2", "talk - 02 - End.opus"),
    ]
    assert [(o.fid, o.name) for o in outputs_of({**job, "tracks": None})] == [
        ("whole", "talk.opus")
    ]
