//! A finished plan ([`PlannedCase`]): the deliverable dose, its normalisation and gamma
//! agreement, the acceptance check, the report, and the atomic writing of RTPLAN, RTDOSE,
//! `report.json` and `report.html`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dose_reference::{self, DoseReferencePoint};
use super::identity::ResolvedIdentity;
use super::{Normalisation, OptimisedPlan, PlanStage, PreparedPlan, SequencedStage, StageTime};
use crate::beams::Beam;
use crate::case::Case;
use crate::dose::DoseGrid;
use crate::error::{Error, Result};
use crate::gamma::{self, GammaResult};
use crate::io::dicom::rtdose::{self, DoseExport};
use crate::io::dicom::rtplan::{self, PlanExport, TargetPrescription};
use crate::machine::MachineModel;
use crate::optimize::protocol::Protocol;
use crate::optimize::OptimizationResult;
use crate::outputs::Replace;
use crate::report::{
    self, BeamRow, DvhCurve, GoalRow, PlanQuality, ProtocolMetric, Report, StageTiming,
    StructureMetrics,
};
use crate::sequencing::{DeliveryMachine, SequencedPlan};

/// Voxels compared for [`report::ModelFidelity`]: untruncated dose above this share of the
/// prescription, % (issue 17).
pub const FIDELITY_THRESHOLD_PERCENT_RX: f64 = 10.0;

/// DVH sampling step of the report, Gy.
pub const DVH_BIN_GY: f64 = 0.1;

/// Size and truncation of the optimisation influence matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluenceSummary {
    pub rows: usize,
    pub columns: usize,
    pub nnz: usize,
    /// Fraction of the beamlets' dose mass dropped by the cutoff and threshold.
    pub truncated_mass_fraction: f64,
    /// Wall-clock time to build it, s.
    pub build_seconds: f64,
}

/// A finished plan: everything the outputs are written from.
pub struct PlannedCase {
    pub case: Case,
    /// The protocol of the variant that was planned.
    pub protocol: Protocol,
    /// The variant's name ("" for the protocol as given).
    pub variant: String,
    pub machine: MachineModel,
    pub delivery_machine: DeliveryMachine,
    pub beams: Vec<Beam>,
    /// Dose grid of RTDOSE (and of the influence matrix).
    pub dose_grid: DoseGrid,
    pub influence: InfluenceSummary,
    pub optimized: OptimizationResult,
    /// Segments after the deliverable normalisation.
    pub sequenced: SequencedPlan,
    /// Total deliverable dose per dose-grid row, Gy (what RTDOSE holds).
    pub deliverable_gy: Vec<f64>,
    /// The same on the full dose grid.
    pub deliverable_full_gy: Vec<f32>,
    /// MU factor of the deliverable normalisation (1 without).
    pub mu_scale: f64,
    pub normalisation: Normalisation,
    pub gamma: GammaResult,
    /// The optimiser's dose against the untruncated dose of the optimised weights.
    pub fidelity: report::ModelFidelity,
    /// Each evaluation of the dose-fidelity loop (empty when it was off).
    pub fidelity_steps: Vec<report::FidelityStep>,
    /// Name of the optimiser backend.
    pub solver_name: String,
    /// The segment-weight optimisation after sequencing, when it ran.
    pub segment_weights: Option<report::SegmentWeightSummary>,
    /// RT Plan label, name, description and the outputs' creation time.
    pub identity: ResolvedIdentity,
    /// The dose reference point with each beam's dose there (RT Plan dose tracking).
    pub dose_reference: DoseReferencePoint,
    /// Source-to-surface distance of each beam on its central axis, mm (plan order).
    pub ssd_mm: Vec<Option<f64>>,
    /// Whether [`PlannedCase::write`] adds one RT Dose per beam.
    pub beam_doses: bool,
    pub report: Report,
}

/// The case's name in reports and default plan labels: its folder's name, else `case`.
pub(super) fn case_name(case: &Case) -> String {
    case.dir
        .as_ref()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "case".into())
}

