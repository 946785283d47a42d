# %% [markdown]
# # rtopt's influence matrix in CVXPY (the PortPy way)
#
# rtopt builds the dose-influence matrix (Gy per MU for one fraction, rows: dose-grid voxels,
# columns: beamlets) and the structures' rows on the dose grid; here CVXPY states a fluence
# problem on them and Clarabel solves it, and rtopt evaluates the answer on the whole grid.
# Use it to try a formulation rtopt does not have yet. The body term here uses every 50th
# row outside the target to keep the example short, so voxels between the samples may
# exceed the cap (the script prints the whole-grid body maximum): a research sketch, not a plan.
#
# `python python/examples/cvxpy_influence.py` (needs cvxpy and scipy:
# python/requirements-test.txt).

# %%
import time
from pathlib import Path

import cvxpy as cp
import numpy as np

import rtopt

repo = Path(__file__).resolve().parents[2]
case = rtopt.Case.load(repo / "data" / "tg119")
protocol = rtopt.Protocol.load(repo / "data" / "tg119" / "protocol.toml")
prepared = rtopt.Planner(case, protocol).prepare()
fractions = protocol.fractions

# %% The matrix as scipy.sparse CSR (float32), and each structure's rows.
A = prepared.influence_matrix().astype(np.float64) * fractions  # Gy total per MU per fraction
print(f"influence matrix {A.shape[0]} x {A.shape[1]}, {A.nnz} non-zeros")
_, ptv_rows, ptv_w = prepared.structure_rows("OuterTarget")
_, core_rows, core_w = prepared.structure_rows("Core")
body_rows, _, _ = prepared.structure_rows("BODY")
outside = np.setdiff1d(body_rows, ptv_rows)[::50]

# %% The problem: TG-119's objective terms (target deviation from 51 Gy, Core overdose above
# 10 Gy, body dose outside the target) with a hard target mean >= 50 Gy and a 55 Gy cap on
# the sampled body voxels.
w = cp.Variable(A.shape[1], nonneg=True)
d_ptv, d_core, d_out = A[ptv_rows] @ w, A[core_rows] @ w, A[outside] @ w
pw, cw = ptv_w / ptv_w.sum(), core_w / core_w.sum()
objective = (
    1000 * cp.sum(cp.multiply(pw, cp.square(d_ptv - 51.0)))
    + 300 * cp.sum(cp.multiply(cw, cp.square(cp.pos(d_core - 10.0))))
    + 100 * cp.sum_squares(d_out) / outside.size
)
constraints = [pw @ d_ptv >= 50.0, d_out <= 55.0]
problem = cp.Problem(cp.Minimize(objective), constraints)
t0 = time.perf_counter()
problem.solve(solver=cp.CLARABEL)
print(f"CVXPY + Clarabel: {problem.status}, objective {problem.value:.2f} in {time.perf_counter() - t0:.1f} s")
assert problem.status == cp.OPTIMAL

# %% rtopt evaluates the CVXPY weights on the whole dose grid (Gy total, [z, y, x]).
weights = np.maximum(w.value, 0.0)
dose = prepared.dose_of(weights).ravel()[prepared.dose_grid_voxels()]
ptv_mean = float(np.average(dose[ptv_rows], weights=ptv_w))
core_mean = float(np.average(dose[core_rows], weights=core_w))
print(f"target mean {ptv_mean:.2f} Gy, Core mean {core_mean:.2f} Gy, body max {dose[body_rows].max():.1f} Gy")
assert ptv_mean >= 50.0 - 1e-3
