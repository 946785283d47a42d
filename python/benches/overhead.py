"""Cost of the Python layer (issue 20, Performance): the TG-119 plan through the Python
package, each call's wall time against the time the Rust stages themselves report (the
report's stage timings, measured inside the library), and the cost of handing the dose, the
weights and the influence matrix to NumPy/SciPy against a plain NumPy copy of the same bytes.

    python python/benches/overhead.py [--runs N]

Everything the Python call does beyond the Rust stages counts as overhead: argument
conversion, the worker thread, the 20 ms signal polling, JSON, and the small Rust work
between stages (so the figure is an upper bound). Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

import rtopt

REPO = Path(__file__).resolve().parents[2]


def timed(f):
    t0 = time.perf_counter()
    value = f()
    return value, time.perf_counter() - t0


def plan_once(case, protocol):
    planner = rtopt.Planner(case, protocol)
    prepared, t_prepare = timed(planner.prepare)
    optimised, t_optimise = timed(prepared.optimise)
    sequenced, t_sequence = timed(lambda: prepared.sequence(optimised))
    planned, t_finish = timed(lambda: prepared.finish(optimised, sequenced))
    python_s = t_prepare + t_optimise + t_sequence + t_finish
    rust_s = sum(t["seconds"] for t in planned.report["timings"])
    return prepared, optimised, planned, python_s, rust_s


def best_of(f, n=5):
    return min(timed(f)[1] for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    case = rtopt.Case.load(REPO / "data" / "tg119")
    protocol = rtopt.Protocol.load(REPO / "data" / "tg119" / "protocol.toml")
    print(f"# rtopt {rtopt.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    overheads = []
    for i in range(args.runs):
        prepared, optimised, planned, py_s, rust_s = plan_once(case, protocol)
        overheads.append((py_s - rust_s) / rust_s)
        print(f"run {i + 1}: Python calls {py_s:.3f} s, Rust stages {rust_s:.3f} s, "
              f"overhead {py_s - rust_s:.3f} s ({100 * (py_s - rust_s) / rust_s:.2f} %)")
    print(f"overhead median {100 * statistics.median(overheads):.2f} % "
          f"(max {100 * max(overheads):.2f} %) of the Rust time over {args.runs} plans")

    print("\n| handed over | size | rtopt call | NumPy copy of the same bytes |")
    print("|---|---|---|---|")
    a = prepared.influence_matrix()
    mb = (a.data.nbytes + a.indices.nbytes + a.indptr.nbytes) / 2**20
    t = best_of(prepared.influence_matrix)
    t_copy = best_of(lambda: (a.data.copy(), a.indices.copy(), a.indptr.copy()))
    print(f"| influence matrix (scipy CSR, float32) | {mb:.1f} MiB | {1e3 * t:.1f} ms | {1e3 * t_copy:.1f} ms |")
    d = optimised.dose_gy
    t = best_of(lambda: optimised.dose_gy)
    print(f"| optimiser dose, full grid float64 | {d.nbytes / 2**20:.1f} MiB | {1e3 * t:.1f} ms | {1e3 * best_of(d.copy):.1f} ms |")
    d = planned.dose_gy
    t = best_of(lambda: planned.dose_gy)
    print(f"| deliverable dose, full grid float32 | {d.nbytes / 2**20:.1f} MiB | {1e3 * t:.1f} ms | {1e3 * best_of(d.copy):.1f} ms |")
    w = optimised.weights_mu
    t = best_of(lambda: optimised.weights_mu)
    print(f"| beamlet weights | {w.nbytes / 2**10:.1f} KiB | {1e6 * t:.0f} us | {1e6 * best_of(w.copy):.0f} us |")
    m = case.mask("BODY")
    t = best_of(lambda: case.mask("BODY"))
    print(f"| BODY mask, CT grid bool | {m.nbytes / 2**20:.1f} MiB | {1e3 * t:.1f} ms | {1e3 * best_of(m.copy):.1f} ms |")


if __name__ == "__main__":
    main()
