"""What a submission's text fields may hold, checked before anything is stored."""

from __future__ import annotations

import pytest

from common.config import EgressConfig
from common.http.errors import ApiError
from gateway.intake import read_submission


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3.320454", 3.320454), ("0", None), ("", None), ("604800", 604800.0)],
)
def test_clip_start_says_where_a_copy_begins(text, expected):
    fields = {"start": "0.979546", "clip_start": text}
    submission = read_submission(fields, EgressConfig())
    assert submission.clip_start == expected
    assert submission.options == {"start": 0.979546}  # not an output option


@pytest.mark.parametrize("text", ["-1", "soon", "nan", "inf", "1e9", "604800.5"])
def test_a_bad_clip_start_is_refused_naming_it(text):
    with pytest.raises(ApiError) as refusal:
        read_submission({"clip_start": text}, EgressConfig())
    assert refusal.value.status == 400
    assert refusal.value.code == "invalid_option"
    assert refusal.value.extra == {"field": "clip_start"}
