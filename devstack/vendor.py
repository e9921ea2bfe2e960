"""The page's vendored JavaScript: pinned npm packages, copied byte for byte, with their licences.

The page has no build step and a strict CSP (``script-src 'self'``), so a library it
uses is served from ``gateway/static/vendor/<package>/`` like its own modules. What is
there is written down in ``gateway/static/vendor/packages.json``: for each package its
version, the npm tarball and its ``dist.integrity``, and every file taken from it with
its sha256. This tool is the only writer of that folder, so a reviewer can trust that a
vendored file is exactly what npm publishes (``tests/gateway/test_vendor.py`` checks the
hashes offline)::

    python -m devstack.vendor add tus-js-client@4.3.1 dist/tus.min.js   # pin a package
    python -m devstack.vendor                                           # fetch every pin again

``add`` asks the registry for the version's tarball and integrity, takes the named files
and the package's licence, and records them; without arguments every pinned tarball is
downloaded again, checked against its integrity and its files against their sha256, and
written out, which restores a folder someone edited by hand.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import re
import tarfile
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).resolve().parent.parent / "gateway" / "static" / "vendor"
MANIFEST_NAME = "packages.json"
REGISTRY = "https://registry.npmjs.org"
# The names npm itself recognises as a package's licence file, at the package's root.
LICENSE_FILE = re.compile(r"^(?:LICEN[CS]E|COPYING)(?:[.-][\w.-]*)?$", re.IGNORECASE)
DOWNLOAD_TIMEOUT_SECONDS = 60


class VendorError(Exception):
    """A package cannot be vendored as pinned: bad integrity, missing file, changed bytes."""


@dataclass(frozen=True)
class VendoredFile:
    """One file taken from a package: where it is in the tarball, its name here, its hash."""

    source: str
    file: str
    sha256: str


@dataclass(frozen=True)
class Package:
    """One pinned package as the manifest records it."""

    package: str
    version: str
    license: str
    tarball: str
    integrity: str
    license_file: str
    files: tuple[VendoredFile, ...]

    @classmethod
    def from_json(cls, entry: dict) -> Package:
        """Build a package from its manifest entry."""
        return cls(**{**entry, "files": tuple(VendoredFile(**f) for f in entry["files"])})


def read_manifest(folder: Path = VENDOR_DIR) -> list[Package]:
    """Return the pinned packages in ``folder``'s manifest (none when there is no manifest)."""
    path = folder / MANIFEST_NAME
    if not path.exists():
        return []
    return [Package.from_json(entry) for entry in json.loads(path.read_text())["packages"]]


def write_manifest(packages: list[Package], folder: Path = VENDOR_DIR) -> None:
    """Write the manifest, packages in name order, so a change shows as a small diff."""
    entries = [asdict(package) for package in sorted(packages, key=lambda p: p.package)]
    text = json.dumps({"packages": entries}, indent=2) + "\n"
    (folder / MANIFEST_NAME).write_text(text)


def check_integrity(data: bytes, integrity: str) -> None:
    """Check ``data`` against an npm/SRI integrity string (``sha512-<base64>``, maybe several).

    Raises:
        VendorError: no hash in ``integrity`` matches, or it names no hash we know.
    """
    known = [token.split("-", 1) for token in integrity.split() if "-" in token]
    known = [
        (algorithm, digest)
        for algorithm, digest in known
        if algorithm in ("sha512", "sha384", "sha256")
    ]
    if not known:
        raise VendorError(f"no sha256/384/512 hash in integrity {integrity!r}")
    for algorithm, digest in known:
        if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == digest:
            return
    raise VendorError(f"the tarball does not match its integrity {integrity!r}")


def tarball_files(data: bytes) -> dict[str, bytes]:
    """Return the regular files of an npm tarball by path below its top folder (``package/``)."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            extracted = archive.extractfile(member)
            if len(parts) > 1 and extracted is not None:
                files["/".join(parts[1:])] = extracted.read()
    return files


def package_folder(name: str, folder: Path = VENDOR_DIR) -> Path:
    """Return the folder a package's files live in (``@scope/name`` keeps its two levels)."""
    return folder.joinpath(*name.split("/"))