/// Stage 4 of [`PreparedPlan::finish`], run inside the planner's thread pool.
pub(super) fn finish(
    prep: &PreparedPlan,
    optimised: &OptimisedPlan,
    seq: SequencedStage,
    mut times: Vec<StageTime>,
) -> Result<PlannedCase> {
    let s = &prep.settings;
    let p = &optimised.protocol;
    let runner = &prep.runner;
    let target = prep.case.structure(&p.prescription.target)?;
    // The target's partial-volume rows (prepare made one entry per case structure, in order).
    let target_rows = prep
        .case
        .structures
        .iter()
        .zip(&prep.structures)
        .find(|(c, _)| std::ptr::eq(*c, target))
        .map(|(_, r)| &r.dvh)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "target '{}' has no structure rows in the prepared plan",
                target.roi.name
            ))
        })?;
    let mut sequenced = seq.sequenced;
    let mut seg_weights = seq.segment_weights;

    let (deliverable_gy, mu_scale) = runner.run(PlanStage::DeliverableDose, &mut times, || {
        let mut d = prep.forward_dose_gy(&seq.deliverable_weights_mu)?;
        if let (Some(sw), Some(model)) = (seg_weights.as_mut(), &seq.segment_model_dose_gy) {
            sw.model_vs_deliverable = Some(report::ModelFidelity::compute(
                model,
                &d,
                p.prescription.total_dose_gy,
                FIDELITY_THRESHOLD_PERCENT_RX,
            ));
        }
        let td = target_rows.doses(&crate::dose::DoseField::new(&d, &prep.dose_grid));
        let f = s.normalisation.factor(&td, p.prescription.total_dose_gy);
        if f != 1.0 {
            for v in d.iter_mut() {
                *v *= f;
            }
            for b in sequenced.beams.iter_mut() {
                for seg in b.segments.iter_mut() {
                    seg.mu *= f;
                }
                b.meterset_mu *= f;
            }
        }
        let summary = format!(
            "{:.0} MU per fraction (normalisation x{f:.4})",
            sequenced.total_mu()
        );
        Ok(((d, f), summary))
    })?;

    let grid = &prep.dose_grid.grid;
    let del_full = prep.dose_grid.to_full(&deliverable_gy);
    let (gamma_result, fidelity) = runner.run(PlanStage::Gamma, &mut times, || {
        let optimised_exact = match &optimised.exact_dose_gy {
            Some(d) => d.clone(),
            None => prep.forward_dose_gy(&prep.delivered_weights(&optimised.result.weights_mu)?)?,
        };
        let fidelity = report::ModelFidelity::compute(
            &optimised.result.dose_gy,
            &optimised_exact,
            p.prescription.total_dose_gy,
            FIDELITY_THRESHOLD_PERCENT_RX,
        );
        let opt_full = prep.dose_grid.to_full(&optimised_exact);
        let g = gamma::gamma_3d(grid, &opt_full, grid, &del_full, prep.gamma_options())?;
        let summary = format!(
            "3 %/2 mm pass rate {:.2} %; optimiser vs untruncated dose: 99 % of voxels within {:.1} % of Rx, max {:.1} %",
            g.pass_rate_percent, fidelity.p99_percent_rx, fidelity.max_percent_rx
        );
        Ok(((g, fidelity), summary))
    })?;

    let figures = super::PlanFigures {
        beam_mu: prep
            .beams
            .iter()
            .zip(&sequenced.beams)
            .map(|(b, sb)| (format!("beam {} ({})", b.number, b.name), sb.meterset_mu))
            .collect(),
        mu_scale,
        gamma_pass_percent: gamma_result.pass_rate_percent,
    };
    let mut reasons = s.acceptance.check_plan(&s.machine, &figures);
    // Every mechanical limit of the machine (jaw over-travel, leaf span, gap, minimum area
    // and MU). The minimum MU was enforced before the normalisation, which scales it.
    let min_mu = s
        .sequencing
        .min_segment_mu
        .unwrap_or(s.machine.min_segment_mu)
        * mu_scale.min(1.0);
    reasons.extend(
        crate::deliverability::violations(
            &DeliveryMachine::from(&s.machine),
            &prep.beams,
            &sequenced.beams,
            min_mu,
        )
        .iter()
        .map(|v| format!("not deliverable on {}: {v}", s.machine.name)),
    );
    if !reasons.is_empty() {
        return Err(Error::Implausible { reasons });
    }

    // Dose tracking and plan identity (cheap: one point's beamlet doses, one ray per beam).
    let fractions = p.prescription.fractions.max(1) as f64;
    let target_centre_rows = prep
        .case
        .structures
        .iter()
        .zip(&prep.structures)
        .find(|(c, _)| std::ptr::eq(*c, target))
        .map(|(_, r)| r.rows.as_slice())
        .unwrap_or(&[]);
    let per_fraction_full: Vec<f32> = del_full.iter().map(|&v| v / fractions as f32).collect();
    let (position_mm, planned_dose) = dose_reference::choose_point(
        &prep.dose_grid,
        target_centre_rows,
        &per_fraction_full,
        p.prescription.total_dose_gy / fractions,
        &target.roi.name,
    )?;
    let (beam_dose_gy, cumulative_coefficients) = dose_reference::beam_doses(
        &prep.case.ct,
        &prep.beams,
        &s.machine,
        &sequenced.beams,
        position_mm,
    )?;
    let dose_reference = DoseReferencePoint {
        structure: target.roi.name.clone(),
        position_mm,
        planned_dose_per_fraction_gy: planned_dose,
        beam_dose_gy,
        cumulative_coefficients,
    };
    let body = prep.case.try_body_mask()?;
    let ssd_mm: Vec<Option<f64>> = sequenced
        .beams
        .iter()
        .map(|sb| prep.beams.get(sb.beam_index).and_then(|b| b.ssd_mm(&body)))
        .collect();
    let identity = s.identity.resolve(
        &p.plan,
        &case_name(&prep.case),
        crate::io::dicom::identity::CreationTime::now(),
    )?;

    let mut report_times = Vec::new();
    let planned = runner.run(PlanStage::Report, &mut report_times, || {
        let goal_rows = prep.problem.evaluate_goals(&deliverable_gy)?;
        let mut planned = PlannedCase {
            case: prep.case.clone(),
            protocol: p.clone(),
            variant: optimised.variant.name.clone(),
            machine: s.machine.clone(),
            delivery_machine: DeliveryMachine::from(&s.machine),
            beams: prep.beams.clone(),
            dose_grid: prep.dose_grid.clone(),
            influence: prep.influence.clone(),
            optimized: optimised.result.clone(),
            sequenced,
            deliverable_gy,
            deliverable_full_gy: del_full,
            mu_scale,
            normalisation: s.normalisation,
            gamma: gamma_result,
            fidelity,
            fidelity_steps: optimised.fidelity.clone(),
            solver_name: s.optimize.backend.name().to_string(),
            segment_weights: seg_weights.clone(),
            identity,
            dose_reference,
            ssd_mm,
            beam_doses: s.beam_doses,
            report: Report {
                rtopt_version: env!("CARGO_PKG_VERSION").to_string(),
                plan: Default::default(),
                case: String::new(),
                protocol: s.protocol_name.clone(),
                prescription_gy: p.prescription.total_dose_gy,
                fractions: p.prescription.fractions,
                target: p.prescription.target.clone(),
                input_hashes: hash_files(&s.input_files)?,
                structures: Vec::new(),
                protocol_metrics: Vec::new(),
                quality: report::plan_quality(
                    &[],
                    &crate::dvh::WeightedDoses::uniform(&[]),
                    0.0,
                    0.0,
                ),
                goals: Vec::new(),
                beams: Vec::new(),
                optimizer: Default::default(),
                delivery: Default::default(),
                notes: Vec::new(),
                timings: Vec::new(),
                dvh: Vec::new(),
            },
        };
        planned.build_report(goal_rows, &prep.structures)?;
        Ok((planned, String::new()))
    })?;
    let mut planned = planned;
    times.extend(report_times);
    planned.report.timings = times
        .iter()
        .map(|t| StageTiming {
            stage: t.stage.name().to_string(),
            seconds: t.seconds,
        })
        .collect();
    Ok(planned)
}

