//! C-FIND SCU in the Study Root information model: a study by accession number or
//! StudyInstanceUID (never by patient name), its series, and a series' instances.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use dicom_ul::association::{CloseSocket, SyncAssociation};

use super::association::{with_association, OnAssociation, Proposal};
use super::config::{NetConfig, Node};
use super::dimse::{
    self, command, net_error, status_ok, status_pending, text_of, with_node, EXPLICIT_VR_LE,
    IMPLICIT_VR_LE, STUDY_ROOT_FIND,
};
use crate::error::Result;

/// How a study is named in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudyKey {
    /// AccessionNumber (0008,0050).
    Accession(String),
    /// StudyInstanceUID (0020,000D).
    StudyUid(String),
}

impl std::fmt::Display for StudyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StudyKey::Accession(a) => write!(f, "accession number {a}"),
            StudyKey::StudyUid(u) => write!(f, "StudyInstanceUID {u}"),
        }
    }
}

/// A study found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyMatch {
    pub study_instance_uid: String,
    pub accession_number: String,
}

/// A series found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesMatch {
    pub series_instance_uid: String,
    pub modality: String,
    /// NumberOfSeriesRelatedInstances (0020,1209) when the node gives it.
    pub instances: Option<usize>,
}

/// An instance found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMatch {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_instance_uid: String,
}

fn key(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    if value.is_empty() {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(value))
    }
}

/// Run one C-FIND with `identifier` and return the matches' identifiers.
pub fn c_find(
    config: &NetConfig,
    node: &Node,
    identifier: InMemDicomObject,
) -> Result<Vec<InMemDicomObject>> {
    let proposal = Proposal::new(&[STUDY_ROOT_FIND], &[EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
    let op = Find {
        config,
        label: node.label(),
        identifier,
    };
    with_association(config, node, &proposal, op)
}

struct Find<'a> {
    config: &'a NetConfig,
    label: String,
    identifier: InMemDicomObject,
}

impl OnAssociation for Find<'_> {
    type Output = Vec<InMemDicomObject>;

    fn run<S, A>(self, assoc: &mut A) -> Result<Self::Output>
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>,
    {
        let Find {
            config,
            label,
            identifier,
        } = self;
        let (ctx, ts) = dimse::find_context(&*assoc, STUDY_ROOT_FIND, None)
            .ok_or_else(|| net_error(&label, "Study Root C-FIND not accepted"))?;
        dimse::send_request(
            assoc,
            (ctx, &ts),
            STUDY_ROOT_FIND,
            command::C_FIND_RQ,
            1,
            Vec::new(),
            &identifier,
            &label,
        )?;
        let mut matches = Vec::new();
        loop {
            let msg =
                dimse::expect_message(assoc, config.limits.max_object_bytes, &label, "a C-FIND")?;
            if msg.command_field().map_err(|e| with_node(e, &label))? != command::C_FIND_RSP {
                return Err(net_error(&label, "answered a C-FIND with another message"));
            }
            let st = msg.status().map_err(|e| with_node(e, &label))?;
            if status_pending(st) {
                if let Some(d) = &msg.data {
                    matches.push(dimse::read_data_set(d, &ts).map_err(|e| with_node(e, &label))?);
                }
                if matches.len() > 100_000 {
                    return Err(net_error(&label, "more than 100000 C-FIND matches"));
                }
                continue;
            }
            if !status_ok(st) {
                return Err(net_error(
                    &label,
                    format!("C-FIND failed with status {st:04X}"),
                ));
            }
            break;
        }
        Ok(matches)
    }
}

/// The studies matching `key` (at most one is expected).
pub fn find_studies(config: &NetConfig, node: &Node, key_: &StudyKey) -> Result<Vec<StudyMatch>> {
    let (acc, uid) = match key_ {
        StudyKey::Accession(a) => (a.as_str(), ""),
        StudyKey::StudyUid(u) => ("", u.as_str()),
    };
    let id = InMemDicomObject::from_element_iter([
        key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
        key(tags::ACCESSION_NUMBER, VR::SH, acc),
        key(tags::STUDY_INSTANCE_UID, VR::UI, uid),
    ]);
    Ok(c_find(config, node, id)?
        .iter()
        .map(|o| StudyMatch {
            study_instance_uid: text_of(o, tags::STUDY_INSTANCE_UID),
            accession_number: text_of(o, tags::ACCESSION_NUMBER),
        })
        .collect())
}

/// The series of a study.
pub fn find_series(config: &NetConfig, node: &Node, study_uid: &str) -> Result<Vec<SeriesMatch>> {
    let id = InMemDicomObject::from_element_iter([
        key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
        key(tags::STUDY_INSTANCE_UID, VR::UI, study_uid),
        key(tags::SERIES_INSTANCE_UID, VR::UI, ""),
        key(tags::MODALITY, VR::CS, ""),
        key(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
    ]);
    let mut v: Vec<SeriesMatch> = c_find(config, node, id)?
        .iter()
        .map(|o| SeriesMatch {
            series_instance_uid: text_of(o, tags::SERIES_INSTANCE_UID),
            modality: text_of(o, tags::MODALITY),
            instances: text_of(o, tags::NUMBER_OF_SERIES_RELATED_INSTANCES)
                .trim()
                .parse()
                .ok(),
        })
        .collect();
    v.sort_by(|a, b| a.series_instance_uid.cmp(&b.series_instance_uid));
    Ok(v)
}

/// The instances of a study, or of one of its series.
pub fn find_instances(
    config: &NetConfig,
    node: &Node,
    study_uid: &str,
    series_uid: Option<&str>,
) -> Result<Vec<InstanceMatch>> {
    let id = InMemDicomObject::from_element_iter([
        key(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"),
        key(tags::STUDY_INSTANCE_UID, VR::UI, study_uid),
        key(tags::SERIES_INSTANCE_UID, VR::UI, series_uid.unwrap_or("")),
        key(tags::SOP_INSTANCE_UID, VR::UI, ""),
        key(tags::SOP_CLASS_UID, VR::UI, ""),
    ]);
    let mut v: Vec<InstanceMatch> = c_find(config, node, id)?
        .iter()
        .map(|o| InstanceMatch {
            sop_instance_uid: text_of(o, tags::SOP_INSTANCE_UID),
            sop_class_uid: text_of(o, tags::SOP_CLASS_UID),
            series_instance_uid: text_of(o, tags::SERIES_INSTANCE_UID),
        })
        .collect();
    v.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
    Ok(v)
}
