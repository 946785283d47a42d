//! Segment-weight optimisation (issue 17): after leaf sequencing, the monitor units of the
//! segments are optimised again against the protocol's goals, so that the deliverable plan
//! meets the goals itself rather than by a rescaling afterwards.
//!
//! Each segment `j` delivers the beamlet weights `s_j` per MU (its aperture's exposed
//! fraction of every beamlet, [`sequencing::beam_weights_from_segments`]), so its dose per
//! MU is `A s_j`, with `A` the optimiser's matrix after the dose-fidelity loop. The `s_j`
//! carry the leaf and jaw transmission, as the deliverable dose does. One more row rescaling
//! `r = D_exact(x) / (A x)` at the weights `x` the optimised fluence delivers (leakage
//! included, the loop's last untruncated dose, no extra dose calculation) brings the columns
//! to the untruncated dose; since the loop's rows already carry the leakage as a ratio and
//! `A x` now counts it through the `s_j` too, `r` takes that share back out.
//! The columns are stored as a sparse matrix `M = diag(r) A S D^-1`, with `D` the diagonal
//! of `|s_j|_1` (beamlet MU per segment MU). The unknowns are then `v_j = |s_j|_1 u_j`, the
//! beamlet MU each segment delivers, which keeps the total-MU term and the solver's scaling
//! those of the beamlet problem. The same [`PlanningProblem`] (goals, hard constraints,
//! constraint generation, interior point) solves it: a convex problem in the segment MU.
//!
//! Differences from the beamlet problem, stated in the report: no smoothness term (the
//! apertures are fixed), no per-beamlet MU bound. The minimum segment MU is not convex
//! (`u = 0` or `u >= min`), so it is applied after the solve as sequencing applies it:
//! segments below half the minimum are dropped, the others rounded up.
//!
//! References: Shepard et al., Med Phys 29:1007 (2002) (direct aperture optimisation, the
//! segment weights as the variables); Siebers et al., Med Phys 29:952 (2002) (optimising on
//! the deliverable segments' dose).

use rayon::prelude::*;
use serde::Serialize;

pub use crate::report::SegmentWeightSummary;

use crate::dose::{DoseGrid, InfluenceMatrix, StructureRows};
use crate::error::{Error, Result};
use crate::optimize::{OptimizeOptions, PlanningProblem, Protocol};
use crate::sequencing::{self, SequencedPlan};

/// Relative gap and feasibility tolerance of the segment problem.
pub const SEGMENT_TOLERANCE: f64 = 1e-4;

/// Whether the segment weights are re-optimised after sequencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentWeightOptions {
    pub enabled: bool,
}

impl Default for SegmentWeightOptions {
    fn default() -> Self {
        SegmentWeightOptions { enabled: true }
    }
}

/// The inputs of [`optimise_segment_weights`] that live in the prepared plan.
pub(crate) struct SegmentProblemInputs<'a> {
    pub beams: &'a [crate::beams::Beam],
    /// The optimiser's matrix after the dose-fidelity loop (Gy per MU, one fraction).
    pub matrix: &'a InfluenceMatrix,
    pub dose_grid: &'a DoseGrid,
    pub structures: &'a [StructureRows],
    pub protocol: &'a Protocol,
    pub options: &'a OptimizeOptions,
    /// The beamlet weights the optimised plan delivers (MU per fraction; with the
    /// collimators' leakage, `OptimisedPlan::delivered_weights_mu`) and their untruncated
    /// dose, Gy total (None without the dose-fidelity loop: no extra row rescaling).
    pub optimised_weights_mu: &'a [f64],
    pub exact_dose_gy: Option<&'a [f64]>,
    pub min_segment_mu: f64,
    /// Checked between the model's build steps (the solve checks it through the observers
    /// in `options`).
    pub cancel: &'a crate::control::CancelToken,
}

/// The stage name a cancellation reports.
const STAGE: &str = "segment weights";