fn hash_files(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let h = Sha256::digest(&bytes);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, hex));
    }
    Ok(out)
}

impl PlannedCase {
    /// Fill the report from the goal results and the structures' rows (`rows`: one entry
    /// per case structure, in the case's order, as [`PreparedPlan`] holds them). Structure
    /// metrics and DVHs weigh each voxel by its partial volume.
    fn build_report(
        &mut self,
        goals: Vec<crate::optimize::GoalResult>,
        rows: &[crate::dose::StructureRows],
    ) -> Result<()> {
        let voxel_cm3 = self.dose_grid.grid.voxel_volume_cm3();
        let p = &self.protocol;
        let rx = p.prescription.total_dose_gy;
        let mut structures = Vec::new();
        let mut dvh = Vec::new();
        let mut metrics = Vec::new();
        let mut target_doses = crate::dvh::WeightedDoses::uniform(&[]);
        if rows.len() != self.case.structures.len() {
            return Err(Error::Invalid(format!(
                "report: {} structure row sets for {} structures",
                rows.len(),
                self.case.structures.len()
            )));
        }
        let field = crate::dose::DoseField::new(&self.deliverable_gy, &self.dose_grid);
        for (s, sr) in self.case.structures.iter().zip(rows) {
            let d = sr.dvh.doses(&field);
            structures.push(StructureMetrics::compute(
                &s.roi.name,
                &s.roi.interpreted_type,
                &d,
                voxel_cm3,
                sr.volume_cm3(&self.dose_grid),
                sr.weighted.rows.len(),
                p.prescription.total_dose_gy,
            ));
            dvh.push(DvhCurve::compute(&s.roi.name, s.roi.color, &d, DVH_BIN_GY));
            if s.roi.name == p.prescription.target {
                target_doses = d.clone();
            }
            for sg in p.structures.iter().filter(|g| g.name == s.roi.name) {
                for g in &sg.goals {
                    if let Some(v) = g.kind.dvh_volume_pct() {
                        metrics.push(ProtocolMetric {
                            structure: s.roi.name.clone(),
                            metric: format!("D{v}"),
                            value: d.dose_at_volume(v),
                            unit: "Gy".into(),
                        });
                    }
                }
            }
        }
        let quality: PlanQuality =
            report::plan_quality(&self.deliverable_gy, &target_doses, rx, voxel_cm3);
        // Goals are evaluated in protocol order (structure by structure, goal by goal).
        let metrics_of: Vec<String> = p
            .structures
            .iter()
            .flat_map(|s| s.goals.iter().map(|g| g.kind.metric()))
            .collect();
        let goal_rows: Vec<GoalRow> = goals
            .iter()
            .zip(metrics_of)
            .enumerate()
            .map(|(i, (g, metric))| GoalRow {
                structure: g.structure.clone(),
                goal: g.description.clone(),
                kind: g.role,
                metric,
                achieved: g.achieved_gy,
                unit: "Gy".into(),
                objective_value: g.objective_value,
                met: g.met,
                objective_per_gy: self.optimized.goals.get(i).and_then(|o| o.objective_per_gy),
            })
            .collect();
        let beams: Vec<BeamRow> = self
            .beams
            .iter()
            .zip(&self.sequenced.beams)
            .map(|(b, s)| BeamRow {
                number: b.number,
                name: b.name.clone(),
                gantry_deg: b.gantry_deg,
                couch_deg: b.couch_deg,
                collimator_deg: b.collimator_deg,
                mu: s.meterset_mu,
                segments: s.segments.len(),
                ssd_mm: None,
                reference_dose_gy: None,
                delivery_time_s: crate::deliverability::beam_delivery_time_s(
                    &self.delivery_machine,
                    s,
                ),
            })
            .collect();
        let mut beams = beams;
        for (i, row) in beams.iter_mut().enumerate() {
            row.ssd_mm = self.ssd_mm.get(i).copied().flatten();
            row.reference_dose_gy = self.dose_reference.beam_dose_gy.get(i).copied();
        }
        let delivery_time_s: f64 = beams.iter().filter_map(|b| b.delivery_time_s).sum();
        let export = self.plan_export()?;
        let (sop_instance_uid, _, _) = rtplan::plan_uids(&export)?;
        let r = &self.dose_reference;
        self.report.plan = report::PlanBlock {
            label: self.identity.label.clone(),
            name: self.identity.name.clone(),
            description: self.identity.description.clone(),
            sop_instance_uid,
            created_utc: self.identity.created.iso8601_utc(),
            machine: self.machine.name.clone(),
            energy_mv: self.machine.energy_mv,
            technique: format!(
                "IMRT step-and-shoot, {} beams, {} segments",
                self.sequenced.beams.len(),
                self.sequenced
                    .beams
                    .iter()
                    .map(|b| b.segments.len())
                    .sum::<usize>()
            ),
            isocenter_mm: self
                .beams
                .first()
                .map(|b| b.isocenter_mm)
                .unwrap_or([0.0; 3]),
            dose_algorithm: crate::dose::engine_for(&self.machine).description().into(),
            dose_engine: self.machine.dose_engine.as_str().into(),
            dose_grid_mm: self.dose_grid.grid.spacing_mm,
            normalisation_factor: self.mu_scale,
            total_mu_per_fraction: self.sequenced.total_mu(),
            delivery_time_s,
            reference_point_mm: r.position_mm,
            reference_structure: r.structure.clone(),
            reference_dose_per_fraction_gy: r.planned_dose_per_fraction_gy,
            reference_beam_dose_sum_gy: r.total_beam_dose_gy(),
        };
        let o = &self.optimized;
        self.report.case = case_name(&self.case);
        self.report.structures = structures;
        self.report.protocol_metrics = metrics;
        self.report.quality = quality;
        self.report.goals = goal_rows;
        self.report.beams = beams;
        self.report.dvh = dvh;
        self.report.optimizer = report::OptimizerSummary {
            solver: self.solver_name.clone(),
            status: o.status.clone(),
            iterations: o.iterations,
            rounds: o.rounds,
            solve_seconds: o.solve_seconds,
            objective: o.objective,
            variables: o.n_variables,
            constraint_rows: o.n_constraint_rows,
            influence_matrix: report::InfluenceMatrixSummary {
                rows: self.influence.rows,
                columns: self.influence.columns,
                nnz: self.influence.nnz,
                truncated_mass_fraction: self.influence.truncated_mass_fraction,
            },
        };
        self.report.delivery = report::DeliverySummary {
            sequencing: self.sequenced.reports.clone(),
            total_mu_per_fraction: self.sequenced.total_mu(),
            mu_normalisation_factor: self.mu_scale,
            gamma: report::GammaSummary {
                criteria: "3 %/2 mm global, 10 % threshold, deliverable vs optimised dose".into(),
                pass_rate_percent: self.gamma.pass_rate_percent,
                evaluated_points: self.gamma.evaluated,
                mean_gamma: self.gamma.mean_gamma,
            },
            optimiser_vs_final: self.fidelity.clone(),
            fidelity_corrections: self.fidelity_steps.clone(),
            segment_weights: self.segment_weights.clone(),
            mu_per_cgy: mu_per_cgy(
                self.sequenced.total_mu(),
                rx,
                self.protocol.prescription.fractions,
            ),
        };
        self.report.notes = vec![
            "Dose-volume constraints are enforced through their CVaR (Rockafellar-Uryasev) counterparts, which are conservative: the achieved DVH point is at least as good as the limit.".into(),
            "Goals, DVHs and indices are evaluated on the deliverable (sequenced) dose, after MU normalisation of the target D95 to the prescription.".into(),
            format!("Deliverable normalisation: {}.", self.normalisation.describe()),
            format!(
                "The optimiser's dose (truncated, scatter-corrected matrix) against the untruncated dose of the same weights, over {} voxels above {} % of Rx: 99 % within {:.2} Gy ({:.1} % of Rx), at most {:.2} Gy ({:.1} %), mean {:+.2} Gy.",
                self.fidelity.voxels,
                self.fidelity.threshold_percent_rx,
                self.fidelity.p99_abs_gy,
                self.fidelity.p99_percent_rx,
                self.fidelity.max_abs_gy,
                self.fidelity.max_percent_rx,
                self.fidelity.mean_signed_gy
            ),
            format!(
                "CT calibration (HU to relative electron density): {}.",
                self.machine.ct_calibration.name
            ),
            "Not for clinical use.".into(),
        ];
        if !self.variant.is_empty() {
            self.report
                .notes
                .insert(0, format!("Variant: {}.", self.variant));
        }
        self.report.notes.extend(
            self.case
                .warnings()
                .iter()
                .map(|w| format!("Import warning: {w}")),
        );
        Ok(())
    }

