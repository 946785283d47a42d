//! Leaf sequencing for step-and-shoot IMRT: optimised beamlet weights (MU per fraction) become
//! MLC segments, and segments become deliverable beamlet weights again.
//!
//! Steps per beam (see `docs/sequencing.md`):
//! 1. Fluence map: rows are beamlet rows `iy` (across leaves), columns `ix` (along leaf travel).
//! 2. Stratification (matRad): `level = round(w / max(w) * L)`; one level carries `max(w) / L` MU.
//! 3. Decomposition of the integer map into leaf-pair intervals: the Bortfeld unidirectional
//!    sweep (optimal total MU = TNMU) or Xia-Verhey reducing levels (fewer segments, more MU).
//! 4. Geometry: beamlet rows are mapped onto MLC leaf pairs through the machine's leaf
//!    boundaries; closed pairs are parked with the minimum gap (under the X1 jaw, or between
//!    their neighbours when the MLC forbids interdigitation); jaws are the bounding box of the
//!    open leaves, kept within each jaw's travel including its over-travel limit (where a jaw
//!    cannot reach, the leaves shape the aperture). [`crate::deliverability`] then checks
//!    every mechanical limit.
//! 5. Minimum opening and area (machine file): open leaf pairs narrower than
//!    `min_leaf_opening_mm` are widened about their centre; a segment below
//!    `min_segment_area_mm2` has every open pair widened by the same length (within the
//!    beamlet grid) until it reaches the area, or is dropped where the grid leaves no room.
//! 6. Minimum segment MU: segments below the machine's minimum are rounded up to it (at least
//!    half of it) or dropped (below half), and the fluence change is reported.
//!
//! All positions are mm in the isocentre plane of the beam-limiting-device frame (IEC 61217):
//! `x` along leaf travel (bank A at -x, bank B at +x), `y` across leaf pairs.

use serde::Serialize;

use crate::beams::{Beam, FluenceMap};
use crate::error::{Error, Result};
use crate::machine::{Jaws, MachineModel, Mlc, ToleranceTable};

/// The parts of a treatment machine that sequencing and RT Plan export use (a
/// [`MachineModel`] converts into it with `DeliveryMachine::from(&model)`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryMachine {
    /// TreatmentMachineName (at most 16 characters).
    pub name: String,
    /// Nominal beam energy, MV.
    pub energy_mv: f64,
    pub mlc: Mlc,
    pub jaws: Jaws,
    /// Smallest deliverable segment, MU.
    pub min_segment_mu: f64,
    /// Smallest open area of a segment inside the jaws, mm^2 (smaller ones are dropped).
    pub min_segment_area_mm2: f64,
    /// Smallest opening of an open leaf pair, mm (narrower ones are widened about their
    /// centre); the mechanical `mlc.min_leaf_gap_mm` still applies to closed pairs.
    pub min_leaf_opening_mm: f64,
    /// Manufacturer and model of the machine (beam items of the RT Plan; may be empty).
    pub manufacturer: String,
    pub model_name: String,
    /// SetupTechnique (`ISOCENTRIC` or `FIXED_SSD`).
    pub setup_technique: String,
    /// DoseRateSet, MU/min.
    pub dose_rate_mu_per_min: f64,
    /// The tolerance table the beams refer to (`None`: a labelled table without values).
    pub tolerance_table: Option<ToleranceTable>,
}

impl From<&MachineModel> for DeliveryMachine {
    fn from(m: &MachineModel) -> Self {
        DeliveryMachine {
            name: m.name.clone(),
            energy_mv: m.energy_mv,
            mlc: m.mlc.clone(),
            jaws: m.jaws.clone(),
            min_segment_mu: m.min_segment_mu,
            min_segment_area_mm2: m.min_segment_area_mm2,
            min_leaf_opening_mm: m.min_leaf_opening_mm,
            manufacturer: m.manufacturer.clone(),
            model_name: m.model_name.clone(),
            setup_technique: m.setup_technique.clone(),
            dose_rate_mu_per_min: m.dose_rate_mu_per_min,
            tolerance_table: m.tolerance_table.clone(),
        }
    }
}

/// Decomposition algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum Method {
    /// Bortfeld et al. 1994 unidirectional sweep: total MU = TNMU (optimal).
    #[default]
    Sweep,
    /// Xia & Verhey 1998 reducing levels (powers of two): fewer segments, more MU.
    ReducingLevels,
}

/// Sequencing options.
#[derive(Debug, Clone, Serialize)]
pub struct SequencingOptions {
    /// Number of fluence levels L (stratification), at least 1.
    pub levels: u32,
    pub method: Method,
    /// Minimum segment MU; `None` uses the machine's `min_segment_mu`.
    pub min_segment_mu: Option<f64>,
}

impl Default for SequencingOptions {
    fn default() -> Self {
        SequencingOptions {
            levels: 15,
            method: Method::Sweep,
            min_segment_mu: None,
        }
    }
}

/// An integer segment of a fluence map: per row an open half-open column interval
/// `[l, r)` or `None` (closed), delivered with `weight` levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelSegment {
    pub weight: u32,
    pub rows: Vec<Option<(usize, usize)>>,
}

