//! The Python package (`python/`, issue 20): its pytest suite (`python/tests`) against the
//! wheel installed in the interpreter named by `RTOPT_TEST_PYTHON`. `.ci/run` builds the wheel
//! from this checkout with maturin, installs it into a fresh venv (`python/.venv`) and sets
//! the variable; then this test fails when the suite fails or cannot run. Without the
//! variable it uses `python/.venv` when that imports `rtopt`, else says so and skips.
//!
//! The suite compares the Python plan with this checkout's `rtopt plan` (RTOPT_BIN), checks
//! that variants reuse the prepared influence matrix, and that Ctrl-C stops a solve.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An interpreter that imports the `rtopt` package.
fn python_with_rtopt() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let imports = |py: &Path| {
        Command::new(py)
            .args(["-c", "import rtopt, numpy, scipy, pandas, pydicom, pytest"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if let Ok(p) = std::env::var("RTOPT_TEST_PYTHON") {
        let py = PathBuf::from(p);
        assert!(
            imports(&py),
            "RTOPT_TEST_PYTHON={} cannot import rtopt and the test dependencies \
             (python/requirements-test.txt)",
            py.display()
        );
        return Some(py);
    }
    let venv = root.join("python/.venv/bin/python");
    imports(&venv).then_some(venv)
}

#[test]
fn python_package_test_suite() {
    let Some(py) = python_with_rtopt() else {
        eprintln!(
            "skipped: no Python with the rtopt wheel (bash .ci/run builds one into python/.venv)"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The installed package must be this checkout's version.
    let version = Command::new(&py)
        .args(["-c", "import rtopt; print(rtopt.__version__)"])
        .output()
        .expect("run python");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        env!("CARGO_PKG_VERSION"),
        "the installed rtopt wheel is not this checkout's version"
    );
    let out = Command::new(&py)
        .args([
            "-m",
            "pytest",
            "python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(root)
        .env("RTOPT_BIN", env!("CARGO_BIN_EXE_rtopt"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("MPLBACKEND", "Agg")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python test suite failed");
    assert!(
        stdout.contains(" passed") && !stdout.contains(" failed"),
        "pytest ran no test"
    );
}
