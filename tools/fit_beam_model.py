#!/usr/bin/env python3
"""Fit rtopt's 6 MV beam model v2 to the TrueBeam 6X golden beam data (issue 18).

Python standard library only (no numpy). Reads `data/beam/truebeam_6x_golden_beam_data.json`
(DRO-Physics/DCAL `Golden_Beam_Data.json`, commit 7c77e244, 6 MV part) and the current
`data/machines/generic_6x.json` (the 3-term model, the fixed starting point), and fits by Levenberg-Marquardt (finite differences,
deterministic start at the machine file's values):

* the three Bortfeld pencil-beam terms (`docs/dose.md`) and a fourth, wide one (the long-range
  tail of phantom scatter; width bounded by `S4_MAX_MM`),
* an extra-focal (head-scatter) source: a second fluence of relative weight `w_ef`, the
  aperture blurred by a Gaussian of `sigma_ef` at the isocentre plane, deposited through the
  same kernel (term i gets a twin with sigma sqrt(sigma_i^2 + sigma_ef^2)); its in-air output
  ratio is Sc(F) = (1 + w_ef erf(F/2/(sqrt2 sigma_ef))^2) / (same at 10 x 10),
* electron contamination for the build-up: w_e exp(-beta_e d) on two lateral widths (the
  primary's, field-size independent, and a wide one, which gives larger fields more surface
  dose).

Data fitted (residual / tolerance, so 1.0 means "at the tolerance"):
PDD beyond dmax (2 % local, Venselaar & Welleweerd 2001), surface dose and build-up at 1-8 mm (soft, 10 points),
80-20 penumbra and 50 % point (2 mm) and the dose 1-5 cm outside the edge (3 % of the axis) of
3-40 cm fields at 1.5, 5, 10, 20 cm (40x40 at half weight, `WEIGHT_40`), output factors at
5 cm depth, source-detector 100 cm (the Varian/Eclipse convention for the output-factor table,
1.5 %), and Sc against published 6 MV values (1 %).

Usage: python3 tools/fit_beam_model.py [--write]
(--write writes `data/machines/truebeam_6x_v2.json`: generic_6x.json with the v2 model, and its
superposition twin `truebeam_6x_v2_superposition.json`)
The model equations are the ones `src/dose/kernel.rs` evaluates; the Rust test
`tests/dose_v2.rs` checks the fitted file against the same data.
"""
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GBD = os.path.join(ROOT, "data", "beam", "truebeam_6x_golden_beam_data.json")
MACHINE = os.path.join(ROOT, "data", "machines", "generic_6x.json")
OUTPUT = os.path.join(ROOT, "data", "machines", "truebeam_6x_v2.json")
OUTPUT_SUPERPOSITION = os.path.join(ROOT, "data", "machines", "truebeam_6x_v2_superposition.json")
SAD = 1000.0
SQ2 = math.sqrt(2.0)

# Published in-air output ratios Sc of 6 MV Varian Clinac/TrueBeam beams, square fields
# (cm: Sc), as collected in AAPM TG-74 (Zhu et al., Med Phys 36:5261, 2009) [R: representative
# values read from the report's 6 MV curves, to be confirmed against its tables].
SC_PUBLISHED = {3: 0.945, 4: 0.955, 6: 0.972, 10: 1.000, 15: 1.020, 20: 1.031, 30: 1.041, 40: 1.045}

PDD_FIELDS = [3, 4, 6, 10, 20, 30, 40]
PDD_DEPTHS_MM = [20, 30, 50, 75, 100, 150, 200, 250, 300]
BUILDUP_DEPTHS_MM = [1, 2, 3, 5, 8]
PROFILE_FIELDS = [3, 4, 6, 10, 20, 30, 40]
PROFILE_DEPTHS_CM = ["1.5", "5", "10", "20"]
OF_FIELDS = [3, 4, 5, 7, 10, 15, 20, 30, 40]
OF_DEPTH_MM = 50.0
OF_SSD_MM = 950.0

# The fourth kernel term stands in for the long-range tail of the phantom-scatter kernel
# (roughly exp(-mu r)/r, which no single Gaussian has): without it the scatter of 20-40 cm fields
# is short (30x30 out-of-field 4 points low, 80-20 at 20 cm 14.7 against 18.6 mm, 40x40 output
# factor -1.9 %). Unbounded, the fit trades its weight against its width out to sigma ~ 0.8 m
# (a pedestal proportional to the field area) for a 1 % better worst residual; the bound keeps
# one beamlet's kernel patient-sized. Its width may shrink with depth (the rounded shoulder of
# large fields at depth wants it) only as far as the machine file allows: >= 1 mm at 1 m.
S4_MAX_MM = 400.0

