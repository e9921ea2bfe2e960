"""The vendoring tool writes only what a tarball matching its integrity holds, as pinned."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from devstack import vendor

SCRIPT = b"window.lib = 1;\n"
LICENCE = b"MIT License\n"


def tarball(files: dict[str, bytes]) -> bytes:
    """Return a gzipped npm-style tarball holding ``files`` below ``package/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, body in files.items():
            member = tarfile.TarInfo(f"package/{path}")
            member.size = len(body)
            archive.addfile(member, io.BytesIO(body))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    """Return npm's ``dist.integrity`` for ``data``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def pinned(**changes) -> vendor.Package:
    """Return a package pinned to SCRIPT and LICENCE."""
    fields = {
        "package": "lib",
        "version": "1.0.0",
        "license": "MIT",
        "tarball": "https://registry.npmjs.org/lib/-/lib-1.0.0.tgz",
        "integrity": "unused",
        "license_file": "LICENSE",
        "files": (
            vendor.VendoredFile(
                "dist/lib.min.js", "lib.min.js", hashlib.sha256(SCRIPT).hexdigest()
            ),
            vendor.VendoredFile("LICENSE", "LICENSE", hashlib.sha256(LICENCE).hexdigest()),
        ),
    }
    return vendor.Package(**{**fields, **changes})


def test_integrity_accepts_the_tarball_and_refuses_any_other():
    data = tarball({"dist/lib.min.js": SCRIPT})
    vendor.check_integrity(data, integrity(data))
    vendor.check_integrity(data, f"sha1-xxxx {integrity(data)}")
    with pytest.raises(vendor.VendorError, match="does not match"):
        vendor.check_integrity(data + b"\0", integrity(data))
    with pytest.raises(vendor.VendorError, match="no sha256/384/512"):
        vendor.check_integrity(data, "sha1-" + base64.b64encode(b"any digest").decode())


def test_install_writes_the_pinned_files_and_removes_others(tmp_path):
    contents = vendor.tarball_files(
        tarball({"dist/lib.min.js": SCRIPT, "LICENSE": LICENCE, "src/x.js": b""})
    )
    stale = tmp_path / "lib" / "old.js"
    stale.parent.mkdir()
    stale.write_text("left from another version")
    vendor.install(pinned(), contents, tmp_path)
    assert sorted(path.name for path in (tmp_path / "lib").iterdir()) == ["LICENSE", "lib.min.js"]
    assert (tmp_path / "lib" / "lib.min.js").read_bytes() == SCRIPT


def test_install_refuses_bytes_that_differ_from_the_manifest(tmp_path):
    contents = vendor.tarball_files(tarball({"dist/lib.min.js": b"changed", "LICENSE": LICENCE}))
    with pytest.raises(vendor.VendorError, match=r"dist/lib\.min\.js differs"):
        vendor.install(pinned(), contents, tmp_path)
    assert not (tmp_path / "lib" / "lib.min.js").exists()


def test_the_manifest_round_trips(tmp_path):
    vendor.write_manifest([pinned(package="zed"), pinned()], tmp_path)
    assert [package.package for package in vendor.read_manifest(tmp_path)] == ["lib", "zed"]
    assert vendor.read_manifest(tmp_path)[0] == pinned()
