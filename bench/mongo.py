"""The store's own choices, each against its alternative, on one genuine mongod.

Usage: ``python -m bench.mongo [--runs N] [--mib N]``

Three choices were first made against SecantusDB, which plans queries differently
from MongoDB; this measures each again on the mongod that ``make run`` starts (its
data on disk, as there), with the server's CPU read from ``/proc``:

- ``JobStore.get_owned`` asks for a job by ``_id`` alone and compares the owner in
  Python, against asking for ``_id`` and ``owner`` together (5,000 jobs).
- ``JobStore.list_owned`` reads a page of 20 of one owner's 1,000 jobs through indexes
  that end in ``_id`` (the sort's tie-break), against the indexes without it.
- ``ChunkReader`` reads a file in batches of chunks by their numbers, against pymongo's
  own ``GridOut.readchunk`` (one cursor over the chunks; client and server CPU, and wall).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymongo
from bson import ObjectId

from bench.measurement import interleave, server_cpu_per_call
from bench.results import Result, Series, heading, report, series_row
from common.config import MongoConfig
from common.jobs import SUPERSEDED_INDEXES, JobStore
from common.procs import cpu_seconds
from common.storage import Storage
from devstack import servers

BENCH = "mongo"
OWNERS = 5
JOBS_PER_OWNER = 1000


def jobs_collection(storage: Storage) -> pymongo.collection.Collection:
    """Return the jobs collection, for what the benchmark does around ``JobStore``."""
    return storage.client[storage.config.videos_db]["jobs"]


def fill_jobs(store: JobStore, jobs: pymongo.collection.Collection, owners: list[str]) -> list[str]:
    """Create ``JOBS_PER_OWNER`` jobs for each owner, spread over time; return their ids."""
    created: list[str] = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(JOBS_PER_OWNER * len(owners)):
        job = store.create(
            job_id=uuid.uuid4().hex,
            owner=owners[index % len(owners)],
            video_fid=ObjectId(),
            filename="clip.mp4",
            size=1,
            options={},
        )
        created.append(job["_id"])
    # Distinct creation times, as real jobs have.
    jobs.bulk_write(
        [
            pymongo.UpdateOne(
                {"_id": job_id}, {"$set": {"created_at": start + timedelta(seconds=i)}}
            )
            for i, job_id in enumerate(created)
        ]
    )
    return created


def lookups(server: servers.MongoServer, storage: Storage, runs: int) -> list[Result]:
    """Time the job lookup by _id alone against _id and owner together."""
    store = JobStore(storage.client, storage.config)
    store.ensure_indexes()
    owners = [f"owner-{n}@bench.test" for n in range(OWNERS)]
    jobs = jobs_collection(storage)
    job_ids = fill_jobs(store, jobs, owners)
    owner_of = {job_id: owners[i % OWNERS] for i, job_id in enumerate(job_ids)}
    sample = job_ids[:: len(job_ids) // 2000]

    def by_id() -> float:
        calls = iter(sample)
        return server_cpu_per_call(
            server.pid, lambda: store.get_owned(next(calls), owners[0]), len(sample)
        )

    def by_id_and_owner() -> float:
        calls = iter(sample)

        def call() -> object:
            job_id = next(calls)
            return jobs.find_one({"_id": job_id, "owner": owner_of[job_id]})

        return server_cpu_per_call(server.pid, call, len(sample))

    series = interleave(runs, by_id=by_id, by_id_and_owner=by_id_and_owner)
    return [
        series_row(
            BENCH,
            "job by _id and owner, server CPU per query (baseline)",
            series["by_id_and_owner"],
            unit="ms",
        ),
        series_row(
            BENCH,
            "job by _id alone, owner compared in Python (get_owned)",
            series["by_id"],
            series["by_id_and_owner"],
            unit="ms",
        ),
        *pages(server, store, jobs, owners, runs),
    ]


def pages(
    server: servers.MongoServer,
    store: JobStore,
    jobs: pymongo.collection.Collection,
    owners: list[str],
    runs: int,
) -> list[Result]:
    """Time a page of the job list with the sort's indexes, and with the superseded ones."""
    current = [name for name in jobs.index_information() if name.startswith("owner_")]
    calls = 200

    def page() -> None:
        store.list_owned(owners[1], limit=20, offset=40)

    def with_current() -> float:
        return server_cpu_per_call(server.pid, page, calls)

    def with_superseded() -> float:
        for name in current:
            jobs.drop_index(name)
        jobs.create_index([("owner", 1), ("created_at", -1)], name=SUPERSEDED_INDEXES[0])
        jobs.create_index(
            [("owner", 1), ("status", 1), ("created_at", -1)], name=SUPERSEDED_INDEXES[1]
        )
        try:
            return server_cpu_per_call(server.pid, page, calls)
        finally:
            store.ensure_indexes()  # drops the superseded ones again

    series = interleave(runs, current=with_current, superseded=with_superseded)
    return [
        series_row(
            BENCH,
            f"page of 20 of {JOBS_PER_OWNER} jobs, indexes without _id, server CPU (baseline)",
            series["superseded"],
            unit="ms",
        ),
        series_row(
            BENCH,
            "the same page, indexes ending in _id (ensure_indexes)",
            series["current"],
            series["superseded"],
            unit="ms",
        ),
    ]


