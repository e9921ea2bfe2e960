"""k8s/overlays/: what a dev and a production cluster change in the base, and nothing more.

The base (k8s/base, which lists the component folders) runs production's settings.
Each overlay changes a few fields of it and adds or removes no object. The tables
below are the whole of each difference, and each overlay's kustomization.yaml says
the same in words: an overlay that changes anything else fails here. The checks of
test_kubernetes.py and test_environment.py also run on every overlay as rendered,
so the production overlay keeps the base's security properties; what is left for
this module is what only the layout has: the tables, and one component at a time.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.files import (
    BASE,
    ENVIRONMENTS,
    OVERLAYS,
    PINNED,
    k8s_folders,
    kustomize,
    overlay_folders,
    pod_containers,
    workloads,
)

# A field the base sets and the overlay removes.
ABSENT = "<absent>"


def dev_build(package: str, container: str) -> dict[str, str]:
    """Return the dev overlay's changes to a container: its own build, never pulled."""
    where = f"spec.template.spec.{container}"
    return {f"{where}.image": f"video2mp3/{package}:dev", f"{where}.imagePullPolicy": "Never"}


DEV_SETTINGS = {"data.APP_ENV": "development", "data.LOG_LEVEL": "DEBUG", "data.LOG_FORMAT": "text"}
# One pod, and a drain may still evict it.
ONE_POD_MAY_GO = {"spec.minAvailable": ABSENT, "spec.maxUnavailable": 1}

DEV_CHANGES: dict[tuple[str, str], dict[str, Any]] = {
    ("ConfigMap", "auth-service"): DEV_SETTINGS,
    ("ConfigMap", "gateway"): DEV_SETTINGS,
    ("ConfigMap", "converter"): DEV_SETTINGS,
    ("ConfigMap", "notification"): DEV_SETTINGS,
    ("Deployment", "auth-service"): {
        "spec.replicas": 1,
        **dev_build("auth_service", "initContainers[init-db]"),
        **dev_build("auth_service", "containers[auth-service]"),
    },
    ("Deployment", "gateway"): dev_build("gateway", "containers[gateway]"),
    ("Deployment", "converter"): dev_build("converter", "containers[converter]"),
    ("Deployment", "notification"): {
        "spec.replicas": 1,
        **dev_build("notification", "containers[notification]"),
    },
    ("HorizontalPodAutoscaler", "gateway"): {"spec.minReplicas": 1, "spec.maxReplicas": 2},
    ("ScaledObject", "converter"): {"spec.maxReplicaCount": 2},
    ("PodDisruptionBudget", "auth-service"): ONE_POD_MAY_GO,
    ("PodDisruptionBudget", "gateway"): ONE_POD_MAY_GO,
}

# The placeholder an operator replaces with the cluster's public host name.
PRODUCTION_HOST = "video2mp3.example.com"
PRODUCTION_URL = {"data.PUBLIC_URL": f"https://{PRODUCTION_HOST}"}
PRODUCTION_CHANGES: dict[tuple[str, str], dict[str, Any]] = {
    ("Ingress", "gateway"): {
        "spec.rules[0].host": PRODUCTION_HOST,
        "spec.tls[0].hosts[0]": PRODUCTION_HOST,
        "spec.tls[0].secretName": "gateway-tls",
    },
    ("ConfigMap", "gateway"): PRODUCTION_URL,
    ("ConfigMap", "notification"): PRODUCTION_URL,
}

