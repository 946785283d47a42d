//! Fuzz target: bytes of one file -> `io::dicom::read::probe_bytes` + the CT slice validation and
//! pixel-decoding path (`io::dicom::ct::parse_slice_bytes`). Any panic, overflow or allocation above
//! libFuzzer's `-rss_limit_mb` / `-malloc_limit_mb` is a bug; an `Err` is the expected outcome.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/ct_slice.dcm");
    // The probe alone (as run on every file of a case folder) ...
    let _ = rtopt::io::dicom::read::probe_bytes(path, data);
    // ... and the whole single-slice import.
    if let Ok(ct) = rtopt::io::dicom::ct::parse_slice_bytes(path, data) {
        assert_eq!(ct.hu.len(), ct.grid.len());
    }
});
