//! Shared set-up of the TG119 benchmarks: the case, the default 6 MV machine, the nine
//! default beams around the PTV and the body outline; the peak memory of the process.
// Each benchmark uses a part of these.
#![allow(dead_code)]

use std::path::Path;

use rtopt::beams::{setup_beams, Beam, BeamSetup};
use rtopt::geometry::Mask;
use rtopt::machine::MachineModel;

/// TG119 with its beams: `(case, machine, beams, body)`.
pub fn tg119() -> (rtopt::Case, MachineModel, Vec<Beam>, Mask) {
    let case = rtopt::Case::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tg119"),
        &Default::default(),
    )
    .expect("TG119 case");
    let m = MachineModel::default_6x();
    let target = case.structure("OuterTarget").expect("PTV");
    let beams = setup_beams(&target.mask, &BeamSetup::default(), &m).expect("beams");
    let body = case.body_mask();
    (case, m, beams, body)
}

/// Peak resident memory of this process, MiB (VmHWM of `/proc/self/status`; NaN elsewhere).
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

/// Current resident memory of this process, MiB (VmRSS; NaN elsewhere).
pub fn rss_mib() -> f64 {
    status_mib("VmRSS")
}

/// A `kB` line of `/proc/self/status`, in MiB.
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