CHANGES = {"dev": DEV_CHANGES, "production": PRODUCTION_CHANGES}


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Flatten an object to {path: scalar}; list items by their name when names are unique."""
    if isinstance(value, dict) and value:
        children = {f"{path}.{key}" if path else str(key): item for key, item in value.items()}
    elif isinstance(value, list) and value:
        names = [item.get("name") if isinstance(item, dict) else None for item in value]
        by_name = None not in names and len(set(names)) == len(names)
        children = {
            f"{path}[{names[index] if by_name else index}]": item
            for index, item in enumerate(value)
        }
    else:
        return {path: value}
    flat: dict[str, Any] = {}
    for child_path, item in children.items():
        flat.update(leaves(item, child_path))
    return flat


def key_of(doc: dict[str, Any]) -> tuple[str, str]:
    """Return ``(kind, name)``."""
    return doc["kind"], doc["metadata"]["name"]


def differences(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Return, for each object that differs, the fields ``after`` sets otherwise (or removes)."""
    old = {key_of(doc): leaves(doc) for doc in before}
    new = {key_of(doc): leaves(doc) for doc in after}
    assert set(old) == set(new), "an overlay adds or removes no object"
    changed = {}
    for key, fields in old.items():
        diff = {
            path: new[key].get(path, ABSENT)
            for path in fields.keys() | new[key].keys()
            if fields.get(path, ABSENT) != new[key].get(path, ABSENT)
        }
        if diff:
            changed[key] = diff
    return changed


def fields_of(changes: dict[tuple[str, str], dict[str, Any]]) -> set[tuple[tuple[str, str], str]]:
    """Return the (object, path) pairs of a table of changes."""
    return {(key, path) for key, fields in changes.items() for path in fields}


@pytest.fixture(scope="module")
def base(kubectl: str) -> list[dict[str, Any]]:
    """Return the base as kubectl kustomize renders it."""
    return kustomize(kubectl, BASE)


def test_the_overlays_are_dev_and_production_on_the_base_alone():
    assert [p.name for p in overlay_folders()] == sorted(CHANGES)
    assert set(ENVIRONMENTS) == {"base", *CHANGES}
    assert all(p.is_dir() for p in OVERLAYS.iterdir())
    for folder in overlay_folders():
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        # No manifest of its own: every object comes from the base.
        assert kustomization["resources"] == ["../../base"], folder.name


@pytest.mark.parametrize("overlay", sorted(CHANGES))
def test_an_overlay_renders_the_base_objects_namespace_first(kubectl, base, overlay):
    rendered = kustomize(kubectl, OVERLAYS / overlay)
    assert rendered[0]["kind"] == "Namespace"
    assert sorted(map(key_of, rendered)) == sorted(map(key_of, base))


@pytest.mark.parametrize("overlay", sorted(CHANGES))
def test_an_overlay_changes_exactly_what_it_documents(kubectl, base, overlay):
    changed = differences(base, kustomize(kubectl, OVERLAYS / overlay))
    assert changed == CHANGES[overlay], f"update k8s/overlays/{overlay}/ and this table together"


def test_dev_and_production_differ_only_in_the_documented_fields(kubectl):
    changed = differences(
        kustomize(kubectl, OVERLAYS / "production"), kustomize(kubectl, OVERLAYS / "dev")
    )
    assert fields_of(changed) == set().union(*map(fields_of, CHANGES.values()))


@pytest.mark.parametrize("overlay", sorted(CHANGES))
@pytest.mark.parametrize("folder", k8s_folders(), ids=lambda p: p.name)
def test_one_component_is_applied_by_its_app_label(kubectl, overlay, folder):
    # kubectl apply -k k8s/overlays/<overlay> -l app=<app> keeps, of what it reads, the
    # objects whose labels match: exactly the folder's, with the overlay's changes.
    alone = kustomize(kubectl, folder)
    (app,) = {doc["metadata"]["labels"]["app"] for doc in alone}
    selected = [
        doc
        for doc in kustomize(kubectl, OVERLAYS / overlay)
        if doc["metadata"].get("labels", {}).get("app") == app
    ]
    assert sorted(map(key_of, selected)) == sorted(map(key_of, alone))


def test_production_runs_only_pinned_images(kubectl):
    images = {
        f"{workload['metadata']['name']}/{container['name']}": container["image"]
        for workload in workloads(kustomize(kubectl, OVERLAYS / "production"))
        for container in pod_containers(workload)
    }
    assert {where: image for where, image in images.items() if not PINNED.fullmatch(image)} == {}
