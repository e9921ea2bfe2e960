"""A real OpenID provider for the single sign-on tests: panva's oidc-provider under Node.

The Node program and its locked packages are in tests/support/oidc/ (``make test``
installs them with ``npm ci``). It has one confidential client that must use PKCE;
at its login page any login and password sign in, and the login is the account's
email address, always verified.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.servers import free_port, port_open
from tests.conftest import unavailable

PROGRAM_DIR = Path(__file__).resolve().parent / "oidc"
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class OIDCProvider:
    """Where the provider runs and the client it knows."""

    issuer: str
    client_id: str
    client_secret: str


@contextlib.contextmanager
def running_provider(
    redirect_uri: str,
    log_path: Path,
    *,
    client_secret: str,
    client_id: str = "video2mp3",
    port: int | None = None,
) -> Iterator[OIDCProvider]:
    """Run the provider on a loopback port until the block ends, its output to ``log_path``.

    A missing Node or ``npm ci`` skips the test locally and fails it under ``CI=true``.
    """
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (apt-get install nodejs npm)")
    if not (PROGRAM_DIR / "node_modules" / "oidc-provider").is_dir():
        unavailable(f"the test OpenID provider is not installed: npm ci --prefix {PROGRAM_DIR}")
    port = port or free_port()
    provider = OIDCProvider(
        issuer=f"http://127.0.0.1:{port}", client_id=client_id, client_secret=client_secret
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REDIRECT_URI": redirect_uri,
    }
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            [node, "provider.mjs"], cwd=PROGRAM_DIR, env=env, stdout=output, stderr=output
        )
    try:
        _wait_until_listening(process, port, log_path)
        yield provider
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"the test OpenID provider did not start:\n{log_path.read_text(errors='replace')}"
    )
