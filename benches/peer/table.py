#!/usr/bin/env python3
"""Aggregate the runs of benches/peer/run.sh into the ratio table (Markdown) and, with
--update FILE, replace the block between the peer-benchmark markers in FILE."""

import argparse
import datetime
import glob
import json
import os
import platform
import statistics

BEGIN = "<!-- peer-benchmark:begin -->"
END = "<!-- peer-benchmark:end -->"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--update")
    a = ap.parse_args()
    rt = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(a.out, "rtopt-*.json")))]
    peers = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(a.out, "peer-*.json")))]
    if not rt or not peers:
        raise SystemExit(f"{a.out}: no runs")
    rt_t = [r["rtopt"]["solve_seconds"] for r in rt]
    rt_obj = peers[-1]["rtopt"]["objective_numpy"]
    rt_viol = peers[-1]["rtopt"]["max_violation_gy"]
    t_rt = statistics.median(rt_t)
    p0 = peers[0]
    lines = [
        f"Problem: {p0['n_voxels']} voxels x {p0['n_beamlets']} beamlets, {p0['nnz'] / 1e6:.1f} M "
        f"non-zeros (TG119, data/protocols/tg119.toml). {len(rt)} rtopt and {len(peers)} peer runs, "
        f"one after the other; {datetime.date.today().isoformat()}, {machine()}, "
        f"CVXPY {p0['cvxpy']}.",
        "",
        "| solver | median time (s) | runs (s) | time / rtopt | objective | gap to rtopt | max violation (Gy) | status |",
        "|---|---|---|---|---|---|---|---|",
        f"| rtopt (interior point, candidate voxels) | {t_rt:.1f} | "
        f"{', '.join(f'{t:.1f}' for t in rt_t)} | 1 | {rt_obj:.6g} | 0 | {rt_viol:.2g} | "
        f"{rt[-1]['rtopt']['status']} |",
    ]
    names = [s["solver"] for s in p0["solvers"]]
    for name in names:
        runs = [s for p in peers for s in p["solvers"] if s["solver"] == name]
        ts = [s["total_seconds"] for s in runs]
        last = runs[-1]
        obj = last.get("objective")
        gap = last.get("objective_gap_rel")
        viol = last.get("max_violation_gy")
        lines.append(
            f"| CVXPY + {name} | {statistics.median(ts):.1f} | {', '.join(f'{t:.1f}' for t in ts)} | "
            f"{statistics.median(ts) / t_rt:.1f} | "
            f"{'-' if obj is None else f'{obj:.6g}'} | "
            f"{'-' if gap is None else f'{100 * gap:+.3f} %'} | "
            f"{'-' if viol is None else f'{viol:.2g}'} | {last['status']} |"
        )
    lines += [
        "",
        "Times: rtopt's `solve_seconds` of a cold solve of the exported problem (the plan's "
        "last one, after the dose-fidelity loop; formulation, interior point, candidate voxels, "
        "exact checks; Hessian blocks cached); CVXPY's build + canonicalisation + solve. "
        "Neither includes loading the "
        "matrix. Objectives are re-evaluated by `peer.py` in NumPy on each solution; violations "
        "are the largest excess over any hard constraint (exact CVaR for DVH limits).",
    ]
    table = "\n".join(lines)
    print(table)
    if a.update:
        text = open(a.update).read()
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            _, post = rest.split(END, 1)
            text = pre + block + post
        else:
            text = text.rstrip("\n") + "\n\n## Peer benchmark: rtopt vs CVXPY\n\n" + block + "\n"
        tmp = a.update + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.update)


if __name__ == "__main__":
    main()
