//! Treatment-machine description (read from `data/machines/*.json`): geometry, MLC, jaws,
//! beam model and absolute dose calibration.
//!
//! The CT calibration (HU -> relative electron density) is not part of the machine: it is a
//! [`CtCalibration`] of its own file (`data/calibration/ct-default.toml` by default), which a
//! machine file may name with `ct_calibration_file`. Machine files written before issue 15
//! that still carry the table as `hu_to_rel_ed` are accepted: the table is used as their CT
//! calibration (its [`CtCalibration::name`] says so), so their doses do not change.
// Index loops mirror the formulas; negated comparisons deliberately reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::calibration::CtCalibration;
use crate::error::{Error, Result};

/// Multi-leaf collimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlc {
    /// Leaf-pair boundaries along y in the isocentre plane, mm, ascending (`n_pairs + 1` values).
    /// Default machine: 120-leaf MLC, 10 x 10 mm outer, 40 x 5 mm central, 10 x 10 mm outer,
    /// -200 .. +200 mm.
    pub leaf_boundaries_mm: Vec<f64>,
    /// Smallest gap between the two leaves of a pair when open, mm.
    pub min_leaf_gap_mm: f64,
    /// Whether a leaf may pass the opposite leaf of a neighbouring pair.
    pub interdigitation: bool,
    /// Leaf travel limits along x, mm at the isocentre.
    pub x_min_mm: f64,
    pub x_max_mm: f64,
    /// MLC model (for the report and the plan's beam description), e.g. `Millennium 120`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Largest distance between the most extended and the most retracted leaf of one bank,
    /// mm at the isocentre (the leaves of a bank ride on one carriage); `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_leaf_span_mm: Option<f64>,
    /// Largest leaf speed, mm/s at the isocentre (the delivery-time estimate of the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_leaf_speed_mm_per_s: Option<f64>,
    /// Mean transmission through the leaves, fraction of the open fluence: closed leaves
    /// inside the jaws pass this share of a segment's MU (`sequencing::Transmission`,
    /// `docs/dose.md`); absent: opaque leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmission: Option<f64>,
    /// SourceToBeamLimitingDeviceDistance of the MLC, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_distance_mm: Option<f64>,
}

impl Mlc {
    /// Number of leaf pairs.
    pub fn n_pairs(&self) -> usize {
        self.leaf_boundaries_mm.len().saturating_sub(1)
    }
}

/// Jaw limits in the isocentre plane, mm (ASYMX and ASYMY; IEC 61217: X1 and Y1 are the jaws
/// on the negative side).
///
/// `x_min_mm` is the farthest the X1 jaw retracts and `x_max_mm` the farthest X2 retracts;
/// the over-travel fields say how far each jaw may cross the central axis (a Varian X jaw
/// crosses it by at most 20 mm, a Y jaw by 100 mm: `docs/machine.md`). Without them a jaw
/// may travel the whole range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jaws {
    pub x_min_mm: f64,
    pub x_max_mm: f64,
    pub y_min_mm: f64,
    pub y_max_mm: f64,
    /// Largest X1 position (X1 crossing the axis to +x), mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x1_max_mm: Option<f64>,
    /// Smallest X2 position (X2 crossing the axis to -x), mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x2_min_mm: Option<f64>,
    /// Largest Y1 position, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y1_max_mm: Option<f64>,
    /// Smallest Y2 position, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y2_min_mm: Option<f64>,
    /// Transmission through the jaws, fraction of the open fluence (times the leaves'
    /// transmission where they are closed too, `sequencing::Transmission`); absent: opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmission: Option<f64>,
    /// SourceToBeamLimitingDeviceDistance of the X jaws, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_source_distance_mm: Option<f64>,
    /// SourceToBeamLimitingDeviceDistance of the Y jaws, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_source_distance_mm: Option<f64>,
}

impl Jaws {
    /// Travel range of X1 `[min, max]`, mm.
    pub fn x1_range_mm(&self) -> [f64; 2] {
        [self.x_min_mm, self.x1_max_mm.unwrap_or(self.x_max_mm)]
    }
    /// Travel range of X2, mm.
    pub fn x2_range_mm(&self) -> [f64; 2] {
        [self.x2_min_mm.unwrap_or(self.x_min_mm), self.x_max_mm]
    }
    /// Travel range of Y1, mm.
    pub fn y1_range_mm(&self) -> [f64; 2] {
        [self.y_min_mm, self.y1_max_mm.unwrap_or(self.y_max_mm)]
    }
    /// Travel range of Y2, mm.
    pub fn y2_range_mm(&self) -> [f64; 2] {
        [self.y2_min_mm.unwrap_or(self.y_min_mm), self.y_max_mm]
    }
}

