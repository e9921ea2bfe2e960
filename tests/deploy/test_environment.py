"""The environment each deployment gives a service is one the service reads, and accepts.

Every variable a Deployment or a compose service sets must be one that the
service's own configuration code looks up (a misspelt name would silently fall
back to a default); the values must load; and the placeholders of the Secret
templates and of .env.example must make a production start refuse. The k8s checks
run on the base and on each overlay as rendered (the ``docs`` fixture); only the
dev overlay runs the services in development, where placeholders are let through.
"""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from tests.deploy.config_reads import read_configuration, service_named
from tests.deploy.files import (
    ENV_EXAMPLE,
    PRODUCTION_SHAPED,
    SERVICES,
    Service,
    compose_environment,
    container_environment,
    filled_secret_templates,
    find,
    pod_containers,
    render_compose,
    secret_templates,
)

# The compose services built from this project's images, and which service each runs.
COMPOSE_SERVICES = {s.compose: s.package for s in SERVICES} | {"auth-init": "auth_service"}


def k8s_containers() -> list[object]:
    """Return (service, container name) parameters for every container of the four services."""
    return [
        pytest.param(service, container["name"], id=f"{service.package}/{container['name']}")
        for service in SERVICES
        for container in pod_containers(find("Deployment", service.k8s))
    ]


def container_named(service: Service, name: str, docs: list[dict]) -> dict:
    """Return the container called ``name`` of ``service``'s Deployment in ``docs``."""
    (container,) = [
        c for c in pod_containers(find("Deployment", service.k8s, docs)) if c["name"] == name
    ]
    return container


def usable(environ: dict[str, str], jwt_key_file) -> dict[str, str]:
    """Point a mounted signing-key path at a real key file, as the mount would."""
    if "JWT_PRIVATE_KEY_FILE" in environ:
        return {**environ, "JWT_PRIVATE_KEY_FILE": str(jwt_key_file)}
    return environ


@pytest.mark.parametrize(("service", "name"), k8s_containers())
def test_deployment_sets_only_variables_its_service_reads(
    service, name, environment, docs, jwt_key_file
):
    container = container_named(service, name, docs)
    environ = container_environment(container, docs, filled_secret_templates())
    read = read_configuration(service, usable(environ, jwt_key_file))
    assert set(environ) - read == set(), "set in k8s but never read by the service"
    assert environ["APP_ENV"] == ("development" if environment == "dev" else "production")


@pytest.mark.parametrize("environment", PRODUCTION_SHAPED)
@pytest.mark.parametrize(("service", "name"), k8s_containers())
def test_deployment_refuses_the_secret_templates_placeholders(service, name, docs, jwt_key_file):
    container = container_named(service, name, docs)
    environ = usable(container_environment(container, docs, secret_templates()), jwt_key_file)
    with pytest.raises(ConfigError, match="placeholder secrets"):
        read_configuration(service, environ)


@pytest.mark.parametrize("environment", ["dev"])
@pytest.mark.parametrize(("service", "name"), k8s_containers())
def test_dev_deployment_starts_with_the_secret_templates_placeholders(
    service, name, docs, jwt_key_file
):
    container = container_named(service, name, docs)
    environ = usable(container_environment(container, docs, secret_templates()), jwt_key_file)
    read_configuration(service, environ)


@pytest.fixture(scope="module")
def compose_filled(docker_compose, filled_env_file):
    """Return docker-compose.yml as resolved with a filled-in .env."""
    return render_compose(filled_env_file)


@pytest.fixture(scope="module")
def compose_placeholders(docker_compose):
    """Return docker-compose.yml as resolved with .env.example as it is."""
    return render_compose(ENV_EXAMPLE)


@pytest.mark.parametrize(("name", "package"), COMPOSE_SERVICES.items())
def test_compose_sets_only_variables_its_service_reads(compose_filled, name, package, jwt_key_file):
    environ = compose_environment(compose_filled["services"][name])
    read = read_configuration(service_named(package), usable(environ, jwt_key_file))
    assert set(environ) - read == set(), "set in docker-compose.yml but never read"
    assert environ["APP_ENV"] == "production"


@pytest.mark.parametrize(("name", "package"), COMPOSE_SERVICES.items())
def test_compose_refuses_the_env_example_placeholders(
    compose_placeholders, name, package, jwt_key_file
):
    environ = compose_environment(compose_placeholders["services"][name])
    with pytest.raises(ConfigError, match="placeholder secrets"):
        read_configuration(service_named(package), usable(environ, jwt_key_file))