/// One MLC segment (aperture) of a step-and-shoot beam.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// Monitor units of this segment, per fraction.
    pub mu: f64,
    /// Per MLC leaf pair (index of `leaf_boundaries_mm`): `[bank A (-x), bank B (+x)]`, mm in
    /// the isocentre plane. Empty when the beam has no MLC (jaws only).
    pub leaf_pairs_mm: Vec<[f64; 2]>,
    /// X jaws (ASYMX) `[X1, X2]`, mm.
    pub jaw_x_mm: [f64; 2],
    /// Y jaws (ASYMY) `[Y1, Y2]`, mm.
    pub jaw_y_mm: [f64; 2],
}

/// The segments of one beam.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequencedBeam {
    /// Index of the beam in the plan's beam list (0-based).
    pub beam_index: usize,
    pub segments: Vec<Segment>,
    /// Beam MU per fraction = sum of the segment MU.
    pub meterset_mu: f64,
    /// MLC leaf-pair boundaries (y, mm), `n_pairs + 1` values; empty without MLC.
    pub leaf_boundaries_mm: Vec<f64>,
    /// Leaf and jaw transmission of the machine that delivers it (zero: opaque), which the
    /// deliverable beamlet weights carry ([`beam_weights_from_segments`]).
    #[serde(skip)]
    pub transmission: Transmission,
}

/// Transmission through the closed collimators, fraction of the open fluence (machine file:
/// `mlc.transmission`, `jaws.transmission`; absent is 0).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Transmission {
    /// Through the leaves (mean over leaf body and interleaf gaps).
    pub mlc: f64,
    /// Through the jaws.
    pub jaw: f64,
}

impl Transmission {
    /// The machine's transmissions (0 where its file has none).
    pub fn of(mlc: &Mlc, jaws: &Jaws) -> Self {
        Transmission {
            mlc: mlc.transmission.unwrap_or(0.0),
            jaw: jaws.transmission.unwrap_or(0.0),
        }
    }

    /// Whether both collimators are opaque (the deliverable weights are the open fractions).
    pub fn is_none(&self) -> bool {
        self.mlc == 0.0 && self.jaw == 0.0
    }
}

/// What sequencing did to one beam.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BeamSequencingReport {
    pub beam_index: usize,
    /// MU carried by one fluence level.
    pub mu_per_level: f64,
    /// TNMU of the stratified map (levels): max over rows of the sum of positive steps.
    pub tnmu_levels: u32,
    /// Sum of segment weights in levels before the minimum-MU step.
    pub total_levels: u32,
    pub n_segments: usize,
    /// Segments dropped (below half the minimum MU) and rounded up to the minimum.
    pub dropped_segments: usize,
    pub rounded_up_segments: usize,
    /// Relative L1 fluence change of the minimum-MU step: sum |F_after - F_before| / sum F_before.
    pub min_mu_fluence_change: f64,
    /// Relative L1 difference between the stratified and the optimised fluence.
    pub stratification_error: f64,
    /// Adjacent-pair leaf collisions left when the MLC forbids interdigitation (0 otherwise).
    pub interdigitation_violations: usize,
    /// Segments below the machine's minimum area: enlarged to it (every open leaf pair
    /// widened alike), or dropped where the beamlet grid left no room.
    #[serde(default)]
    pub enlarged_segments: usize,
    #[serde(default)]
    pub small_area_segments: usize,
    /// Leaf-pair openings widened to the machine's minimum opening.
    #[serde(default)]
    pub widened_openings: usize,
}

/// A sequenced plan.
#[derive(Debug, Clone, Serialize)]
pub struct SequencedPlan {
    pub beams: Vec<SequencedBeam>,
    pub reports: Vec<BeamSequencingReport>,
}

impl SequencedPlan {
    /// Total MU per fraction.
    pub fn total_mu(&self) -> f64 {
        self.beams.iter().map(|b| b.meterset_mu).sum()
    }
}

/// Stratify a fluence map into integer levels: `round(w / max(w) * levels)`. Returns the
/// level map and the MU of one level (0 for an all-zero map).
pub fn stratify(map: &FluenceMap, levels: u32) -> (Vec<Vec<u32>>, f64) {
    let max = map.max_mu();
    if max <= 0.0 || levels == 0 {
        return (map.rows().map(|r| vec![0; r.len()]).collect(), 0.0);
    }
    let unit = max / levels as f64;
    let lv = map
        .rows()
        .map(|r| {
            r.iter()
                .map(|&w| (w / unit).round().clamp(0.0, levels as f64) as u32)
                .collect()
        })
        .collect();
    (lv, unit)
}

/// Complexity of one row: sum of positive steps with zero padding at both ends.
pub fn row_complexity(row: &[u32]) -> u32 {
    let mut prev = 0u32;
    let mut c = 0u32;
    for &a in row {
        c += a.saturating_sub(prev);
        prev = a;
    }
    c
}

/// TNMU of an integer map: max over rows of [`row_complexity`].
pub fn tnmu(map: &[Vec<u32>]) -> u32 {
    map.iter().map(|r| row_complexity(r)).max().unwrap_or(0)
}

