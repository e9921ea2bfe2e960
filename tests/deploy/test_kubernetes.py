"""The k8s/ manifests: valid for their Kubernetes and KEDA versions, applicable both ways, safe.

No cluster runs here. Core kinds are checked with kubernetes-validate's strict
schemas for the pinned Kubernetes version; KEDA's kinds with the JSON Schemas of
KEDA 2.16.1's CRDs exported from cloudcoil-models-keda (schemas/generate_keda.py
says how and why); the kustomizations with kubectl's own kustomize and resource
reader.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from common.config import Env, MongoConfig, RabbitConfig, is_placeholder
from gateway import create_app as create_gateway
from gateway.config import Config as GatewayConfig
from tests.deploy.files import (
    FOLDER_KUSTOMIZATION,
    K8S,
    NAMESPACE,
    SERVICES,
    find,
    image_of,
    k8s_folders,
    load_yaml_documents,
    manifest_files,
    objects,
    pod_containers,
    resolve_port,
    secret_templates,
    workloads,
)

# The Kubernetes minor the manifests target: KEDA 2.16 supports 1.29-1.31.
KUBERNETES_VERSION = "1.31.0"
# KEDA 2.16's CRDs, as cloudcoil-models-keda 2.16.1.0 models them.
KEDA_SCHEMAS = json.loads((Path(__file__).with_name("schemas") / "keda-v2.16.1.json").read_text())


def validate_keda(doc: dict[str, Any]) -> None:
    """Validate a keda.sh object against its CRD's schema.

    Raises:
        jsonschema.ValidationError: the API server would reject it.
    """
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.Draft202012Validator(KEDA_SCHEMAS["kinds"][doc["kind"]]).validate(doc)


def object_id(doc: dict[str, Any]) -> str:
    """Return ``kind/name``."""
    return f"{doc['kind']}/{doc['metadata']['name']}"


def manifest_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Return every object of every manifest and Secret template, with its file."""
    return [(path, doc) for path in manifest_files() for doc in load_yaml_documents(path)]


@pytest.mark.parametrize(
    ("path", "doc"),
    manifest_documents(),
    ids=lambda v: str(v.relative_to(K8S)) if isinstance(v, Path) else object_id(v),
)
def test_manifest_is_valid_for_its_api(path, doc):
    if doc["apiVersion"].startswith("keda.sh/"):
        validate_keda(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    metadata = doc["metadata"]
    if doc["kind"] != "Namespace":
        assert metadata["namespace"] == NAMESPACE, "kubectl apply -f needs the namespace"
    assert "app" in metadata["labels"]


def test_every_keda_kind_in_use_is_checked():
    kinds = {doc["kind"] for _, doc in manifest_documents() if "keda.sh" in doc["apiVersion"]}
    assert kinds == set(KEDA_SCHEMAS["kinds"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"minReplicas": 1}, "'minReplicas' was unexpected"),
        ({"maxReplicaCount": "ten"}, "'ten' is not valid"),
        (
            {"triggers": [{"type": "rabbitmq", "metadata": {"value": 1}}]},
            "1 is not of type 'string'",
        ),
        ({"scaleTargetRef": {"kind": "Deployment"}}, "'name' is a required property"),
    ],
)
def test_the_keda_check_rejects_what_keda_would(change, message):
    scaled = find("ScaledObject", "converter")
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_keda({**scaled, "spec": {**scaled["spec"], **change}})


def test_the_converter_scales_1_to_10_on_its_video_queue():
    scaled = find("ScaledObject", "converter")["spec"]
    deployment = find("Deployment", "converter")
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 10)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert trigger["metadata"]["queueName"] == find("ConfigMap", "converter")["data"]["VIDEO_QUEUE"]
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    # The management API over HTTPS, its certificate checked, as a user of its own.
    assert set(refs) == {"host", "username", "password", "tls", "ca"}
    templates = secret_templates()
    for ref in refs.values():
        assert ref["key"] in templates[ref["name"]]
    assert trigger["metadata"]["protocol"] == "http"
    assert templates[refs["host"]["name"]][refs["host"]["key"]].startswith("https://")
    assert templates[refs["tls"]["name"]][refs["tls"]["key"]] == "enable"


