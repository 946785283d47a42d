#!/usr/bin/env python3
"""State the problem written by `rtopt export-problem` in CVXPY, the way PortPy does, solve it
with CVXPY's solvers and compare with rtopt's solution.

The CVXPY problem is built from each goal's `terms`: the same backend-neutral formulation
that rtopt's two solvers translate (src/optimize/goals/terms.rs), so a new goal type needs no
code here. Squared hinges become cp.sum_squares(cp.pos(...)), CVaR tails the
Rockafellar-Uryasev form, as in PortPy's `Optimization`. Independently of that formulation,
this script evaluates the objective's definition (`problem.json`, docs/peer-benchmark.md) and
every hard constraint on rtopt's solution and on the peer's, from the goals' parameters.

Usage: peer.py EXPORT_DIR [--solver CLARABEL] [--solver SCS] [--json OUT.json]
Prints one line per solver and, with --json, writes the figures for the driver.
"""

import argparse
import json
import os
import sys
import time

import cvxpy as cp
import numpy as np
import scipy.sparse as sp


def load(export_dir):
    with open(os.path.join(export_dir, "problem.json")) as f:
        meta = json.load(f)
    if meta.get("format") != "rtopt-problem" or meta.get("version") != 3:
        raise SystemExit(f"{export_dir}/problem.json: not an rtopt-problem version 3 file")
    a = sp.load_npz(os.path.join(export_dir, "influence.npz")).tocsr().astype(np.float64)
    arrays = dict(np.load(os.path.join(export_dir, "problem.npz")))
    return meta, a, arrays


def active_goals(meta):
    return [g for g in meta["goals"] if g["in_problem"]]


def wmean(w, v):
    """Weighted mean: each voxel counted with the fraction of it the structure occupies."""
    return float(np.dot(w, v) / np.sum(w))


def cvar(dv, w, p, upper):
    """Weighted CVaR: mean of the hottest (upper) or coldest fraction p of the volume."""
    order = np.argsort(-dv if upper else dv, kind="stable")
    s, ws = dv[order], w[order]
    m = p * np.sum(w)
    take = np.clip(m - (np.cumsum(ws) - ws), 0.0, ws)
    return float(np.dot(take, s) / m)


def objective_value(meta, a, arrays, x):
    """rtopt's objective, evaluated with NumPy (no solver): the independent check."""
    f = meta["fractions"]
    d = f * (a @ x)
    total = 0.0
    for g in active_goals(meta):
        k = g["goal"]
        if g["role"] != "objective":
            continue
        if k is None:
            raise SystemExit(f"goal type {g['type']} has no definition here to check against")
        dv = d[arrays[g["rows_key"]]]
        vw = arrays[g["weights_key"]]
        w, t = k.get("weight", 0.0), k["type"]
        if t == "deviation":
            total += w * wmean(vw, (dv - k["dose_gy"]) ** 2)
        elif t == "overdose":
            total += w * wmean(vw, np.maximum(dv - k["dose_gy"], 0.0) ** 2)
        elif t == "underdose":
            total += w * wmean(vw, np.maximum(k["dose_gy"] - dv, 0.0) ** 2)
        elif t == "mean_dose":
            total += w * wmean(vw, dv)
        elif t == "eud":
            total += w * wmean(vw, np.maximum(dv, 0.0) ** k["a"]) ** (1.0 / k["a"])
        elif t == "max_penalty":
            total += w * np.max(dv)
        else:
            raise SystemExit(f"unknown objective type {t}")
    fl = meta["fluence"]
    pairs = arrays[fl["pairs_key"]]
    if fl["smoothness_weight"] > 0 and len(pairs) > 0:
        diff = x[pairs[:, 0]] - x[pairs[:, 1]]
        total += fl["smoothness_weight"] / len(pairs) * np.sum(diff**2)
    total += fl["total_mu_weight"] * np.sum(x)
    return total