/// Bortfeld unidirectional sweep of one row: the open interval `[l, r)` (0-based columns)
/// for each unit `m = 1..=c_row`. Bixel `j` is open in unit `m` iff `R_j < m <= L_j`, with
/// `L_j`, `R_j` the cumulative positive and negative steps.
pub fn sweep_row_units(row: &[u32]) -> Vec<(usize, usize)> {
    let n = row.len();
    let mut lcum = vec![0u32; n];
    let mut rcum = vec![0u32; n];
    let mut prev = 0u32;
    let (mut l, mut r) = (0u32, 0u32);
    for j in 0..n {
        let a = row[j];
        l += a.saturating_sub(prev);
        r += prev.saturating_sub(a);
        lcum[j] = l;
        rcum[j] = r;
        prev = a;
    }
    let c = l;
    let mut out = Vec::with_capacity(c as usize);
    // L and R are non-decreasing, so the open set of unit m is contiguous: left edge is the
    // first j with L_j >= m, right edge (exclusive) the first j with R_j >= m.
    let (mut lo, mut hi) = (0usize, 0usize);
    for m in 1..=c {
        while lo < n && lcum[lo] < m {
            lo += 1;
        }
        while hi < n && rcum[hi] < m {
            hi += 1;
        }
        out.push((lo, hi));
    }
    out
}

/// Bortfeld sweep of a whole map. Unit `m` of the beam opens, in every row, that row's unit
/// `m` (rows with fewer units are closed); identical consecutive units are merged.
/// The total weight equals [`tnmu`].
pub fn sweep(map: &[Vec<u32>]) -> Vec<LevelSegment> {
    let units: Vec<Vec<(usize, usize)>> = map.iter().map(|r| sweep_row_units(r)).collect();
    let total = units.iter().map(|u| u.len()).max().unwrap_or(0);
    let mut out: Vec<LevelSegment> = Vec::new();
    for m in 0..total {
        let rows: Vec<Option<(usize, usize)>> = units.iter().map(|u| u.get(m).copied()).collect();
        match out.last_mut() {
            Some(last) if last.rows == rows => last.weight += 1,
            _ => out.push(LevelSegment { weight: 1, rows }),
        }
    }
    out
}

/// Xia-Verhey reducing levels: passes with intensity `Δ = 2^k` from the largest power of two
/// not above the maximum level down to 1; each pass opens every maximal run of residual
/// `>= Δ` (the j-th run of each row goes into the pass's j-th segment). Exact.
pub fn reducing_levels(map: &[Vec<u32>]) -> Vec<LevelSegment> {
    let mut res: Vec<Vec<u32>> = map.to_vec();
    let max = res
        .iter()
        .flat_map(|r| r.iter())
        .copied()
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    if max == 0 {
        return out;
    }
    let mut delta = 1u32 << (31 - max.leading_zeros());
    loop {
        // Residual max < 2 delta holds here, so one pass per delta suffices.
        let runs: Vec<Vec<(usize, usize)>> = res
            .iter()
            .map(|row| {
                let mut v = Vec::new();
                let mut j = 0;
                while j < row.len() {
                    if row[j] >= delta {
                        let s = j;
                        while j < row.len() && row[j] >= delta {
                            j += 1;
                        }
                        v.push((s, j));
                    } else {
                        j += 1;
                    }
                }
                v
            })
            .collect();
        let n_seg = runs.iter().map(|r| r.len()).max().unwrap_or(0);
        for k in 0..n_seg {
            let rows: Vec<Option<(usize, usize)>> =
                runs.iter().map(|r| r.get(k).copied()).collect();
            for (i, iv) in rows.iter().enumerate() {
                if let Some((l, r)) = iv {
                    for v in &mut res[i][*l..*r] {
                        *v -= delta;
                    }
                }
            }
            out.push(LevelSegment {
                weight: delta,
                rows,
            });
        }
        if delta == 1 {
            break;
        }
        delta /= 2;
    }
    out
}

/// Sum of `weight * aperture` over segments (the delivered integer map).
pub fn level_sum(segs: &[LevelSegment], ny: usize, nx: usize) -> Vec<Vec<u32>> {
    let mut m = vec![vec![0u32; nx]; ny];
    for s in segs {
        for (i, iv) in s.rows.iter().enumerate() {
            if let Some((l, r)) = iv {
                for v in &mut m[i][*l..*r] {
                    *v += s.weight;
                }
            }
        }
    }
    m
}

/// For each MLC leaf pair, the beamlet row it belongs to (None: outside the beamlet grid).
/// Errors when a leaf pair straddles two beamlet rows (leaves wider than beamlet rows or
/// misaligned) or when a row with fluence lies outside the leaf bank.
pub fn pair_rows(
    beam: &Beam,
    boundaries_mm: &[f64],
    used_rows: &[bool],
) -> Result<Vec<Option<usize>>> {
    let g = &beam.grid;
    let h = g.size_y_mm;
    let eps = 1e-6;
    let n_pairs = boundaries_mm.len().saturating_sub(1);
    let mut owner = vec![None; n_pairs];
    for (p, own) in owner.iter_mut().enumerate() {
        let (b0, b1) = (boundaries_mm[p], boundaries_mm[p + 1]);
        let mut rows = Vec::new();
        for iy in 0..g.ny {
            let yl = g.y0_mm + iy as f64 * h - 0.5 * h;
            let yh = yl + h;
            if b1.min(yh) - b0.max(yl) > eps {
                rows.push(iy);
            }
        }
        let used: Vec<usize> = rows.iter().copied().filter(|&r| used_rows[r]).collect();
        if used.len() > 1 || (used.len() == 1 && rows.len() > 1) {
            return Err(Error::Invalid(format!(
                "beam {}: MLC leaf pair {} (y {b0}..{b1} mm) spans beamlet rows {:?} of {h} mm; \
                 the beamlet height must be a whole multiple of the leaf width with rows aligned \
                 to leaf boundaries",
                beam.number,
                p + 1,
                rows
            )));
        }
        *own = used.first().copied();
    }
    // Every used row must be covered completely by leaf pairs.
    for (iy, _) in used_rows.iter().enumerate().take(g.ny).filter(|(_, &u)| u) {
        let yl = g.y0_mm + iy as f64 * h - 0.5 * h;
        let covered: f64 = (0..n_pairs)
            .filter(|&p| owner[p] == Some(iy))
            .map(|p| boundaries_mm[p + 1] - boundaries_mm[p])
            .sum();
        if (covered - h).abs() > 1e-6 {
            return Err(Error::Invalid(format!(
                "beam {}: beamlet row {iy} (y {yl:.2}..{:.2} mm) is not covered exactly by MLC \
                 leaf pairs (covered {covered:.2} mm of {h} mm); it lies outside the leaf bank or \
                 across leaf boundaries",
                beam.number,
                yl + h
            )));
        }
    }
    Ok(owner)
}

