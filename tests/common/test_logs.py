"""Log lines carry the service and the job/request ids, in JSON or text."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from common.config import LoggingConfig
from common.logs import configure_logging, current_context, log_context


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_service_and_context(capsys, restore_root_logging):
    configure_logging("converter", LoggingConfig(level="INFO", format="json"))
    log = logging.getLogger("converter.test")
    with log_context(job_id="job-42"), log_context(request_id="req-7"):
        log.info("converted %s in %.1fs", "clip.mp4", 1.25)
    log.debug("not at INFO")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    entry = lines[0]
    assert entry["message"] == "converted clip.mp4 in 1.2s"
    assert entry["service"] == "converter"
    assert entry["level"] == "info"
    assert entry["job_id"] == "job-42"
    assert entry["request_id"] == "req-7"


def test_text_lines_append_the_ids(capsys, restore_root_logging):
    configure_logging("gateway", LoggingConfig(level="INFO", format="text"))
    with log_context(job_id="job-1"):
        logging.getLogger("gateway.x").warning("slow upload")
    out = capsys.readouterr().out
    assert "WARNING" in out
    assert "gateway" in out
    assert out.rstrip().endswith("slow upload [job_id=job-1]")


def test_configuring_twice_keeps_one_handler(capsys, restore_root_logging):
    configure_logging("auth", LoggingConfig())
    configure_logging("auth", LoggingConfig())
    logging.getLogger("auth.x").info("once")
    assert capsys.readouterr().out.count('"once"') == 1


def test_exceptions_are_logged_with_their_traceback(capsys, restore_root_logging):
    configure_logging("auth", LoggingConfig())
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("auth.x").exception("failed")
    entry = json.loads(capsys.readouterr().out)
    assert "ValueError: boom" in entry["exception"]


def test_context_is_scoped_to_the_block_and_thread():
    seen = {}
    with log_context(job_id="outer"):
        thread = threading.Thread(target=lambda: seen.update(current_context()))
        thread.start()
        thread.join()
        assert current_context() == {"job_id": "outer"}
    assert current_context() == {}
    assert seen == {}  # a new thread starts with no context


def test_unknown_context_fields_are_refused():
    with pytest.raises(ValueError, match="unknown log context fields"), log_context(user="x"):
        pass