def reads(server: servers.MongoServer, storage: Storage, runs: int, mib: int) -> list[Result]:
    """Time reading one stored file with ChunkReader against GridOut."""
    block = os.urandom(1024 * 1024)
    upload = storage.videos.open_upload("bench.bin", {"owner": "bench"})
    for _ in range(mib):
        upload.write(block)
    file_id = upload.finish()
    client_cpu: dict[str, Series] = {"chunks": Series(), "gridout": Series()}
    server_cpu: dict[str, Series] = {"chunks": Series(), "gridout": Series()}

    def timed(name: str, read: Callable[[], int]) -> float:
        started, cpu, db_cpu = time.perf_counter(), time.process_time(), cpu_seconds(server.pid)
        if read() != mib * 1024 * 1024:
            raise RuntimeError(f"{name} read a different number of bytes than were stored")
        seconds = time.perf_counter() - started
        client_cpu[name].add(time.process_time() - cpu)
        server_cpu[name].add(cpu_seconds(server.pid) - db_cpu)
        return seconds

    def with_chunks() -> int:
        return sum(len(piece) for piece in storage.videos.reader(storage.videos.open(file_id)))

    def with_gridout() -> int:
        # pymongo's own chunk-at-a-time reader: one cursor, each chunk's bytes as stored.
        grid_out = storage.videos.open(file_id)
        return sum(len(piece) for piece in iter(grid_out.readchunk, b""))

    with_chunks()  # the first read after a write pays for the cache; not measured
    series = interleave(
        runs,
        chunks=lambda: timed("chunks", with_chunks),
        gridout=lambda: timed("gridout", with_gridout),
    )
    size = f"{mib} MiB"
    return [
        series_row(
            BENCH, f"read {size} with GridOut.readchunk, wall (baseline)", series["gridout"]
        ),
        series_row(
            BENCH, f"read {size} with ChunkReader, wall", series["chunks"], series["gridout"]
        ),
        series_row(BENCH, "GridOut, client CPU (baseline)", client_cpu["gridout"]),
        series_row(BENCH, "ChunkReader, client CPU", client_cpu["chunks"], client_cpu["gridout"]),
        series_row(BENCH, "GridOut, server CPU (baseline)", server_cpu["gridout"]),
        series_row(BENCH, "ChunkReader, server CPU", server_cpu["chunks"], server_cpu["gridout"]),
    ]


def run(runs: int = 5, mib: int = 256) -> list[Result]:
    """Measure and return the table's rows."""
    heading("mongo: the store's query shapes and reads against their alternatives, on mongod")
    server = servers.MongoServer()
    server.start()
    storage = Storage(MongoConfig(uri=server.uri, videos_db="videos", mp3s_db="mp3s"))
    try:
        return lookups(server, storage, runs) + reads(server, storage, runs, mib)
    finally:
        storage.close()
        server.stop()


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    report(run(args.runs, args.mib), BENCH)


if __name__ == "__main__":
    main()