/// What [`apertures`] changed: leaf collisions left, openings widened, segments enlarged.
#[derive(Default)]
struct ApertureCounts {
    violations: usize,
    widened: usize,
    enlarged: usize,
}

/// Turn integer segments into MLC apertures of a beam.
fn apertures(
    beam: &Beam,
    machine: &DeliveryMachine,
    owner: &[Option<usize>],
    segs: &[LevelSegment],
    unit_mu: f64,
    counts: &mut ApertureCounts,
) -> Vec<Segment> {
    let g = &beam.grid;
    let w = g.size_x_mm;
    let mlc = &machine.mlc;
    let bnd = &mlc.leaf_boundaries_mm;
    let gap = mlc.min_leaf_gap_mm.max(0.0);
    let min_open = gap.max(machine.min_leaf_opening_mm);
    let n_pairs = owner.len();
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        let mut leaves = vec![[0.0f64; 2]; n_pairs];
        let mut open = vec![false; n_pairs];
        let (mut x1, mut x2, mut y1, mut y2) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in 0..n_pairs {
            if let Some(iy) = owner[p] {
                if let Some((l, r)) = s.rows[iy] {
                    let mut a = g.x0_mm + (l as f64 - 0.5) * w;
                    let mut b = g.x0_mm + (r as f64 - 0.5) * w;
                    if b - a < min_open {
                        if b - a < min_open - 1e-9 && min_open > gap {
                            counts.widened += 1;
                        }
                        let c = 0.5 * (a + b);
                        a = c - 0.5 * min_open;
                        b = c + 0.5 * min_open;
                    }
                    leaves[p] = [a, b];
                    open[p] = true;
                    x1 = x1.min(a);
                    x2 = x2.max(b);
                    y1 = y1.min(bnd[p]);
                    y2 = y2.max(bnd[p + 1]);
                }
            }
        }
        // Minimum segment area: widen every open pair by the same length, within the
        // beamlet grid (outside it the dose model has no beamlet); a segment that still
        // falls short is dropped by the caller.
        let area: f64 = (0..n_pairs)
            .filter(|&p| open[p])
            .map(|p| (leaves[p][1] - leaves[p][0]) * (bnd[p + 1] - bnd[p]))
            .sum();
        if area > 0.0 && area < machine.min_segment_area_mm2 {
            let heights: f64 = (0..n_pairs)
                .filter(|&p| open[p])
                .map(|p| bnd[p + 1] - bnd[p])
                .sum();
            let grow = (machine.min_segment_area_mm2 - area) / heights;
            let lo = (g.x0_mm - 0.5 * w).max(mlc.x_min_mm);
            let hi = (g.x0_mm + (g.nx as f64 - 0.5) * w).min(mlc.x_max_mm);
            x1 = f64::MAX;
            x2 = f64::MIN;
            for p in (0..n_pairs).filter(|&p| open[p]) {
                let [a, b] = leaves[p];
                let want = (b - a + grow).min(hi - lo);
                let c = (0.5 * (a + b)).clamp(lo + 0.5 * want, hi - 0.5 * want);
                leaves[p] = [c - 0.5 * want, c + 0.5 * want];
                x1 = x1.min(leaves[p][0]);
                x2 = x2.max(leaves[p][1]);
            }
            counts.enlarged += 1;
        }
        // Jaws: the bounding box of the open leaves, kept within each jaw's travel. A jaw that
        // cannot reach the aperture's edge (over-travel across the axis) stops at its limit
        // and the leaves shape that side; clipping only ever opens a jaw wider than the
        // aperture, so the dose through the leaves is unchanged.
        let j = &machine.jaws;
        let clamp = |v: f64, [lo, hi]: [f64; 2]| v.max(lo).min(hi);
        let jaw_x = [clamp(x1, j.x1_range_mm()), clamp(x2, j.x2_range_mm())];
        let jaw_y = [clamp(y1, j.y1_range_mm()), clamp(y2, j.y2_range_mm())];
        // Park closed pairs with the minimum gap just under the X1 jaw.
        let park = (jaw_x[0] - gap).max(mlc.x_min_mm);
        for p in 0..n_pairs {
            if !open[p] {
                leaves[p] = [park, park + gap];
            }
        }
        if !mlc.interdigitation {
            // Closed pairs must not collide with neighbours: relax each closed pair into
            // [max neighbour A - gap/2, min neighbour B + gap/2], sweeping outward both ways.
            for pass in 0..2 {
                let order: Vec<usize> = if pass == 0 {
                    (0..n_pairs).collect()
                } else {
                    (0..n_pairs).rev().collect()
                };
                for &p in &order {
                    if open[p] {
                        continue;
                    }
                    let mut lo = f64::MIN;
                    let mut hi = f64::MAX;
                    for q in [p.wrapping_sub(1), p + 1] {
                        if q < n_pairs {
                            lo = lo.max(leaves[q][0] - 0.5 * gap);
                            hi = hi.min(leaves[q][1] + 0.5 * gap);
                        }
                    }
                    let c = leaves[p][0] + 0.5 * gap;
                    let c = if lo <= hi { c.clamp(lo, hi) } else { c };
                    leaves[p] = [c - 0.5 * gap, c + 0.5 * gap];
                }
            }
            for p in 0..n_pairs.saturating_sub(1) {
                let (a, b) = (leaves[p], leaves[p + 1]);
                if a[0] > b[1] + 1e-9 || b[0] > a[1] + 1e-9 {
                    counts.violations += 1;
                }
            }
        }
        for l in &mut leaves {
            l[0] = l[0].clamp(mlc.x_min_mm, mlc.x_max_mm);
            l[1] = l[1].clamp(mlc.x_min_mm, mlc.x_max_mm);
        }
        out.push(Segment {
            mu: s.weight as f64 * unit_mu,
            leaf_pairs_mm: leaves,
            jaw_x_mm: jaw_x,
            jaw_y_mm: jaw_y,
        });
    }
    out
}

