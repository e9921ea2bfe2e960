"""The Dockerfile's targets, docker-compose.yml and k8s/ agree on images, ports and probes.

No Docker engine runs here: the Dockerfile is read instruction by instruction,
docker-compose.yml is validated and resolved by Debian's docker-compose, and
the commands the images run are compared with the ones ``make run`` starts.
"""

from __future__ import annotations

import re

import pytest

from devstack.stack import service_specs
from tests.deploy.files import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    K8S,
    PINNED,
    ROOT,
    SERVICES,
    compose_command,
    compose_environment,
    dockerfile_stages,
    env_file_values,
    exec_form,
    find,
    healthcheck_command,
    image_env,
    image_of,
    last_argument,
    load_yaml_documents,
    pod_containers,
    probe_url,
    published_ports,
    render_compose,
    stage_chain,
    workloads,
)

STAGES = dockerfile_stages()
by_package = pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)


@pytest.fixture(scope="module")
def compose(docker_compose, filled_env_file):
    """Return docker-compose.yml as docker-compose resolves it with a filled-in .env."""
    return render_compose(filled_env_file)


def test_docker_compose_config_passes_with_the_example_env(docker_compose):
    result = compose_command("config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_names_a_missing_secret(docker_compose, tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_command("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "in .env (see .env.example)" in result.stderr


def test_compose_waits_for_healthy_dependencies_and_the_auth_schema(compose):
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service or name == "auth-init", f"{name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully"
                if dependency == "auth-init"
                else ("service_healthy")
            )
            assert condition == {"condition": expected}, (name, dependency)
    assert services["auth"]["depends_on"]["auth-init"]
    assert services["auth-init"]["command"][-1].endswith("python -m auth_service init-db")
    for datastore, line in (("mongodb", "mongo:7.0."), ("mysql", "mysql:8.0.")):
        assert services[datastore]["image"].startswith(line)
        assert any(":" in v and not v.startswith("/") for v in services[datastore]["volumes"])
    assert services["rabbitmq"]["image"].endswith("-management")
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")


def test_nothing_secret_is_committed_in_compose():
    text = COMPOSE_FILE.read_text()
    names = [name for name, _ in env_file_values(ENV_EXAMPLE)]
    secrets = [name for name in names if name.endswith(("_PASSWORD", "_SECRET"))]
    assert len(secrets) >= 13
    for variable in secrets:
        assert f"${{{variable}:?" in text, f"{variable} must come from .env"


@by_package
def test_each_target_installs_only_its_own_extra_and_code(service):
    assert stage_chain(STAGES, service.package)[0].name == "base"
    (venv,) = [a for a in STAGES[service.package].arguments("COPY") if a.startswith("--from=")]
    build = STAGES[venv.split()[0].removeprefix("--from=")]
    assert [" ".join(run.split()) for run in build.arguments("RUN")] == [
        f"uv export --locked --no-emit-project --no-default-groups --extra {service.extra}"
        " -o requirements.txt"
        " && /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.txt"
    ]
    copied = [
        a.split()[0].rstrip("/")
        for stage in stage_chain(STAGES, service.package)
        for a in stage.arguments("COPY")
        if not a.startswith("--from=") and stage.name not in ("builder",)
    ]
    assert copied == ["common", service.package]


def test_the_base_image_is_python_3_11_slim():
    (arg,) = STAGES[""].arguments("ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", arg)
    assert STAGES["base"].parent == "${PYTHON_IMAGE}"
    assert (ROOT / "Dockerfile").read_text().count("apt-get") == 0, "no system ffmpeg or curl"


@by_package
def test_image_runs_unprivileged_and_unbuffered(service):
    assert last_argument(STAGES, service.package, "USER") == "10001:10001"
    environ = image_env(STAGES, service.package)
    assert environ["PYTHONUNBUFFERED"] == "1"
    assert environ["PYTHONDONTWRITEBYTECODE"] == "1"
    assert environ[service.port_variable] == str(service.port)


@by_package
def test_image_command_is_the_one_make_run_starts(service):
    command = exec_form(last_argument(STAGES, service.package, "CMD"))
    ports = {s.port_variable: str(s.port) for s in SERVICES}
    spec = service_specs(ports, python="python")[service.compose]
    assert command == list(spec.command)


