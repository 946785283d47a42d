# %% [markdown]
# # TG-119 in Python: one prepared plan, two variants, their DVHs side by side
#
# Runnable as a script (`python python/examples/tg119_variants.py [out-dir]`) or cell by cell
# in Jupyter / VS Code (`# %%` cells). It prepares the TG-119 C-shape once (beams and the
# influence matrix), optimises the protocol as given and a Core-sparing variant on the same
# matrix, makes both deliverable (sequencing, segment weights, normalisation), compares their
# goals in a pandas table and their DVHs in a matplotlib figure, and writes the sparing plan
# as DICOM. Needs the rtopt wheel, pandas and matplotlib (python/requirements-test.txt).

# %%
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; the figure is saved as PNG
import matplotlib.pyplot as plt
import pandas as pd

import rtopt

repo = Path(__file__).resolve().parents[2]
out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("rtopt-python-example")
out_dir.mkdir(parents=True, exist_ok=True)

# %% Load the case and the protocol; every structure the protocol names must exist.
case = rtopt.Case.load(repo / "data" / "tg119")
protocol = rtopt.Protocol.load(repo / "data" / "tg119" / "protocol.toml")
print(case, protocol)
print({name: s.voxel_count for name, s in case.structures.items()})

# %% Prepare once: beams and the influence matrix (the expensive, reusable part).
t0 = time.perf_counter()
prepared = rtopt.Planner(case, protocol).prepare()
print(f"prepared {prepared.n_beamlets} beamlets in {time.perf_counter() - t0:.1f} s")

# %% Two variants on the same matrix: the protocol, and the Core overdose weight doubled.
variants = {
    "protocol": prepared.optimise(),
    "Core x2": prepared.optimise(weights={("Core", "overdose"): 600.0}, name="Core x2"),
}
for name, v in variants.items():
    print(f"{name:>9}: objective {v.objective:.1f} in {v.iterations} iterations, {v.seconds:.1f} s")
assert prepared.stage_counts()["dose influence matrix"] == 1  # nothing rebuilt

# %% Make each deliverable: MLC segments, segment weights, deliverable dose, report.
planned = {name: prepared.finish(v, prepared.sequence(v)) for name, v in variants.items()}

# %% Goals of both plans on the deliverable dose, one table.
goals = pd.concat(
    [pd.DataFrame(p.goals).assign(plan=name) for name, p in planned.items()], ignore_index=True
)
table = goals.pivot_table(index=["structure", "goal"], columns="plan", values="achieved")
print(table.round(2).to_string())
goals.to_csv(out_dir / "goals.csv", index=False)

# %% DVHs of both plans.
dvh = pd.concat(
    [pd.DataFrame(p.dvh()).assign(plan=name) for name, p in planned.items()], ignore_index=True
)
# One colour per structure (the RT Structure Set's display colour), one line style per plan.
colour = {c["structure"]: [v / 255 for v in c["color"]] for c in planned["protocol"].report["dvh"]}
fig, ax = plt.subplots(figsize=(7, 4.5))
for (structure, name), curve in dvh.groupby(["structure", "plan"]):
    ax.plot(curve.dose_gy, curve.volume_pct, color=colour[structure],
            ls="-" if name == "protocol" else "--", label=f"{structure} ({name})")
ax.set_xlabel("dose (Gy, total)")
ax.set_ylabel("volume (%)")
ax.set_title("TG-119 C-shape: protocol vs Core-sparing variant")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out_dir / "dvh.png", dpi=100)

# %% Write the sparing variant as RTPLAN + RTDOSE + report (atomically; --force semantics).
planned["Core x2"].write(out_dir / "core-x2", force=True)
core_d10 = table.loc[("Core", next(g for s, g in table.index if s == "Core" and "D10" in g))]
print("Core D10 (Gy):", core_d10.to_dict())
print("wrote", out_dir / "dvh.png", out_dir / "goals.csv", out_dir / "core-x2")
