//! `rtopt dose <case> --plan RTPLAN.dcm [--reference-dose RTDOSE.dcm]`: the secondary dose
//! check. Parses nothing itself: loads, calls `rtopt::plan::recalculate` and writes the
//! output folder (RT Dose of the recalculation, `dose-check.json`) atomically.

use std::path::{Path, PathBuf};

use rtopt::io::dicom::identity::CreationTime;
use rtopt::outputs::Replace;
use rtopt::plan::recalculate::{self, RecalcOptions};
use rtopt::{Case, Error, Result};

/// Arguments of the plan-dose mode of `rtopt dose`.
pub struct PlanDoseRun<L: Fn(&Path) -> Result<Case>> {
    pub folder: Option<PathBuf>,
    pub plan: PathBuf,
    pub reference_dose: Option<PathBuf>,
    pub water_phantom: bool,
    pub machine: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub force: bool,
    /// Loads a case folder with the command line's selection.
    pub load: L,
    /// Creation time of the RT Dose (`None`: the clock).
    pub created: Option<CreationTime>,
}

/// Run it; returns the text to print.
pub fn run<L: Fn(&Path) -> Result<Case>>(r: &PlanDoseRun<L>) -> Result<String> {
    let out = r.out.clone().unwrap_or_else(|| {
        let stem = r
            .plan
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plan".into());
        PathBuf::from(format!("rtopt-dose-{stem}"))
    });
    let replace = Replace::from_force(r.force);
    let mut inputs = vec![r.plan.clone()];
    inputs.extend(r.folder.iter().cloned());
    inputs.extend(r.reference_dose.iter().cloned());
    inputs.extend(r.machine.iter().cloned());
    rtopt::outputs::check_output_dir(&out, &inputs, replace)?;
    let created = r.created.unwrap_or_else(CreationTime::now);
    let machine = match &r.machine {
        Some(p) => rtopt::machine::MachineModel::load(p)?,
        None => rtopt::machine::MachineModel::default_6x(),
    };
    let reference = match &r.reference_dose {
        Some(p) => Some(rtopt::io::dicom::rtdose::read_rtdose(p)?),
        None => None,
    };
    let (case, opts) = match (&r.folder, r.water_phantom) {
        (Some(_), true) => {
            return Err(Error::Invalid(
                "give a case folder or --water-phantom, not both".into(),
            ))
        }
        (Some(f), false) => ((r.load)(f)?, RecalcOptions::default()),
        (None, true) => {
            let plan = rtopt::io::dicom::rtplan::read_rtplan(&r.plan)?;
            let iso = plan
                .beams
                .first()
                .and_then(|b| b.control_points.first())
                .and_then(|c| c.isocenter_mm)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: the first beam has no IsocenterPosition to centre the phantom on",
                        r.plan.display()
                    ))
                })?;
            (
                rtopt::phantom::water_cube(iso, 300.0, 3.0),
                RecalcOptions {
                    ignore_frame_of_reference: true,
                    ..RecalcOptions::default()
                },
            )
        }
        (None, false) => {
            return Err(Error::Invalid(
                "rtopt dose --plan needs a case folder or --water-phantom".into(),
            ))
        }
    };
    let mut recalc = recalculate::recalculate(&case, &r.plan, &machine, &opts)?;
    if r.water_phantom {
        recalc.statements.insert(
            0,
            "Recalculated on a 30 cm water cube centred on the isocentre (no CT): a verification-phantom dose, not the patient's."
                .into(),
        );
    }
    let comparison = match &reference {
        Some(rd) => match recalculate::compare(&case, &recalc, rd) {
            Ok(c) => Some(c),
            Err(e) => {
                recalc
                    .statements
                    .push(format!("No comparison with the reference dose: {e}."));
                None
            }
        },
        None => None,
    };
    let summary = serde_json::json!({
        "plan": r.plan.file_name().map(|n| n.to_string_lossy().into_owned()),
        "plan_sop_instance_uid": recalc.plan.sop_instance_uid,
        "machine_model": machine.name,
        "fractions": recalc.fractions,
        "beams": recalc.plan.beams.iter().map(|b| serde_json::json!({
            "number": b.number, "name": b.name, "mu": b.meterset_mu, "segments": b.segments.len()
        })).collect::<Vec<_>>(),
        "max_dose_gy": recalc.dose_full_gy.iter().fold(0.0f32, |m, &v| m.max(v)),
        "statements": recalc.statements,
        "comparison": comparison,
    });
    let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::Invalid(e.to_string()))?;
    let ct = &case.ct.meta;
    rtopt::io::atomic::write_dir(&out, replace, |dir| {
        rtopt::io::dicom::rtdose::write_rtdose(
            &dir.join("RTDOSE.dcm"),
            &rtopt::io::dicom::rtdose::DoseExport {
                ct,
                grid: &recalc.dose_grid.grid,
                dose_gy: &recalc.dose_full_gy,
                plan_sop_uid: &recalc.plan.sop_instance_uid,
                created,
                beam_number: None,
                tissue_heterogeneity_correction: rtopt::dose::engine_for(&machine)
                    .tissue_heterogeneity_correction(),
            },
        )?;
        rtopt::io::atomic::write_file(&dir.join("dose-check.json"), json.as_bytes())
    })?;
    let mut text = format!(
        "recalculated {} beams over {} fractions: max {:.2} Gy\n",
        recalc.plan.beams.len(),
        recalc.fractions,
        summary["max_dose_gy"].as_f64().unwrap_or(0.0)
    );
    if let Some(c) = &comparison {
        text.push_str(&format!(
            "against the reference dose: gamma 3 %/2 mm {:.2} %, 1 %/1 mm {:.2} % of {} points; max {:.2} vs {:.2} Gy\n",
            c.gamma_3_2_percent, c.gamma_1_1_percent, c.evaluated_points, c.max_gy.0, c.max_gy.1
        ));
        for s in &c.structures {
            text.push_str(&format!(
                "  {:<14} mean {:.2} / {:.2} Gy, D95 {:.2} / {:.2} Gy, D2 {:.2} / {:.2} Gy\n",
                s.name, s.mean_gy.0, s.mean_gy.1, s.d95_gy.0, s.d95_gy.1, s.d2_gy.0, s.d2_gy.1
            ));
        }
    }
    for s in &recalc.statements {
        text.push_str(&format!("note: {s}\n"));
    }
    text.push_str(&format!("outputs written to {}\n", out.display()));
    Ok(text)
}
