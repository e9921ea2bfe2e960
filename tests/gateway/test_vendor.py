"""The page's vendored scripts are the bytes npm publishes, each with its licence beside it."""

from __future__ import annotations

import hashlib
import re

import pytest

from devstack import vendor
from gateway import web

PACKAGES = vendor.read_manifest()


def test_the_manifest_names_packages():
    assert PACKAGES, f"no package in {vendor.VENDOR_DIR / vendor.MANIFEST_NAME}"
    assert vendor.VENDOR_DIR == web.STATIC_DIR / web.VENDOR_FOLDER


@pytest.mark.parametrize("package", PACKAGES, ids=lambda package: package.package)
def test_every_vendored_file_matches_its_manifest_and_has_its_licence(package):
    folder = vendor.package_folder(package.package)
    assert re.fullmatch(r"sha(256|384|512)-[A-Za-z0-9+/]+=*", package.integrity)
    assert package.tarball.startswith(f"{vendor.REGISTRY}/")
    assert package.tarball.endswith(f"-{package.version}.tgz")
    assert package.license, "the manifest records the package's licence"

    on_disk = {path.name for path in folder.iterdir() if path.is_file()}
    assert on_disk == {taken.file for taken in package.files}, (
        "a file the manifest does not account for"
    )
    for taken in package.files:
        digest = hashlib.sha256((folder / taken.file).read_bytes()).hexdigest()
        assert digest == taken.sha256, f"{folder / taken.file} is not the file npm publishes"

    assert package.license_file in on_disk
    assert vendor.LICENSE_FILE.match(package.license_file)
    assert (folder / package.license_file).stat().st_size > 0


def test_every_vendored_file_is_in_the_manifest():
    listed = {
        vendor.package_folder(package.package) / taken.file
        for package in PACKAGES
        for taken in package.files
    }
    on_disk = {
        path
        for path in vendor.VENDOR_DIR.rglob("*")
        if path.is_file() and path.name != vendor.MANIFEST_NAME
    }
    assert on_disk == listed, "vendor a file with python -m devstack.vendor add, not by hand"
