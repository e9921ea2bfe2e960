"""Each process registers the shared metrics and only its own service's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SHOW = (
    "import importlib, json, sys; from prometheus_client import REGISTRY; "
    "importlib.import_module(sys.argv[1]); "
    "names = [f.name for f in REGISTRY.collect() if f.name.startswith('video2mp3_')]; "
    "print(json.dumps(names))"
)
OWN = {
    "gateway": {"video2mp3_uploads", "video2mp3_upload_size_bytes"},
    "converter.__main__": {"video2mp3_conversion_seconds", "video2mp3_jobs_finished"},
    "notification.__main__": {"video2mp3_emails", "video2mp3_webhooks"},
}


@pytest.mark.parametrize("module", sorted(OWN))
def test_a_service_registers_its_own_metrics_and_no_other_services(module):
    names = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", SHOW, module],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
    )
    assert OWN[module] <= names
    for other, theirs in OWN.items():
        if other != module:
            assert not theirs & names, f"{module} registers {other}'s metrics"
    assert "video2mp3_messages" in names or module == "gateway"  # the shared queue metrics
