"""Run every benchmark and print one table: ``python -m bench`` (what ``make bench`` runs).

Each benchmark starts and stops what it needs (see bench/system.py); their own modules
run one alone (``python -m bench.converter`` ...). Generated media is cached under
.cache/bench; the rows are also saved to .cache/bench/results.json.
"""

from __future__ import annotations

import argparse
import time

from bench import converter, extras, load, mongo, pipeline, scale, storage, upload
from bench.results import Result, format_table, heading, report

BENCHES = {
    "converter": converter.run,
    "extras": extras.run,
    "pipeline": pipeline.run,
    "storage": storage.run,
    "mongo": mongo.run,
    "load": load.run,
    "scale": scale.run,
    "upload": upload.run,
}


def main() -> None:
    """Run the chosen benchmarks (all by default) and print the combined table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHES)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}"
        )
    started = time.perf_counter()
    rows: list[Result] = []
    for name in args.names or BENCHES:
        bench_started = time.perf_counter()
        results = BENCHES[name]()
        report(results, name)
        print(f"({name}: {time.perf_counter() - bench_started:.0f} s)", flush=True)
        rows += results
    heading(f"all results ({time.perf_counter() - started:.0f} s)")
    print(format_table(rows))
    missed = [f"{row.bench}: {row.measure}" for row in rows if row.met is False]
    print(f"\ntargets missed: {len(missed)}" + "".join(f"\n  - {m}" for m in missed))


if __name__ == "__main__":
    main()