/// An RT tolerance table (RT Tolerance Tables module): how far the record-and-verify system
/// lets the machine's actual set-up differ from the plan before it interlocks. Values are the
/// clinic's; the shipped machine's are an example (`docs/machine.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToleranceTable {
    /// ToleranceTableLabel (at most 16 characters).
    pub label: String,
    /// GantryAngleTolerance, degrees.
    pub gantry_deg: f64,
    /// BeamLimitingDeviceAngleTolerance, degrees.
    pub collimator_deg: f64,
    /// PatientSupportAngleTolerance, degrees.
    pub couch_deg: f64,
    /// BeamLimitingDevicePositionTolerance of the jaws, mm.
    pub jaw_mm: f64,
    /// BeamLimitingDevicePositionTolerance of the MLC leaves, mm.
    pub mlc_mm: f64,
    /// TableTopVertical/Longitudinal/LateralPositionTolerance, mm.
    pub table_vertical_mm: f64,
    pub table_longitudinal_mm: f64,
    pub table_lateral_mm: f64,
}

/// The default 120-leaf boundaries: 10 x 10 mm, 40 x 5 mm, 10 x 10 mm (-200 .. +200 mm).
pub fn default_leaf_boundaries_mm() -> Vec<f64> {
    let mut b = Vec::with_capacity(61);
    let mut y = -200.0;
    b.push(y);
    for i in 0..60 {
        y += if (10..50).contains(&i) { 5.0 } else { 10.0 };
        b.push(y);
    }
    b
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_mlc_spans_400_mm_with_60_pairs() {
        let b = super::default_leaf_boundaries_mm();
        assert_eq!(b.len(), 61);
        assert_eq!(b[0], -200.0);
        assert_eq!(b[60], 200.0);
        assert_eq!(b[10], -100.0);
        assert_eq!(b[50], 100.0);
    }

    #[test]
    fn default_machine_parses_and_uses_the_default_ct_calibration() {
        let m = super::MachineModel::default_6x();
        assert_eq!(m.mlc.n_pairs(), 60);
        // The HU table is no longer in the machine file: the built-in CT calibration is used
        // (its interpolation is tested in crate::calibration).
        assert_eq!(
            m.ct_calibration,
            crate::calibration::CtCalibration::default()
        );
        assert_eq!(m.ct_calibration_file, None);
    }

    #[test]
    fn old_machine_file_with_its_hu_table_keeps_it_as_ct_calibration() {
        let mut v: serde_json::Value = serde_json::from_str(super::DEFAULT_6X_JSON).expect("json");
        assert!(v.get("hu_to_rel_ed").is_none());
        v["hu_to_rel_ed"] = serde_json::json!([[-1000.0, 0.0], [1000.0, 2.0]]);
        let m = super::MachineModel::from_json(&v.to_string(), std::path::Path::new("old.json"))
            .expect("old layout accepted");
        assert!((m.relative_electron_density(0.0) - 1.0).abs() < 1e-6);
        assert!(m.ct_calibration.name.contains("old.json"));
        v["ct_calibration_file"] = serde_json::json!("ct.toml");
        let e = super::MachineModel::from_json(&v.to_string(), std::path::Path::new("old.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("old.json") && e.contains("both"), "{e}");
    }

    #[test]
    fn invalid_machine_file_names_the_field() {
        let mut v: serde_json::Value = serde_json::from_str(super::DEFAULT_6X_JSON).expect("json");
        v["beam_model"]["attenuation_per_mm"] = serde_json::json!(-1.0);
        let e = super::MachineModel::from_json(&v.to_string(), std::path::Path::new("m.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.json") && e.contains("beam_model.attenuation_per_mm"),
            "{e}"
        );
        v["beam_model"]["attenuation_per_mm"] = serde_json::json!(0.0045);
        v["manufacturer"] = serde_json::json!("Linac\\Co");
        let e = super::MachineModel::from_json(&v.to_string(), std::path::Path::new("m.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("manufacturer") && e.contains("backslash"), "{e}");
        v["manufacturer"] = serde_json::json!("Linac Co");
        v["jaws"]["x1_max_mm"] = serde_json::json!(-250.0);
        let e = super::MachineModel::from_json(&v.to_string(), std::path::Path::new("m.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("jaws.x1_max_mm"), "{e}");
        v["jaws"]["x1_max_mm"] = serde_json::json!(20.0);
        v.as_object_mut().expect("obj").remove("calibration");
        let e = super::MachineModel::from_json(&v.to_string(), std::path::Path::new("m.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("calibration"), "{e}");
    }
}

/// Largest number of pencil-beam kernel components a machine file may give (and the dose
/// engine evaluates: [`crate::dose::kernel::MAX_COMPONENTS`]).
pub const MAX_KERNEL_COMPONENTS: usize = 4;

/// A treatment machine: geometry, collimation and (added by the dose engine) its beam model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineModel {
    /// TreatmentMachineName written into RT Plans: must equal the machine's ID in the
    /// clinic's record-and-verify system (at most 16 characters).
    pub name: String,
    /// Manufacturer and model of the treatment machine (written in each beam of the plan).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manufacturer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_name: String,
    /// SetupTechnique of the plan's patient set-up (`ISOCENTRIC` or `FIXED_SSD`).
    #[serde(default = "default_setup_technique")]
    pub setup_technique: String,
    /// DoseRateSet of the plan's beams, MU/min.
    #[serde(default = "default_dose_rate_mu_per_min")]
    pub dose_rate_mu_per_min: f64,
    /// The tolerance table the plan's beams refer to; absent: a table with no values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_table: Option<ToleranceTable>,
    /// Nominal beam energy, MV.
    pub energy_mv: f64,
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    pub mlc: Mlc,
    pub jaws: Jaws,
    /// Smallest deliverable segment, MU.
    pub min_segment_mu: f64,
    /// Smallest open area of a segment, mm^2 (inside the jaws): smaller segments are dropped
    /// by sequencing, as a TPS's minimum-segment-area rule does (`docs/sequencing.md`).
    #[serde(default = "default_min_segment_area_mm2")]
    pub min_segment_area_mm2: f64,
    /// Smallest opening of an open leaf pair, mm: narrower openings are widened about their
    /// centre (small, narrow apertures are the least accurately modelled and measured).
    #[serde(default = "default_min_leaf_opening_mm")]
    pub min_leaf_opening_mm: f64,
    /// Photon pencil-beam kernel (see `docs/dose.md`).
    pub beam_model: PencilBeamModel,
    /// The dose engine that computes this machine's dose (`docs/dose.md`, "Dose engines");
    /// absent: the pencil beam, so machine files written before the engine seam keep working.
    #[serde(default)]
    pub dose_engine: DoseEngineKind,
    /// CT calibration file ([`CtCalibration`], TOML), relative to the machine file's folder;
    /// absent: the built-in `data/calibration/ct-default.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_calibration_file: Option<PathBuf>,
    /// The CT calibration in use (HU -> relative electron density): read from
    /// `ct_calibration_file`, else the built-in default. Not itself written in the machine
    /// file; replace it to plan on a CT from another scanner.
    #[serde(skip)]
    pub ct_calibration: CtCalibration,
    /// Absolute dose calibration.
    pub calibration: Calibration,
    /// Plan acceptance: the largest meterset of one beam in one fraction, MU. A plan above it
    /// is refused as implausible (`docs/reliability.md`); `rtopt plan --max-mu-per-beam`
    /// overrides it.
    #[serde(default = "default_max_mu_per_beam")]
    pub max_mu_per_beam: f64,
    /// Plan acceptance: the largest total meterset of one fraction, MU
    /// (`--max-mu-per-fraction`).
    #[serde(default = "default_max_mu_per_fraction")]
    pub max_mu_per_fraction: f64,
}

/// Which dose engine computes a machine's dose (`dose_engine` in the machine file).
///
/// The engine behind each kind is [`crate::dose::engine_for`]; the kind itself lives here so
/// that `machine` does not depend on `dose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoseEngineKind {
    /// Bortfeld-style pencil beam with Gaussian lateral kernels; heterogeneity as a
    /// radiological (equivalent path length) depth only.
    #[default]
    PencilBeam,
    /// Density-scaled lateral-kernel superposition (`crate::dose::superposition`): the
    /// pencil beam's kernel terms with their lateral widths scaled by the transport density
    /// upstream of each point, so that lateral electron transport in lung broadens the
    /// penumbra and lowers the axis dose of small fields.
    Superposition,
}

impl DoseEngineKind {
    /// The name written in the machine file and the plan report.
    pub fn as_str(self) -> &'static str {
        match self {
            DoseEngineKind::PencilBeam => "pencil_beam",
            DoseEngineKind::Superposition => "superposition",
        }
    }

    /// TissueHeterogeneityCorrection (3004,0014) of the RT Dose this engine computes: `IMAGE`
    /// when the CT's densities enter the calculation (DICOM PS3.3 C.8.8.3; the other defined
    /// terms are `ROI_OVERRIDE` and `WATER`).
    pub fn tissue_heterogeneity_correction(self) -> &'static str {
        match self {
            DoseEngineKind::PencilBeam | DoseEngineKind::Superposition => "IMAGE",
        }
    }
}

/// Default of [`MachineModel::min_segment_area_mm2`]: 100 mm^2 (1 cm^2), the lower end of
/// the 1-2 cm^2 clinics use for step-and-shoot segments (`docs/sequencing.md`).
pub fn default_min_segment_area_mm2() -> f64 {
    100.0
}

/// Default of [`MachineModel::min_leaf_opening_mm`]: 5 mm, one beamlet of the default
/// 5 mm grid (`docs/sequencing.md` gives the reasons and the effect of 10 mm).
pub fn default_min_leaf_opening_mm() -> f64 {
    5.0
}

/// Default of [`MachineModel::setup_technique`]: `ISOCENTRIC`.
pub fn default_setup_technique() -> String {
    "ISOCENTRIC".into()
}

/// Default of [`MachineModel::dose_rate_mu_per_min`]: 600 MU/min.
pub fn default_dose_rate_mu_per_min() -> f64 {
    600.0
}

/// Default of [`MachineModel::max_mu_per_beam`]: 2,000 MU.
pub fn default_max_mu_per_beam() -> f64 {
    2000.0
}

/// Default of [`MachineModel::max_mu_per_fraction`]: 8,000 MU.
pub fn default_max_mu_per_fraction() -> f64 {
    8000.0
}

/// One term of the pencil-beam kernel: a Bortfeld depth function times a Gaussian lateral
/// kernel (`docs/dose.md`).
///
/// Depth term: `w * beta/(beta - mu) * (exp(-mu d) - exp(-beta d))`, `d` the radiological
/// depth in mm and `mu` the attenuation coefficient [`PencilBeamModel::attenuation_per_mm`]. Lateral term: a Gaussian of standard deviation
/// `sigma_iso_mm + sigma_slope * d` in the isocentre plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelComponent {
    /// Weight `w` (dimensionless; the absolute scale comes from [`Calibration`]).
    pub weight: f64,
    /// Build-up coefficient `beta`, 1/mm.
    pub beta_per_mm: f64,
    /// Gaussian sigma at zero depth, mm in the isocentre plane.
    pub sigma_iso_mm: f64,
    /// Growth of sigma per mm of radiological depth (mm/mm).
    pub sigma_slope: f64,
}

/// Bortfeld-style photon pencil-beam model: depth terms times Gaussian radial kernels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PencilBeamModel {
    /// Effective linear attenuation coefficient of the primary fluence in water, 1/mm (`mu`
    /// in Bortfeld's depth term; not monitor units). Machine files written before issue 15
    /// call it `mu_per_mm`, still accepted.
    #[serde(alias = "mu_per_mm")]
    pub attenuation_per_mm: f64,
    /// Kernel terms (typically 3: primary + penumbra, medium-range and long-range scatter).
    pub components: Vec<KernelComponent>,
    /// Beam model v2: the extra-focal (head-scatter) source; absent: none (Sc = 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_focal: Option<ExtraFocalSource>,
    /// Beam model v2: electron contamination of the build-up region; absent: none (zero
    /// surface dose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub electron_contamination: Option<ElectronContamination>,
    /// Where the parameters come from (fit program and data), for the record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fit_source: String,
}

/// Extra-focal (head-scatter) photon source (beam model v2, `docs/dose.md`): a second fluence
/// of relative weight `weight`, the aperture blurred by a Gaussian of `sigma_iso_mm` in the
/// isocentre plane, deposited through the same kernel. It gives the in-air output ratio
/// `Sc(F) = (1 + w erf(F / (2 sqrt2 sigma))^2) / (1 + w erf(50 mm / (sqrt2 sigma))^2)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraFocalSource {
    /// Fluence of the extra-focal source relative to the primary (fully open aperture).
    pub weight: f64,
    /// Gaussian width of the source's aperture blur in the isocentre plane, mm.
    pub sigma_iso_mm: f64,
}

/// Contamination electrons (beam model v2): dose `w exp(-decay d)` at radiological depth `d`,
/// spread laterally with the primary term's width (`weight_narrow`, field-size independent)
/// and with `sigma_wide_mm` (`weight_wide`, more surface dose for larger fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectronContamination {
    pub weight_narrow: f64,
    pub weight_wide: f64,
    /// 1/mm.
    pub decay_per_mm: f64,
    /// mm in the isocentre plane.
    pub sigma_wide_mm: f64,
}

