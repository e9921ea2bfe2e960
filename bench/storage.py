"""1 GiB through the gateway against pymongo's own GridFS put/get on the same server.

Usage: ``python -m bench.storage [--runs N] [--mib SIZE]``

Starts an isolated stack with only auth and the gateway (no converter: the upload stays
a queued job) and a mongod keeping its data on disk, as ``make run`` does. The file
is 1 GiB of random bytes (incompressible, as video is) behind an MP4 header so the
gateway's sniff accepts it, cached under .cache/bench. Interleaved, per run:

- pymongo ``GridFSBucket.upload_from_stream`` of the file (its default 255 KiB chunks);
- ``POST /upload`` of the file, streamed with a Content-Length, timed to the 202;
- pymongo ``GridFSBucket.download_to_stream`` of the stored file;
- ``GET /download`` of the same file (recorded as a done job's MP3), read to the end
  (after one unmeasured read: the first read after a large write is slow on the server).

Rates are MiB/s; ratios are gateway / pymongo (target >= 0.5). While the gateway works,
a thread samples VmRSS of its gunicorn workers every 20 ms: the growth is the largest
rise of one worker over its value just before (target < 50 MB).
"""

from __future__ import annotations

import argparse
import http.client
import time
from dataclasses import dataclass, field
from pathlib import Path

import gridfs
from bson import ObjectId

from bench.media import big_file
from bench.results import Result, Series, heading, paired_ratio, report
from bench.system import BenchSystem, bench_system
from common.jobs import DONE
from common.mongo import utcnow
from devstack.procs import RssSampler

BENCH = "storage"
READ_SIZE = 1024 * 1024


class _Discard:
    """A writable sink that keeps nothing (for pymongo's download_to_stream)."""

    def write(self, data: bytes) -> int:
        return len(data)


def gateway_download(system: BenchSystem, fid: ObjectId, headers: dict[str, str]) -> int:
    """Read ``GET /download?fid=...`` to the end; return the bytes received."""
    connection = http.client.HTTPConnection("127.0.0.1", system.gateway_port, timeout=600)
    received = 0
    try:
        connection.request("GET", f"/download?fid={fid}", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download answered {response.status}: {response.read(500)!r}")
        while piece := response.read(READ_SIZE):
            received += len(piece)
    finally:
        connection.close()
    return received


@dataclass
class StorageRun:
    """One benchmark run's stack, file and the series it fills."""

    system: BenchSystem
    source: Path
    email: str
    headers: dict[str, str]
    rates: dict[str, Series] = field(
        default_factory=lambda: {name: Series() for name in ("put", "upload", "get", "download")}
    )
    growth: dict[str, Series] = field(
        default_factory=lambda: {"upload": Series(), "download": Series()}
    )

    @property
    def size(self) -> int:
        return self.source.stat().st_size

    @property
    def bucket(self) -> gridfs.GridFSBucket:
        return gridfs.GridFSBucket(self.system.mp3s_db)

    def _rate(self, name: str, started: float) -> None:
        self.rates[name].add(self.size / 2**20 / (time.perf_counter() - started))

    def put(self) -> ObjectId:
        """Store the file with pymongo's own GridFS; return its id."""
        with self.source.open("rb") as file:
            started = time.perf_counter()
            fid = self.bucket.upload_from_stream("big.mp3", file)
            self._rate("put", started)
        return fid

    def upload(self) -> None:
        """Upload the file through the gateway, then remove what it stored."""
        with RssSampler(self.system.gateway_workers()) as sampler:
            started = time.perf_counter()
            body = self.system.upload(self.source, self.headers)
            self._rate("upload", started)
        self.growth["upload"].add(sampler.growth_mb())
        # The stored video is not needed again: keep the server's data small.
        gridfs.GridFSBucket(self.system.videos_db).delete(ObjectId(body["video_fid"]))
        self.system.videos_db["jobs"].delete_one({"_id": body["job_id"]})

    def get(self, fid: ObjectId) -> None:
        """Read the file back with pymongo's own GridFS."""
        started = time.perf_counter()
        self.bucket.download_to_stream(fid, _Discard())
        self._rate("get", started)

    def download(self, fid: ObjectId) -> None:
        """Download the file through the gateway, as a done job's MP3."""
        with RssSampler(self.system.gateway_workers()) as sampler:
            started = time.perf_counter()
            received = gateway_download(self.system, fid, self.headers)
            self._rate("download", started)
        if received != self.size:
            raise RuntimeError(f"downloaded {received} of {self.size} bytes")
        self.growth["download"].add(sampler.growth_mb())

    def record_done_job(self, fid: ObjectId) -> str:
        """Record a finished job whose MP3 is ``fid``, so ``GET /download`` serves it."""
        now = utcnow()
        job_id = f"bench-{fid}"
        self.system.videos_db["jobs"].insert_one(
            {
                "_id": job_id,
                "owner": self.email,
                "status": DONE,
                "progress": 100,
                "filename": "big.mp4",
                "size": self.size,
                "video_fid": ObjectId(),
                "mp3_fid": fid,
                "options": {},
                "created_at": now,
                "updated_at": now,
                "finished_at": now,
            }
        )
        return job_id

    def round(self, number: int) -> None:
        """Put and upload, then get and download, each pair in alternating order."""
        if number % 2 == 0:
            fid = self.put()
            self.upload()
        else:
            self.upload()
            fid = self.put()
        job_id = self.record_done_job(fid)
        # One unmeasured read first, so neither timed reader pays for bringing the file
        # just written into the server's and the kernel's caches.
        self.bucket.download_to_stream(fid, _Discard())
        if number % 2 == 0:
            self.get(fid)
            self.download(fid)
        else:
            self.download(fid)
            self.get(fid)
        self.bucket.delete(fid)
        self.system.videos_db["jobs"].delete_one({"_id": job_id})


def run(runs: int = 2, mib: int = 1024) -> list[Result]:
    """Measure and return the table's rows."""
    heading(f"storage: {mib} MiB through the gateway vs pymongo GridFS on the same server")
    source = big_file(mib)
    with bench_system(("auth", "gateway")) as system:
        email, headers = system.new_user()
        measured = StorageRun(system, source, email, headers)
        for number in range(runs):
            measured.round(number)
    rates, growth = measured.rates, measured.growth
    return [
        Result(
            BENCH, "pymongo GridFS put (baseline)", "MiB/s", rates["put"].min, rates["put"].median
        ),
        _rate_row("gateway POST /upload", rates["upload"], rates["put"]),
        _growth_row("gateway RSS growth during upload", growth["upload"]),
        Result(
            BENCH, "pymongo GridFS get (baseline)", "MiB/s", rates["get"].min, rates["get"].median
        ),
        _rate_row("gateway GET /download", rates["download"], rates["get"]),
        _growth_row("gateway RSS growth during download", growth["download"]),
    ]


def _rate_row(measure: str, rate: Series, baseline: Series) -> Result:
    ratio_min, ratio_median = paired_ratio(rate, baseline)
    return Result(
        BENCH,
        measure,
        "MiB/s",
        rate.min,
        rate.median,
        ratio_min,
        ratio_median,
        target=">= 0.5x",
        met=ratio_median >= 0.5,
    )


def _growth_row(measure: str, growth: Series) -> Result:
    return Result(
        BENCH,
        measure,
        "MB",
        min(growth.values),
        growth.median,
        target="< 50 MB",
        met=max(growth.values) < 50,
        note=f"max {max(growth.values):.1f}",
    )


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    args = parser.parse_args()
    report(run(args.runs, args.mib), BENCH)


if __name__ == "__main__":
    main()