def violations(meta, a, arrays, x):
    """Largest violation of each hard constraint, Gy (0 when it holds); bounds in MU."""
    f = meta["fractions"]
    d = f * (a @ x)
    out = {"x >= 0": max(0.0, -float(np.min(x)))}
    ub = meta["fluence"]["max_beamlet_mu"]
    if ub is not None:
        out[f"x <= {ub}"] = max(0.0, float(np.max(x)) - ub)
    for g in active_goals(meta):
        if g["role"] != "constraint":
            continue
        k, dv = g["goal"], d[arrays[g["rows_key"]]]
        if k is None:
            raise SystemExit(f"goal type {g['type']} has no definition here to check against")
        vw = arrays[g["weights_key"]]
        t, lim = k["type"], k["dose_gy"]
        name = f'{g["structure"]}: {g["description"]}'
        if t == "max_dose":
            v = np.max(dv) - lim
        elif t == "min_dose":
            v = lim - np.min(dv)
        elif t == "mean_max":
            v = wmean(vw, dv) - lim
        elif t == "mean_min":
            v = lim - wmean(vw, dv)
        elif t == "dvh_max":
            # Exact weighted CVaR of the voxel doses (tail mean over a fraction p of the volume).
            v = cvar(dv, vw, k["volume_pct"] / 100.0, True) - lim
        elif t == "dvh_min":
            v = lim - cvar(dv, vw, 1.0 - k["volume_pct"] / 100.0, False)
        else:
            raise SystemExit(f"unknown constraint type {t}")
        out[name] = max(0.0, float(v))
    return out


def build(meta, a, arrays):
    """The CVXPY problem, from each goal's terms (see the module notes)."""
    f = meta["fractions"]
    n = meta["n_beamlets"]
    x = cp.Variable(n, nonneg=True, name="x")
    terms, cons = [], []
    for g in active_goals(meta):
        tm = g["terms"]
        rows = arrays[g["rows_key"]]
        vw = arrays[g["weights_key"]]
        dv = (f * a[rows, :]) @ x
        # Squared terms weigh voxel v by w_v: sum w_v h_v^2 = ||sqrt(w) h||^2.
        sw = np.sqrt(vw)
        y = [cp.Variable(nonneg=v["nonneg"]) for v in tm["vars"]]
        terms += [v["cost"] * yk for v, yk in zip(tm["vars"], y) if v["cost"] != 0.0]

        def lin(pairs):
            return sum((c * y[k] for k, c in pairs), 0.0)

        q, l, c0 = tm["quadratic"], tm["linear"], tm["constant"]
        if q > 0.0:
            # q sum w d^2 + l sum w d + c0 = q sum w (d - m)^2 + (c0 - q m^2 N), m = -l / 2q:
            # the square completed, as PortPy states a deviation (no cancellation).
            m = -l / (2.0 * q)
            terms.append(q * cp.sum_squares(cp.multiply(sw, dv - m)))
            rest = c0 - q * m * m * float(np.sum(vw))
            if rest != 0.0:
                terms.append(rest)
        else:
            if l != 0.0:
                terms.append(l * (vw @ dv))
            if c0 != 0.0:
                terms.append(c0)
        excess = {}
        for i, part in enumerate(tm["parts"]):
            kind = part["part"]
            if kind == "voxels":
                row = part["sign"] * dv + lin(part["vars"]) - part["h_gy"]
                hinge = part["hinge"]["kind"]
                if hinge == "none":
                    cons.append(row <= 0)
                elif hinge == "squared":
                    h = part["hinge"]["hessian"]
                    terms.append(h / 2.0 * cp.sum_squares(cp.multiply(sw, cp.pos(row))))
                elif hinge == "excess":
                    excess[i] = cp.pos(row)
                else:
                    raise SystemExit(f"goal {g['index']}: unknown hinge {hinge}")
            elif kind == "sum":
                cons.append(part["coef"] * (vw @ dv) + lin(part["vars"]) <= part["h_gy"])
            elif kind == "tail":
                u = excess[part["voxels"]]
                cons.append(lin(part["vars"]) + part["beta"] * (vw @ u) <= part["h_gy"])
            elif kind == "power_mean":
                p_ = part["a"]
                terms.append(part["cost"] * cp.pnorm(cp.multiply(vw ** (1.0 / p_), dv), p_))
            else:
                raise SystemExit(f"goal {g['index']}: unknown part {kind}")
    fl = meta["fluence"]
    pairs = arrays[fl["pairs_key"]]
    if fl["smoothness_weight"] > 0 and len(pairs) > 0:
        terms.append(
            fl["smoothness_weight"] / len(pairs) * cp.sum_squares(x[pairs[:, 0]] - x[pairs[:, 1]])
        )
    if fl["total_mu_weight"] > 0:
        terms.append(fl["total_mu_weight"] * cp.sum(x))
    if fl["max_beamlet_mu"] is not None:
        cons.append(x <= fl["max_beamlet_mu"])
    return cp.Problem(cp.Minimize(cp.sum(terms)), cons), x