@by_package
def test_image_compose_and_k8s_agree_on_image_port_and_probe(service, compose):
    # Dockerfile
    assert last_argument(STAGES, service.package, "EXPOSE") == str(service.port)
    image_check = healthcheck_command(STAGES, service.package)
    assert probe_url(image_check) == (service.port, "/ready")
    # docker-compose.yml
    composed = compose["services"][service.compose]
    assert composed["image"] == image_of(service)
    assert composed["build"]["target"] == service.package
    assert composed["healthcheck"]["test"] == ["CMD", *image_check]
    assert compose_environment(composed).get(service.port_variable, str(service.port)) == str(
        service.port
    )
    assert set(published_ports(composed)) == ({service.port} if service.http else set())
    # k8s: the Deployment's image, port and readiness path (the rest is in test_kubernetes)
    deployment = find("Deployment", service.k8s)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image_of(service)
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert [p["containerPort"] for p in container["ports"]] == [service.port]
    assert find("ConfigMap", service.k8s)["data"][service.port_variable] == str(service.port)
    if service.http:
        (port,) = find("Service", service.k8s)["spec"]["ports"]
        assert port["port"] == service.port


def test_auth_is_published_on_this_machine_only(compose):
    assert published_ports(compose["services"]["auth"]) == {5000: "127.0.0.1"}
    assert published_ports(compose["services"]["gateway"]) == {8000: ""}
    assert compose_environment(compose["services"]["auth"])["TRUSTED_PROXIES"] == "1"
    assert compose_environment(compose["services"]["gateway"])["AUTH_SVC_ADDRESS"] == "auth:5000"


def test_dockerignore_sends_only_the_packages():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {p.removeprefix("!") for p in patterns if p.startswith("!")}
    assert included == {"pyproject.toml", "uv.lock", "requirements/uv.txt", "common"} | {
        s.package for s in SERVICES
    }


def test_the_builder_takes_uv_by_hash_and_the_lock_unchanged():
    builder = STAGES["builder"]
    assert builder.arguments("COPY") == ["requirements/uv.txt pyproject.toml uv.lock ./"]
    (install,) = builder.arguments("RUN")
    assert install.startswith("pip install --require-hashes -r uv.txt")


def every_image(compose) -> dict[str, str]:
    """Return every image compose, k8s/ (monitoring included) and the Dockerfile name, by where.

    The overlays change images through kustomize: test_overlays.py checks them as rendered.
    """
    images = {f"compose {name}": service["image"] for name, service in compose["services"].items()}
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                for container in pod_containers(doc):
                    images[f"{path.relative_to(ROOT)} {container['name']}"] = container["image"]
    (arg,) = STAGES[""].arguments("ARG")
    images["Dockerfile base"] = arg.partition("=")[2]
    return images


def test_every_image_is_pinned_to_an_exact_version(compose):
    images = every_image(compose)
    assert len(images) > 20
    floating = {where: image for where, image in images.items() if not PINNED.fullmatch(image)}
    assert floating == {}, "pin these to an exact release (no latest, no 7 or 8.0 or 3-management)"
    assert not any(":latest" in image for image in images.values())


def test_compose_and_k8s_run_the_same_datastores(compose):
    k8s = {w["metadata"]["name"]: pod_containers(w)[0]["image"] for w in workloads()}
    for datastore in ("mongodb", "mysql", "rabbitmq"):
        assert compose["services"][datastore]["image"] == k8s[datastore]


def test_rabbitmq_is_a_supported_release_line(compose):
    # Open-source RabbitMQ patches only its latest minor series (4.3 at the time of writing);
    # 3.x gets none. The quorum-queue features the services rely on (per-queue TTL,
    # x-delivery-limit, at-least-once dead-lettering) are all in 4.x.
    image = compose["services"]["rabbitmq"]["image"]
    match = re.fullmatch(r"rabbitmq:(\d+)\.(\d+)\.\d+-management", image)
    assert match, image
    assert (int(match[1]), int(match[2])) >= (4, 3)