# 40x40 rows count at twice their tolerance: the range is 3x3 to 30x30, and fitting
# 40x40 at full weight costs 30x30 its penumbra at 20 cm (16.1 against 18.6 mm); left out,
# 40x40 drifts (80-20 at 20 cm 31.7 against 24.1 mm).
WEIGHT_40 = 2.0

NAMES = ["mu", "w2", "w3", "s1", "k1", "s2", "s3", "k3", "w_ef", "s_ef", "we1", "we2", "be", "se2",
         "w4", "b4", "s4", "k4"]


def terms(p, base):
    """The model's terms: (kind, weight, beta, sigma0, slope); kind 'b' Bortfeld, 'e' exp."""
    comps = [
        (1.0, base[0][1], p["s1"], p["k1"]),
        (p["w2"], base[1][1], p["s2"], base[1][3]),
        (p["w3"], base[2][1], p["s3"], p["k3"]),
        (p["w4"], p["b4"], p["s4"], p["k4"]),
    ]
    out = [("b", w, b, s, k) for (w, b, s, k) in comps]
    for (w, b, s, k) in comps:
        s_t = math.sqrt(s * s + p["s_ef"] ** 2)
        out.append(("b", w * p["w_ef"], b, s_t, k * s / s_t))
    out.append(("e", p["we1"], p["be"], p["s1"], 0.0))
    out.append(("e", p["we2"], p["be"], p["se2"], 0.0))
    return out


def lat(x, h, s):
    k = 1.0 / (SQ2 * s)
    return 0.5 * (math.erf((x + h) * k) - math.erf((x - h) * k))


def dose(p, T, field_cm, ssd, d, x_mm=0.0):
    """Relative dose of a square field (side at the isocentre) at depth d, lateral x (at depth)."""
    mu = p["mu"]
    z = ssd + d
    u = x_mm * SAD / z
    h = 5.0 * field_cm
    s = 0.0
    em = math.exp(-mu * d)
    for (kind, w, b, s0, k) in T:
        sig = s0 + k * d
        if kind == "b":
            dt = w * b / (b - mu) * (em - math.exp(-b * d))
        else:
            dt = w * math.exp(-b * d)
        s += dt * lat(u, h, sig) * lat(0.0, h, sig)
    return s * (SAD / z) ** 2


def dmax(p, T, f, ssd=1000.0):
    best = max((dose(p, T, f, ssd, 0.5 * i), 0.5 * i) for i in range(10, 60))
    return best[1], best[0]


def crossing(p, T, f, d, level, c):
    lo, hi = 0.0, 10.0 * f + 60.0
    for _ in range(40):
        m = 0.5 * (lo + hi)
        if dose(p, T, f, 1000.0, d, m) > level * c:
            lo = m
        else:
            hi = m
    return 0.5 * (lo + hi)


def gbd_profile_metrics(g, depth, f):
    pr = g["6MV profile %scm" % depth]
    oa = pr["Off Axis"]
    v = pr["FS"]["%dcm" % f]

    def cross(t):
        for i in range(1, len(v)):
            if v[i - 1] >= t > v[i]:
                return 10.0 * (oa[i - 1] + (oa[i] - oa[i - 1]) * (v[i - 1] - t) / (v[i - 1] - v[i]))
        return float("nan")

    c = v[0]
    return cross(0.2 * c) - cross(0.8 * c), cross(0.5 * c)


def out_of_field_points(oa, v, f, d):
    """(off-axis mm at depth, GBD % of axis) 1-5 cm outside the geometric edge of an f cm field
    at depth d mm (GBD samples within 0.6 mm of the point; gaps skipped), as tests/dose_v2.rs."""
    edge_cm = 0.5 * f * (SAD + d) / SAD
    out = []
    for k in range(1, 6):
        x = edge_cm + k
        i = min(range(len(oa)), key=lambda j: abs(oa[j] - x))
        if abs(oa[i] - x) <= 0.06 and v[i] == v[i]:
            out.append((10.0 * oa[i], 100.0 * v[i] / v[0]))
    return out


