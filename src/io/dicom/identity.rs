//! Identity of rtopt's DICOM outputs: when they were created and which series they form.
//!
//! Creation date and time come from the clock, or from a fixed instant for reproducible
//! output (the `SOURCE_DATE_EPOCH` convention of reproducible-builds.org: seconds since
//! 1970-01-01T00:00:00Z; the command line reads the variable, the library takes a
//! [`CreationTime`]). Dates and times are written in UTC with TimezoneOffsetFromUTC `+0000`,
//! so they mean one instant wherever they are read. UIDs are derived from the content and
//! the creation time: two runs at different times give new UIDs, two runs at the same fixed
//! time give the same bytes.

use chrono::DateTime;
use dicom_core::VR;
use serde::Serialize;

use super::builder::Ds;
use super::read::tags;
use crate::error::{Error, Result};

/// SeriesNumber of the RT Plan.
pub const SERIES_NUMBER_RTPLAN: i64 = 901;
/// SeriesNumber of the plan's RT Dose.
pub const SERIES_NUMBER_RTDOSE: i64 = 902;
/// SeriesNumber of an RT Structure Set rtopt writes (auto-segmentation).
pub const SERIES_NUMBER_RTSTRUCT: i64 = 903;
/// SeriesNumber of the per-beam RT Doses.
pub const SERIES_NUMBER_RTDOSE_BEAMS: i64 = 904;

/// The environment variable of the reproducible-builds convention.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Latest instant a DICOM DA value can hold (9999-12-31T23:59:59Z), seconds since the epoch.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

/// The instant an output was created, seconds since 1970-01-01T00:00:00Z (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CreationTime {
    unix_seconds: i64,
}

impl CreationTime {
    /// Now, from the system clock (whole seconds).
    pub fn now() -> CreationTime {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        CreationTime {
            unix_seconds: s.min(MAX_UNIX_SECONDS),
        }
    }

    /// A fixed instant; refused outside 1970-01-01 .. 9999-12-31.
    pub fn from_unix_seconds(unix_seconds: i64) -> Result<CreationTime> {
        if !(0..=MAX_UNIX_SECONDS).contains(&unix_seconds) {
            return Err(Error::Invalid(format!(
                "creation time {unix_seconds} s since 1970-01-01 is outside 1970-01-01 .. 9999-12-31"
            )));
        }
        Ok(CreationTime { unix_seconds })
    }

    /// The value of `SOURCE_DATE_EPOCH` (decimal seconds since the epoch); the error names
    /// the variable.
    pub fn from_source_date_epoch(value: &str) -> Result<CreationTime> {
        let v = value.trim();
        let s: i64 = v.parse().map_err(|_| {
            Error::Invalid(format!(
                "{SOURCE_DATE_EPOCH}='{v}' is not a whole number of seconds since 1970-01-01"
            ))
        })?;
        Self::from_unix_seconds(s).map_err(|e| Error::Invalid(format!("{SOURCE_DATE_EPOCH}: {e}")))
    }

    /// Seconds since the epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    fn utc(&self) -> DateTime<chrono::Utc> {
        // The range is checked on construction.
        DateTime::from_timestamp(self.unix_seconds, 0).unwrap_or_default()
    }

    /// DICOM DA, UTC: `YYYYMMDD`.
    pub fn dicom_date(&self) -> String {
        self.utc().format("%Y%m%d").to_string()
    }

    /// DICOM TM, UTC: `HHMMSS`.
    pub fn dicom_time(&self) -> String {
        self.utc().format("%H%M%S").to_string()
    }

    /// ISO 8601 in UTC: `2026-12-02T16:46:56Z` (the report).
    pub fn iso8601_utc(&self) -> String {
        self.utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// `MMDD HHMM` (UTC), the default suffix of a plan label.
    pub fn label_stamp(&self) -> String {
        self.utc().format("%m%d %H%M").to_string()
    }
}

/// InstanceCreationDate/Time and TimezoneOffsetFromUTC (SOP Common module).
pub fn put_creation(ds: &mut Ds, created: &CreationTime) {
    ds.s(tags::INSTANCE_CREATION_DATE, VR::DA, &created.dicom_date())
        .s(tags::INSTANCE_CREATION_TIME, VR::TM, &created.dicom_time())
        .s(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000");
}

/// Check a text for a DICOM value of `vr` (`SH`, `LO` or `ST`): its length limit in
/// characters, no backslash (the value separator) in SH/LO, no control characters but
/// line breaks in ST. `what` names the value in the error.
pub fn check_text(what: &str, value: &str, vr: VR) -> Result<()> {
    let (max, multi_line) = match vr {
        VR::SH => (16, false),
        VR::LO => (64, false),
        VR::ST => (1024, true),
        _ => (64, false),
    };
    let n = value.chars().count();
    if n > max {
        return Err(Error::Invalid(format!(
            "{what} '{value}' has {n} characters; DICOM {vr:?} allows {max}"
        )));
    }
    if !multi_line && value.contains('\\') {
        return Err(Error::Invalid(format!(
            "{what} '{value}' contains a backslash, the DICOM value separator"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multi_line && (c == '\n' || c == '\r')))
    {
        return Err(Error::Invalid(format!(
            "{what} contains a control character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_time_formats_in_utc() {
        // 2026-12-02T16:46:56Z.
        let t = CreationTime::from_unix_seconds(1_796_230_016).unwrap();
        assert_eq!(t.dicom_date(), "20261202");
        assert_eq!(t.dicom_time(), "164656");
        assert_eq!(t.label_stamp(), "1202 1646");
        assert_eq!(t.iso8601_utc(), "2026-12-02T16:46:56Z");
        let e = CreationTime::from_source_date_epoch("yesterday")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SOURCE_DATE_EPOCH='yesterday'"), "{e}");
        assert!(CreationTime::from_source_date_epoch("-1").is_err());
        assert_eq!(
            CreationTime::from_source_date_epoch(" 0\n")
                .unwrap()
                .dicom_date(),
            "19700101"
        );
    }

    #[test]
    fn text_limits_are_dicom_s() {
        assert!(check_text("RTPlanLabel", "TG119 1202 1646", VR::SH).is_ok());
        let e = check_text("RTPlanLabel", "seventeen chars!!", VR::SH)
            .unwrap_err()
            .to_string();
        assert!(e.contains("17 characters") && e.contains("16"), "{e}");
        assert!(check_text("RTPlanName", "a\\b", VR::LO).is_err());
        assert!(check_text("RTPlanDescription", "line 1\nline 2", VR::ST).is_ok());
        assert!(check_text("RTPlanName", "line 1\nline 2", VR::LO).is_err());
    }
}
