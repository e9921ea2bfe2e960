"""The k8s/ manifests: valid for their Kubernetes and KEDA versions, applicable both ways, safe.

No cluster runs here. Core kinds are checked with kubernetes-validate's strict
schemas for the pinned Kubernetes version; KEDA's kinds with the JSON Schemas of
KEDA 2.16.1's CRDs exported from cloudcoil-models-keda (schemas/generate_keda.py
says how and why); the kustomizations with kubectl's own kustomize and resource
reader. The checks that take ``docs`` run on every kind of cluster: the base as
its files say, and each overlay (k8s/overlays/) as kubectl kustomize renders it;
those parametrized with PRODUCTION_SHAPED hold where production's numbers do.
"""

from __future__ import annotations

import functools
import json
import re
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
    BASE,
    FOLDER_KUSTOMIZATION,
    K8S,
    NAMESPACE,
    PRODUCTION_SHAPED,
    SERVICES,
    find,
    image_of,
    k8s_folders,
    kubectl_output,
    kustomize,
    load_yaml_documents,
    manifest_files,
    objects,
    overlay_folders,
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


def validate(doc: dict[str, Any]) -> None:
    """Validate an object against its API's schema (KEDA's CRDs or Kubernetes', strict).

    Raises:
        jsonschema.ValidationError: a keda.sh object the API server would reject.
        kubernetes_validate.ValidationError: any other object it would reject.
    """
    if doc["apiVersion"].startswith("keda.sh/"):
        validate_keda(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def object_id(doc: dict[str, Any]) -> str:
    """Return ``kind/name``."""
    return f"{doc['kind']}/{doc['metadata']['name']}"


def find_id(key: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the one object whose ``kind/name`` is ``key``."""
    kind, _, name = key.partition("/")
    return find(kind, name, docs)


def manifest_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Return every object of every manifest and Secret template, with its file."""
    return [(path, doc) for path in manifest_files() for doc in load_yaml_documents(path)]


@pytest.mark.parametrize(
    ("path", "doc"),
    manifest_documents(),
    ids=lambda v: str(v.relative_to(K8S)) if isinstance(v, Path) else object_id(v),
)
def test_manifest_is_valid_for_its_api(path, doc):
    validate(doc)
    metadata = doc["metadata"]
    if doc["kind"] != "Namespace":
        assert metadata["namespace"] == NAMESPACE, "kubectl apply -f needs the namespace"
    assert "app" in metadata["labels"]


# The overlays add no object to the base's (test_overlays.py), so the base's list names them all.
@pytest.mark.parametrize("environment", ["dev", "production"])
@pytest.mark.parametrize("key", [object_id(doc) for doc in objects()])
def test_rendered_overlay_object_is_valid_for_its_api(docs, key):
    doc = find_id(key, docs)
    validate(doc)
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == NAMESPACE


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


@pytest.mark.parametrize("environment", PRODUCTION_SHAPED)
def test_the_converter_scales_1_to_10_on_its_video_queue(docs):
    scaled = find("ScaledObject", "converter", docs)["spec"]
    deployment = find("Deployment", "converter", docs)
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 10)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["mode"] == "QueueLength"
    video_queue = find("ConfigMap", "converter", docs)["data"]["VIDEO_QUEUE"]
    assert trigger["metadata"]["queueName"] == video_queue
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"], docs)
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    # The management API over HTTPS, its certificate checked, as a user of its own.
    assert set(refs) == {"host", "username", "password", "tls", "ca"}
    templates = secret_templates()
    for ref in refs.values():
        assert ref["key"] in templates[ref["name"]]
    assert trigger["metadata"]["protocol"] == "http"
    assert templates[refs["host"]["name"]][refs["host"]["key"]].startswith("https://")
    assert templates[refs["tls"]["name"]][refs["tls"]["key"]] == "enable"


@pytest.mark.parametrize("environment", PRODUCTION_SHAPED)
def test_the_gateway_scales_with_an_hpa(docs):
    hpa = find("HorizontalPodAutoscaler", "gateway", docs)["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert "replicas" not in find("Deployment", "gateway", docs)["spec"], "the HPA owns the count"


def nginx_size(value: str) -> int:
    """Return the bytes of an nginx size such as ``2g``, ``2048m`` or ``512k``."""
    match = re.fullmatch(r"(\d+)([kmg]?)", value.lower())
    assert match, f"not an nginx size: {value!r}"
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]


def test_the_ingress_admits_exactly_the_gateways_largest_upload(docs):
    ingress = find("Ingress", "gateway", docs)
    gateway_limit = Env(find("ConfigMap", "gateway", docs)["data"]).size("MAX_CONTENT_LENGTH", 0)
    annotations = ingress["metadata"]["annotations"]
    assert nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == gateway_limit
    assert gateway_limit == 2 * 1024**3
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 600
    (rule,) = ingress["spec"]["rules"]
    for path in rule["http"]["paths"]:
        assert path["backend"] == {"service": {"name": "gateway", "port": {"name": "http"}}}
    # Links in pages and emails name the Ingress's host, over TLS when it serves TLS.
    scheme = "https" if ingress["spec"].get("tls") else "http"
    for configmap in ("gateway", "notification"):
        public_url = find("ConfigMap", configmap, docs)["data"]["PUBLIC_URL"]
        assert public_url == f"{scheme}://{rule['host']}", configmap
    for tls in ingress["spec"].get("tls", []):
        assert tls["hosts"] == [rule["host"]]
        assert tls["secretName"] in secret_templates()


def ingress_routes(request_path: str, docs: list[dict[str, Any]]) -> bool:
    """Tell whether the gateway's Ingress routes ``request_path`` (Exact and Prefix rules)."""
    (rule,) = find("Ingress", "gateway", docs)["spec"]["rules"]
    for path in rule["http"]["paths"]:
        if path["pathType"] == "Exact" and request_path == path["path"]:
            return True
        if path["pathType"] == "Prefix":
            # Prefix matches whole path elements: /jobs matches /jobs and /jobs/1, not /jobsx.
            prefix = path["path"].rstrip("/").split("/")
            if request_path.rstrip("/").split("/")[: len(prefix)] == prefix:
                return True
    return False


@functools.cache
def gateway_routes() -> tuple[str, ...]:
    """Return a request path for every route of the gateway app (``<x>`` filled in)."""
    app = create_gateway(
        GatewayConfig(
            mongo=MongoConfig(uri="mongodb://127.0.0.1:1/"),
            rabbit=RabbitConfig(url="amqp://u:p@127.0.0.1:1/"),
        )
    )
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    return tuple(sorted(re.sub(r"<[^>]+>", "x", rule) for rule in rules))


def test_the_ingress_routes_every_gateway_route_but_metrics(docs):
    routes = gateway_routes()
    assert {"/metrics", "/upload"} <= set(routes)
    unrouted = [route for route in routes if not ingress_routes(route, docs)]
    assert unrouted == ["/metrics"], "add the gateway's new routes to k8s/gateway/ingress.yaml"
    # Prometheus scrapes the pods directly; nothing outside reaches the metrics.
    for path in ("/metrics", "/metrics/", "/metrics/x"):
        assert not ingress_routes(path, docs)
    assert not ingress_routes("/jobsx", docs)


def test_only_the_gateway_is_exposed(docs):
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Ingress"] == ["gateway"]
    for doc in docs:
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", object_id(doc)


# ------------------------------------------------------------------- security
def test_the_namespace_enforces_the_restricted_pod_security_standard(docs):
    namespace = find("Namespace", NAMESPACE, docs)
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "latest"


@pytest.mark.parametrize("key", [object_id(w) for w in workloads()])
def test_pods_meet_the_restricted_pod_security_standard(docs, key):
    workload = find_id(key, docs)
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
def test_service_pods_run_as_10001_on_a_read_only_root(service, docs):
    deployment = find("Deployment", service.k8s, docs)
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        10001,
        10001,
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod_containers(deployment):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        tmp = mounts["/tmp"]  # noqa: S108 - the pod's own emptyDir, not a shared /tmp
        assert "emptyDir" in volumes[tmp], "every container needs a writable /tmp"
    if service.package == "converter":
        workdir = find("ConfigMap", "converter", docs)["data"]["CONVERTER_WORKDIR"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[workdir]]


@pytest.mark.parametrize("environment", PRODUCTION_SHAPED)
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)
def test_service_pods_run_the_release_image(service, docs):
    for container in pod_containers(find("Deployment", service.k8s, docs)):
        assert container["image"] == image_of(service)
        assert container["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)
def test_probes_and_scrape_annotations_use_the_service_port(service, docs):
    deployment = find("Deployment", service.k8s, docs)
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
    pdb = find("PodDisruptionBudget", service.k8s, docs)
    assert pdb["spec"]["selector"]["matchLabels"] == {"app": service.k8s}


def test_services_reach_named_container_ports(docs):
    for service in (doc for doc in docs if doc["kind"] == "Service"):
        pods = [w for w in workloads(docs) if w["spec"]["selector"]["matchLabels"].items()
                <= service["spec"]["selector"].items()]  # fmt: skip
        assert len(pods) == 1, object_id(service)
        (container,) = pods[0]["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            assert resolve_port(container, port["targetPort"]) == port["port"], object_id(service)


def test_secret_references_name_templated_keys(docs):
    templates = secret_templates()
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
    for ingress in (doc for doc in docs if doc["kind"] == "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            assert tls["secretName"] in templates


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


def test_no_kustomization_lists_a_secret_template():
    kustomizations = [folder / FOLDER_KUSTOMIZATION for folder in k8s_folders()]
    kustomizations += [K8S / "kustomization.yaml", BASE / "kustomization.yaml"]
    kustomizations += [folder / "kustomization.yaml" for folder in overlay_folders()]
    for path in kustomizations:
        kustomization = yaml.safe_load(path.read_text())
        assert all("secret" not in r for r in kustomization["resources"]), path
        assert not {"secretGenerator", "generators"} & set(kustomization), path


def test_no_secret_is_applied(docs):
    assert all(doc["kind"] != "Secret" for doc in docs)


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


def test_network_policies_allow_exactly_the_designed_flows(docs):
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
def resource_name(doc: dict[str, Any]) -> str:
    """Return ``kind.group/name`` as ``kubectl … -o name`` prints it."""
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"


@pytest.mark.parametrize("folder", [K8S, BASE], ids=lambda p: str(p.relative_to(K8S.parent)))
def test_kubectl_kustomize_renders_the_base_namespace_first(kubectl, folder):
    rendered = kustomize(kubectl, folder)
    assert rendered[0]["kind"] == "Namespace"
    assert sorted(map(object_id, rendered)) == sorted(map(object_id, objects()))


@pytest.mark.parametrize("folder", k8s_folders(), ids=lambda p: p.name)
def test_apply_f_and_apply_k_apply_the_same_objects(kubectl, folder):
    # `kubectl label --local -f DIR` reads DIR with the same file visitor as
    # `kubectl apply -f DIR` (files ending .yaml/.yml/.json), without a cluster.
    by_file = kubectl_output(
        kubectl, "label", "--local", "-f", str(folder), "checked=yes", "-o", "name"
    ).split()
    by_kustomize = kustomize(kubectl, folder)
    assert sorted(by_file) == sorted(map(resource_name, by_kustomize))
    assert not any(name.startswith("kustomization.") for name in by_file)


@pytest.mark.parametrize("folder", k8s_folders(), ids=lambda p: p.name)
def test_each_folder_kustomization_lists_all_its_manifests(folder):
    kustomization = yaml.safe_load((folder / FOLDER_KUSTOMIZATION).read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in folder.glob("*.yaml"))
    assert not (folder / "kustomization.yaml").exists(), "kubectl apply -f would choke on it"


def test_the_base_includes_every_folder_and_k8s_applies_the_base():
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(base["resources"]) == sorted(f"../{p.name}" for p in k8s_folders())
    assert base["resources"][0] == "../namespace"
    assert yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"] == ["base"]
    # Nothing but folders beside k8s/kustomization.yaml: a loose manifest would be in no base.
    loose = {p.name for p in K8S.iterdir() if not p.is_dir()}
    assert loose == {"kustomization.yaml"}
