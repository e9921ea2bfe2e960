"""The clients one gateway app uses, made once in ``create_app`` and found per request."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from common.jobs import JobStore
from common.messaging import Publisher
from common.storage import Storage
from common.tokens import TokenVerifier
from gateway.auth_client import AuthClient
from gateway.config import Config
from gateway.intake import Intake
from gateway.resumable import ResumableUploads
from gateway.watchdog import ReadWatchdog

EXTENSION = "video2mp3.gateway"


@dataclass(frozen=True)
class Services:
    """What the views talk to; none of these connects until first used."""

    config: Config
    storage: Storage
    jobs: JobStore
    publisher: Publisher
    verifier: TokenVerifier
    auth: AuthClient
    upload_watchdog: ReadWatchdog
    intake: Intake
    resumable: ResumableUploads

    def close(self) -> None:
        """Close the connections the clients opened and stop the watchdog and the sweeper."""
        self.upload_watchdog.close()
        self.resumable.close()
        self.publisher.close()
        self.storage.close()


def services() -> Services:
    """Return the current app's services."""
    return current_app.extensions[EXTENSION]
