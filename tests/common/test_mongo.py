"""The MongoDB helpers every store shares: errors, ids and the clock (no server needed)."""

from __future__ import annotations

from datetime import UTC

import gridfs.errors
import pymongo.errors
import pytest
from bson import ObjectId

from common.errors import TransientError
from common.mongo import FileNotFound, parse_object_id, translate_errors, utcnow


def test_the_clock_is_aware_and_kept_to_the_millisecond():
    now = utcnow()
    assert now.tzinfo is UTC
    assert now.microsecond % 1000 == 0  # as MongoDB stores it, so a read-back compares equal


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (pymongo.errors.ServerSelectionTimeoutError("no servers"), TransientError, "reading"),
        (pymongo.errors.AutoReconnect("connection reset"), TransientError, "reading"),
        (gridfs.errors.NoFile("no file with _id 1"), FileNotFound, "no file"),
    ],
)
def test_pymongo_failures_become_ours(raised, expected, message):
    with pytest.raises(expected, match=message), translate_errors("reading a file"):
        raise raised


def test_other_pymongo_errors_pass_through():
    # A refused operation is a bug or a missing grant, not an outage: it is not retried.
    with pytest.raises(pymongo.errors.OperationFailure), translate_errors("reading"):
        raise pymongo.errors.OperationFailure("not authorized", code=13)


def test_ids_are_parsed_or_not_found():
    oid = ObjectId()
    assert parse_object_id(oid) is oid
    assert parse_object_id(str(oid)) == oid
    with pytest.raises(FileNotFound, match="no file with id 'nope'"):
        parse_object_id("nope")