def test_the_gateway_scales_with_an_hpa():
    hpa = find("HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert "replicas" not in find("Deployment", "gateway")["spec"], "the HPA owns the count"


def nginx_size(value: str) -> int:
    """Return the bytes of an nginx size such as ``2g``, ``2048m`` or ``512k``."""
    match = re.fullmatch(r"(\d+)([kmg]?)", value.lower())
    assert match, f"not an nginx size: {value!r}"
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]


def test_the_ingress_admits_exactly_the_gateways_largest_upload():
    ingress = find("Ingress", "gateway")
    gateway_limit = Env(find("ConfigMap", "gateway")["data"]).size("MAX_CONTENT_LENGTH", 0)
    annotations = ingress["metadata"]["annotations"]
    assert nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == gateway_limit
    assert gateway_limit == 2 * 1024**3
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 600
    (rule,) = ingress["spec"]["rules"]
    for path in rule["http"]["paths"]:
        assert path["backend"] == {"service": {"name": "gateway", "port": {"name": "http"}}}
    public_url = find("ConfigMap", "gateway")["data"]["PUBLIC_URL"]
    assert public_url.endswith(f"//{rule['host']}")


def ingress_routes(request_path: str) -> bool:
    """Tell whether the gateway's Ingress routes ``request_path`` (Exact and Prefix rules)."""
    (rule,) = find("Ingress", "gateway")["spec"]["rules"]
    for path in rule["http"]["paths"]:
        if path["pathType"] == "Exact" and request_path == path["path"]:
            return True
        if path["pathType"] == "Prefix":
            # Prefix matches whole path elements: /jobs matches /jobs and /jobs/1, not /jobsx.
            prefix = path["path"].rstrip("/").split("/")
            if request_path.rstrip("/").split("/")[: len(prefix)] == prefix:
                return True
    return False


def gateway_routes() -> list[str]:
    """Return a request path for every route of the gateway app (``<x>`` filled in)."""
    app = create_gateway(
        GatewayConfig(
            mongo=MongoConfig(uri="mongodb://127.0.0.1:1/"),
            rabbit=RabbitConfig(url="amqp://u:p@127.0.0.1:1/"),
        )
    )
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    return sorted(re.sub(r"<[^>]+>", "x", rule) for rule in rules)


def test_the_ingress_routes_every_gateway_route_but_metrics():
    routes = gateway_routes()
    assert {"/metrics", "/upload"} <= set(routes)
    unrouted = [route for route in routes if not ingress_routes(route)]
    assert unrouted == ["/metrics"], "add the gateway's new routes to k8s/gateway/ingress.yaml"
    # Prometheus scrapes the pods directly; nothing outside reaches the metrics.
    for path in ("/metrics", "/metrics/", "/metrics/x"):
        assert not ingress_routes(path)
    assert not ingress_routes("/jobsx")


def test_only_the_gateway_is_exposed():
    assert [doc["metadata"]["name"] for doc in objects() if doc["kind"] == "Ingress"] == ["gateway"]
    for doc in objects():
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", object_id(doc)


# ------------------------------------------------------------------- security
@pytest.mark.parametrize("workload", workloads(), ids=object_id)
def test_pods_meet_the_restricted_pod_security_standard(workload):
    pod = workload["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod_containers(workload):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert {"requests", "limits"} <= set(container["resources"])
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= {"emptyDir", "secret", "configMap"}, volume
        if "emptyDir" in volume:
            assert "sizeLimit" in volume["emptyDir"], volume["name"]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)
def test_service_pods_run_as_10001_on_a_read_only_root(service):
    deployment = find("Deployment", service.k8s)
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        10001,
        10001,
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod_containers(deployment):
        assert container["image"] == image_of(service)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        tmp = mounts["/tmp"]  # noqa: S108 - the pod's own emptyDir, not a shared /tmp
        assert "emptyDir" in volumes[tmp], "every container needs a writable /tmp"
    if service.package == "converter":
        workdir = find("ConfigMap", "converter")["data"]["CONVERTER_WORKDIR"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[workdir]]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)