/// Sequence every beam of a plan. `weights` are the optimised beamlet weights (MU per
/// fraction) in influence-matrix column order.
pub fn sequence_plan(
    beams: &[Beam],
    weights: &[f64],
    machine: &DeliveryMachine,
    opts: &SequencingOptions,
) -> Result<SequencedPlan> {
    if opts.levels == 0 {
        return Err(Error::Invalid("sequencing: levels must be >= 1".into()));
    }
    let mlc = &machine.mlc;
    if mlc.n_pairs() == 0 || mlc.leaf_boundaries_mm.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::Invalid(format!(
            "machine '{}': MLC leaf boundaries must be ascending with at least 2 values",
            machine.name
        )));
    }
    let min_mu = opts
        .min_segment_mu
        .unwrap_or(machine.min_segment_mu)
        .max(0.0);
    let mut out = Vec::with_capacity(beams.len());
    let mut reports = Vec::with_capacity(beams.len());
    for (bi, beam) in beams.iter().enumerate() {
        let g = &beam.grid;
        let map = FluenceMap::of(beam, weights)?;
        let (lv, unit) = stratify(&map, opts.levels);
        let used: Vec<bool> = lv.iter().map(|r| r.iter().any(|&v| v > 0)).collect();
        // Leaf travel check for rows with fluence.
        let xl = g.x0_mm - 0.5 * g.size_x_mm;
        let xr = xl + g.nx as f64 * g.size_x_mm;
        if used.iter().any(|&u| u) && (xl < mlc.x_min_mm - 1e-9 || xr > mlc.x_max_mm + 1e-9) {
            return Err(Error::Invalid(format!(
                "beam {}: beamlet grid x {xl:.1}..{xr:.1} mm exceeds the MLC travel {}..{} mm",
                beam.number, mlc.x_min_mm, mlc.x_max_mm
            )));
        }
        let owner = pair_rows(beam, &mlc.leaf_boundaries_mm, &used)?;
        let segs = match opts.method {
            Method::Sweep => sweep(&lv),
            Method::ReducingLevels => reducing_levels(&lv),
        };
        let total_levels: u32 = segs.iter().map(|s| s.weight).sum();
        let mut counts = ApertureCounts::default();
        let mut segments = apertures(beam, machine, &owner, &segs, unit, &mut counts);
        // Minimum segment area, then minimum segment MU.
        let before = level_sum(&segs, g.ny, g.nx);
        let mut after_w: Vec<f64> = segments.iter().map(|s| s.mu).collect();
        let mut small = 0;
        for (m, seg) in after_w.iter_mut().zip(&segments) {
            if open_area_mm2(seg, &mlc.leaf_boundaries_mm) < machine.min_segment_area_mm2 - 1e-6 {
                *m = 0.0;
                small += 1;
            }
        }
        if small > 0 && small == segments.len() {
            return Err(Error::Invalid(format!(
                "beam {}: every one of its {small} segments is below the machine's \
                 min_segment_area_mm2 ({} mm^2) even after enlarging within the beamlet grid",
                beam.number, machine.min_segment_area_mm2
            )));
        }
        let (mut dropped, mut rounded) = (0, 0);
        for m in after_w.iter_mut().filter(|m| **m > 0.0) {
            if *m < min_mu {
                if *m >= 0.5 * min_mu {
                    *m = min_mu;
                    rounded += 1;
                } else {
                    *m = 0.0;
                    dropped += 1;
                }
            }
        }
        let mut f_before = 0.0;
        let mut f_change = 0.0;
        for (s, &m_after) in segs.iter().zip(&after_w) {
            let d = (m_after - s.weight as f64 * unit).abs();
            let area: usize = s.rows.iter().flatten().map(|(l, r)| r - l).sum();
            f_change += d * area as f64;
        }
        for row in &before {
            for &v in row {
                f_before += v as f64 * unit;
            }
        }
        for (s, m) in segments.iter_mut().zip(&after_w) {
            s.mu = *m;
        }
        segments.retain(|s| s.mu > 0.0);
        // Stratification error.
        let (mut num, mut den) = (0.0, 0.0);
        for (r, row) in map.rows().enumerate() {
            for (c, &w) in row.iter().enumerate() {
                num += (lv[r][c] as f64 * unit - w).abs();
                den += w;
            }
        }
        let meterset: f64 = segments.iter().map(|s| s.mu).sum();
        reports.push(BeamSequencingReport {
            beam_index: bi,
            mu_per_level: unit,
            tnmu_levels: tnmu(&lv),
            total_levels,
            n_segments: segments.len(),
            dropped_segments: dropped,
            rounded_up_segments: rounded,
            min_mu_fluence_change: if f_before > 0.0 {
                f_change / f_before
            } else {
                0.0
            },
            stratification_error: if den > 0.0 { num / den } else { 0.0 },
            interdigitation_violations: counts.violations,
            enlarged_segments: counts.enlarged,
            small_area_segments: small,
            widened_openings: counts.widened,
        });
        out.push(SequencedBeam {
            beam_index: bi,
            segments,
            meterset_mu: meterset,
            leaf_boundaries_mm: mlc.leaf_boundaries_mm.clone(),
            transmission: Transmission::of(mlc, &machine.jaws),
        });
    }
    Ok(SequencedPlan {
        beams: out,
        reports,
    })
}