def fetch(url: str) -> bytes:
    """Download ``url`` from the registry."""
    logger.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:  # noqa: S310 - https registry URL  # nosec B310
        return response.read()


def pin(spec: str, sources: list[str], folder: Path = VENDOR_DIR) -> Package:
    """Pin ``name@version`` with the files ``sources`` (tarball paths) and its licence.

    Raises:
        VendorError: the version is not exact, a file or the licence is missing, or the
            tarball does not match the registry's integrity.
    """
    name, _, version = spec.rpartition("@")
    if not name or not re.fullmatch(r"\d+\.\d+\.\d+(?:-[\w.]+)?", version):
        raise VendorError(f"name an exact version: {spec!r}, e.g. tus-js-client@4.3.1")
    metadata = json.loads(fetch(f"{REGISTRY}/{urllib.parse.quote(name, safe='@')}/{version}"))
    data = fetch(metadata["dist"]["tarball"])
    check_integrity(data, metadata["dist"]["integrity"])
    contents = tarball_files(data)
    licences = sorted(path for path in contents if LICENSE_FILE.match(path))
    if not licences:
        raise VendorError(
            f"{spec} has no licence file at its root; vendor it by hand, with its licence"
        )
    taken = []
    for source in [*sources, licences[0]]:
        if source not in contents:
            raise VendorError(f"{spec} has no file {source!r}")
        digest = hashlib.sha256(contents[source]).hexdigest()
        taken.append(VendoredFile(source, PurePosixPath(source).name, digest))
    package = Package(
        package=name,
        version=version,
        license=str(metadata.get("license", "")),
        tarball=metadata["dist"]["tarball"],
        integrity=metadata["dist"]["integrity"],
        license_file=taken[-1].file,
        files=tuple(taken),
    )
    install(package, contents, folder)
    others = [pinned for pinned in read_manifest(folder) if pinned.package != name]
    write_manifest([*others, package], folder)
    return package


def refresh(package: Package, folder: Path = VENDOR_DIR) -> None:
    """Download a pinned package again and write its files, each checked against the manifest.

    Raises:
        VendorError: the tarball or a file does not match what the manifest records.
    """
    data = fetch(package.tarball)
    check_integrity(data, package.integrity)
    install(package, tarball_files(data), folder)


def install(package: Package, contents: dict[str, bytes], folder: Path = VENDOR_DIR) -> None:
    """Write the package's files into its folder and remove any file there it does not list.

    Raises:
        VendorError: a file is missing from the tarball, differs from its recorded sha256,
            or two files would have the same name.
    """
    names = [taken.file for taken in package.files]
    if len(set(names)) != len(names):
        raise VendorError(f"{package.package}: two files would be named alike: {names}")
    target = package_folder(package.package, folder)
    target.mkdir(parents=True, exist_ok=True)
    for taken in package.files:
        body = contents.get(taken.source)
        if body is None or hashlib.sha256(body).hexdigest() != taken.sha256:
            raise VendorError(
                f"{package.package}@{package.version}: {taken.source} differs from the manifest"
            )
    for stale in target.iterdir():
        if stale.is_file() and stale.name not in names:
            stale.unlink()
    for taken in package.files:
        (target / taken.file).write_bytes(contents[taken.source])
        logger.info("wrote %s", (target / taken.file).relative_to(folder.parent))


def main() -> None:
    """Pin a package (``add``) or fetch every pinned package again."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.vendor", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command")
    add = commands.add_parser("add", help="pin name@version with the given files from its tarball")
    add.add_argument("spec", help="name@version, an exact version")
    add.add_argument("sources", nargs="+", help="paths inside the package, e.g. dist/tus.min.js")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if arguments.command == "add":
            pin(arguments.spec, arguments.sources)
        else:
            for package in read_manifest():
                refresh(package)
    except VendorError as error:
        parser.exit(1, f"vendor: {error}\n")


if __name__ == "__main__":
    main()