    /// Write `RTPLAN.dcm`, `RTDOSE.dcm`, `report.json` and `report.html` into `out_dir`.
    /// Everything is first written into a temporary sibling folder which is then renamed into
    /// place ([`crate::io::atomic::write_dir`]), so a reader never sees a partial plan folder, and
    /// work folders left by a killed earlier export are removed.
    ///
    /// An existing `out_dir` is replaced only as `replace` allows ([`crate::outputs`]): never a
    /// folder rtopt did not write, never a file.
    pub fn write(&self, out_dir: &Path, replace: Replace) -> Result<()> {
        crate::io::atomic::write_dir(out_dir, replace, |tmp| self.write_files(tmp))
    }

    /// What the RT Plan is written from.
    fn plan_export(&self) -> Result<PlanExport<'_>> {
        let ct = &self.case.ct.meta;
        let ss_uid = self
            .case
            .structure_set
            .as_ref()
            .map(|s| s.sop_instance_uid.clone())
            .unwrap_or_default();
        let target = self.case.structure(&self.protocol.prescription.target)?;
        Ok(PlanExport {
            label: self.identity.label.clone(),
            name: self.identity.name.clone(),
            description: self.identity.description.clone(),
            ct,
            structure_set_uid: ss_uid,
            target: TargetPrescription {
                roi_number: target.roi.number,
                roi_name: target.roi.name.clone(),
                prescription_gy: self.protocol.prescription.total_dose_gy,
            },
            fractions: self.protocol.prescription.fractions,
            machine: &self.delivery_machine,
            beams: &self.beams,
            sequenced: &self.sequenced.beams,
            reference_point: Some(self.dose_reference.clone()),
            ssd_mm: self.ssd_mm.clone(),
            created: self.identity.created,
        })
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let ct = &self.case.ct.meta;
        let plan = self.plan_export()?;
        let plan_uid = rtplan::write_rtplan(&dir.join("RTPLAN.dcm"), &plan)?;
        rtdose::write_rtdose(
            &dir.join("RTDOSE.dcm"),
            &DoseExport {
                ct,
                grid: &self.dose_grid.grid,
                dose_gy: &self.deliverable_full_gy,
                plan_sop_uid: &plan_uid,
                created: self.identity.created,
                beam_number: None,
                tissue_heterogeneity_correction: crate::dose::engine_for(&self.machine)
                    .tissue_heterogeneity_correction(),
            },
        )?;
        if self.beam_doses {
            for (number, dose) in self.beam_dose_grids()? {
                rtdose::write_rtdose(
                    &dir.join(format!("RTDOSE_beam{number}.dcm")),
                    &DoseExport {
                        ct,
                        grid: &self.dose_grid.grid,
                        dose_gy: &dose,
                        plan_sop_uid: &plan_uid,
                        created: self.identity.created,
                        beam_number: Some(number as i64),
                        tissue_heterogeneity_correction: crate::dose::engine_for(&self.machine)
                            .tissue_heterogeneity_correction(),
                    },
                )?;
            }
        }
        let json = serde_json::to_string_pretty(&self.report)
            .map_err(|e| Error::Invalid(format!("report.json: {e}")))?;
        crate::io::atomic::write_file(&dir.join("report.json"), json.as_bytes())?;
        #[cfg(feature = "html-report")]
        self.write_html(dir)?;
        Ok(())
    }
}