/// Open area of a segment in the isocentre plane, mm^2: each leaf pair's opening inside the
/// X jaws times its width inside the Y jaws (without MLC, the jaw rectangle).
pub fn open_area_mm2(seg: &Segment, leaf_boundaries_mm: &[f64]) -> f64 {
    let [x1, x2] = seg.jaw_x_mm;
    let [y1, y2] = seg.jaw_y_mm;
    if seg.leaf_pairs_mm.is_empty() || leaf_boundaries_mm.len() != seg.leaf_pairs_mm.len() + 1 {
        return (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    }
    seg.leaf_pairs_mm
        .iter()
        .enumerate()
        .map(|(p, &[a, b])| {
            overlap(a, b, x1, x2)
                * overlap(leaf_boundaries_mm[p], leaf_boundaries_mm[p + 1], y1, y2)
        })
        .sum()
}

fn overlap(a0: f64, a1: f64, b0: f64, b1: f64) -> f64 {
    (a1.min(b1) - a0.max(b0)).max(0.0)
}

/// Deliverable beamlet weights of one beam (MU per fraction, one per active beamlet in
/// `beam.beamlets` order): every segment adds its MU times the fraction of the beamlet's
/// area that its aperture exposes (leaf pairs intersected with the jaws; without MLC, the
/// jaw rectangle; y outside the leaf bank is limited by the jaws only), plus what leaks
/// through the collimators (`transmission`, `docs/dose.md`): inside the jaws, closed leaves
/// pass `t_mlc` of the segment's MU; outside the jaws, the jaw passes `t_jaw` of what the
/// leaves pass there (`t_jaw` where they are open, `t_jaw t_mlc` where closed). Summed over
/// a beam's segments this is `(1 - t_mlc) F + t_mlc M` inside a fixed jaw rectangle (`F` the
/// open fluence, `M` the beam's MU). The leaf ends are square (no rounded-end transmission).
pub fn beam_weights_from_segments(
    beam: &Beam,
    leaf_boundaries_mm: &[f64],
    segments: &[Segment],
    transmission: Transmission,
) -> Vec<f64> {
    let g = &beam.grid;
    let (w, h) = (g.size_x_mm, g.size_y_mm);
    let area = w * h;
    let leaky = !transmission.is_none();
    let Transmission {
        mlc: t_mlc,
        jaw: t_jaw,
    } = transmission;
    let n_pairs = leaf_boundaries_mm.len().saturating_sub(1);
    let (bank_lo, bank_hi) = if n_pairs > 0 {
        (leaf_boundaries_mm[0], leaf_boundaries_mm[n_pairs])
    } else {
        (f64::MAX, f64::MIN)
    };
    let mut out = vec![0.0; beam.beamlets.len()];
    // Leaf pairs overlapping each row, with their y ranges.
    let row_pairs: Vec<Vec<usize>> = (0..g.ny)
        .map(|iy| {
            let yl = g.y0_mm + iy as f64 * h - 0.5 * h;
            (0..n_pairs)
                .filter(|&p| {
                    overlap(yl, yl + h, leaf_boundaries_mm[p], leaf_boundaries_mm[p + 1]) > 0.0
                })
                .collect()
        })
        .collect();
    for s in segments {
        if s.mu == 0.0 {
            continue;
        }
        let has_mlc = !s.leaf_pairs_mm.is_empty() && s.leaf_pairs_mm.len() == n_pairs;
        for (k, &[ix, iy]) in beam.beamlets.iter().enumerate() {
            let xl = g.x0_mm + ix as f64 * w - 0.5 * w;
            let yl = g.y0_mm + iy as f64 * h - 0.5 * h;
            // y window of the beamlet inside the Y jaws, x window inside the X jaws.
            let y0 = yl.max(s.jaw_y_mm[0]);
            let y1 = (yl + h).min(s.jaw_y_mm[1]);
            let bx0 = xl.max(s.jaw_x_mm[0]);
            let bx1 = (xl + w).min(s.jaw_x_mm[1]);
            let in_jaws = y1 > y0 && bx1 > bx0;
            if !in_jaws && !leaky {
                continue;
            }
            // Open area inside the jaws, and (for the jaw transmission) without them.
            let (mut open_in, mut open_all) = (0.0, 0.0);
            if has_mlc {
                for &p in &row_pairs[iy] {
                    let [la, lb] = s.leaf_pairs_mm[p];
                    let (p0, p1) = (leaf_boundaries_mm[p], leaf_boundaries_mm[p + 1]);
                    if in_jaws {
                        open_in += overlap(y0, y1, p0, p1) * overlap(bx0, bx1, la, lb);
                    }
                    if leaky {
                        open_all += overlap(yl, yl + h, p0, p1) * overlap(xl, xl + w, la, lb);
                    }
                }
                // Parts of the beamlet outside the leaf bank: jaws only.
                let outside_bank = |a: f64, b: f64| {
                    overlap(a, b, f64::MIN, bank_lo) + overlap(a, b, bank_hi, f64::MAX)
                };
                if in_jaws {
                    open_in += outside_bank(y0, y1) * (bx1 - bx0);
                }
                open_all += outside_bank(yl, yl + h) * w;
            } else {
                if in_jaws {
                    open_in = (y1 - y0) * (bx1 - bx0);
                }
                open_all = area;
            }
            let mut a = open_in;
            if leaky {
                let in_jaw_area = if in_jaws {
                    (y1 - y0) * (bx1 - bx0)
                } else {
                    0.0
                };
                // Under the jaws: open leaves there pass t_jaw, closed ones t_jaw t_mlc.
                let open_out = (open_all - open_in).max(0.0);
                let closed_out = (area - in_jaw_area - open_out).max(0.0);
                a += t_mlc * (in_jaw_area - open_in).max(0.0)
                    + t_jaw * (open_out + t_mlc * closed_out);
            }
            out[k] += s.mu * a / area;
        }
    }
    out
}

/// The beam a sequenced beam belongs to (an error when its index is out of range).
pub fn beam_of<'b>(beams: &'b [Beam], sb: &SequencedBeam) -> Result<&'b Beam> {
    beams.get(sb.beam_index).ok_or_else(|| {
        Error::Invalid(format!(
            "sequenced beam refers to beam index {} of {}",
            sb.beam_index,
            beams.len()
        ))
    })
}