def model_rows(p, base, g):
    """(label, model, golden, tolerance) rows; residual = (model - golden) / tolerance."""
    T = terms(p, base)
    rows = []
    depth_axis = g["6MV PDD"]["Depth"]
    for f in PDD_FIELDS:
        dm, peak = dmax(p, T, f)
        curve = g["6MV PDD"]["FS"]["%dcm" % f]
        for dmm in PDD_DEPTHS_MM:
            gv = curve[depth_axis.index(round(dmm / 10.0, 1))]
            mv = 100.0 * dose(p, T, f, 1000.0, dmm) / peak
            rows.append(("PDD %2dx%-2d @ %5.1f cm (%% local)" % (f, f, dmm / 10), 100 * mv / gv, 100.0, 2.0))
        rows.append(("surface %2dx%-2d (%%)" % (f, f), 100.0 * dose(p, T, f, 1000.0, 0.0) / peak, curve[0], 10.0))
        for dmm in BUILDUP_DEPTHS_MM:
            gv = curve[depth_axis.index(round(dmm / 10.0, 1))]
            mv = 100.0 * dose(p, T, f, 1000.0, dmm) / peak
            rows.append(("build-up %2dx%-2d @ %3.1f cm (%%)" % (f, f, dmm / 10), mv, gv, 10.0))
    for depth in PROFILE_DEPTHS_CM:
        d = 10.0 * float(depth)
        for f in PROFILE_FIELDS:
            gp, gx = gbd_profile_metrics(g, depth, f)
            c = dose(p, T, f, 1000.0, d, 0.0)
            x80 = crossing(p, T, f, d, 0.8, c)
            x50 = crossing(p, T, f, d, 0.5, c)
            x20 = crossing(p, T, f, d, 0.2, c)
            rows.append(("80-20 %2dx%-2d @ %4s cm (mm)" % (f, f, depth), x20 - x80, gp, 2.0))
            rows.append(("x50   %2dx%-2d @ %4s cm (mm)" % (f, f, depth), x50, gx, 2.0))
    for depth in PROFILE_DEPTHS_CM:
        d = 10.0 * float(depth)
        pr = g["6MV profile %scm" % depth]
        oa = pr["Off Axis"]
        for f in PROFILE_FIELDS:
            v = pr["FS"]["%dcm" % f]
            c = dose(p, T, f, 1000.0, d, 0.0)
            for (x_mm, gv) in out_of_field_points(oa, v, f, d):
                mv = 100.0 * dose(p, T, f, 1000.0, d, x_mm) / c
                rows.append(("out %2dx%-2d @ %4s cm, %5.1f mm (%% axis)" % (f, f, depth, x_mm), mv, gv, 3.0))
    ref = dose(p, T, 10, OF_SSD_MM, OF_DEPTH_MM)
    diag = {3: 0, 4: 1, 5: 2, 7: 3, 10: 4, 15: 5, 20: 6, 30: 7, 40: 8}
    for f in OF_FIELDS:
        gv = g["6MV ROF"]["FS"]["%dcm" % f][diag[f]]
        rows.append(("OF %2dx%-2d @ 5 cm, SDD 100 (%%)" % (f, f), 100 * dose(p, T, f, OF_SSD_MM, OF_DEPTH_MM) / ref / gv, 100.0, 1.5))
    for f, sc in sorted(SC_PUBLISHED.items()):
        rows.append(("Sc %2dx%-2d (%% of published)" % (f, f), 100 * sc_model(p, f) / sc, 100.0, 1.0))
    return rows


def sc_model(p, f):
    a = lambda fc: math.erf(5.0 * fc / (SQ2 * p["s_ef"])) ** 2
    return (1.0 + p["w_ef"] * a(f)) / (1.0 + p["w_ef"] * a(10))


def residuals(x, base, g):
    p = dict(zip(NAMES, x))
    if p["s_ef"] <= 1 or p["s1"] <= 0.3 or not 0.05 <= p["be"] <= 2.0 or p["se2"] <= 1 or min(p["w_ef"], p["we1"], p["we2"], p["w4"]) < 0 or not (0 < p["b4"] != p["mu"]) or not 1 < p["s4"] <= S4_MAX_MM or p["s4"] + 1000.0 * p["k4"] < 1.0:
        return [1e3] * NROWS
    return [(m - gv) / tol / (WEIGHT_40 if "40x40" in lab else 1.0) for (lab, m, gv, tol) in model_rows(p, base, g)]


def solve(a, b):
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        piv = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[piv] = m[piv], m[c]
        if abs(m[c][c]) < 1e-300:
            return [0.0] * n
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    return [m[i][n] / m[i][i] for i in range(n)]


