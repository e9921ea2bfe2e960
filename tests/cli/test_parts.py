"""The client's parts that need no server: the multipart body, file names, progress, config."""

from __future__ import annotations

import io
import stat
import subprocess
import sys

import pytest
from werkzeug.formparser import parse_form_data

from video2mp3.cli.output import usage_lines
from video2mp3.client import filename_from_disposition
from video2mp3.config import (
    DEFAULT_SERVER,
    Credentials,
    config_dir,
    forget_credentials,
    load_credentials,
    resolve_server,
    save_credentials,
)
from video2mp3.multipart import FileBody, FileChanged, MultipartUpload
from video2mp3.progress import Progress, human_size


class RecordingFile(io.BytesIO):
    """Bytes in memory that remember the size of every read asked of them."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


def drain(body: MultipartUpload, read_size: int) -> bytes:
    pieces = []
    while piece := body.read(read_size):
        pieces.append(piece)
    return b"".join(pieces)


@pytest.mark.parametrize("read_size", [1, 1000, 16384, 10**9, -1])
def test_the_body_reads_the_file_a_chunk_at_a_time_and_parses_back(read_size):
    data = bytes(range(256)) * 1000  # 256 kB
    file = RecordingFile(data)
    progress: list[int] = []
    body = MultipartUpload(
        file,
        filename="Fête à Paris.mp4",
        size=len(data),
        fields={"bitrate": "128", "title": "Été"},
        content_type="video/mp4",
        chunk_size=4096,
        on_progress=progress.append,
    )

    encoded = drain(body, read_size)

    assert len(encoded) == len(body)  # the Content-Length requests will send
    assert file.reads
    assert max(file.reads) <= 4096
    assert min(file.reads) > 0
    assert progress[-1] == len(data)
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": body.content_type,
        "CONTENT_LENGTH": str(len(encoded)),
        "wsgi.input": io.BytesIO(encoded),
    }
    _, form, files = parse_form_data(environ)
    assert form.to_dict() == {"bitrate": "128", "title": "Été"}
    assert files["file"].filename == "Fête à Paris.mp4"
    assert files["file"].content_type == "video/mp4"
    assert files["file"].read() == data


def test_iterating_the_body_gives_all_of_it_in_bounded_pieces():
    data = b"x" * 10_000
    body = MultipartUpload(io.BytesIO(data), filename="a.mp4", size=len(data), chunk_size=999)
    pieces = list(body)
    assert sum(map(len, pieces)) == len(body)
    assert max(map(len, pieces)) <= 999
    assert data in b"".join(pieces)


def test_a_file_shorter_than_announced_is_an_error_not_a_hang():
    body = MultipartUpload(io.BytesIO(b"short"), filename="a.mp4", size=100)
    with pytest.raises(FileChanged, match="ended after 5 of 100 bytes"):
        drain(body, 65536)


def test_a_chunk_of_a_file_is_read_in_bounded_pieces_and_reports_the_whole_uploads_progress():
    data = bytes(range(256)) * 100
    file = RecordingFile(data)
    file.seek(5000)
    progress: list[int] = []
    body = FileBody(file, 10_000, chunk_size=4096, start=5000, on_progress=progress.append)

    read = b"".join(iter(lambda: body.read(10**9), b""))

    assert read == data[5000:15_000]
    assert len(body) == 10_000  # the Content-Length requests will send
    assert max(file.reads) <= 4096
    assert progress == [9096, 13192, 15000]
    short = FileBody(io.BytesIO(data), 30_000)
    with pytest.raises(FileChanged, match="ended after 25600 of 30000 bytes"):
        b"".join(iter(short.read, b""))


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="holiday.mp3"', "holiday.mp3"),
        ("attachment; filename=plain.mp3", "plain.mp3"),
        (
            "attachment; filename=\"F_te.mp3\"; filename*=UTF-8''F%C3%AAte%20%C3%A0%20Paris.mp3",
            "Fête à Paris.mp3",
        ),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="..\\\\..\\\\boot.ini"', "boot.ini"),
        ('attachment; filename=".hidden.mp3"', "hidden.mp3"),
        ('attachment; filename="a\\"b.mp3"', "a_b.mp3"),
        ('attachment; filename=".."', "audio.mp3"),
        ("attachment", "audio.mp3"),
        (None, "audio.mp3"),
    ],
)
def test_download_names_come_from_content_disposition_and_stay_in_the_directory(header, name):
    assert filename_from_disposition(header) == name


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_redrawn_bar_and_anything_else_one_line():
    terminal = FakeTerminal()
    bar = Progress("uploading clip.mp4", 2048, stream=terminal)
    bar.update(1024)
    bar.finish(bar.summary())
    drawn = terminal.getvalue()
    assert drawn.startswith("\r\x1b[K")
    assert "100%" in drawn
    assert "2.0 KiB / 2.0 KiB" in drawn
    assert drawn.endswith("\n")

    log = io.StringIO()
    plain = Progress("uploading clip.mp4", 2048, stream=log)
    plain.update(1024)
    plain.update(2048)
    plain.finish(plain.summary())
    assert "\r" not in log.getvalue()
    assert log.getvalue().startswith("uploading clip.mp4: 2.0 KiB in ")
    assert log.getvalue().count("\n") == 1


def test_a_resumed_upload_counts_only_this_runs_bytes():
    log = io.StringIO()
    bar = Progress("uploading big.mov", 4 * 2**20, stream=log)
    bar.resume_from(3 * 2**20)
    bar.update(4 * 2**20)
    bar.finish(bar.summary())
    assert log.getvalue().startswith("uploading big.mov: 1.0 MiB in ")
    assert log.getvalue().endswith(" (resumed at 3.0 MiB)\n")


def test_the_bar_fits_narrow_terminals():
    bar = Progress("converting a-very-long-file-name-indeed-it-goes-on.mp4", 100, unit="percent")
    bar.update(50)
    bar.detail = "processing"
    for width in (20, 40, 80, 200):
        assert len(bar.render(width)) < width
    assert "[" in bar.render(80)
    assert " 50%" in bar.render(80)


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB")]
)
def test_sizes_are_shown_for_people(count, text):
    assert human_size(count) == text


QUOTAS = {"stored_bytes": 10 * 2**30, "active_jobs": 10, "uploads_per_minute": 20}
NO_QUOTAS = dict.fromkeys(QUOTAS)


@pytest.mark.parametrize(
    ("admin", "usage", "quotas", "lines"),
    [
        (
            False,
            {"stored_bytes": 1288490189, "active_jobs": 2, "uploads_last_minute": 1},
            QUOTAS,
            ["a@b.c", "1.2 GiB of 10.0 GiB", "2 of 10", "1 in the last minute (at most 20)"],
        ),
        (
            False,
            {"stored_bytes": 10 * 2**30, "active_jobs": 10, "uploads_last_minute": 20},
            QUOTAS,
            [
                "a@b.c",
                "10.0 GiB of 10.0 GiB (full)",
                "10 of 10 (full)",
                "20 in the last minute (at most 20, reached)",
            ],
        ),
        (
            True,
            {"stored_bytes": 0, "active_jobs": 0, "uploads_last_minute": 0},
            NO_QUOTAS,
            [
                "a@b.c (admin)",
                "0 B (unlimited)",
                "0 (unlimited)",
                "0 in the last minute (unlimited)",
            ],
        ),
        (
            False,
            {"stored_bytes": 512, "active_jobs": 3, "uploads_last_minute": 0},
            {**QUOTAS, "stored_bytes": None},
            ["a@b.c", "512 B (unlimited)", "3 of 10", "0 in the last minute (at most 20)"],
        ),
    ],
)
def test_usage_is_shown_against_each_quota_or_as_unlimited(admin, usage, quotas, lines):
    account = {"email": "a@b.c", "admin": admin, "usage": usage, "quotas": quotas}
    assert usage_lines(account) == list(
        zip(("account", "storage", "active jobs", "uploads"), lines, strict=True)
    )


def test_the_config_dir_follows_xdg_and_falls_back_to_dot_config(tmp_path, monkeypatch):
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "video2mp3"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_dir({}) == tmp_path / "home" / ".config" / "video2mp3"
    assert config_dir({"XDG_CONFIG_HOME": "relative"}) == tmp_path / "home/.config/video2mp3"


def test_the_server_is_the_flag_then_the_environment_then_the_login_then_the_default():
    stored = Credentials(server="http://stored:1", email="e", token="t", expires_at=0)
    env = {"VIDEO2MP3_URL": "https://env.example/"}
    assert resolve_server("flag:2", stored, env) == "http://flag:2"
    assert resolve_server(None, stored, env) == "https://env.example"
    assert resolve_server(None, stored, {}) == "http://stored:1"
    assert resolve_server(None, None, {}) == DEFAULT_SERVER


def test_credentials_are_private_and_replaced_atomically(tmp_path):
    path = tmp_path / "cfg" / "video2mp3" / "credentials.json"
    first = Credentials(server="http://a", email="a@b.c", token="one", expires_at=1.0)
    save_credentials(first, path)
    save_credentials(
        Credentials(server="http://a", email="a@b.c", token="two", expires_at=2.0), path
    )
    assert load_credentials(path).token == "two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]
    assert forget_credentials(path) is True
    assert load_credentials(path) is None
    assert forget_credentials(path) is False


def test_the_client_imports_none_of_the_services_code():
    # It ships to users' machines alone: only the standard library and requests.
    code = (
        "import sys, video2mp3.cli\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'common', 'gateway', "
        "'auth_service', 'converter', 'notification', 'devstack', 'flask', 'pymongo', 'pika'})\n"
        "print(bad)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert completed.stdout == "[]\n"