impl PlannedCase {
    /// Each beam's deliverable dose on the full dose grid (all fractions, Gy), with its
    /// BeamNumber: the RT Dose's weights restricted to the beam, by the same engine.
    pub fn beam_dose_grids(&self) -> Result<Vec<(usize, Vec<f32>)>> {
        let n_cols: usize = self.beams.iter().map(|b| b.beamlets.len()).sum();
        let fractions = self.protocol.prescription.fractions.max(1) as f64;
        let mut out = Vec::with_capacity(self.sequenced.beams.len());
        for sb in &self.sequenced.beams {
            let beam = self.beams.get(sb.beam_index).ok_or_else(|| {
                Error::Invalid(format!("sequenced beam {} has no beam", sb.beam_index))
            })?;
            let mut w = vec![0.0; n_cols];
            let bw = crate::sequencing::beam_weights_from_segments(
                beam,
                &sb.leaf_boundaries_mm,
                &sb.segments,
                sb.transmission,
            );
            w[beam.first_column..beam.first_column + bw.len()].copy_from_slice(&bw);
            let rows = crate::dose::engine_for(&self.machine).dose_from_weights(
                &self.case.ct,
                &self.dose_grid,
                &self.beams,
                &self.machine,
                &w,
                &crate::control::CancelToken::new(),
            )?;
            let rows: Vec<f64> = rows.into_iter().map(|d| d * fractions).collect();
            out.push((beam.number, self.dose_grid.to_full(&rows)));
        }
        Ok(out)
    }

