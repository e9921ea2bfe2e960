"""The Grafana dashboard and Prometheus configs refer only to things that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from common import metrics  # noqa: F401 - importing defines the metrics in the registry
from converter import metrics as converter_metrics  # noqa: F401 - and each service its own
from gateway import metrics as gateway_metrics  # noqa: F401
from notification import metrics as notification_metrics  # noqa: F401
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s/monitoring/files/grafana/dashboards/video2mp3.json"
PROMETHEUS_CONFIGS = [ROOT / "deploy/prometheus.yml", ROOT / "k8s/monitoring/files/prometheus.yml"]
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported_families() -> set[str]:
    """Return the names of the metric families the services define."""
    return {family.name for family in REGISTRY.collect() if family.name.startswith("video2mp3_")}


def family_of(series: str) -> str:
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]
    ]


def test_every_panel_queries_metrics_the_services_export():
    families = exported_families()
    queries = dashboard_queries()
    assert len(queries) >= 10
    for title, expr in queries:
        names = re.findall(r"\bvideo2mp3_[a-z0-9_]+", expr)
        assert names, f"panel {title!r} queries no video2mp3 metric: {expr}"
        unknown = {name for name in names if family_of(name) not in families}
        assert not unknown, f"panel {title!r} names metrics nobody exports: {unknown}"


def test_the_dashboard_covers_what_operators_need():
    titles = " ".join(title for title, _ in dashboard_queries()).lower()
    for topic in ("jobs finished", "queue depth", "error", "conversion time", "upload sizes"):
        assert topic in titles
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for quantile in ("0.50", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le) (rate(video2mp3_conversion_seconds"
            in exprs
        )


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_promtool_accepts_the_shipped_prometheus_configs(config):
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus; make deploy-tools)")
    result = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
