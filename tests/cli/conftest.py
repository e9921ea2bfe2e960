"""Run the real ``video2mp3`` command against the real running system.

The stack fixtures (four services as processes) come from tests/conftest.py;
every test gets an empty config directory and state directory, so no login and
no unfinished upload leaks between tests or from the machine's user.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from video2mp3.cli import main


@dataclass
class Result:
    """What one run of the command did."""

    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the client at empty config and state directories, away from any configured server."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("VIDEO2MP3_URL", raising=False)
    monkeypatch.delenv("VIDEO2MP3_TUS_THRESHOLD", raising=False)
    monkeypatch.delenv("VIDEO2MP3_API_KEY", raising=False)
    return home


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable:
    """Run ``main(argv)`` in this process with ``stdin`` as its input; return a Result."""

    def run(*argv: str, stdin: str = "") -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def cli(run_cli: Callable, system) -> Callable:
    """Run the command against the test system's gateway."""

    def run(*argv: str, stdin: str = "") -> Result:
        return run_cli("--server", system.gateway, *argv, stdin=stdin)

    return run


@pytest.fixture
def logged_in(cli: Callable, user):
    """Log a fresh user in through the command and return that user."""
    result = cli("login", "--email", user.email, "--password-stdin", stdin=f"{user.password}\n")
    assert result.code == 0, result.err
    return user