/// Per segment (in plan order): its beamlet weights per MU as `(column, weight)` pairs.
fn segment_beamlets(
    beams: &[crate::beams::Beam],
    plan: &SequencedPlan,
) -> Result<Vec<Vec<(usize, f64)>>> {
    let mut out = Vec::new();
    for sb in &plan.beams {
        let beam = sequencing::beam_of(beams, sb)?;
        for seg in &sb.segments {
            let mut unit = seg.clone();
            unit.mu = 1.0;
            let w = sequencing::beam_weights_from_segments(
                beam,
                &sb.leaf_boundaries_mm,
                std::slice::from_ref(&unit),
                sb.transmission,
            );
            out.push(
                w.into_iter()
                    .enumerate()
                    .filter(|(_, v)| *v > 0.0)
                    .map(|(k, v)| (beam.first_column + k, v))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// The segment dose matrix `diag(r) A S D^-1` (module docs); columns in segment order.
fn segment_matrix(
    a: &InfluenceMatrix,
    beamlets: &[Vec<(usize, f64)>],
    norms: &[f64],
    row_factor: &[f64],
) -> InfluenceMatrix {
    let n_rows = a.n_rows();
    let columns: Vec<(Vec<u32>, Vec<f32>)> = beamlets
        .par_iter()
        .zip(norms)
        .map_init(
            || (vec![0.0f64; n_rows], vec![false; n_rows]),
            |(acc, seen), (cols, &norm)| {
                let mut touched: Vec<u32> = Vec::new();
                for &(c, w) in cols {
                    let (rows, vals) = a.column(c);
                    let f = w / norm;
                    for (&r, &v) in rows.iter().zip(vals) {
                        let r = r as usize;
                        if !seen[r] {
                            seen[r] = true;
                            touched.push(r as u32);
                        }
                        acc[r] += f * v as f64;
                    }
                }
                touched.sort_unstable();
                let vals: Vec<f32> = touched
                    .iter()
                    .map(|&r| {
                        let r = r as usize;
                        let v = acc[r] * row_factor[r];
                        acc[r] = 0.0;
                        seen[r] = false;
                        v as f32
                    })
                    .collect();
                (touched, vals)
            },
        )
        .collect();
    InfluenceMatrix::from_columns(n_rows, columns)
}

/// The outcome of [`optimise_segment_weights`].
pub(crate) struct SegmentWeightOutcome {
    /// The plan with the new segment MU (segments dropped by the minimum-MU rule removed,
    /// metersets updated).
    pub plan: SequencedPlan,
    pub summary: SegmentWeightSummary,
    /// The segment model's dose of the new MU, Gy total per dose-grid row (None when the
    /// sequenced MU were kept).
    pub model_dose_gy: Option<Vec<f64>>,
}

/// Re-optimise the MU of `plan`'s segments (module docs). An infeasible segment problem keeps the sequenced MU and says why; other
/// errors (cancellation, bad input) are returned.
pub(crate) fn optimise_segment_weights(
    inp: &SegmentProblemInputs<'_>,
    plan: &SequencedPlan,
) -> Result<SegmentWeightOutcome> {
    let beamlets = segment_beamlets(inp.beams, plan)?;
    let n_seg = beamlets.len();
    let norms: Vec<f64> = beamlets
        .iter()
        .map(|c| c.iter().map(|(_, w)| w).sum::<f64>())
        .collect();
    let mu_in: Vec<f64> = plan
        .beams
        .iter()
        .flat_map(|b| b.segments.iter().map(|s| s.mu))
        .collect();
    let mut summary = SegmentWeightSummary {
        segments_in: n_seg,
        segments_out: n_seg,
        mu_sequenced: plan.total_mu(),
        mu_optimised: plan.total_mu(),
        ..Default::default()
    };
    // Segments that expose no beamlet (all their fluence off the beamlet grid) cannot be
    // modelled: nothing to optimise then.
    if n_seg == 0 || norms.iter().any(|&n| n.is_nan() || n <= 0.0) {
        summary.status = "skipped".into();
        summary.kept_because =
            Some("a segment exposes no beamlet of the dose model; sequenced MU kept".into());
        return Ok(SegmentWeightOutcome {
            plan: plan.clone(),
            summary,
            model_dose_gy: None,
        });
    }
    // The ratio is taken against `matrix` itself at the optimised weights (not the
    // optimiser's stored dose), so it holds whichever variant's row factors the matrix
    // carries now.
    let fractions = inp.protocol.prescription.fractions as f64;
    let row_factor = match inp.exact_dose_gy {
        Some(exact) => super::fidelity::ratio_factors(
            &inp.matrix
                .dose(inp.optimised_weights_mu)
                .into_iter()
                .map(|d| d * fractions)
                .collect::<Vec<_>>(),
            exact,
            &vec![1.0; inp.matrix.n_rows()],
        ),
        None => vec![1.0; inp.matrix.n_rows()],
    };
    inp.cancel.check(STAGE)?;
    let m = segment_matrix(inp.matrix, &beamlets, &norms, &row_factor);
    summary.matrix_nnz = m.nnz();
    inp.cancel.check(STAGE)?;

    let mut protocol = inp.protocol.clone();
    protocol.fluence.smoothness_weight = 0.0;
    protocol.fluence.max_beamlet_mu = None;
    let problem = PlanningProblem::new(&m, inp.dose_grid, &[], inp.structures, &protocol)?;
    inp.cancel.check(STAGE)?;
    let goal_objective = |problem: &PlanningProblem<'_>, dose_gy: &[f64]| -> Result<f64> {
        Ok(problem
            .evaluate_goals(dose_gy)?
            .iter()
            .filter_map(|g| g.objective_value)
            .sum())
    };
    let v_in: Vec<f64> = mu_in.iter().zip(&norms).map(|(u, n)| u * n).collect();
    let dose_of =
        |v: &[f64]| -> Vec<f64> { m.dose(v).into_iter().map(|d| d * fractions).collect() };
    summary.goal_objective_sequenced = goal_objective(&problem, &dose_of(&v_in))?;
    inp.cancel.check(STAGE)?;

    let mut opts = inp.options.clone();
    opts.reuse_fixed_beamlets = false;
    opts.normalize = None;
    // The segment MU are rounded by the minimum-MU rule and the plan is normalised after
    // this solve: a relative gap of 1e-4 is ample (50 iterations instead of 54 on TG-119).
    opts.tolerance = opts.tolerance.max(SEGMENT_TOLERANCE);
    let solved = problem.solve(&opts);
    let result = match solved {
        Ok(r) => r,
        Err(e @ Error::Infeasible { .. }) => {
            summary.status = "infeasible".into();
            summary.goal_objective_optimised = summary.goal_objective_sequenced;
            summary.kept_because = Some(format!(
                "the segment problem is infeasible ({e}); sequenced MU kept"
            ));
            return Ok(SegmentWeightOutcome {
                plan: plan.clone(),
                summary,
                model_dose_gy: None,
            });
        }
        Err(e) => return Err(e),
    };
    summary.status = result.status.clone();
    summary.iterations = result.iterations;

    // Segment MU, then the minimum-MU rule.
    let min_mu = inp.min_segment_mu.max(0.0);
    let mut mu: Vec<f64> = result
        .weights_mu
        .iter()
        .zip(&norms)
        .map(|(v, n)| (v / n).max(0.0))
        .collect();
    for u in mu.iter_mut() {
        if *u < min_mu || *u <= 0.0 {
            if *u >= 0.5 * min_mu && *u > 0.0 {
                *u = min_mu;
                summary.rounded_up += 1;
            } else {
                *u = 0.0;
                summary.dropped += 1;
            }
        }
    }
    let v_out: Vec<f64> = mu.iter().zip(&norms).map(|(u, n)| u * n).collect();
    let model_dose = dose_of(&v_out);
    summary.goal_objective_optimised = goal_objective(&problem, &model_dose)?;

    let mut out = plan.clone();
    let mut k = 0;
    for sb in out.beams.iter_mut() {
        for seg in sb.segments.iter_mut() {
            seg.mu = mu[k];
            k += 1;
        }
        sb.segments.retain(|s| s.mu > 0.0);
        sb.meterset_mu = sb.segments.iter().map(|s| s.mu).sum();
    }
    for (rep, sb) in out.reports.iter_mut().zip(&out.beams) {
        rep.n_segments = sb.segments.len();
    }
    summary.segments_out = out.beams.iter().map(|b| b.segments.len()).sum();
    summary.mu_optimised = out.total_mu();
    if summary.segments_out == 0 {
        return Err(Error::Invalid(
            "segment-weight optimisation left no segment with MU".into(),
        ));
    }
    Ok(SegmentWeightOutcome {
        plan: out,
        summary,
        model_dose_gy: Some(model_dose),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_columns_are_the_matrix_times_the_exposed_beamlets() {
        // 3 rows x 2 beamlets; a segment exposing beamlet 0 fully and half of beamlet 1.
        let a = InfluenceMatrix::from_columns(
            3,
            vec![(vec![0, 1], vec![1.0, 2.0]), (vec![1, 2], vec![4.0, 8.0])],
        );
        let beamlets = vec![vec![(0, 1.0), (1, 0.5)]];
        let m = segment_matrix(&a, &beamlets, &[1.5], &[1.0, 1.0, 2.0]);
        // (A s) / 1.5 = [1, 4, 4] / 1.5, row 2 doubled.
        let d = m.dose(&[1.5]);
        for (v, e) in d.iter().zip([1.0, 4.0, 8.0]) {
            assert!((v - e).abs() < 1e-6 * e, "{d:?}"); // f32 entries
        }
        assert_eq!(m.nnz(), 3);
    }
}
