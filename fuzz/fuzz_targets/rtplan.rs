//! Fuzz target: bytes of one file -> RT Plan import (`io::dicom::rtplan::read_rtplan`), then
//! every imported beam as a sequenced beam. `read_rtplan` takes a path, so the input goes
//! through one temp file per process (in `$TMPDIR`, /dev/shm recommended).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| std::env::temp_dir().join(format!("rtopt-fuzz-rtplan-{}.dcm", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(plan) = rtopt::io::dicom::rtplan::read_rtplan(path) {
        for i in 0..plan.beams.len() {
            let _ = plan.beams[i].to_sequenced(i);
        }
    }
});
