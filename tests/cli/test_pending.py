"""The uploads a rerun of ``convert`` resumes: their fingerprint and the store that keeps them."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from video2mp3 import pending as pending_module
from video2mp3.config import (
    DEFAULT_TUS_THRESHOLD,
    ConfigError,
    state_dir,
    tus_threshold,
)
from video2mp3.pending import (
    DEFAULT_EXPIRY_SECONDS,
    STRAY_SECONDS,
    PendingUploads,
    StateError,
    fingerprint,
)

SERVER = "http://127.0.0.1:8000"
METADATA = {"filename": "holiday.mov", "bitrate": "128"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock) -> PendingUploads:
    return PendingUploads(tmp_path / "state" / "uploads", clock=clock)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "holiday.mov"
    path.write_bytes(b"v" * 1000)
    return path


def key_of(path, **changes) -> str:
    given = {
        "server": SERVER,
        "user": "a@b.c",
        "source": path,
        "options": {"bitrate": "128", "start": "5"},
        "audio_only": True,
        **changes,
    }
    return fingerprint(**given)


def test_the_fingerprint_is_the_same_for_the_same_upload(source, monkeypatch):
    first = key_of(source)
    monkeypatch.chdir(source.parent)
    # A relative path, the options in another order: the same file converted the same way.
    assert key_of(source.relative_to(source.parent)) == first
    assert key_of(source, options={"start": "5", "bitrate": "128"}) == first


@pytest.mark.parametrize(
    "change",
    ["server", "user", "path", "size", "mtime", "options", "audio_only"],
)
def test_the_fingerprint_changes_with_anything_that_makes_another_upload(source, change):
    before = key_of(source)
    changes: dict = {}
    if change == "server":
        changes["server"] = "http://127.0.0.1:8001"
    elif change == "user":
        changes["user"] = "c@d.e"
    elif change == "path":
        twin = source.with_name("twin.mov")
        twin.write_bytes(source.read_bytes())
        os.utime(twin, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
        changes["source"] = twin
    elif change == "size":
        mtime = source.stat().st_mtime_ns
        source.write_bytes(source.read_bytes() + b"x")
        os.utime(source, ns=(mtime, mtime))
    elif change == "mtime":
        os.utime(source, ns=(0, source.stat().st_mtime_ns + 1))
    elif change == "options":
        changes["options"] = {"bitrate": "128", "start": "6"}
    else:
        changes["audio_only"] = False
    assert key_of(source, **changes) != before


def test_an_entry_is_private_and_found_again_as_saved(store, source, clock):
    key = key_of(source)
    started = store.start(key, source, size=1000, metadata=METADATA, keep=False)
    assert started.url is None
    assert started.expires_at == clock.now + DEFAULT_EXPIRY_SECONDS
    saved = store.save(started, url=f"{SERVER}/files/abc", expires_at=clock.now + 60)

    found = store.find(key)

    assert found == saved
    assert (found.path, found.size, found.metadata, found.kept) == (source, 1000, METADATA, False)
    entry = store.directory / f"{key}.json"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert json.loads(entry.read_text())["url"] == f"{SERVER}/files/abc"
    assert store.find(key_of(source, user="c@d.e")) is None
    store.forget(found)
    assert store.find(key) is None
    assert source.exists(), "the source is the user's: never removed"
    assert list(store.directory.iterdir()) == []


def test_a_kept_track_moves_into_the_store_and_goes_with_its_entry(store, source, tmp_path):
    track = tmp_path / "tmp" / "audio.wav"
    track.parent.mkdir()
    track.write_bytes(b"a" * 600)
    track.chmod(0o644)
    key = key_of(source)

    started = store.start(key, track, size=600, metadata=METADATA, keep=True)

    assert not track.exists()
    assert started.path == store.directory / f"{key}.wav"
    assert started.path.read_bytes() == b"a" * 600
    assert stat.S_IMODE(started.path.stat().st_mode) == 0o600
    assert store.find(key) == started
    store.forget(started)
    assert list(store.directory.iterdir()) == []


def test_an_unusable_entry_is_dropped_when_looked_up(store, source, tmp_path, clock):
    track = tmp_path / "audio.wav"
    track.write_bytes(b"a" * 600)
    expired = store.start("1" * 64, source, size=1000, metadata=METADATA, keep=False)
    store.save(expired, url=f"{SERVER}/files/1", expires_at=clock.now + 10)
    changed = store.start("2" * 64, track, size=600, metadata=METADATA, keep=True)
    changed.path.write_bytes(b"a" * 500)  # not the bytes the server has the start of
    (store.directory / f"{'3' * 64}.json").write_text("{not json")
    clock.now += 11

    assert store.find("1" * 64) is None
    assert store.find("2" * 64) is None
    assert store.find("3" * 64) is None
    assert list(store.directory.iterdir()) == []
    assert source.exists()


def test_a_kept_track_is_always_looked_for_inside_the_store(store, source, tmp_path):
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"p" * 600)
    key = "4" * 64
    (store.directory).mkdir(parents=True)
    (store.directory / f"{key}.json").write_text(
        json.dumps(
            {
                "file": str(outside),
                "size": 600,
                "metadata": METADATA,
                "kept": True,
                "url": None,
                "expires_at": time.time() + 60,
            }
        )
    )

    assert store.find(key) is None  # no such track in the store: the entry goes
    assert outside.read_bytes() == b"p" * 600


def test_a_sweep_removes_old_strays_and_the_least_recent_tracks_past_the_cap(
    store, source, tmp_path, clock, monkeypatch
):
    monkeypatch.setattr(pending_module, "MAX_KEPT_BYTES", 1000)
    tracks = []
    for number in range(3):
        track = tmp_path / f"audio{number}.wav"
        track.write_bytes(b"a" * 400)
        started = store.start(str(number) * 64, track, size=400, metadata=METADATA, keep=True)
        tracks.append(store.save(started, url=None, expires_at=clock.now + 100 + number))
    not_kept = store.start("9" * 64, source, size=1000, metadata=METADATA, keep=False)
    old_stray = store.directory / "left-by-a-crash.wav"
    old_stray.write_bytes(b"s")
    os.utime(old_stray, (clock.now - STRAY_SECONDS - 1,) * 2)
    new_stray = store.directory / ".entry.json.123.tmp"  # another run writing its entry
    new_stray.write_bytes(b"{}")

    store.sweep()

    # 1200 bytes of tracks: the one that expires first goes.
    assert store.find(tracks[0].key) is None
    assert store.find(tracks[1].key) == tracks[1]
    assert store.find(tracks[2].key) == tracks[2]
    assert store.find(not_kept.key) == not_kept
    assert not old_stray.exists()
    assert new_stray.exists()


def test_a_directory_that_cannot_be_written_leaves_the_track_where_it_was(tmp_path, source):
    blocked = tmp_path / "state"
    blocked.write_text("a file where the directory should be")
    store = PendingUploads(blocked / "uploads")
    track = tmp_path / "audio.wav"
    track.write_bytes(b"a" * 600)

    with pytest.raises(StateError, match="cannot keep the upload's state"):
        store.start("5" * 64, track, size=600, metadata=METADATA, keep=True)

    assert track.read_bytes() == b"a" * 600


def test_the_state_dir_follows_xdg_and_falls_back_to_dot_local_state(tmp_path, monkeypatch):
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "video2mp3"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir({}) == tmp_path / "home" / ".local" / "state" / "video2mp3"
    assert state_dir({"XDG_STATE_HOME": "relative"}) == tmp_path / "home/.local/state/video2mp3"


def test_the_tus_threshold_is_the_default_or_a_number_of_bytes_from_the_environment():
    assert tus_threshold({}) == DEFAULT_TUS_THRESHOLD == 32 * 1024**2
    assert tus_threshold({"VIDEO2MP3_TUS_THRESHOLD": "0"}) == 0
    assert tus_threshold({"VIDEO2MP3_TUS_THRESHOLD": " 1048576 "}) == 1048576
    for wrong in ("32M", "-1", "1e6", "lots"):
        with pytest.raises(ConfigError, match="VIDEO2MP3_TUS_THRESHOLD must be a number"):
            tus_threshold({"VIDEO2MP3_TUS_THRESHOLD": wrong})