def test_probes_and_scrape_annotations_use_the_service_port(service):
    deployment = find("Deployment", service.k8s)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [service.port]
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        check = container[probe]["httpGet"]
        assert (check["path"], resolve_port(container, check["port"])) == (path, service.port)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(service.port),
        "prometheus.io/path": "/metrics",
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == deployment["spec"]["selector"]["matchLabels"] == {"app": service.k8s}
    pdb = find("PodDisruptionBudget", service.k8s)
    assert pdb["spec"]["selector"]["matchLabels"] == {"app": service.k8s}


def test_services_reach_named_container_ports():
    docs = objects()
    for service in (doc for doc in docs if doc["kind"] == "Service"):
        pods = [w for w in workloads(docs) if w["spec"]["selector"]["matchLabels"].items()
                <= service["spec"]["selector"].items()]  # fmt: skip
        assert len(pods) == 1, object_id(service)
        (container,) = pods[0]["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            assert resolve_port(container, port["targetPort"]) == port["port"], object_id(service)


def test_secret_references_name_templated_keys():
    templates = secret_templates()
    docs = objects()
    for workload in workloads(docs):
        for container in pod_containers(workload):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in templates
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in templates[ref["name"]], variable["name"]
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in templates


# Template keys that name an account or a setting rather than hold a secret.
NOT_SECRETS = {
    "MYSQL_USER", "MONGO_INITDB_ROOT_USERNAME", "RABBITMQ_USER", "SMTP_USER",
    "username", "host", "tls",  # KEDA's: a user name, the broker's address, "enable"
}  # fmt: skip


def test_secret_templates_hold_only_placeholders():
    for name, data in secret_templates().items():
        for key, value in data.items():
            # URLs carry their placeholder password inside.
            secret_free = is_placeholder(value) or "changeme" in value or key in NOT_SECRETS
            assert secret_free, f"{name}.{key} looks like a real secret"


def test_secret_templates_are_not_applied():
    for folder in k8s_folders():
        kustomization = yaml.safe_load((folder / FOLDER_KUSTOMIZATION).read_text())
        assert all(not r.startswith("secret") for r in kustomization["resources"])
    assert all(doc["kind"] != "Secret" for doc in objects())


# ------------------------------------------------------------ network policies
DESIGN_FLOWS = {
    ("gateway", "auth-service", 5000),
    ("gateway", "mongodb", 27017),
    ("gateway", "rabbitmq", 5672),
    ("converter", "mongodb", 27017),
    ("converter", "rabbitmq", 5672),
    ("notification", "mongodb", 27017),
    ("notification", "rabbitmq", 5672),
    ("auth-service", "mysql", 3306),
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Tell whether a label selector (matchLabels only, as used here) selects ``labels``."""
    assert set(selector) <= {"matchLabels"}, selector
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
    """Tell whether a policy peer covers a pod with ``labels`` in ``namespace``."""
    if "ipBlock" in peer:  # addresses outside the cluster (pods have cluster addresses)
        return namespace == "internet"
    if "namespaceSelector" in peer:
        in_namespace = selects(
            peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}
        )
    else:
        in_namespace = namespace == NAMESPACE
    return in_namespace and selects(peer.get("podSelector", {}), labels)


def allowed(policies, direction, pod, peer, port, protocol="TCP") -> bool:
    """Tell whether the policies selecting ``pod`` let it talk to ``peer`` in ``direction``."""
    kind, peers = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    applying = [
        p
        for p in policies
        if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod)
    ]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get(direction, []):
            peer_ok = peers not in rule or any(peer_matches(p, *peer) for p in rule[peers])
            ports = rule.get("ports")
            port_ok = ports is None or any(
                (p["port"], p.get("protocol", "TCP")) == (port, protocol) for p in ports
            )
            if peer_ok and port_ok:
                return True
    return False


def flow_allowed(policies, source, destination, port, protocol="TCP") -> bool:
    """Tell whether a connection is allowed both out of its source and into its destination."""
    (src_ns, src_labels), (dst_ns, dst_labels) = source, destination
    out_ok = src_ns != NAMESPACE or allowed(
        policies, "egress", src_labels, destination, port, protocol
    )
    in_ok = dst_ns != NAMESPACE or allowed(policies, "ingress", dst_labels, source, port, protocol)
    return out_ok and in_ok


def test_network_policies_allow_exactly_the_designed_flows():
    docs = objects()
    policies = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
    pods = {
        w["metadata"]["labels"]["app"]: (
            w["spec"]["template"]["metadata"]["labels"],
            [
                p["containerPort"]
                for c in w["spec"]["template"]["spec"]["containers"]
                for p in c["ports"]
            ],
        )
        for w in workloads(docs)
    }
    flows = {
        (source, destination, port)
        for source, (source_labels, _) in pods.items()
        for destination, (destination_labels, ports) in pods.items()
        for port in ports
        if source != destination
        and flow_allowed(
            policies, (NAMESPACE, source_labels), (NAMESPACE, destination_labels), port
        )
    }
    assert flows == DESIGN_FLOWS

    def pod(app):
        return (NAMESPACE, pods[app][0])

    ingress_controller = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    keda_operator = ("keda", {"app": "keda-operator"})
    cluster_dns = ("kube-system", {"k8s-app": "kube-dns"})
    internet = ("internet", {})
    assert flow_allowed(policies, ingress_controller, pod("gateway"), 8000)
    assert not flow_allowed(policies, ingress_controller, pod("auth-service"), 5000)
    assert flow_allowed(policies, keda_operator, pod("rabbitmq"), 15671)
    assert not flow_allowed(policies, keda_operator, pod("rabbitmq"), 15672)
    assert not flow_allowed(policies, keda_operator, pod("rabbitmq"), 5672)
    for app in pods:
        assert flow_allowed(policies, pod(app), cluster_dns, 53, "UDP")
        for port in (25, 465, 587, 1025, 443):  # mail relays and webhooks
            assert flow_allowed(policies, pod(app), internet, port) == (app == "notification")
        assert not flow_allowed(policies, pod(app), internet, 5432)


# ------------------------------------------------- kustomize and kubectl apply -f
def kubectl_run(kubectl: str, *args: str, home: Path) -> str:
    """Run kubectl with no kubeconfig (no cluster exists here) and return its output."""
    result = subprocess.run(
        [kubectl, *args],
        env={"KUBECONFIG": str(home / "kubeconfig"), "HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def resource_name(doc: dict[str, Any]) -> str:
    """Return ``kind.group/name`` as ``kubectl … -o name`` prints it."""
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"


def test_kubectl_kustomize_renders_everything_namespace_first(kubectl, tmp_path):
    rendered = list(yaml.safe_load_all(kubectl_run(kubectl, "kustomize", str(K8S), home=tmp_path)))
    assert rendered[0]["kind"] == "Namespace"
    assert sorted(map(object_id, rendered)) == sorted(map(object_id, objects()))


@pytest.mark.parametrize("folder", k8s_folders(), ids=lambda p: p.name)
def test_apply_f_and_apply_k_apply_the_same_objects(kubectl, tmp_path, folder):
    # `kubectl label --local -f DIR` reads DIR with the same file visitor as
    # `kubectl apply -f DIR` (files ending .yaml/.yml/.json), without a cluster.
    by_file = kubectl_run(
        kubectl, "label", "--local", "-f", str(folder), "checked=yes", "-o", "name", home=tmp_path
    ).split()
    by_kustomize = yaml.safe_load_all(kubectl_run(kubectl, "kustomize", str(folder), home=tmp_path))
    assert sorted(by_file) == sorted(map(resource_name, by_kustomize))
    assert not any(name.startswith("kustomization.") for name in by_file)


@pytest.mark.parametrize("folder", k8s_folders(), ids=lambda p: p.name)
def test_each_folder_kustomization_lists_all_its_manifests(folder):
    kustomization = yaml.safe_load((folder / FOLDER_KUSTOMIZATION).read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in folder.glob("*.yaml"))
    assert not (folder / "kustomization.yaml").exists(), "kubectl apply -f would choke on it"


def test_the_top_kustomization_includes_every_folder():
    top = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    folders = {p.name for p in k8s_folders()}
    assert {r for r in top["resources"] if not r.endswith(".yaml")} == folders
    assert top["resources"][0] == "namespace.yaml"
