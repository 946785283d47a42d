//! The ONNX Runtime backend (the fast path): the shipped model's logits on the saved reference
//! input, run through `libonnxruntime` loaded at run time, equal the reference that the
//! training script saved with ONNX Runtime's Python binding.
//!
//! Needs the library: `RTOPT_TEST_ONNXRUNTIME=/path/to/libonnxruntime.so.1.x`. `.ci/run`
//! installs the PyPI `onnxruntime` wheel and sets it, so in CI this test runs; elsewhere it is
//! skipped with a message. The process-wide backend is why this is its own test binary.
#![cfg(feature = "onnx")]

mod common;

use rtopt::segment::model::{self, Backend, BackendChoice, SegmentationModel};

#[test]
fn onnxruntime_backend_reproduces_the_reference_logits() {
    let Some(lib) = std::env::var_os("RTOPT_TEST_ONNXRUNTIME").filter(|v| !v.is_empty()) else {
        eprintln!("skipped: RTOPT_TEST_ONNXRUNTIME is not set (CI sets it)");
        return;
    };
    let backend =
        model::init_backend(BackendChoice::OnnxRuntime(lib.into())).expect("load ONNX Runtime");
    assert_eq!(backend, Backend::OnnxRuntime);
    let dir = common::repo().join("data/models");
    let mut m = SegmentationModel::load(&dir.join("rtopt_abdomen_oar_2d.onnx")).expect("load");
    assert_eq!(m.backend, Backend::OnnxRuntime);
    let read = |name: &str| -> Vec<f32> {
        std::fs::read(dir.join(name))
            .expect("reference")
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let input = read("rtopt_abdomen_oar_2d.ref_input.f32");
    let reference = read("rtopt_abdomen_oar_2d.ref_logits.f32");
    let logits = m.run_raw(input, 1).expect("inference");
    assert_eq!(logits.len(), reference.len());
    let max_diff = logits
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("ONNX Runtime (Rust) vs ONNX Runtime (Python): max |difference| {max_diff:.2e}");
    // Same library as the Python reference, but ONNX Runtime chooses its kernels by the CPU's
    // instruction set (MLAS), so on another processor the f32 sums are reordered: 0 on the
    // machine that made the reference, 1.34e-5 on this project's VM of 2026-12-01 (logits up to
    // 32.4, i.e. 4e-7 relative). The bound is the tract test's, 1e-4 (3e-6 relative).
    assert!(max_diff <= 1e-4, "max |difference| {max_diff}");
    // Asking for tract now is refused: the backend is fixed per process.
    let e = model::init_backend(BackendChoice::Tract).expect_err("switch refused");
    assert!(e.to_string().contains("already ONNX Runtime"), "{e}");
}
