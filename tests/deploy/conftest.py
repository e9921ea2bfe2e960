"""Fixtures for the deployment checks: the offline tools and a usable environment."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import unavailable
from tests.deploy.files import ENV_EXAMPLE, ENVIRONMENTS, env_file_values, environment_objects

# What the tests put where the templates say "changeme": a value no check refuses.
TEST_SECRET = "s3cr3t4tests"


@pytest.fixture(scope="session")
def kubectl() -> str:
    """Return the kubectl binary (for kubectl kustomize and local, cluster-less commands)."""
    path = shutil.which("kubectl")
    if path is None:
        unavailable("kubectl is not installed (it comes with the machine image)")
    return path


@pytest.fixture(params=ENVIRONMENTS)
def environment(request: pytest.FixtureRequest) -> str:
    """Name a kind of cluster: the base, or an overlay (parametrize it to choose some)."""
    return request.param


@pytest.fixture
def docs(environment: str, request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Return the objects ``environment`` applies (an overlay's as kubectl kustomize renders it)."""
    kubectl = None if environment == "base" else request.getfixturevalue("kubectl")
    return environment_objects(environment, kubectl)


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Return Debian's docker-compose, the offline validator of docker-compose.yml."""
    path = shutil.which("docker-compose")
    if path is None:
        unavailable("docker-compose is not installed (Debian package; make deploy-tools)")
    return path


@pytest.fixture(scope="session")
def filled_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return .env.example with every placeholder filled in, as a user's .env would be."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    lines = [
        f"{name}={value.replace('changeme', TEST_SECRET)}"
        for name, value in env_file_values(ENV_EXAMPLE)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def jwt_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a PEM RSA key file, standing in for the mounted signing key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("jwt") / "jwt-private.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
