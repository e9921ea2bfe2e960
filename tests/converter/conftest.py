"""Fixtures the converter's tests share: a long input, and no ffmpeg left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from converter import transcode as transcode_module
from tests.support import media


@pytest.fixture(autouse=True)
def no_ffmpeg_left_behind() -> Iterator[None]:
    """Fail any test that leaves an ffmpeg child running or unreaped."""
    yield
    assert media.ffmpeg_children() == []


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five minutes of tone: ffmpeg is still busy with it when a test interferes."""
    return media.make_audio(tmp_path_factory.mktemp("long") / "long.wav", seconds=300)


@pytest.fixture
def fast_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Have ffmpeg report progress every 0.1 s so short runs report several times."""
    monkeypatch.setattr(transcode_module, "PROGRESS_INTERVAL_S", 0.1)
