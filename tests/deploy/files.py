"""Read the deployment files the way their tools do: Dockerfile, docker-compose.yml, k8s/.

The tests around them compare what these files say with each other and with
the services' own code, so every parser here is small and strict: a file that
does not have the expected shape fails loudly instead of being skipped.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
# The uv that `make` installs (pinned in requirements/uv.txt); it reads uv.lock.
UV = ROOT / ".tools" / "uv" / "bin" / "uv"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NAMESPACE = "video2mp3"
# The lead's Prometheus/Grafana folder has its own tests (tests/monitoring).
NOT_OURS = {"monitoring"}
# Folders of k8s/ that hold no component: the list the overlays build on, and the overlays.
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
# The kinds of cluster: the base as its files say (kubectl apply -k k8s/, or -f per
# folder), and each overlay as kubectl kustomize renders it.
ENVIRONMENTS = ("base", "dev", "production")
# Where production's settings hold: the dev overlay lowers them (test_overlays.py).
PRODUCTION_SHAPED = ("base", "production")
# The name kustomize recognises that `kubectl apply -f <folder>/` skips (no .yaml).
FOLDER_KUSTOMIZATION = "Kustomization"
SECRET_TEMPLATE = "secret.yaml.template"
# What the tests put where the templates say "changeme": a value no check refuses.
TEST_SECRET = "s3cr3t4tests"


@dataclass(frozen=True)
class Service:
    """One of the four services as every deployment file names it."""

    package: str  # the Python package, Dockerfile target and k8s/ folder
    extra: str  # its extra in pyproject.toml
    compose: str  # its docker-compose service
    k8s: str  # its Deployment, ConfigMap, label app=… and Service
    port: int
    port_variable: str
    http: bool  # a Flask app under gunicorn (else a queue worker)


SERVICES = (
    Service("auth_service", "auth", "auth", "auth-service", 5000, "AUTH_PORT", True),
    Service("gateway", "gateway", "gateway", "gateway", 8000, "GATEWAY_PORT", True),
    Service("converter", "converter", "converter", "converter", 9101, "CONVERTER_PORT", False),
    Service(
        "notification", "notification", "notification", "notification", 9102,
        "NOTIFICATION_PORT", False,
    ),
)  # fmt: skip


def project_version() -> str:
    """Return the version in pyproject.toml, which tags the images."""
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        return tomllib.load(pyproject)["project"]["version"]


# An exact release: MAJOR.MINOR.PATCH, with an optional "v" and variant ("-management",
# "-slim-bookworm"), or any tag pinned to its digest.
PINNED = re.compile(r"[^:@]+:v?\d+\.\d+\.\d+(-[a-z0-9.-]+)?|[^@]+@sha256:[0-9a-f]{64}")


def image_of(service: Service) -> str:
    """Return the image name and tag every deployment file uses for ``service``."""
    return f"video2mp3/{service.package}:{project_version()}"


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Return the non-empty YAML documents of a file (a fresh copy: callers may change it)."""
    return copy.deepcopy(_parsed_yaml(path, path.stat().st_mtime_ns))


@functools.cache
def _parsed_yaml(path: Path, _mtime_ns: int) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


# ---------------------------------------------------------------------- k8s/
def k8s_folders() -> list[Path]:
    """Return the component folders under k8s/ that this project's tests own."""
    skipped = NOT_OURS | {BASE.name, OVERLAYS.name}
    return sorted(p for p in K8S.iterdir() if p.is_dir() and p.name not in skipped)


def overlay_folders() -> list[Path]:
    """Return the overlays under k8s/overlays/, one per kind of cluster."""
    return sorted(p for p in OVERLAYS.iterdir() if p.is_dir())


def manifest_files() -> list[Path]:
    """Return every component folder's YAML files, and every Secret template (overlays' too)."""
    files = list(OVERLAYS.glob(f"*/{SECRET_TEMPLATE}"))
    for folder in k8s_folders():
        files += folder.glob("*.yaml")
        files += folder.glob(SECRET_TEMPLATE)
    return sorted(files)


def applied_manifest_files() -> list[Path]:
    """Return the manifests that `kubectl apply -k k8s/` applies (no Secret templates)."""
    return [p for p in manifest_files() if p.suffix == ".yaml"]


def objects(paths: list[Path] | None = None) -> list[dict[str, Any]]:
    """Return the Kubernetes objects in ``paths`` (default: every applied manifest)."""
    return [doc for path in paths or applied_manifest_files() for doc in load_yaml_documents(path)]


