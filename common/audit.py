"""The audit log: every change an admin makes, in MongoDB ``audit``, newest first.

An entry is ``{at, actor, action, target, details}``: when, the admin's email, what
was done (``user.disable``, ``quotas.set``, ``dead_letters.replay``...), to whom or
what (a user's email, a queue's name) and the particulars. Entries are only ever
added: nothing in the services updates or deletes them, so the log also outlives
the users it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import pymongo
import pymongo.collection

from common.config import MongoConfig
from common.mongo import translate_errors, utcnow

COLLECTION = "audit"


def audit_collection(
    client: pymongo.MongoClient, config: MongoConfig
) -> pymongo.collection.Collection:
    """Return the collection the audit entries live in."""
    return client[config.videos_db][COLLECTION]


class AuditLog:
    """Append entries to the audit log and read it back a page at a time."""

    def __init__(self, client: pymongo.MongoClient, config: MongoConfig) -> None:
        self._entries = audit_collection(client, config)
        self._indexed = False

    def _ensure_index(self) -> None:
        """Create the index pages are read by, once per process; safe to repeat."""
        if not self._indexed:
            with translate_errors("indexing the audit log"):
                self._entries.create_index([("at", -1), ("_id", -1)])
            self._indexed = True

    def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any] | None = None
    ) -> None:
        """Add one entry, stamped now.

        Raises:
            TransientError: MongoDB failed.
        """
        self._ensure_index()
        entry = {
            "at": utcnow(),
            "actor": actor,
            "action": action,
            "target": target,
            "details": dict(details or {}),
        }
        with translate_errors("writing the audit log"):
            self._entries.insert_one(entry)

    def page(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Return one page of entries, newest first, as the API shows them, and the total.

        Raises:
            TransientError: MongoDB failed.
        """
        self._ensure_index()
        with translate_errors("reading the audit log"):
            total = self._entries.estimated_document_count()
            cursor = self._entries.find().sort([("at", -1), ("_id", -1)]).skip(offset).limit(limit)
            entries = [_public(entry) for entry in cursor]
        return entries, total


def _public(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Return an entry with its id as a string and its time in ISO 8601 UTC."""
    return {
        "id": str(entry["_id"]),
        "at": entry["at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor": entry["actor"],
        "action": entry["action"],
        "target": entry["target"],
        "details": entry.get("details") or {},
    }
