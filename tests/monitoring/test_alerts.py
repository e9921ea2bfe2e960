"""The alerting rules fire when they should, name real metrics and point at a real runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import unavailable
from tests.monitoring.test_dashboard import exported_families, family_of

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/alerts.yml"
K8S_RULES = ROOT / "k8s/monitoring/files/alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
RUNBOOK = ROOT / "docs/runbook.md"
PROMETHEUS_CONFIGS = [ROOT / "deploy/prometheus.yml", ROOT / "k8s/monitoring/files/prometheus.yml"]


@pytest.fixture(scope="module")
def promtool() -> str:
    """Return promtool (Debian package prometheus), from PATH or the project's .tools."""
    found = shutil.which("promtool") or next(
        (str(path) for path in sorted((ROOT / ".tools").glob("**/promtool"))), None
    )
    if found is None:
        unavailable("promtool is not installed (Debian package prometheus; make deploy-tools)")
    return found


def alerts() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def run(promtool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_promtool_accepts_the_rules(promtool):
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


def test_the_rules_pass_their_unit_tests(promtool):
    result = run(promtool, "test", "rules", str(RULE_TESTS), cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested():
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in alerts()}


def test_kubernetes_loads_the_same_rules():
    assert K8S_RULES.read_bytes() == RULES.read_bytes(), (
        f"{K8S_RULES.relative_to(ROOT)} must be a copy of {RULES.relative_to(ROOT)}"
    )
    kustomization = yaml.safe_load((ROOT / "k8s/monitoring/kustomization.yaml").read_text())
    [generator] = [
        g for g in kustomization["configMapGenerator"] if g["name"] == "prometheus-config"
    ]
    assert "alerts.yml=files/alerts.yml" in generator["files"]


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_prometheus_loads_the_rules_file(config):
    assert yaml.safe_load(config.read_text())["rule_files"] == ["alerts.yml"]


def test_compose_mounts_the_rules_beside_the_config():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes


def test_alerts_query_metrics_the_services_export():
    families = exported_families()
    for rule in alerts():
        names = re.findall(r"\bvideo2mp3_[a-z0-9_]+", rule["expr"])
        assert names, rule["alert"]
        assert {family_of(name) for name in names} <= families, rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section():
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    for rule in alerts():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert (ROOT / path) == RUNBOOK
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in {path}"