    #[cfg(feature = "html-report")]
    fn write_html(&self, dir: &Path) -> Result<()> {
        let html = self.report_html()?;
        crate::io::atomic::write_file(&dir.join("report.html"), html.as_bytes())?;
        Ok(())
    }

    /// `report.html` as text: the plan block, goals, DVH, dose washes with isodose lines and
    /// one beam's-eye view per beam (`docs/report.md`).
    #[cfg(feature = "html-report")]
    pub fn report_html(&self) -> Result<String> {
        let outlines: Vec<(&str, [u8; 3], &crate::geometry::Mask)> = self
            .case
            .structures
            .iter()
            .map(|s| (s.roi.name.as_str(), s.roi.color, &s.mask))
            .collect();
        let iso = self
            .beams
            .first()
            .map(|b| b.isocenter_mm)
            .unwrap_or([0.0; 3]);
        report::html::render(&report::html::HtmlInputs {
            report: &self.report,
            ct: &self.case.ct,
            dose_gy: &self.deliverable_full_gy,
            dose_grid: &self.dose_grid.grid,
            outlines,
            isocenter_mm: iso,
            beams: &self.beams,
            sequenced: &self.sequenced.beams,
            target: self
                .case
                .structure(&self.protocol.prescription.target)
                .ok()
                .map(|s| &s.mask),
        })
    }
}

/// MU efficiency: MU per fraction over the prescribed dose per fraction in cGy.
fn mu_per_cgy(mu_per_fraction: f64, rx_total_gy: f64, fractions: u32) -> f64 {
    let cgy = rx_total_gy * 100.0 / fractions.max(1) as f64;
    if cgy > 0.0 {
        mu_per_fraction / cgy
    } else {
        0.0
    }
}
