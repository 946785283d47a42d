//! CT calibration: the HU -> relative electron density table (HLUT) of a CT scanner.
//!
//! A property of the scanner and its acquisition protocol, not of the treatment machine, so it
//! lives in its own file (`data/calibration/*.toml`, the built-in default being
//! `data/calibration/ct-default.toml`). The dose engine turns CT numbers into densities for the
//! radiological depth with [`CtCalibration::relative_electron_density`]: piecewise linear
//! between the points, clamped to the end values outside them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The built-in calibration file.
pub const DEFAULT_CT_TOML: &str = include_str!("../data/calibration/ct-default.toml");

/// A CT calibration: `[hu, rel_ed]` pairs with strictly ascending HU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtCalibration {
    /// Free text naming the curve (scanner, protocol, source).
    #[serde(default)]
    pub name: String,
    /// `[hu, rel_ed]`: CT number and electron density relative to water.
    pub hu_to_rel_ed: Vec<[f64; 2]>,
}

impl Default for CtCalibration {
    /// The built-in `data/calibration/ct-default.toml` (the matRad/CORT curve).
    fn default() -> Self {
        // The embedded file is checked by a unit test; parsing cannot fail at run time.
        Self::from_toml(
            DEFAULT_CT_TOML,
            Path::new("data/calibration/ct-default.toml"),
        )
        .unwrap_or_else(|e| panic!("built-in CT calibration is invalid: {e}"))
    }
}

impl CtCalibration {
    /// Read a calibration file (TOML). Errors name the file and the field.
    pub fn load(path: &Path) -> Result<CtCalibration> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, path)
    }

    /// Parse a calibration; `path` is used in error messages only.
    pub fn from_toml(text: &str, path: &Path) -> Result<CtCalibration> {
        let c: CtCalibration = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: format!("invalid CT calibration file: {e}"),
        })?;
        c.validate().map_err(|reason| Error::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(c)
    }

    /// Check the table; the error string names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let h = &self.hu_to_rel_ed;
        if h.is_empty()
            || h.iter().any(|p| !p[0].is_finite())
            || h.windows(2)
                .any(|w| w[1][0].partial_cmp(&w[0][0]) != Some(std::cmp::Ordering::Greater))
        {
            return Err(
                "field `hu_to_rel_ed` must hold [hu, rel_ed] pairs with strictly ascending HU"
                    .into(),
            );
        }
        if h.iter().any(|p| !(p[1].is_finite() && p[1] >= 0.0)) {
            return Err("field `hu_to_rel_ed`: relative electron densities must be >= 0".into());
        }
        Ok(())
    }

    /// Electron density relative to water for a CT number (piecewise linear in
    /// [`CtCalibration::hu_to_rel_ed`], clamped to the end values outside the table).
    pub fn relative_electron_density(&self, hu: f32) -> f32 {
        let h = &self.hu_to_rel_ed;
        let x = hu as f64;
        let (Some(first), Some(last)) = (h.first(), h.last()) else {
            return 1.0;
        };
        if x <= first[0] {
            return first[1] as f32;
        }
        for w in h.windows(2) {
            if let [a, b] = w {
                if x <= b[0] {
                    let f = (x - a[0]) / (b[0] - a[0]);
                    return (a[1] + f * (b[1] - a[1])) as f32;
                }
            }
        }
        last[1] as f32
    }
}

#[cfg(test)]
mod tests {
    use super::CtCalibration;

    #[test]
    fn default_calibration_parses_and_interpolates() {
        let c = CtCalibration::default();
        // matRad/CORT curve: (-1024, 0.00324) -> (200, 1.2): HU 0 gives 1.0044.
        let w = c.relative_electron_density(0.0) as f64;
        assert!((w - (0.00324 + 1024.0 / 1224.0 * (1.2 - 0.00324))).abs() < 1e-5);
        assert!((c.relative_electron_density(300.0) - 1.2).abs() < 1e-6);
        assert!((c.relative_electron_density(-5000.0) - 0.00324).abs() < 1e-7);
        assert!((c.relative_electron_density(9000.0) - 2.5306).abs() < 1e-6);
    }

    #[test]
    fn invalid_calibration_names_file_and_field() {
        let p = std::path::Path::new("ct.toml");
        let e = CtCalibration::from_toml("hu_to_rel_ed = [[0.0, 1.0], [0.0, 2.0]]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ct.toml") && e.contains("ascending"), "{e}");
        let e = CtCalibration::from_toml("hu_to_rel_ed = [[0.0, -1.0]]", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ct.toml") && e.contains(">= 0"), "{e}");
    }
}
