"""The tus protocol's header parsing on its own."""

from __future__ import annotations

import base64

import pytest

from common.http.errors import ApiError
from gateway.tus import parse_metadata


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_metadata_pairs_are_decoded_and_a_key_may_have_no_value():
    header = f"filename {b64('Été à Paris.mp4')},bitrate {b64('192')}, is_confidential"
    assert parse_metadata(header) == {
        "filename": "Été à Paris.mp4",
        "bitrate": "192",
        "is_confidential": "",
    }
    assert parse_metadata("") == {}


@pytest.mark.parametrize(
    "header",
    [
        "filename not-base64!",
        f"filename {b64('a')} extra",
        f"filename {b64('a')},filename {b64('b')}",
        "filename " + base64.b64encode(b"\xff\xfe").decode(),
        "x " + "A" * 9000,
    ],
    ids=["not-base64", "three-parts", "twice", "not-utf8", "too-long"],
)
def test_malformed_metadata_is_a_400(header):
    with pytest.raises(ApiError) as refused:
        parse_metadata(header)
    assert refused.value.status == 400
    assert refused.value.code == "invalid_metadata"
