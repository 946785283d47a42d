//! Regression inputs for the input parsers (project issue 9, docs/reliability.md).
//!
//! `tests/regressions/<target>/` holds inputs for the fuzz target of the same name
//! (`fuzz/fuzz_targets/<target>.rs`): minimised crashes found by fuzzing (`crash-*`, named after
//! the libFuzzer artifact) and the hand-made bad-input seeds (`seed_*`). Every one must give a
//! clean `Err`: no panic, no abort, no success on a broken file.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rtopt::geometry::Grid3;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = common::repo().join("tests/regressions").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("regression folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Run `f` on every input of `target`; each must return `Err` without panicking.
fn all_err<T>(target: &str, min_files: usize, f: impl Fn(&Path, &[u8]) -> rtopt::Result<T>) {
    let files = inputs(target);
    assert!(
        files.len() >= min_files,
        "{target}: only {} inputs",
        files.len()
    );
    let mut failures = Vec::new();
    for p in &files {
        let bytes = std::fs::read(p).expect("read input");
        match catch_unwind(AssertUnwindSafe(|| f(p, &bytes))) {
            Err(_) => failures.push(format!("{}: panicked", p.display())),
            Ok(Ok(_)) => failures.push(format!("{}: accepted a broken input", p.display())),
            Ok(Err(e)) => {
                let msg = e.to_string();
                // The message names the input so a planner can find the file.
                if !msg.contains(&*p.to_string_lossy()) && !msg.starts_with("ROI") {
                    failures.push(format!(
                        "{}: message does not name the file: {msg}",
                        p.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ct_slice_regressions_are_clean_errors() {
    all_err("ct_slice", 5, rtopt::io::dicom::ct::parse_slice_bytes);
}

/// Grid of the `rtstruct` fuzz target (64 x 64 x 129 voxels of 8 x 8 x 2.5 mm over the TG119 extent).
fn fuzz_grid() -> Grid3 {
    Grid3 {
        dims: [64, 64, 129],
        origin_mm: [-250.0, -250.0, -160.0],
        spacing_mm: [8.0, 8.0, 2.5],
    }
}

#[test]
fn rtstruct_regressions_are_clean_errors() {
    all_err("rtstruct", 2, |p, b| {
        let ss = rtopt::io::dicom::rtstruct::read_rtstruct_bytes(p, b)?;
        rtopt::structures::rasterize_all(&ss, &fuzz_grid())
    });
}

/// Inputs whose length fields declare gigabytes (`oom-*`: libFuzzer out-of-memory artifacts,
/// 2.3-3.0 GB RSS for 3 KB files before the fix), the slow CT unit and the RTPLAN unit that
/// ran past libFuzzer's 10 s timeout (unknown VR codes read as UN with a 4-byte length; a
/// sequence delimiter declaring 0xFF000000 bytes; an item delimiter inside a defined-length
/// item, after which the parser reads misaligned bytes; a UL of 26 bytes, after which it reads
/// two bytes early; a file meta group length that ends the group inside an element, also when
/// the group length element itself has another VR than UL or an unknown one, which the parser
/// reads as UN with a 4-byte length; a (FFFE,xxxx) tag that is no item or delimiter, whose
/// header the parser reads as tag + 4-byte length even in explicit VR) are
/// refused by the
/// up-front header walk, before any parser allocates: the message says which element declared
/// how much (or had no valid VR).
#[test]
fn oversized_length_fields_are_refused_before_parsing() {
    let mut seen = 0;
    for target in ["rtstruct", "ct_slice", "rtplan"] {
        for p in inputs(target) {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !["oom-", "slow-unit-", "timeout-"]
                .iter()
                .any(|pre| name.starts_with(pre))
            {
                continue;
            }
            let bytes = std::fs::read(&p).expect("read input");
            let msg = match rtopt::io::dicom::read::probe_bytes(&p, &bytes) {
                Ok(rtopt::io::dicom::read::Probe::NotDicom(reason)) => reason,
                Ok(rtopt::io::dicom::read::Probe::Dicom(_)) => panic!("{name}: accepted"),
                Err(e) => e.to_string(),
            };
            // Every refusal of the header walk names the byte offset; parser errors do not.
            assert!(msg.contains(" at byte "), "{name}: {msg}");
            seen += 1;
        }
    }
    assert_eq!(seen, 20);
}

/// The byte path of the fuzz target decodes a good slice exactly like the folder import.
#[test]
fn parse_slice_bytes_matches_folder_import() {
    let case = rtopt::Case::load(&common::tg119_dir(), &Default::default()).expect("TG119");
    let path = common::tg119_dir().join("CT.TG119.0065.dcm");
    let bytes = std::fs::read(&path).expect("read");
    let one = rtopt::io::dicom::ct::parse_slice_bytes(&path, &bytes).expect("slice parses");
    assert_eq!(one.grid.dims, [167, 167, 1]);
    // Slice 0065 is k = 64 (z = -160 + 64 x 2.5 = 0 mm).
    assert!(
        (one.grid.origin_mm[2] - 0.0).abs() < 1e-6,
        "{:?}",
        one.grid.origin_mm
    );
    let plane = 167 * 167;
    assert_eq!(one.hu[..], case.ct.hu[64 * plane..65 * plane]);
}

/// The bytes path of the RTSTRUCT fuzz target gives the same ROIs and masks as the file path.
#[test]
fn rtstruct_bytes_path_matches_file_path() {
    let path = common::tg119_dir().join("RS.TG119.dcm");
    let bytes = std::fs::read(&path).expect("read");
    let a = rtopt::io::dicom::rtstruct::read_rtstruct(&path).expect("file");
    let b = rtopt::io::dicom::rtstruct::read_rtstruct_bytes(&path, &bytes).expect("bytes");
    let names = |s: &rtopt::structures::StructureSet| {
        s.rois.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&a), ["Core", "OuterTarget", "BODY"]);
    assert_eq!(names(&a), names(&b));
    let st = rtopt::structures::rasterize_all(&b, &fuzz_grid()).expect("rasterise");
    // Every ROI hits the coarse grid (the fuzz target exercises the fill loop).
    assert!(st.iter().all(|s| s.mask.count() > 0));
}

#[test]
fn rtplan_regressions_are_clean_errors() {
    all_err("rtplan", 2, |p, _| rtopt::io::dicom::rtplan::read_rtplan(p));
}

#[test]
fn protocol_regressions_are_clean_errors() {
    all_err("protocol", 2, |p, b| {
        let text = String::from_utf8_lossy(b);
        rtopt::optimize::protocol::Protocol::from_toml_str(&text, p)
    });
}