/// What the collimators of sequenced beams let through where they are closed (MU per
/// fraction, influence-matrix column order): [`deliverable_weights`] less the same with
/// opaque collimators. Zero for beams whose `transmission` is none.
pub fn leakage_weights(beams: &[Beam], seq: &[SequencedBeam], n_cols: usize) -> Result<Vec<f64>> {
    let opaque: Vec<SequencedBeam> = seq
        .iter()
        .filter(|sb| !sb.transmission.is_none())
        .map(|sb| SequencedBeam {
            transmission: Transmission::default(),
            ..sb.clone()
        })
        .collect();
    let leaky: Vec<SequencedBeam> = seq
        .iter()
        .filter(|sb| !sb.transmission.is_none())
        .cloned()
        .collect();
    let with = deliverable_weights(beams, &leaky, n_cols)?;
    let without = deliverable_weights(beams, &opaque, n_cols)?;
    Ok(with
        .iter()
        .zip(&without)
        .map(|(a, b)| (a - b).max(0.0))
        .collect())
}

/// Deliverable plan-wide beamlet weights (influence-matrix column order) from sequenced beams,
/// with the transmission each sequenced beam carries ([`beam_weights_from_segments`]).
pub fn deliverable_weights(
    beams: &[Beam],
    seq: &[SequencedBeam],
    n_cols: usize,
) -> Result<Vec<f64>> {
    let mut x = vec![0.0; n_cols];
    for sb in seq {
        let beam = beam_of(beams, sb)?;
        let end = beam.first_column + beam.beamlets.len();
        if end > n_cols {
            return Err(Error::Invalid(format!(
                "beam {}: columns {}..{end} exceed the {n_cols} columns of the influence matrix",
                beam.number, beam.first_column
            )));
        }
        let w =
            beam_weights_from_segments(beam, &sb.leaf_boundaries_mm, &sb.segments, sb.transmission);
        for (k, v) in w.into_iter().enumerate() {
            x[beam.first_column + k] += v;
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beams::BeamletGrid;

    /// A beam with every beamlet of an 8 x 8 grid of 5 mm squares active, centres -17.5 ..
    /// 17.5 mm on both axes.
    fn grid_beam() -> Beam {
        let grid = BeamletGrid {
            nx: 8,
            ny: 8,
            x0_mm: -17.5,
            y0_mm: -17.5,
            size_x_mm: 5.0,
            size_y_mm: 5.0,
        };
        Beam {
            grid,
            beamlets: (0..8)
                .flat_map(|iy| (0..8).map(move |ix| [ix, iy]))
                .collect(),
            first_column: 0,
            isocenter_mm: [0.0; 3],
            sad_mm: 1000.0,
            number: 1,
            name: "test".into(),
            gantry_deg: 0.0,
            couch_deg: 0.0,
            collimator_deg: 0.0,
        }
    }

    /// 10 MU through jaws X, Y [-15, 15] mm; the 5 mm pairs within y -10 .. 10 open from
    /// x -10 to 8, the others closed with a 0.5 mm gap parked just under the X1 jaw.
    fn segment() -> Segment {
        let b = crate::machine::default_leaf_boundaries_mm();
        let leaves = (0..b.len() - 1)
            .map(|p| {
                if b[p] >= -10.0 && b[p + 1] <= 10.0 {
                    [-10.0, 8.0]
                } else {
                    [-15.5, -15.0]
                }
            })
            .collect();
        Segment {
            mu: 10.0,
            leaf_pairs_mm: leaves,
            jaw_x_mm: [-15.0, 15.0],
            jaw_y_mm: [-15.0, 15.0],
        }
    }

    /// The weight of the beamlet centred at (x, y) mm.
    fn at(beam: &Beam, w: &[f64], x: f64, y: f64) -> f64 {
        let k = beam
            .beamlets
            .iter()
            .position(|&[ix, iy]| beam.grid.centre_mm(ix, iy) == [x, y])
            .expect("beamlet");
        w[k]
    }

    #[test]
    fn closed_leaves_pass_their_transmission_and_jaws_theirs() {
        let beam = grid_beam();
        let b = crate::machine::default_leaf_boundaries_mm();
        let seg = [segment()];
        let t = Transmission {
            mlc: 0.015,
            jaw: 0.001,
        };
        let w = beam_weights_from_segments(&beam, &b, &seg, t);
        let close = |got: f64, want: f64, what: &str| {
            assert!((got - want).abs() < 1e-12, "{what}: {got} vs {want}");
        };
        // Open beamlet: the segment's MU.
        close(at(&beam, &w, -2.5, -2.5), 10.0, "open");
        // 3 of 5 mm open, 2 mm behind leaf B: 10 (0.6 + 0.4 t).
        close(
            at(&beam, &w, 7.5, 2.5),
            10.0 * (0.6 + 0.4 * 0.015),
            "partly open",
        );
        // Inside the jaws behind the leaves (beyond leaf B; a closed pair): t MU.
        close(at(&beam, &w, 12.5, 2.5), 0.15, "behind leaf B");
        close(at(&beam, &w, 2.5, 12.5), 0.15, "closed pair");
        // Outside the jaws, leaves closed too: t_jaw t_mlc.
        close(
            at(&beam, &w, 17.5, 2.5),
            10.0 * 0.001 * 0.015,
            "under X2 jaw",
        );
        close(
            at(&beam, &w, 2.5, 17.5),
            10.0 * 0.001 * 0.015,
            "under Y2 jaw",
        );
        // Under the X1 jaw the parked pair's 0.5 mm gap passes t_jaw, the rest t_jaw t_mlc.
        close(
            at(&beam, &w, -17.5, 12.5),
            10.0 * (0.1 * 0.001 + 0.9 * 0.001 * 0.015),
            "parked gap under X1",
        );
        // Opaque collimators: the open fractions only, as before transmission.
        let w0 = beam_weights_from_segments(&beam, &b, &seg, Transmission::default());
        close(at(&beam, &w0, 7.5, 2.5), 6.0, "partly open, opaque");
        close(at(&beam, &w0, 12.5, 2.5), 0.0, "behind leaf B, opaque");
        close(at(&beam, &w0, -17.5, 12.5), 0.0, "parked gap, opaque");
        // Summed over segments sharing the jaws: (1 - t) F + t M inside them.
        let mut other = segment();
        other.mu = 4.0;
        for p in other.leaf_pairs_mm.iter_mut().filter(|l| l[1] == 8.0) {
            *p = [0.0, 5.0];
        }
        let both = [segment(), other];
        let f = beam_weights_from_segments(&beam, &b, &both, Transmission::default());
        let wt = beam_weights_from_segments(
            &beam,
            &b,
            &both,
            Transmission {
                mlc: 0.015,
                jaw: 0.0,
            },
        );
        for (k, &[ix, iy]) in beam.beamlets.iter().enumerate() {
            let [x, y] = beam.grid.centre_mm(ix, iy);
            if x.abs() < 15.0 && y.abs() < 15.0 {
                close(wt[k], 0.985 * f[k] + 0.015 * 14.0, "(1 - t) F + t M");
            }
        }
    }

    #[test]
    fn leakage_is_the_difference_to_opaque_collimators() {
        let beam = grid_beam();
        let mut sb = SequencedBeam {
            beam_index: 0,
            segments: vec![segment()],
            meterset_mu: 10.0,
            leaf_boundaries_mm: crate::machine::default_leaf_boundaries_mm(),
            transmission: Transmission {
                mlc: 0.015,
                jaw: 0.001,
            },
        };
        let beams = [beam];
        let leak = leakage_weights(&beams, std::slice::from_ref(&sb), 64).unwrap();
        let with = deliverable_weights(&beams, std::slice::from_ref(&sb), 64).unwrap();
        sb.transmission = Transmission::default();
        let without = deliverable_weights(&beams, std::slice::from_ref(&sb), 64).unwrap();
        for k in 0..64 {
            assert!((without[k] + leak[k] - with[k]).abs() < 1e-12);
        }
        assert!((at(&beams[0], &leak, 12.5, 2.5) - 0.15).abs() < 1e-12);
        assert_eq!(at(&beams[0], &leak, -2.5, -2.5), 0.0);
        // Opaque beams leak nothing.
        let none = leakage_weights(&beams, std::slice::from_ref(&sb), 64).unwrap();
        assert!(none.iter().all(|&v| v == 0.0));
    }
}
