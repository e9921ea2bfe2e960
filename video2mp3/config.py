"""Where the client finds its server, keeps its login and the uploads it may resume.

The token lives in the user's config directory
(``$XDG_CONFIG_HOME/video2mp3/credentials.json``, else
``~/.config/video2mp3/credentials.json``), readable by the user alone (0600 in
a 0700 directory), together with the server it is good for and when it
expires. An API key (``v2m_...``, from ``login --api-key``) is stored the same
way with no expiry: the server says when it stops working. An API key in
``$VIDEO2MP3_API_KEY`` wins over the stored login. The server is, in order:
``--server``, ``$VIDEO2MP3_URL``, the server of the last login,
``http://127.0.0.1:8000``.

Uploads under way (``pending``) are state, not configuration: they live in
``$XDG_STATE_HOME/video2mp3/`` (else ``~/.local/state/video2mp3/``), where the
XDG spec puts what a program keeps to carry on after a restart, out of config
directories that people sync or back up (a kept audio track can be tens of MB).
Files of this size or more are sent resumably (tus); ``$VIDEO2MP3_TUS_THRESHOLD``
(bytes) overrides the default, 0 sends every file that way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "VIDEO2MP3_URL"
API_KEY_ENV = "VIDEO2MP3_API_KEY"
API_KEY_PREFIX = "v2m_"
# The key's text as the server hands it out: v2m_<12 hex id>_<43 url-safe base64 chars>.
API_KEY_PATTERN = re.compile(r"v2m_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
APP_DIR = "video2mp3"
CREDENTIALS_FILE = "credentials.json"
# Below this a file goes in one POST /upload: a drop costs at most ~13 s of a 20 Mbit/s
# uplink, and nearly every audio-only upload (a 10-minute 256 kbit/s track is 19 MB)
# stays in one request with nothing kept on disk. From here on a lost connection would
# throw away enough to matter, and a full phone video (~2 MB a second) is past it in 16 s.
DEFAULT_TUS_THRESHOLD = 32 * 1024**2
TUS_THRESHOLD_ENV = "VIDEO2MP3_TUS_THRESHOLD"


class ConfigError(Exception):
    """The stored login cannot be read or written."""


@dataclass(frozen=True)
class Credentials:
    """A login: the bearer token (or API key), who it is for, where it works and until when."""

    server: str
    email: str  # empty for an API key that may not read the account (no jobs:read)
    token: str
    expires_at: float | None  # seconds since the epoch; None: an API key, no known end

    @property
    def is_api_key(self) -> bool:
        """Tell whether the token is an API key rather than a login session's token."""
        return self.token.startswith(API_KEY_PREFIX)

    @property
    def key_id(self) -> str | None:
        """Return the API key's id (not secret), or None for a login session's token."""
        match = API_KEY_PATTERN.fullmatch(self.token)
        return match.group(1) if match else None

    def expired(self, now: float | None = None) -> bool:
        """Tell whether the token's lifetime is over (never, that the client knows, for a key)."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the client's directory under the user's config home."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says to ignore a relative path here.
    home = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return home / APP_DIR


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the client's directory under the user's state home."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME", "")
    home = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return home / APP_DIR


def tus_threshold(environ: Mapping[str, str] | None = None) -> int:
    """Return the size from which uploads go resumably: ``$VIDEO2MP3_TUS_THRESHOLD`` or the default.

    Raises:
        ConfigError: the variable is set to something other than a number of bytes.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(TUS_THRESHOLD_ENV, "").strip()
    if not raw:
        return DEFAULT_TUS_THRESHOLD
    if not raw.isascii() or not raw.isdigit():
        raise ConfigError(f"{TUS_THRESHOLD_ENV} must be a number of bytes, got {raw!r}")
    return int(raw)


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """Return the API key in ``$VIDEO2MP3_API_KEY``, or None when it is unset or empty.

    Raises:
        ConfigError: the variable holds something that is not an API key.
    """
    environ = os.environ if environ is None else environ
    key = environ.get(API_KEY_ENV, "").strip()
    if not key:
        return None
    if not API_KEY_PATTERN.fullmatch(key):
        raise ConfigError(f"{API_KEY_ENV} does not hold an API key (v2m_<id>_<secret>)")
    return key


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return where the login is stored."""
    return config_dir(environ) / CREDENTIALS_FILE


def normalize_server(url: str) -> str:
    """Return ``url`` with a scheme (http:// when none is given) and no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    return url.rstrip("/")


def resolve_server(
    flag: str | None,
    stored: Credentials | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Pick the server: the flag, then the environment, then the last login's, then the default."""
    environ = os.environ if environ is None else environ
    for candidate in (flag, environ.get(SERVER_ENV), stored.server if stored else None):
        if candidate:
            return normalize_server(candidate)
    return DEFAULT_SERVER


def load_credentials(path: Path | None = None) -> Credentials | None:
    """Return the stored login, or None when there is none.

    Raises:
        ConfigError: the file exists but is unreadable or not a login.
    """
    path = path or credentials_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(
            server=str(raw["server"]),
            email=str(raw["email"]),
            token=str(raw["token"]),
            expires_at=None if raw["expires_at"] is None else float(raw["expires_at"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"Cannot read the stored login in {path} ({exc}); "
            "run 'video2mp3 logout' and log in again."
        ) from None


def save_credentials(credentials: Credentials, path: Path | None = None) -> Path:
    """Store the login readable by the user alone, replacing any earlier one; return the path.

    Raises:
        ConfigError: the file cannot be written.
    """
    path = path or credentials_path()
    try:
        write_private_json(path, asdict(credentials))
    except OSError as exc:
        raise ConfigError(f"Cannot store the login in {path}: {exc.strerror or exc}") from None
    return path


def write_private_json(path: Path, value: Any) -> None:
    """Replace ``path`` atomically with ``value`` as JSON, readable by the user alone.

    The directory is made 0700 if missing.

    Raises:
        OSError: the file cannot be written (nothing is left behind).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 from the start, so it is never readable by others, even briefly.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
                os.fchmod(file.fileno(), 0o600)
            json.dump(value, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def forget_credentials(path: Path | None = None) -> bool:
    """Delete the stored login; return whether there was one.

    Raises:
        ConfigError: the file exists but cannot be deleted.
    """
    path = path or credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(f"Cannot delete the login in {path}: {exc.strerror or exc}") from None
    return True
