"""MongoDB: the client every store shares, its failures in our error classes, ids, one clock.

``common.storage`` (the GridFS buckets) and ``common.jobs`` (job records) build on
this module; together with the notification's delivery ledger they are the only
places that talk to MongoDB. Connection failures surface as ``TransientError`` and
unknown or malformed file ids as ``FileNotFound``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import gridfs.errors
import pymongo
import pymongo.errors
from bson import ObjectId
from bson.errors import InvalidId

from common.config import MongoConfig
from common.errors import PermanentError, TransientError


class FileNotFound(PermanentError):
    """No stored file has that id."""


def connect(config: MongoConfig) -> pymongo.MongoClient:
    """Create a client; it connects lazily, so this never blocks or fails on a down server."""
    return pymongo.MongoClient(
        config.uri,
        connect=False,  # safe to create before gunicorn forks its workers
        serverSelectionTimeoutMS=config.timeout_ms,
        connectTimeoutMS=config.timeout_ms,
        socketTimeoutMS=max(config.timeout_ms * 6, 30_000),
        retryWrites=True,
        appname="video2mp3",
        tz_aware=True,
    )


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn pymongo's failures into the project's error classes."""
    try:
        yield
    except gridfs.errors.NoFile as exc:
        raise FileNotFound(str(exc)) from None
    except pymongo.errors.ConnectionFailure as exc:
        # AutoReconnect, NetworkTimeout and server selection timeouts all land
        # here: the store is down or unreachable for now.
        raise TransientError(f"MongoDB unavailable while {action}: {exc}") from exc


def parse_object_id(value: object) -> ObjectId:
    """Turn a client-supplied file id into an ObjectId.

    Raises:
        FileNotFound: the value is not a well-formed id, so no file can have it.
    """
    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(str(value))
    except (InvalidId, TypeError):
        raise FileNotFound(f"no file with id {value!r}") from None


def utcnow() -> datetime:
    """Return the current time, timezone-aware, at MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