SOLVER_OPTS = {
    # Same relative tolerances as rtopt's pipeline (1e-6); the rest at CVXPY defaults.
    "CLARABEL": dict(tol_gap_rel=1e-6, tol_feas=1e-6, max_iter=500),
    "SCS": dict(eps_abs=1e-6, eps_rel=1e-6, max_iters=100000, time_limit_secs=300),
    "OSQP": dict(eps_abs=1e-6, eps_rel=1e-6, max_iter=200000),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir")
    ap.add_argument("--solver", action="append", help="CVXPY solver (default: CLARABEL, SCS)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    solvers = args.solver or ["CLARABEL", "SCS"]
    meta, a, arrays = load(args.export_dir)
    result = {
        "cvxpy": cp.__version__,
        "n_voxels": meta["n_voxels"],
        "n_beamlets": meta["n_beamlets"],
        "nnz": meta["nnz"],
        "solvers": [],
    }
    r = meta.get("rtopt")
    if r:
        x_r = arrays[r["x_key"]]
        obj_r = objective_value(meta, a, arrays, x_r)
        viol_r = violations(meta, a, arrays, x_r)
        result["rtopt"] = {
            "objective_reported": r["objective"],
            "objective_numpy": obj_r,
            "max_violation_gy": max(viol_r.values()),
            "violations": viol_r,
            "solve_seconds": r["solve_seconds"],
            "status": r["status"],
        }
        print(
            f"rtopt     objective {r['objective']:.9g} (NumPy re-evaluation {obj_r:.9g}), "
            f"max violation {max(viol_r.values()):.3g}, {r['solve_seconds']:.2f} s"
        )
    for s in solvers:
        t0 = time.perf_counter()
        prob, x = build(meta, a, arrays)
        t1 = time.perf_counter()
        try:
            prob.solve(solver=s, verbose=False, **SOLVER_OPTS.get(s, {}))
            status = prob.status
        except cp.error.SolverError as e:
            status = f"solver error: {e}"
        t2 = time.perf_counter()
        entry = {"solver": s, "status": status, "build_seconds": t1 - t0,
                 "solve_seconds": t2 - t1, "total_seconds": t2 - t0}
        if x.value is not None:
            xv = np.asarray(x.value, dtype=np.float64)
            obj = objective_value(meta, a, arrays, xv)
            viol = violations(meta, a, arrays, xv)
            entry.update(objective=obj, cvxpy_objective=float(prob.value),
                         max_violation_gy=max(viol.values()), violations=viol)
            if r:
                entry["objective_gap_rel"] = (obj - obj_r) / abs(obj_r)
            print(f"{s:9} objective {obj:.9g}, max violation {max(viol.values()):.3g}, "
                  f"{status}, {t2 - t0:.2f} s (CVXPY build+canonicalise+solve)")
        else:
            print(f"{s:9} {status}, {t2 - t0:.2f} s")
        result["solvers"].append(entry)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
