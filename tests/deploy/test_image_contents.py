"""Each image's code runs with only what that image holds: its extra's packages and its code.

No image is built here, so the test rebuilds an image's view of the world in a
child interpreter: only the distributions its extra pins (and what they
require) can be imported, and only ``common`` and the service's own package of
this project. It then imports the service's entry points and builds the app
from the environment its Deployment gives it, as the image's CMD would.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.files import (
    ROOT,
    SERVICES,
    UV,
    container_environment,
    filled_secret_templates,
    find,
    objects,
)

PROJECT_PACKAGES = ("common", "auth_service", "gateway", "converter", "notification", "devstack")

# Runs in the child: refuse imports of anything the image would not contain, then
# import the entry points the image's CMD uses.
CHILD = """
import importlib.abc, importlib.metadata, json, sys

allowed_dists, allowed_project, blocked_project, entry = json.loads(sys.argv[1])
owners = importlib.metadata.packages_distributions()


def canonical(name):
    return name.lower().replace("_", "-").replace(".", "-")


class ImageContents(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in blocked_project:
            raise ImportError(f"{top} is not in this image")
        if top in allowed_project or top in sys.stdlib_module_names or top not in owners:
            return None
        if not {canonical(d) for d in owners[top]} & set(allowed_dists):
            raise ImportError(f"{top} ({owners[top][0]}) is not in this image's extra")
        return None


sys.meta_path.insert(0, ImageContents())
exec(entry)
"""


def extra_closure(extra: str) -> set[str]:
    """Return the canonical names of an extra's distributions and everything they require."""
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        pending = [
            Requirement(r)
            for r in tomllib.load(pyproject)["project"]["optional-dependencies"][extra]
        ]
    names: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in names and not requirement.extras:
            continue
        names.add(name)
        for line in importlib.metadata.requires(requirement.name) or []:
            needed = Requirement(line)
            wanted = any(
                needed.marker is None or needed.marker.evaluate({"extra": extra_name})
                for extra_name in {"", *requirement.extras}
            )
            if wanted and canonicalize_name(needed.name) not in names:
                pending.append(needed)
    return names


def locked_extra(extra: str, context: Path) -> set[str]:
    """Return the names the Dockerfile's builder installs for ``extra`` from the lock."""
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, context / name)  # the build context holds no more
    result = subprocess.run(
        [str(UV), "export", "--locked", "--no-emit-project", "--no-default-groups",
         "--extra", extra, "--format", "requirements-txt"],
        cwd=context, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    pins = [Requirement(line.rstrip(" \\")) for line in lines if line and line[0].isalnum()]
    assert pins, result.stderr
    assert all(str(pin.specifier).startswith("==") for pin in pins)
    hashed = [line for line in lines if "--hash=sha256:" in line]
    assert len(hashed) >= len(pins), "every locked package has its hashes"
    # What pip installs on this (Linux) machine, as in the image: markers evaluated.
    return {
        canonicalize_name(pin.name) for pin in pins if pin.marker is None or pin.marker.evaluate()
    }


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)
def test_the_lock_gives_each_image_exactly_its_extra(service, tmp_path):
    assert locked_extra(service.extra, tmp_path) == extra_closure(service.extra) - {"video2mp3"}


def entry_code(package: str, http: bool) -> str:
    """Return what the image's CMD imports and builds first."""
    if http:
        return (
            f"import {package}.gunicorn_conf\n"
            f"from {package} import create_app\n"
            "app = create_app()\n"
            "assert app.view_functions, 'no routes'\n"
        )
    return f"import {package}.__main__\nfrom {package}.config import Config\nConfig.from_env()\n"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.package)
def test_service_starts_with_only_its_images_contents(service, jwt_key_file, tmp_path):
    deployment = find("Deployment", service.k8s)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    environ = container_environment(container, objects(), filled_secret_templates())
    if "JWT_PRIVATE_KEY_FILE" in environ:
        environ["JWT_PRIVATE_KEY_FILE"] = str(jwt_key_file)
    if "PROMETHEUS_MULTIPROC_DIR" in environ:
        environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
        (tmp_path / "prometheus").mkdir()
    allowed_project = ["common", service.package]
    arguments = [
        sorted(extra_closure(service.extra)),
        allowed_project,
        [p for p in PROJECT_PACKAGES if p not in allowed_project],
        entry_code(service.package, service.http),
    ]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(arguments)],
        cwd=tmp_path,
        env={**environ, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_check_refuses_a_package_outside_the_extra(tmp_path):
    arguments = [sorted(extra_closure("notification")), ["common"], [], "import flask\n"]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(arguments)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "flask (Flask) is not in this image's extra" in result.stderr