def kubectl_output(kubectl: str, *args: str) -> str:
    """Run kubectl with an empty home and no kubeconfig (no cluster exists here)."""
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            [kubectl, *args],
            env={"KUBECONFIG": f"{home}/kubeconfig", "HOME": home, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    return result.stdout


def kustomize(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    """Return the objects `kubectl kustomize folder` renders, in its order (a fresh copy)."""
    return copy.deepcopy(_kustomized(kubectl, folder))


@functools.cache
def _kustomized(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(kubectl_output(kubectl, "kustomize", str(folder))))


def environment_objects(environment: str, kubectl: str | None) -> list[dict[str, Any]]:
    """Return what a kind of cluster applies: the base's files, or an overlay as rendered."""
    if environment == "base":
        return objects()
    assert kubectl, "rendering an overlay needs kubectl"
    return kustomize(kubectl, OVERLAYS / environment)


def find(kind: str, name: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the one object of ``kind`` called ``name``."""
    matches = [
        doc
        for doc in (docs if docs is not None else objects())
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def secret_templates() -> dict[str, dict[str, str]]:
    """Return each templated Secret's name and its placeholder data."""
    templates = {}
    # The component folders' and the overlays' (production's TLS certificate).
    for path in sorted(K8S.rglob(SECRET_TEMPLATE)):
        for doc in load_yaml_documents(path):
            assert doc["kind"] == "Secret", path
            templates[doc["metadata"]["name"]] = dict(doc.get("stringData", {}))
    return templates


def filled_secret_templates() -> dict[str, dict[str, str]]:
    """Return the Secret templates with their placeholders filled in, as an operator would."""
    return {
        name: {key: value.replace("changeme", TEST_SECRET) for key, value in data.items()}
        for name, data in secret_templates().items()
    }


def workloads(docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Return the Deployments and StatefulSets."""
    return [
        doc
        for doc in (docs if docs is not None else objects())
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]


def pod_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a workload's init containers and containers."""
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def container_environment(
    container: dict[str, Any], docs: list[dict[str, Any]], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """Return the environment a container would get, Secrets taken from their templates."""
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environ.update(find("ConfigMap", source["configMapRef"]["name"], docs)["data"])
        else:
            environ.update(secrets[source["secretRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            environ[variable["name"]] = secrets[ref["name"]][ref["key"]]
    return environ


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    """Return the number of a container port given by number or by name."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"no container port named {port!r}"
    return numbers[0]


# ----------------------------------------------------------------- Dockerfile
@dataclass
class Stage:
    """One FROM … AS name stage of the Dockerfile and its instructions."""

    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        """Return the arguments of every ``keyword`` instruction of this stage."""
        return [args for key, args in self.instructions if key == keyword]


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """Parse the Dockerfile into its named stages (comments dropped, lines joined)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    # The ARGs before the first FROM live in a stage named "".
    stages: dict[str, Stage] = {"": Stage("", "")}
    current = stages[""]
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args.strip(), re.IGNORECASE)
            assert match, f"every stage needs a name: FROM {args}"
            current = stages[match.group(2)] = Stage(match.group(2), match.group(1))
        else:
            current.instructions.append((keyword, args.strip()))
    return stages


def stage_chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """Return ``target`` and the stages it is built on, base first."""
    chain = []
    name: str | None = target
    while name in stages:
        chain.insert(0, stages[name])
        name = stages[name].parent
    return chain


def image_env(stages: dict[str, Stage], target: str) -> dict[str, str]:
    """Return the ENV a target's image carries, inherited stages included."""
    environ: dict[str, str] = {}
    for stage in stage_chain(stages, target):
        for args in stage.arguments("ENV"):
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                environ[name] = value
    return environ


def last_argument(stages: dict[str, Stage], target: str, keyword: str) -> str | None:
    """Return the last ``keyword`` instruction's arguments in a target's chain."""
    found = [a for stage in stage_chain(stages, target) for a in stage.arguments(keyword)]
    return found[-1] if found else None


def exec_form(arguments: str) -> list[str]:
    """Return the argument list of an exec-form (JSON array) instruction."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return value


def healthcheck_command(stages: dict[str, Stage], target: str) -> list[str]:
    """Return the exec-form command of a target's HEALTHCHECK."""
    args = last_argument(stages, target, "HEALTHCHECK")
    assert args, f"{target} has no HEALTHCHECK"
    _, _, command = args.partition("CMD ")
    return exec_form(command)


def probe_url(command: list[str]) -> tuple[int, str]:
    """Return the (port, path) that a ``python -c … urlopen('URL')`` health check asks."""
    match = re.search(r"urlopen\('(http://[^']+)'", " ".join(command))
    assert match, f"health check without a urlopen URL: {command}"
    url = urlsplit(match.group(1))
    assert url.hostname == "127.0.0.1", url
    assert url.port, url
    return url.port, url.path


# ----------------------------------------------------------- docker-compose
def compose_command(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    """Run Debian's docker-compose on docker-compose.yml with only ``env_file`` for variables."""
    return subprocess.run(
        [
            *("docker-compose", "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)),
            *("--env-file", str(env_file), *args),
        ],
        # No variables from this shell: the file and env_file must say everything.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render_compose(env_file: Path) -> dict[str, Any]:
    """Return docker-compose.yml as docker-compose resolves it with ``env_file``."""
    result = compose_command("config", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a rendered compose service's environment as strings."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: str(value) for name, value in environment.items()}


def compose_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Return a rendered compose service's mounts: container path -> source (path or volume)."""
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):  # the long syntax
            mounts[entry["target"]] = entry.get("source", "")
        else:  # [source:]target[:mode]
            parts = str(entry).split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            mounts[target] = source
    return mounts


def published_ports(service: dict[str, Any]) -> dict[int, str]:
    """Return a rendered compose service's published container ports and their host address."""
    published = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # the long syntax
            published[int(entry["target"])] = entry.get("host_ip", "")
        else:  # [host_ip:]host_port:container_port[/protocol]
            *host, target = str(entry).split("/")[0].split(":")
            published[int(target)] = host[0] if len(host) == 2 else ""
    return published


def env_file_values(path: Path) -> Iterator[tuple[str, str]]:
    """Yield the NAME=value lines of an env file."""
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()
