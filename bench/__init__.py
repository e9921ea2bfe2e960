"""The benchmarks: command-line programs (``python -m bench[.<name>]``), not tests.

``media`` makes and caches the inputs and holds the reference conversion, ``measurement``
times runs and reads what they cost, ``results`` turns series into rows and prints and
saves the table, ``system`` starts a stack; every other module is one benchmark. The
results and how each number is taken are in docs/performance.md.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
