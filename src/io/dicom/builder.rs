//! Small helpers to build DICOM data sets deterministically with dicom-object.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use super::read::tags;
use super::uid::derive_uid;
use crate::ct::CtMeta;
use crate::error::{Error, Result};

/// Format a decimal string (DS) value: at most 16 characters, shortest fixed-point form with
/// up to 6 decimals that fits, `-0` written as `0`.
pub fn ds(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    for prec in (0..=6).rev() {
        let mut s = format!("{v:.prec$}");
        if s.contains('.') {
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
        }
        if s == "-0" {
            s = "0".into();
        }
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.6e}")
}

/// Parse a DS string written by [`ds`] (for computing with the value actually stored).
pub fn ds_value(v: f64) -> f64 {
    ds(v).parse().unwrap_or(v)
}

/// Builder wrapper around an [`InMemDicomObject`].
pub struct Ds(pub InMemDicomObject);

impl Default for Ds {
    fn default() -> Self {
        Ds::new()
    }
}

impl Ds {
    pub fn new() -> Self {
        Ds(InMemDicomObject::new_empty())
    }
    /// A string-valued attribute (CS, LO, SH, PN, UI, DA, TM, ST, LT ...). May be empty (Type 2).
    pub fn s(&mut self, tag: Tag, vr: VR, v: &str) -> &mut Self {
        self.0.put(DataElement::new(
            tag,
            vr,
            PrimitiveValue::from(v.to_string()),
        ));
        self
    }
    /// An integer string (IS).
    pub fn is(&mut self, tag: Tag, v: i64) -> &mut Self {
        self.s(tag, VR::IS, &v.to_string())
    }
    /// A single decimal string (DS).
    pub fn d(&mut self, tag: Tag, v: f64) -> &mut Self {
        self.s(tag, VR::DS, &ds(v))
    }
    /// A multi-valued decimal string (DS).
    pub fn dm(&mut self, tag: Tag, v: &[f64]) -> &mut Self {
        let strs: Vec<String> = v.iter().map(|&x| ds(x)).collect();
        self.0.put(DataElement::new(
            tag,
            VR::DS,
            PrimitiveValue::Strs(strs.into_iter().collect()),
        ));
        self
    }
    /// US value(s).
    pub fn us(&mut self, tag: Tag, v: &[u16]) -> &mut Self {
        self.0.put(DataElement::new(
            tag,
            VR::US,
            PrimitiveValue::U16(v.iter().copied().collect()),
        ));
        self
    }
    /// A sequence.
    pub fn seq(&mut self, tag: Tag, items: Vec<Ds>) -> &mut Self {
        let items: Vec<InMemDicomObject> = items.into_iter().map(|d| d.0).collect();
        self.0
            .put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
        self
    }
    /// Raw element.
    pub fn put(&mut self, e: DataElement<InMemDicomObject>) -> &mut Self {
        self.0.put(e);
        self
    }
}

/// Patient, General Study and Frame of Reference attributes copied from the CT (plus
/// SpecificCharacterSet ISO_IR 192 when any copied text is not ASCII).
pub fn patient_study_frame(ds: &mut Ds, ct: &CtMeta) {
    let texts = [
        &ct.patient_name,
        &ct.patient_id,
        &ct.referring_physician_name,
        &ct.study_id,
        &ct.accession_number,
        &ct.study_description,
        &ct.deidentification_method,
    ];
    if texts.iter().any(|t| !t.is_ascii()) {
        ds.s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    }
    ds.s(tags::PATIENT_NAME, VR::PN, &ct.patient_name)
        .s(tags::PATIENT_ID, VR::LO, &ct.patient_id)
        .s(tags::PATIENT_BIRTH_DATE, VR::DA, &ct.patient_birth_date)
        .s(tags::PATIENT_SEX, VR::CS, &ct.patient_sex)
        .s(tags::STUDY_INSTANCE_UID, VR::UI, &ct.study_instance_uid)
        .s(tags::STUDY_DATE, VR::DA, &ct.study_date)
        .s(tags::STUDY_TIME, VR::TM, &ct.study_time)
        .s(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &ct.referring_physician_name,
        )
        .s(tags::STUDY_ID, VR::SH, &ct.study_id)
        .s(tags::ACCESSION_NUMBER, VR::SH, &ct.accession_number)
        .s(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &ct.frame_of_reference_uid,
        )
        .s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    if !ct.study_description.is_empty() {
        ds.s(tags::STUDY_DESCRIPTION, VR::LO, &ct.study_description);
    }
    // Patient module: a de-identified CT's outputs say so too (PS3.15 E.1.1).
    if !ct.patient_identity_removed.is_empty() {
        ds.s(
            tags::PATIENT_IDENTITY_REMOVED,
            VR::CS,
            &ct.patient_identity_removed,
        );
    }
    if !ct.deidentification_method.is_empty() {
        ds.s(
            tags::DEIDENTIFICATION_METHOD,
            VR::LO,
            &ct.deidentification_method,
        );
    }
}

/// General Equipment attributes.
pub fn equipment(ds: &mut Ds) {
    ds.s(tags::MANUFACTURER, VR::LO, "rtopt")
        .s(tags::MANUFACTURER_MODEL_NAME, VR::LO, "rtopt")
        .s(
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            concat!("rtopt ", env!("CARGO_PKG_VERSION")),
        );
}

/// Serialise a data set as a DICOM Part 10 file (preamble, meta, explicit VR little endian).
pub fn to_part10(ds: Ds, what: &str) -> Result<Vec<u8>> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN.uid())
        .implementation_class_uid(derive_uid("implementation", &[b"rtopt"]))
        .implementation_version_name(concat!("RTOPT_", env!("CARGO_PKG_VERSION")));
    let obj = ds.0.with_meta(meta).map_err(|e| {
        Error::Invalid(format!(
            "{what}: cannot build the DICOM file meta group: {e}"
        ))
    })?;
    let mut out = Vec::new();
    obj.write_all(&mut out)
        .map_err(|e| Error::Invalid(format!("{what}: cannot encode DICOM: {e}")))?;
    Ok(out)
}
