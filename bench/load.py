"""The jobs API and logins under many concurrent clients.

Usage: ``python -m bench.load [--clients N] [--seconds S] [--login-clients N] [--poll-ms MS ...]``

Starts an isolated stack as ``make run`` runs it (gunicorn: 2 workers of 4 threads each,
production argon2 cost), gives one user 50 finished jobs, and then, for a fixed time
each, runs N clients (default 50) that each keep one HTTP/1.1 keep-alive connection and
send their next request as soon as the last one is answered (a closed loop, no think
time, so this is the most load 50 clients can make):

- authenticated ``GET /jobs/<id>`` (the ids in turn), target p99 < 50 ms, no errors; and
  again with each client sending every 100 ms and every 33 ms (500 and 1500 req/s offered),
  below the ~2100 req/s at which the closed loop saturates both cores;
- authenticated ``GET /jobs`` (the first page of 20);
- ``POST /login`` through the gateway with HTTP Basic (fewer clients: each login is an
  argon2id verification, deliberately slow), against the bound argon2 sets: 2 cores /
  the time of one verification measured here with the same parameters.

The load generator is a small asyncio client (standard library only) in this process.
Each row also says what one answer cost in CPU, in the gateway (master and workers), the
database (or auth, for logins) and the load client itself, since all share two cores, and
how many answers each client got: unequal counts mean unequally served connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import threading
import time
from dataclasses import dataclass, field

import pymongo
from argon2 import PasswordHasher

from bench.measurement import CpuWindow
from bench.results import Result, Series, heading, report
from bench.system import BENCH_PASSWORD, BenchSystem, bench_system
from common.jobs import DONE
from common.mongo import utcnow
from devstack.procs import child_pids

BENCH = "load"
JOBS_PER_USER = 50


@dataclass
class LoadResult:
    """What one fixed-time load run saw."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # CPU seconds of each watched process group (and of this load client) while measuring.
    cpu: dict[str, float] = field(default_factory=dict)
    # Answers each client got: unequal counts mean some connections were served slower.
    answered: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        return Series(self.latencies).percentile(q) if self.latencies else float("nan")

    def cpu_per_answer(self) -> str:
        """Say what one answer cost each process group, and how many cores they kept busy."""
        answers = max(1, len(self.latencies) + self.errors)
        costs = ", ".join(f"{name} {cpu / answers * 1000:.2f} ms" for name, cpu in self.cpu.items())
        cores = sum(self.cpu.values()) / self.seconds
        return f"CPU per answer: {costs} ({cores:.1f} cores busy)"

    def spread(self) -> str:
        """Say how evenly the clients were served: the fewest, median and most answers."""
        counts = sorted(self.answered)
        median = counts[len(counts) // 2]
        return f"answers per client: fewest {counts[0]}, median {median}, most {counts[-1]}"


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep_alive = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    if length:
        await reader.readexactly(length)
    return status, keep_alive


async def _client(
    port: int,
    requests: list[bytes],
    index: int,
    deadline: float,
    warmup_end: float,
    result: LoadResult,
    interval: float,
) -> None:
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    sent = index
    # Paced clients start spread over one interval, then send every ``interval`` seconds.
    start_in = interval * index / len(result.answered)
    next_send = time.perf_counter() + start_in
    while time.perf_counter() < deadline:
        if interval:
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
            next_send = max(next_send + interval, time.perf_counter())
        request = requests[sent % len(requests)]
        sent += 1
        started = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            writer.write(request)
            status, keep_alive = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status, keep_alive = 0, False
        finished = time.perf_counter()
        if not keep_alive and connection is not None:
            connection[1].close()
            connection = None
        if started < warmup_end:
            continue
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 200:
            result.latencies.append(finished - started)
            result.answered[index] += 1
        else:
            result.errors += 1
    if connection is not None:
        connection[1].close()


def run_load(
    port: int,
    requests: list[bytes],
    *,
    clients: int,
    seconds: float,
    warmup: float = 2.0,
    interval: float = 0.0,
    watch: dict[str, list[int]] | None = None,
) -> LoadResult:
    """Run ``clients`` clients for ``warmup`` + ``seconds``; measure the latter.

    With ``interval`` 0 each client sends as soon as it has its answer (a closed loop);
    otherwise once every ``interval`` seconds (sooner never, later if still waiting).
    The CPU of the ``watch`` process groups and of this client is taken over the same span.
    """
    result = LoadResult(seconds=seconds, answered=[0] * clients)
    warmup_end = time.perf_counter() + warmup
    deadline = warmup_end + seconds

    async def main() -> None:
        await asyncio.gather(
            *(
                _client(port, requests, index, deadline, warmup_end, result, interval)
                for index in range(clients)
            )
        )

    with CpuWindow(warmup_end, deadline, watch or {}, "load client") as window:
        asyncio.run(main())
    result.cpu = window.used()
    return result


def http_request(method: str, path: str, headers: dict[str, str]) -> bytes:
    """Encode one HTTP/1.1 request without a body."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def add_jobs(system: BenchSystem, owner: str, count: int) -> list[str]:
    """Record ``count`` finished jobs for ``owner``, as the converter would leave them."""
    from bson import ObjectId

    now = utcnow()
    jobs = [
        {
            "_id": os.urandom(16).hex(),
            "owner": owner,
            "status": DONE,
            "progress": 100,
            "error": None,
            "attempts": 1,
            "filename": f"video-{index}.mp4",
            "size": 1_000_000 + index,
            "video_fid": ObjectId(),
            "mp3_fid": ObjectId(),
            "options": {"bitrate": 192},
            "callback_url": None,
            "created_at": now,
            "updated_at": now,
            "started_at": now,
            "finished_at": now,
            "notified_at": now,
            "webhook_done_at": None,
        }
        for index in range(count)
    ]
    system.videos_db["jobs"].insert_many(jobs)
    return [job["_id"] for job in jobs]


def mongo_baseline(
    system: BenchSystem, owner: str, job_ids: list[str], *, clients: int, seconds: float
) -> LoadResult:
    """Have ``clients`` threads run the gateway's query for one job (closed loop), directly.

    The same ``find_one({"_id": ...})`` and owner check that ``GET /jobs/<id>`` makes
    (``JobStore.get_owned``), from pymongo on the same server: what the database alone
    gives this many clients.
    """
    result = LoadResult(seconds=seconds)
    client = pymongo.MongoClient(system.env["MONGO_URI"], maxPoolSize=clients)
    jobs = client[system.env["MONGO_VIDEOS_DB"]]["jobs"]
    jobs.find_one({"_id": job_ids[0]})
    lock = threading.Lock()
    warmup_end = time.perf_counter() + 1.0
    deadline = warmup_end + seconds

    def worker(offset: int) -> None:
        count = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            found = jobs.find_one({"_id": job_ids[count % len(job_ids)]})
            finished = time.perf_counter()
            count += 1
            if started >= warmup_end:
                with lock:
                    if found is None or found["owner"] != owner:
                        result.errors += 1
                    else:
                        result.latencies.append(finished - started)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(clients)]
    watch = {"database": [system.mongo_server.pid]}
    with CpuWindow(warmup_end, deadline, watch, "pymongo client") as window:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result.cpu = window.used()
    client.close()
    return result


def service_pids(system: BenchSystem, name: str) -> list[int]:
    """Return a gunicorn service's processes: its master and workers."""
    master = system.stack.processes[name].pid
    return [master, *child_pids(master)]


def argon2_verify_cost(rounds: int = 5) -> tuple[float, float]:
    """Return the median wall and CPU seconds of one argon2id verification (default cost).

    Its 4 lanes run on threads, so one verification keeps more than one core busy.
    """
    hasher = PasswordHasher()  # what auth_service uses when ARGON2_* are not set
    stored = hasher.hash(BENCH_PASSWORD)
    wall, cpu = Series(), Series()
    for _ in range(rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        hasher.verify(stored, BENCH_PASSWORD)
        wall.add(time.perf_counter() - started)
        cpu.add(time.process_time() - cpu_started)
    return wall.median, cpu.median


def _rows(
    measure: str,
    load: LoadResult,
    clients: int,
    *,
    baseline: LoadResult | None = None,
    target_ms: float | None = None,
) -> list[Result]:
    """Three rows: throughput (with its ratio to a baseline), latency p50, latency p99."""
    note = f"{clients} clients, {load.errors} errors; {load.cpu_per_answer()}"
    ratio = load.rate / baseline.rate if baseline is not None else None
    p99 = load.percentile(99) * 1000
    spread = load.spread() if load.answered else ""
    return [
        Result(BENCH, f"{measure}: throughput", "req/s", None, load.rate, None, ratio, note=note),
        Result(BENCH, f"{measure}: latency p50", "ms", None, load.percentile(50) * 1000),
        Result(
            BENCH,
            f"{measure}: latency p99",
            "ms",
            None,
            p99,
            note=spread,
            target=f"p99 < {target_ms:g} ms, no errors" if target_ms else "",
            met=None if target_ms is None else (p99 < target_ms and load.errors == 0),
        ),
    ]


def run(
    clients: int = 50,
    seconds: float = 15.0,
    login_clients: int = 4,
    poll_ms: tuple[float, ...] = (100.0, 33.0),
    threads: int | None = None,
) -> list[Result]:
    """Measure and return the table's rows; ``threads`` overrides the services' WEB_THREADS."""
    heading(f"load: the jobs API under {clients} concurrent clients, and logins")
    rows: list[Result] = []
    with bench_system(extra_env={"WEB_THREADS": str(threads)} if threads else None) as system:
        email = "load@bench.test"
        system.create_user(email)
        headers = system.login(email)
        job_ids = add_jobs(system, email, JOBS_PER_USER)
        port = system.gateway_port
        gateway, auth = (service_pids(system, name) for name in ("gateway", "auth"))
        jobs_api = {"gateway": gateway, "database": [system.mongo_server.pid]}
        one_job = [http_request("GET", f"/jobs/{job_id}", headers) for job_id in job_ids]
        direct = mongo_baseline(system, email, job_ids, clients=clients, seconds=seconds)
        rows += _rows("pymongo find_one, same query, no gateway (baseline)", direct, clients)
        load = run_load(port, one_job, clients=clients, seconds=seconds, watch=jobs_api)
        rows += _rows("GET /jobs/<id>, closed loop", load, clients, baseline=direct, target_ms=50)
        for period in poll_ms:
            paced = run_load(
                port,
                one_job,
                clients=clients,
                seconds=seconds,
                interval=period / 1000,
                watch=jobs_api,
            )
            rows += _rows(
                f"GET /jobs/<id>, each client every {period:g} ms", paced, clients, target_ms=50
            )
        listing = [http_request("GET", "/jobs", headers)]
        load = run_load(port, listing, clients=clients, seconds=seconds, watch=jobs_api)
        rows += _rows("GET /jobs (20 per page), closed loop", load, clients)
        basic = base64.b64encode(f"{email}:{BENCH_PASSWORD}".encode()).decode()
        login = [http_request("POST", "/login", {"Authorization": f"Basic {basic}"})]
        logins = run_load(
            port,
            login,
            clients=login_clients,
            seconds=seconds,
            watch={"gateway": gateway, "auth": auth},
        )
    verify_wall, verify_cpu = argon2_verify_cost()
    bound = (os.cpu_count() or 1) / verify_cpu
    login_rows = _rows("POST /login, closed loop", logins, login_clients)
    login_rows[0].ratio_median = logins.rate / bound
    login_rows[0].note += f"; ratio to {bound:.1f}/s, all cores doing nothing but argon2"
    rows += login_rows
    rows.append(
        Result(
            BENCH,
            "one argon2id verification (t=3, 64 MiB, p=4)",
            "ms",
            None,
            verify_wall * 1000,
            note=f"{verify_cpu * 1000:.0f} ms of CPU",
        )
    )
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--login-clients", type=int, default=4)
    parser.add_argument(
        "--poll-ms",
        type=float,
        nargs="+",
        default=[100.0, 33.0],
        help="the paced clients' periods, one run each",
    )
    parser.add_argument(
        "--threads", type=int, help="gunicorn threads per worker (default: each service's own)"
    )
    args = parser.parse_args()
    rows = run(args.clients, args.seconds, args.login_clients, tuple(args.poll_ms), args.threads)
    report(rows, BENCH)


if __name__ == "__main__":
    main()
