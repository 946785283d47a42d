//! C-GET SCU (objects come back on the same association, rtopt taking the storage SCP role
//! for CT and RT Structure Set) and C-MOVE SCU (the node sends to a third AE, e.g. the
//! listener of `rtopt listen`).

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use dicom_ul::association::{CloseSocket, SyncAssociation};

use super::association::{with_association, OnAssociation, Proposal};
use super::config::{NetConfig, Node};
use super::dimse::{
    self, ae, command, net_error, status_ok, status_pending, with_node, CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE, IMPLICIT_VR_LE, RT_STRUCTURE_SET_STORAGE, STUDY_ROOT_GET, STUDY_ROOT_MOVE,
};
use super::receive::{answer_store, Staging};
use crate::error::Result;

/// The final response of a C-GET or C-MOVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrieveOutcome {
    pub status: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// The identifier of a retrieve at SERIES level (or STUDY level without a series).
fn identifier(study_uid: &str, series_uid: Option<&str>) -> InMemDicomObject {
    let mut e = vec![
        DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(if series_uid.is_some() {
                "SERIES"
            } else {
                "STUDY"
            }),
        ),
        DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(study_uid),
        ),
    ];
    if let Some(s) = series_uid {
        e.push(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(s),
        ));
    }
    InMemDicomObject::from_element_iter(e)
}

fn outcome(msg: &dimse::Message, label: &str) -> Result<RetrieveOutcome> {
    let count = |tag| {
        msg.command
            .get(tag)
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(0)
    };
    Ok(RetrieveOutcome {
        status: msg.status().map_err(|e| with_node(e, label))?,
        completed: count(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
        failed: count(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
        warning: count(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
    })
}

/// C-GET the given series of a study into `staging` (one association). Fails when the
/// node reports a failure or any sub-operation failed.
pub fn c_get(
    config: &NetConfig,
    node: &Node,
    study_uid: &str,
    series_uids: &[String],
    staging: &mut Staging,
) -> Result<Vec<RetrieveOutcome>> {
    let storage = [CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE];
    let mut proposal = Proposal::new(&[STUDY_ROOT_GET], &[EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
    for c in storage {
        proposal.contexts.push((
            c.to_string(),
            vec![EXPLICIT_VR_LE.to_string(), IMPLICIT_VR_LE.to_string()],
        ));
        proposal.scp_roles.push(c.to_string());
    }
    let op = Get {
        config,
        label: node.label(),
        study_uid,
        series_uids,
        staging,
    };
    with_association(config, node, &proposal, op)
}

struct Get<'a> {
    config: &'a NetConfig,
    label: String,
    study_uid: &'a str,
    series_uids: &'a [String],
    staging: &'a mut Staging,
}

impl OnAssociation for Get<'_> {
    type Output = Vec<RetrieveOutcome>;

    fn run<S, A>(self, assoc: &mut A) -> Result<Self::Output>
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>,
    {
        let Get {
            config,
            label,
            study_uid,
            series_uids,
            staging,
        } = self;
        let (ctx, ts) = dimse::find_context(&*assoc, STUDY_ROOT_GET, None)
            .ok_or_else(|| net_error(&label, "Study Root C-GET not accepted"))?;
        let mut outcomes = Vec::new();
        for (k, series) in series_uids.iter().enumerate() {
            dimse::send_request(
                assoc,
                (ctx, &ts),
                STUDY_ROOT_GET,
                command::C_GET_RQ,
                (k + 1) as u16,
                Vec::new(),
                &identifier(study_uid, Some(series)),
                &label,
            )?;
            loop {
                let msg = dimse::expect_message(
                    assoc,
                    config.limits.max_object_bytes,
                    &label,
                    "a C-GET",
                )?;
                match msg.command_field().map_err(|e| with_node(e, &label))? {
                    command::C_STORE_RQ => {
                        let (st, why) =
                            answer_store(assoc, &msg, staging).map_err(|e| with_node(e, &label))?;
                        if !status_ok(st) {
                            return Err(net_error(
                                &label,
                                format!(
                                    "C-GET object refused ({st:04X}): {}",
                                    why.unwrap_or_default()
                                ),
                            ));
                        }
                    }
                    command::C_GET_RSP => {
                        let o = outcome(&msg, &label)?;
                        if status_pending(o.status) {
                            continue;
                        }
                        if !status_ok(o.status) || o.failed > 0 {
                            return Err(net_error(
                                &label,
                                format!(
                                    "C-GET of series {series} failed: status {:04X}, {} completed, {} failed",
                                    o.status, o.completed, o.failed
                                ),
                            ));
                        }
                        outcomes.push(o);
                        break;
                    }
                    other => {
                        return Err(net_error(
                            &label,
                            format!("unexpected command {other:04X} during a C-GET"),
                        ));
                    }
                }
            }
        }
        Ok(outcomes)
    }
}

/// C-MOVE a study (or one series) from `node` to the AE titled `destination_ae` (which the
/// node must know). Returns the final response once the node has sent everything.
pub fn c_move(
    config: &NetConfig,
    node: &Node,
    study_uid: &str,
    series_uid: Option<&str>,
    destination_ae: &str,
) -> Result<RetrieveOutcome> {
    let proposal = Proposal::new(&[STUDY_ROOT_MOVE], &[EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
    let op = Move {
        config,
        label: node.label(),
        study_uid,
        series_uid,
        destination_ae,
    };
    with_association(config, node, &proposal, op)
}

struct Move<'a> {
    config: &'a NetConfig,
    label: String,
    study_uid: &'a str,
    series_uid: Option<&'a str>,
    destination_ae: &'a str,
}

impl OnAssociation for Move<'_> {
    type Output = RetrieveOutcome;

    fn run<S, A>(self, assoc: &mut A) -> Result<Self::Output>
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>,
    {
        let Move {
            config,
            label,
            study_uid,
            series_uid,
            destination_ae,
        } = self;
        let (ctx, ts) = dimse::find_context(&*assoc, STUDY_ROOT_MOVE, None)
            .ok_or_else(|| net_error(&label, "Study Root C-MOVE not accepted"))?;
        dimse::send_request(
            assoc,
            (ctx, &ts),
            STUDY_ROOT_MOVE,
            command::C_MOVE_RQ,
            1,
            vec![ae(tags::MOVE_DESTINATION, destination_ae)],
            &identifier(study_uid, series_uid),
            &label,
        )?;
        loop {
            let msg =
                dimse::expect_message(assoc, config.limits.max_object_bytes, &label, "a C-MOVE")?;
            if msg.command_field().map_err(|e| with_node(e, &label))? != command::C_MOVE_RSP {
                return Err(net_error(&label, "answered a C-MOVE with another message"));
            }
            let o = outcome(&msg, &label)?;
            if status_pending(o.status) {
                continue;
            }
            if !status_ok(o.status) || o.failed > 0 {
                return Err(net_error(
                    &label,
                    format!(
                        "C-MOVE to {destination_ae} failed: status {:04X}, {} completed, {} failed",
                        o.status, o.completed, o.failed
                    ),
                ));
            }
            return Ok(o);
        }
    }
}
