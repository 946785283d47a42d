//! Memory budgets: refuse work whose declared size would not fit, before allocating it.
//!
//! The default budget is half of the machine's memory (`MemTotal` of `/proc/meminfo`), or
//! [`FALLBACK_BUDGET_BYTES`] where that file cannot be read (non-Linux). The library never
//! reads the environment: a caller passes its budget in the options
//! (`CtImportOptions::memory_budget_bytes`, `Planner::with_memory_budget`). The `rtopt`
//! binary takes it from `RTOPT_MEMORY_BUDGET_MB` (a whole number of MiB, [`parse_budget_mb`]).

use crate::error::{Error, Result};

/// Budget used when the machine's memory cannot be determined: 4 GiB.
pub const FALLBACK_BUDGET_BYTES: u64 = 4 << 30;

/// Environment variable overriding the default budget, in MiB.
pub const BUDGET_ENV: &str = "RTOPT_MEMORY_BUDGET_MB";

/// Bytes per stored non-zero of the influence matrix: the matrix is kept twice (CSR and CSC,
/// see [`crate::dose::InfluenceMatrix`]), each non-zero as an `f32` value and a `u32` index.
pub const INFLUENCE_BYTES_PER_NONZERO: u64 = 2 * (4 + 4);

/// Total memory from `/proc/meminfo` text (`MemTotal:  24000000 kB`), in bytes.
pub fn parse_meminfo_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line.split_whitespace().skip(1);
    let value: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => value.checked_mul(1024),
        _ => None,
    }
}

/// Default memory budget in bytes: half of `MemTotal`, else [`FALLBACK_BUDGET_BYTES`].
pub fn default_memory_budget_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_meminfo_total_bytes(&s))
        .map(|b| b / 2)
        .unwrap_or(FALLBACK_BUDGET_BYTES)
}

/// A budget given in MiB as text (the value of [`BUDGET_ENV`]), in bytes. Errors name the
/// variable and the value.
pub fn parse_budget_mb(value: &str) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(mb) if mb > 0 => Ok(mb.saturating_mul(1 << 20)),
        _ => Err(Error::Invalid(format!(
            "{BUDGET_ENV}={value:?}: the memory budget must be a whole number of MiB above 0"
        ))),
    }
}

/// Estimated bytes of the dose-influence matrix before it is built.
///
/// Non-zeros = `n_beamlets x mean_voxels_per_beamlet` (capped at `n_dose_voxels` per beamlet,
/// the densest possible column), each costing [`INFLUENCE_BYTES_PER_NONZERO`]; plus the two
/// offset arrays (`(n_dose_voxels + 1)` and `(n_beamlets + 1)` `usize`s). Saturates instead of
/// overflowing. A non-finite or negative mean counts as the dense case.
pub fn estimate_influence_bytes(
    n_dose_voxels: usize,
    n_beamlets: usize,
    mean_voxels_per_beamlet: f64,
) -> u64 {
    let dense = n_dose_voxels as f64;
    let per = if mean_voxels_per_beamlet.is_finite() && mean_voxels_per_beamlet >= 0.0 {
        mean_voxels_per_beamlet.min(dense)
    } else {
        dense
    };
    let nnz = (per * n_beamlets as f64).ceil();
    // f64 -> u64 `as` saturates at u64::MAX.
    let nnz = nnz as u64;
    let ptr_bytes = std::mem::size_of::<usize>() as u64;
    let offsets = (n_dose_voxels as u64)
        .saturating_add(1)
        .saturating_add(n_beamlets as u64)
        .saturating_add(1)
        .saturating_mul(ptr_bytes);
    nnz.saturating_mul(INFLUENCE_BYTES_PER_NONZERO)
        .saturating_add(offsets)
}

/// Refuse an influence matrix whose estimate exceeds `budget_bytes`, with the options the
/// user has to make it fit.
pub fn check_influence_budget(
    n_dose_voxels: usize,
    n_beamlets: usize,
    mean_voxels_per_beamlet: f64,
    budget_bytes: u64,
) -> Result<u64> {
    let needed = estimate_influence_bytes(n_dose_voxels, n_beamlets, mean_voxels_per_beamlet);
    if needed > budget_bytes {
        return Err(Error::MemoryBudget {
            what: format!(
                "dose-influence matrix ({n_dose_voxels} dose voxels x {n_beamlets} beamlets, \
                 ~{mean_voxels_per_beamlet:.0} voxels per beamlet)"
            ),
            needed_bytes: needed,
            budget_bytes,
            advice: format!(
                "use a coarser dose grid, fewer beams, or larger beamlets (bixel width), \
                 or raise the budget ({BUDGET_ENV})"
            ),
        });
    }
    Ok(needed)
}

