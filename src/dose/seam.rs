//! The dose-engine seam (issue 18): one trait with the influence-matrix call and the forward
//! calls (beamlet weights, segments, points), so the planning pipeline does not depend on
//! which engine computes the dose (the split matRad makes between `dij` and forward dose).
//!
//! The engine is chosen by the machine file (`dose_engine`, [`DoseEngineKind`]; absent means
//! the pencil beam) and recorded in the plan report (`plan.dose_engine`, `dose_algorithm`) and
//! in the RT Dose (TissueHeterogeneityCorrection, 3004,0014).

use super::engine::{DoseCalculation, DoseOptions};
use super::grid::DoseGrid;
use crate::beams::Beam;
use crate::control::CancelToken;
use crate::ct::CtVolume;
use crate::error::Result;
use crate::geometry::Mask;
use crate::machine::{DoseEngineKind, MachineModel};
use crate::sequencing::SequencedBeam;

/// A photon dose engine. Weights are MU per beamlet (one per influence-matrix column, beams in
/// order); doses are Gy.
pub trait DoseEngine: Sync {
    /// The machine-file name of this engine.
    fn kind(&self) -> DoseEngineKind;

    /// One line for the plan report: the algorithm and how it treats heterogeneity.
    fn description(&self) -> &'static str;

    /// TissueHeterogeneityCorrection (3004,0014) of the RT Dose this engine computes.
    fn tissue_heterogeneity_correction(&self) -> &'static str {
        self.kind().tissue_heterogeneity_correction()
    }

    /// Lowest row factor of the scatter correction ([`super::scatter_correction_bounded`]):
    /// 1 when the matrix only drops dose (truncation), so its rows are only ever raised;
    /// below 1 for an engine whose forward dose may lie under its matrix.
    fn min_correction_factor(&self) -> f64 {
        1.0
    }

    /// The dose-influence matrix of `beams` on a dose grid covering `body` (Gy per MU), with
    /// the lateral cutoff and threshold of `opts`; checks `cancel` between beams.
    fn influence_matrix(
        &self,
        ct: &CtVolume,
        body: &Mask,
        beams: &[Beam],
        machine: &MachineModel,
        opts: &DoseOptions,
        cancel: &CancelToken,
    ) -> Result<DoseCalculation>;

    /// The untruncated dose (Gy) of beamlet weights on the computed voxels of `dose_grid`, one
    /// value per row: the forward dose for a fluence.
    fn dose_from_weights(
        &self,
        ct: &CtVolume,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        machine: &MachineModel,
        weights_mu: &[f64],
        cancel: &CancelToken,
    ) -> Result<Vec<f64>>;

    /// The forward dose (Gy, one value per row of `dose_grid`) of sequenced segments (MU per
    /// fraction). The default turns the segments into beamlet weights (each beamlet weighted
    /// by its open fraction, `sequencing::deliverable_weights`) and calls
    /// [`DoseEngine::dose_from_weights`].
    fn dose_from_segments(
        &self,
        ct: &CtVolume,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        machine: &MachineModel,
        sequenced: &[SequencedBeam],
        cancel: &CancelToken,
    ) -> Result<Vec<f64>> {
        let n_cols: usize = beams.iter().map(|b| b.beamlets.len()).sum();
        let w = crate::sequencing::deliverable_weights(beams, sequenced, n_cols)?;
        self.dose_from_weights(ct, dose_grid, beams, machine, &w, cancel)
    }

    /// Dose per MU of every beamlet at one LPS point (Gy/MU, one value per column), as the
    /// forward dose computes it (no cutoff, no threshold).
    fn beamlet_doses_at_point(
        &self,
        ct: &CtVolume,
        beams: &[Beam],
        machine: &MachineModel,
        point_lps: [f64; 3],
    ) -> Result<Vec<f64>>;

    /// Doses (Gy) at LPS points for beamlet weights (MU), without cutoff or threshold.
    fn dose_at_points(
        &self,
        ct: &CtVolume,
        beams: &[Beam],
        machine: &MachineModel,
        weights_mu: &[f64],
        points_lps: &[[f64; 3]],
    ) -> Result<Vec<f64>>;
}

/// Today's engine: the Bortfeld-style pencil beam of [`super::engine`] and [`super::exact`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PencilBeam;