/// Absolute calibration: `dose_gy_per_mu` at the depth of maximum dose on the central axis of
/// a square `field_mm` field at source-surface distance `ssd_mm` in water.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Gy per MU at dmax (default 0.01 Gy/MU = 1 cGy/MU).
    pub dose_gy_per_mu: f64,
    /// Side of the square reference field at the isocentre, mm (default 100).
    pub field_mm: f64,
    /// Source-surface distance of the reference set-up, mm (default 1000).
    pub ssd_mm: f64,
}

const DEFAULT_6X_JSON: &str = include_str!("../data/machines/generic_6x.json");

impl MachineModel {
    /// Read a machine file (JSON). Errors name the file and the offending field.
    pub fn load(path: &Path) -> Result<MachineModel> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parse a machine description; `path` is used in error messages, and a
    /// `ct_calibration_file` is read relative to its folder. An old file's `hu_to_rel_ed`
    /// table (before issue 15) becomes the CT calibration.
    pub fn from_json(text: &str, path: &Path) -> Result<MachineModel> {
        let config = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| config(format!("invalid machine file: {e}")))?;
        let legacy = v.as_object_mut().and_then(|o| o.remove("hu_to_rel_ed"));
        let mut m: MachineModel =
            serde_json::from_value(v).map_err(|e| config(format!("invalid machine file: {e}")))?;
        m.ct_calibration = match (legacy, &m.ct_calibration_file) {
            (Some(_), Some(_)) => {
                return Err(config(
                    "fields `hu_to_rel_ed` and `ct_calibration_file` both given; the HU table \
                     belongs in the CT calibration file only"
                        .into(),
                ))
            }
            (Some(table), None) => CtCalibration {
                name: format!(
                    "hu_to_rel_ed of machine file {} (old layout; move it to a CT calibration file)",
                    path.display()
                ),
                hu_to_rel_ed: serde_json::from_value(table)
                    .map_err(|e| config(format!("invalid machine file: field `hu_to_rel_ed`: {e}")))?,
            },
            (None, Some(file)) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(file);
                CtCalibration::load(&file)?
            }
            (None, None) => CtCalibration::default(),
        };
        m.validate().map_err(|reason| Error::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(m)
    }

    /// The built-in generic 6 MV machine (`data/machines/generic_6x.json`).
    pub fn default_6x() -> MachineModel {
        // The embedded file is checked by a unit test; parsing cannot fail at run time.
        Self::from_json(DEFAULT_6X_JSON, Path::new("data/machines/generic_6x.json"))
            .unwrap_or_else(|e| panic!("built-in machine file is invalid: {e}"))
    }

    /// Check physical plausibility; the error string names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let pos = |v: f64, name: &str| -> std::result::Result<(), String> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("field `{name}` must be a positive number, got {v}"))
            }
        };
        pos(self.sad_mm, "sad_mm")?;
        pos(self.energy_mv, "energy_mv")?;
        pos(self.max_mu_per_beam, "max_mu_per_beam")?;
        pos(self.max_mu_per_fraction, "max_mu_per_fraction")?;
        if !(self.min_segment_mu.is_finite() && self.min_segment_mu >= 0.0) {
            return Err("field `min_segment_mu` must be >= 0".into());
        }
        if !(self.min_segment_area_mm2.is_finite() && self.min_segment_area_mm2 >= 0.0) {
            return Err("field `min_segment_area_mm2` must be >= 0".into());
        }
        if !(self.min_leaf_opening_mm.is_finite() && self.min_leaf_opening_mm >= 0.0) {
            return Err("field `min_leaf_opening_mm` must be >= 0".into());
        }
        let b = &self.mlc.leaf_boundaries_mm;
        if b.len() < 2 || b.windows(2).any(|w| !(w[1] > w[0])) {
            return Err(
                "field `mlc.leaf_boundaries_mm` must hold >= 2 strictly ascending values".into(),
            );
        }
        if !(self.mlc.x_max_mm > self.mlc.x_min_mm) {
            return Err("fields `mlc.x_min_mm`/`mlc.x_max_mm`: need x_min < x_max".into());
        }
        if !(self.jaws.x_max_mm > self.jaws.x_min_mm && self.jaws.y_max_mm > self.jaws.y_min_mm) {
            return Err("field `jaws`: need min < max on both axes".into());
        }
        let j = &self.jaws;
        for (name, [lo, hi], other_lo) in [
            ("jaws.x1_max_mm", j.x1_range_mm(), j.x2_range_mm()[0]),
            ("jaws.y1_max_mm", j.y1_range_mm(), j.y2_range_mm()[0]),
        ] {
            // X1 must be able to reach X2's innermost position, or no narrow field closes.
            if !(lo < hi && hi >= other_lo) {
                return Err(format!(
                    "field `{name}`: the jaw's range [{lo}, {hi}] mm must be ordered and reach the opposite jaw's innermost position {other_lo} mm"
                ));
            }
        }
        for (name, [lo, hi]) in [
            ("jaws.x2_min_mm", j.x2_range_mm()),
            ("jaws.y2_min_mm", j.y2_range_mm()),
        ] {
            if !(lo < hi) {
                return Err(format!(
                    "field `{name}`: the jaw's range [{lo}, {hi}] mm must be ordered"
                ));
            }
        }
        let frac = |v: Option<f64>, name: &str| -> std::result::Result<(), String> {
            match v {
                Some(t) if !(t.is_finite() && (0.0..1.0).contains(&t)) => Err(format!(
                    "field `{name}` must be a fraction in [0, 1), got {t}"
                )),
                _ => Ok(()),
            }
        };
        frac(self.mlc.transmission, "mlc.transmission")?;
        frac(j.transmission, "jaws.transmission")?;
        for (v, name) in [
            (self.mlc.max_leaf_span_mm, "mlc.max_leaf_span_mm"),
            (
                self.mlc.max_leaf_speed_mm_per_s,
                "mlc.max_leaf_speed_mm_per_s",
            ),
            (self.mlc.source_distance_mm, "mlc.source_distance_mm"),
            (j.x_source_distance_mm, "jaws.x_source_distance_mm"),
            (j.y_source_distance_mm, "jaws.y_source_distance_mm"),
        ] {
            if let Some(v) = v {
                pos(v, name)?;
            }
        }
        for (v, name) in [
            (self.mlc.source_distance_mm, "mlc.source_distance_mm"),
            (j.x_source_distance_mm, "jaws.x_source_distance_mm"),
            (j.y_source_distance_mm, "jaws.y_source_distance_mm"),
        ] {
            if v.is_some_and(|d| d >= self.sad_mm) {
                return Err(format!(
                    "field `{name}`: a collimator lies between the source and the isocentre (< sad_mm {})",
                    self.sad_mm
                ));
            }
        }
        pos(self.dose_rate_mu_per_min, "dose_rate_mu_per_min")?;
        if !matches!(self.setup_technique.as_str(), "ISOCENTRIC" | "FIXED_SSD") {
            return Err(format!(
                "field `setup_technique`: `{}` is not ISOCENTRIC or FIXED_SSD",
                self.setup_technique
            ));
        }
        if self.name.is_empty() || self.name.chars().count() > 16 {
            return Err(format!(
                "field `name`: TreatmentMachineName `{}` must have 1 to 16 characters",
                self.name
            ));
        }
        use crate::io::dicom::identity::check_text;
        use dicom_core::VR;
        for (field, value, vr) in [
            ("name", self.name.as_str(), VR::SH),
            ("manufacturer", self.manufacturer.as_str(), VR::LO),
            ("model_name", self.model_name.as_str(), VR::LO),
            ("mlc.model", self.mlc.model.as_str(), VR::LO),
        ] {
            check_text(field, value, vr).map_err(|e| format!("field `{field}`: {e}"))?;
        }
        if let Some(t) = &self.tolerance_table {
            check_text("tolerance_table.label", &t.label, VR::SH)
                .map_err(|e| format!("field `tolerance_table.label`: {e}"))?;
        }
        if let Some(t) = &self.tolerance_table {
            if t.label.is_empty() || t.label.chars().count() > 16 {
                return Err("field `tolerance_table.label` must have 1 to 16 characters".into());
            }
            for (v, name) in [
                (t.gantry_deg, "gantry_deg"),
                (t.collimator_deg, "collimator_deg"),
                (t.couch_deg, "couch_deg"),
                (t.jaw_mm, "jaw_mm"),
                (t.mlc_mm, "mlc_mm"),
                (t.table_vertical_mm, "table_vertical_mm"),
                (t.table_longitudinal_mm, "table_longitudinal_mm"),
                (t.table_lateral_mm, "table_lateral_mm"),
            ] {
                pos(v, &format!("tolerance_table.{name}"))?;
            }
        }
        pos(
            self.beam_model.attenuation_per_mm,
            "beam_model.attenuation_per_mm",
        )?;
        if self.beam_model.components.is_empty()
            || self.beam_model.components.len() > MAX_KERNEL_COMPONENTS
        {
            return Err(format!(
                "field `beam_model.components` must hold 1 to {} terms",
                MAX_KERNEL_COMPONENTS
            ));
        }
        for (i, c) in self.beam_model.components.iter().enumerate() {
            if !c.weight.is_finite() {
                return Err(format!(
                    "field `beam_model.components[{i}].weight` is not finite"
                ));
            }
            pos(
                c.beta_per_mm,
                &format!("beam_model.components[{i}].beta_per_mm"),
            )?;
            if (c.beta_per_mm - self.beam_model.attenuation_per_mm).abs() < 1e-9 {
                return Err(format!(
                    "field `beam_model.components[{i}].beta_per_mm` must differ from attenuation_per_mm"
                ));
            }
            pos(
                c.sigma_iso_mm,
                &format!("beam_model.components[{i}].sigma_iso_mm"),
            )?;
            // A negative slope (a fitted scatter kernel narrowing with depth, beam model v2) is
            // accepted while the width stays at least 1 mm down to 1 m of water.
            if !(c.sigma_slope.is_finite() && c.sigma_iso_mm + 1000.0 * c.sigma_slope >= 1.0) {
                return Err(format!(
                    "field `beam_model.components[{i}].sigma_slope` must keep sigma_iso_mm + \
                     sigma_slope * 1000 mm >= 1 mm"
                ));
            }
        }
        if let Some(ef) = &self.beam_model.extra_focal {
            if !(ef.weight.is_finite() && ef.weight >= 0.0) {
                return Err("field `beam_model.extra_focal.weight` must be >= 0".into());
            }
            pos(ef.sigma_iso_mm, "beam_model.extra_focal.sigma_iso_mm")?;
        }
        if let Some(e) = &self.beam_model.electron_contamination {
            for (v, name) in [
                (e.weight_narrow, "weight_narrow"),
                (e.weight_wide, "weight_wide"),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!(
                        "field `beam_model.electron_contamination.{name}` must be >= 0"
                    ));
                }
            }
            pos(
                e.decay_per_mm,
                "beam_model.electron_contamination.decay_per_mm",
            )?;
            pos(
                e.sigma_wide_mm,
                "beam_model.electron_contamination.sigma_wide_mm",
            )?;
        }
        self.ct_calibration.validate()?;
        pos(
            self.calibration.dose_gy_per_mu,
            "calibration.dose_gy_per_mu",
        )?;
        pos(self.calibration.field_mm, "calibration.field_mm")?;
        pos(self.calibration.ssd_mm, "calibration.ssd_mm")?;
        Ok(())
    }

    /// Electron density relative to water for a CT number, from the CT calibration in use
    /// ([`CtCalibration::relative_electron_density`]).
    pub fn relative_electron_density(&self, hu: f32) -> f32 {
        self.ct_calibration.relative_electron_density(hu)
    }
}