/// Estimated bytes of the optimiser's dense beamlet-space matrices for `n_beamlets`
/// beamlets: one full `n x n` f64 block per cached deviation Gram (`n_dense_blocks`), plus
/// three more of the same size for the assembled Hessian / Newton matrix, its factor and the
/// solver's workspace (an upper bound for both backends; the Clarabel KKT factor holds about
/// the same dense block). Saturates instead of overflowing.
pub fn estimate_dense_optimiser_bytes(n_beamlets: usize, n_dense_blocks: usize) -> u64 {
    let n = n_beamlets as u64;
    n.saturating_mul(n)
        .saturating_mul(8)
        .saturating_mul(n_dense_blocks as u64 + 3)
}

/// Refuse an optimisation whose dense beamlet-space matrices would exceed `budget_bytes`,
/// before the influence matrix is built (the beam count is known from the beam setup).
pub fn check_dense_optimiser_budget(
    n_beamlets: usize,
    n_dense_blocks: usize,
    budget_bytes: u64,
) -> Result<u64> {
    let needed = estimate_dense_optimiser_bytes(n_beamlets, n_dense_blocks);
    if needed > budget_bytes {
        return Err(Error::MemoryBudget {
            what: format!(
                "the optimiser's dense beamlet-space matrices ({n_beamlets} beamlets, \
                 {} blocks of {n_beamlets} x {n_beamlets})",
                n_dense_blocks + 3
            ),
            needed_bytes: needed,
            budget_bytes,
            advice: format!(
                "use fewer beams or larger beamlets (the cost grows as beamlets squared), \
                 or raise the budget ({BUDGET_ENV})"
            ),
        });
    }
    Ok(needed)
}

/// Refuse reading a file of `len_bytes` whole when it exceeds `budget_bytes`.
pub fn check_file_budget(path: &std::path::Path, len_bytes: u64, budget_bytes: u64) -> Result<()> {
    if len_bytes > budget_bytes {
        return Err(Error::MemoryBudget {
            what: format!("reading {} whole", path.display()),
            needed_bytes: len_bytes,
            budget_bytes,
            advice: format!(
                "move the file out of the case folder, or raise the budget ({BUDGET_ENV})"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dense_estimate_and_refusal() {
        // TG119: 2,620 beamlets, 2 deviation Grams: 5 blocks of 54.9 MB.
        assert_eq!(estimate_dense_optimiser_bytes(2620, 2), 5 * 2620 * 2620 * 8);
        assert_eq!(estimate_dense_optimiser_bytes(usize::MAX, 2), u64::MAX);
        let e = check_dense_optimiser_budget(100_000, 2, 12 << 30).expect_err("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("100000 beamlets") && msg.contains("fewer beams"),
            "{msg}"
        );
        assert!(check_dense_optimiser_budget(2620, 2, 12 << 30).is_ok());
    }

    use super::*;

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(parse_meminfo_total_bytes(text), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total_bytes("MemTotal: x kB\n"), None);
        assert_eq!(parse_meminfo_total_bytes("MemTotal: 5 MB\n"), None);
    }

    #[test]
    fn influence_estimate_known_numbers() {
        // 1e6 voxels, 1000 beamlets, 2000 voxels each: 2e6 nnz x 16 B = 32e6 B,
        // plus (1e6 + 1 + 1000 + 1) x 8 B offsets = 8_008_016 B.
        assert_eq!(
            estimate_influence_bytes(1_000_000, 1000, 2000.0),
            32_000_000 + 8_008_016
        );
        // Mean above the grid size is capped at dense: 10 voxels x 3 beamlets = 30 nnz.
        assert_eq!(estimate_influence_bytes(10, 3, 1e9), 30 * 16 + (11 + 4) * 8);
        assert_eq!(
            estimate_influence_bytes(10, 3, f64::NAN),
            30 * 16 + (11 + 4) * 8
        );
        // Saturates rather than overflowing.
        assert_eq!(
            estimate_influence_bytes(usize::MAX, usize::MAX, 1e300),
            u64::MAX
        );
    }

    #[test]
    fn estimate_equals_bytes_of_a_built_matrix() {
        // 3 beamlets touching 4, 2 and 0 of 50 voxels: mean 2 voxels per beamlet.
        let cols = vec![
            (vec![0u32, 5, 9, 49], vec![1.0f32; 4]),
            (vec![3u32, 4], vec![0.5f32; 2]),
            (vec![], vec![]),
        ];
        let m = crate::dose::InfluenceMatrix::from_columns(50, cols);
        assert_eq!(estimate_influence_bytes(50, 3, 2.0), m.bytes() as u64);
    }

    #[test]
    fn influence_budget_error_names_the_options() {
        let e = check_influence_budget(1_000_000, 1000, 2000.0, 1 << 20).expect_err("refused");
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                Error::MemoryBudget {
                    needed_bytes: 40_008_016,
                    ..
                }
            ),
            "{msg}"
        );
        for needle in [
            "coarser dose grid",
            "fewer beams",
            "larger beamlets",
            "40008016",
        ] {
            assert!(msg.contains(needle), "{needle} not in {msg}");
        }
        assert_eq!(
            check_influence_budget(10, 3, 5.0, 1 << 20).ok(),
            Some(15 * 16 + 15 * 8)
        );
    }
}