def lm(x, base, g, iters=40):
    lam = 1e-2
    r = residuals(x, base, g)
    cost = sum(v * v for v in r)
    for it in range(iters):
        J = []
        for j in range(len(x)):
            h = 1e-4 * max(abs(x[j]), 1e-3)
            xp = x[:]
            xp[j] += h
            rp = residuals(xp, base, g)
            J.append([(a - b) / h for a, b in zip(rp, r)])
        n = len(x)
        jtj = [[sum(J[i][k] * J[j][k] for k in range(len(r))) for j in range(n)] for i in range(n)]
        jtr = [sum(J[i][k] * r[k] for k in range(len(r))) for i in range(n)]
        improved = False
        for _ in range(8):
            a = [[jtj[i][j] + (lam * jtj[i][i] if i == j else 0.0) for j in range(n)] for i in range(n)]
            step = solve(a, [-v for v in jtr])
            xn = [xi + si for xi, si in zip(x, step)]
            rn = residuals(xn, base, g)
            cn = sum(v * v for v in rn)
            if cn < cost:
                x, r, cost, lam, improved = xn, rn, cn, lam * 0.3, True
                break
            lam *= 10.0
        print("iter %2d  cost %.4f  lambda %.1e" % (it, cost, lam), file=sys.stderr)
        if not improved or lam > 1e8:
            break
    return x


def main():
    global NROWS
    # Gaps of the source (NaN there) are stored as JSON null.
    g = json.loads(open(GBD).read().replace("null", "NaN"))
    m = json.load(open(MACHINE))
    bm = m["beam_model"]
    base = [(c["weight"], c["beta_per_mm"], c["sigma_iso_mm"], c["sigma_slope"]) for c in bm["components"]]
    ef = {"weight": 0.08, "sigma_iso_mm": 45.0}
    wide = {"weight": 0.05, "beta_per_mm": 0.002, "sigma_iso_mm": 200.0, "sigma_slope": 0.0}
    el = {"weight_narrow": 0.4, "weight_wide": 0.3, "decay_per_mm": 0.6, "sigma_wide_mm": 80.0}
    x0 = [bm["attenuation_per_mm"], base[1][0], base[2][0], base[0][2], base[0][3], base[1][2],
          base[2][2], base[2][3], ef["weight"], ef["sigma_iso_mm"], el["weight_narrow"],
          el["weight_wide"], el["decay_per_mm"], el["sigma_wide_mm"], wide["weight"],
          wide["beta_per_mm"], wide["sigma_iso_mm"], wide["sigma_slope"]]
    NROWS = len(model_rows(dict(zip(NAMES, x0)), base, g))
    x = lm(x0, base, g) if "--no-fit" not in sys.argv else x0
    p = dict(zip(NAMES, x))
    worst = 0.0
    print("%-40s %10s %10s %6s %8s" % ("quantity", "model", "golden", "tol", "resid/tol"))
    for (lab, mv, gv, tol) in model_rows(p, base, g):
        worst = max(worst, abs(mv - gv) / tol)
        print("%-40s %10.3f %10.3f %6.2f %8.2f" % (lab, mv, gv, tol, (mv - gv) / tol))
    print("worst |residual|/tolerance: %.2f" % worst)
    print(json.dumps(p, indent=1))
    if "--write" in sys.argv:
        bm["attenuation_per_mm"] = p["mu"]
        c = bm["components"]
        c[0]["sigma_iso_mm"], c[0]["sigma_slope"] = p["s1"], p["k1"]
        c[1]["weight"], c[1]["sigma_iso_mm"] = p["w2"], p["s2"]
        c[2]["weight"], c[2]["sigma_iso_mm"], c[2]["sigma_slope"] = p["w3"], p["s3"], p["k3"]
        c[3:] = [{"beta_per_mm": p["b4"], "sigma_iso_mm": p["s4"], "sigma_slope": p["k4"], "weight": p["w4"]}]
        bm["extra_focal"] = {"weight": p["w_ef"], "sigma_iso_mm": p["s_ef"]}
        bm["electron_contamination"] = {"weight_narrow": p["we1"], "weight_wide": p["we2"],
                                        "decay_per_mm": p["be"], "sigma_wide_mm": p["se2"]}
        bm["fit_source"] = ("tools/fit_beam_model.py against data/beam/truebeam_6x_golden_beam_data.json "
                            "(DRO-Physics/DCAL Golden_Beam_Data.json, commit 7c77e244); Sc: AAPM TG-74")
        m["name"] = "TrueBeam-6X"
        # The same beam model twice: through the pencil beam, and through the heterogeneous
        # superposition engine (docs/dose.md), so the two files cannot drift apart.
        for path, engine in ((OUTPUT, "pencil_beam"), (OUTPUT_SUPERPOSITION, "superposition")):
            m["dose_engine"] = engine
            with open(path, "w") as fh:
                json.dump(m, fh, indent=2)
                fh.write("\n")


NROWS = 0
if __name__ == "__main__":
    main()