/// The report line of the pencil beam (unchanged from before the seam).
const PENCIL_BEAM_DESCRIPTION: &str = "pencil beam (Bortfeld depth term, Gaussian lateral \
kernels), radiological depths from CT electron densities, untruncated";

impl DoseEngine for PencilBeam {
    fn kind(&self) -> DoseEngineKind {
        DoseEngineKind::PencilBeam
    }

    fn description(&self) -> &'static str {
        PENCIL_BEAM_DESCRIPTION
    }

    fn influence_matrix(
        &self,
        ct: &CtVolume,
        body: &Mask,
        beams: &[Beam],
        machine: &MachineModel,
        opts: &DoseOptions,
        cancel: &CancelToken,
    ) -> Result<DoseCalculation> {
        super::engine::influence_matrix_cancellable(ct, body, beams, machine, opts, cancel)
    }

    fn dose_from_weights(
        &self,
        ct: &CtVolume,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        machine: &MachineModel,
        weights_mu: &[f64],
        cancel: &CancelToken,
    ) -> Result<Vec<f64>> {
        super::exact::dose_from_weights_cancellable(
            ct, dose_grid, beams, machine, weights_mu, cancel,
        )
    }

    fn beamlet_doses_at_point(
        &self,
        ct: &CtVolume,
        beams: &[Beam],
        machine: &MachineModel,
        point_lps: [f64; 3],
    ) -> Result<Vec<f64>> {
        super::engine::beamlet_doses_at_point(ct, beams, machine, point_lps)
    }

    fn dose_at_points(
        &self,
        ct: &CtVolume,
        beams: &[Beam],
        machine: &MachineModel,
        weights_mu: &[f64],
        points_lps: &[[f64; 3]],
    ) -> Result<Vec<f64>> {
        super::engine::dose_at_points(ct, beams, machine, weights_mu, points_lps)
    }
}

/// The heterogeneous engine: density-scaled lateral-kernel superposition
/// ([`super::superposition`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Superposition;

impl DoseEngine for Superposition {
    fn kind(&self) -> DoseEngineKind {
        DoseEngineKind::Superposition
    }

    /// The forward dose's width ladder and the matrix's exact widths differ, most in lung,
    /// so a row may need lowering as well as raising.
    fn min_correction_factor(&self) -> f64 {
        0.5
    }

    fn description(&self) -> &'static str {
        super::superposition::DESCRIPTION
    }

    fn influence_matrix(
        &self,
        ct: &CtVolume,
        body: &Mask,
        beams: &[Beam],
        machine: &MachineModel,
        opts: &DoseOptions,
        cancel: &CancelToken,
    ) -> Result<DoseCalculation> {
        super::superposition::influence_matrix(ct, body, beams, machine, opts, cancel)
    }

    fn dose_from_weights(
        &self,
        ct: &CtVolume,
        dose_grid: &DoseGrid,
        beams: &[Beam],
        machine: &MachineModel,
        weights_mu: &[f64],
        cancel: &CancelToken,
    ) -> Result<Vec<f64>> {
        super::superposition::dose_from_weights(ct, dose_grid, beams, machine, weights_mu, cancel)
    }

    fn beamlet_doses_at_point(
        &self,
        ct: &CtVolume,
        beams: &[Beam],
        machine: &MachineModel,
        point_lps: [f64; 3],
    ) -> Result<Vec<f64>> {
        super::superposition::beamlet_doses_at_point(ct, beams, machine, point_lps)
    }

    fn dose_at_points(
        &self,
        ct: &CtVolume,
        beams: &[Beam],
        machine: &MachineModel,
        weights_mu: &[f64],
        points_lps: &[[f64; 3]],
    ) -> Result<Vec<f64>> {
        super::superposition::dose_at_points(ct, beams, machine, weights_mu, points_lps)
    }
}

/// The engine a machine file selects.
pub fn engine_for(machine: &MachineModel) -> &'static dyn DoseEngine {
    engine_of_kind(machine.dose_engine)
}

/// The engine of a kind.
pub fn engine_of_kind(kind: DoseEngineKind) -> &'static dyn DoseEngine {
    match kind {
        DoseEngineKind::PencilBeam => &PencilBeam,
        DoseEngineKind::Superposition => &Superposition,
    }
}
