//! DIMSE messages over a dicom-ul association: command sets built and read as
//! `InMemDicomObject`s in implicit VR little endian (PS3.7 E), sent as one command PDV and a
//! data set split into PDUs by dicom-ul's `PDataWriter`, and received PDU by PDU with a bound on
//! the data set's size, so a peer cannot make rtopt hold more than
//! [`Limits::max_object_bytes`](super::config::Limits) of one object.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::association::{Association, CloseSocket, SyncAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::Pdu;

use crate::error::{Error, Result};

/// Implicit VR little endian, the default transfer syntax.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR little endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Study Root Query/Retrieve Information Model - FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
/// Study Root Query/Retrieve Information Model - MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
/// Study Root Query/Retrieve Information Model - GET.
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
/// CT Image Storage.
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// RT Structure Set Storage.
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";
/// RT Plan Storage.
pub const RT_PLAN_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.5";
/// RT Dose Storage.
pub const RT_DOSE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.2";

/// The storage SOP classes rtopt receives (a planning case) and sends (its outputs).
pub const STORAGE_CLASSES: [&str; 4] = [
    CT_IMAGE_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    RT_PLAN_STORAGE,
    RT_DOSE_STORAGE,
];

/// Command Field (0000,0100) values (PS3.7 E.1).
pub mod command {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
}

/// Status (0000,0900) values rtopt sends or tells apart (PS3.7 C, PS3.4 B and C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const PENDING: u16 = 0xFF00;
    pub const PENDING_WARNING: u16 = 0xFF01;
    /// Refused: out of resources (an object above the size limit).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class.
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
}

/// CommandDataSetType (0000,0800): no data set follows.
const NO_DATA_SET: u16 = 0x0101;
/// CommandDataSetType (0000,0800): a data set follows (any other value would do).
const DATA_SET_PRESENT: u16 = 0x0000;

/// Whether a status is a success (0000) or a warning (0001, Bxxx).
pub fn status_ok(status: u16) -> bool {
    status == status::SUCCESS || status == 0x0001 || (status & 0xF000) == 0xB000
}

/// Whether a status is pending (FF00, FF01).
pub fn status_pending(status: u16) -> bool {
    status == status::PENDING || status == status::PENDING_WARNING
}

/// One DIMSE message: its command set and, when the command says so, its data set (encoded
/// in the presentation context's transfer syntax, unparsed).
#[derive(Debug)]
pub struct Message {
    pub context_id: u8,
    pub command: InMemDicomObject,
    pub data: Option<Vec<u8>>,
}

impl Message {
    /// Command Field (0000,0100).
    pub fn command_field(&self) -> Result<u16> {
        self.u16(tags::COMMAND_FIELD, "CommandField")
    }

    /// Status (0000,0900) of a response.
    pub fn status(&self) -> Result<u16> {
        self.u16(tags::STATUS, "Status")
    }

    /// A US element of the command set.
    pub fn u16(&self, tag: Tag, name: &str) -> Result<u16> {
        self.command
            .get(tag)
            .and_then(|e| e.to_int::<u16>().ok())
            .ok_or_else(|| cannot_understand(format!("command set without a valid {name} {tag}")))
    }

    /// A UI or AE element of the command set, trailing padding removed (`""` when absent).
    pub fn text(&self, tag: Tag) -> String {
        self.command
            .get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    }
}

/// What the peer sent next on an association.
#[derive(Debug)]
pub enum Incoming {
    Message(Message),
    /// A-RELEASE-RQ: the peer ends the association in order.
    Released,
    /// A-ABORT: the peer broke off.
    Aborted,
}

/// An error about something the peer sent that rtopt cannot use; its node is filled in by
/// the caller ([`with_node`]).
fn cannot_understand(reason: String) -> Error {
    Error::Network {
        node: String::new(),
        reason,
    }
}

/// The same error with `node` named (networking errors are built deep down without it).
pub fn with_node(e: Error, node: &str) -> Error {
    match e {
        Error::Network { node: n, reason } if n.is_empty() => Error::Network {
            node: node.to_string(),
            reason,
        },
        other => other,
    }
}

/// A network error of `node`.
pub fn net_error(node: &str, reason: impl std::fmt::Display) -> Error {
    Error::Network {
        node: node.to_string(),
        reason: reason.to_string(),
    }
}

/// A command set from its elements; CommandGroupLength is computed by dicom-object.
pub fn command_set(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter(elements)
}

/// A UI element (DICOM pads odd lengths with NUL; dicom-object does it on writing).
pub fn ui(tag: Tag, uid: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid))
}

/// A US element.
pub fn us(tag: Tag, v: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

/// An AE element.
pub fn ae(tag: Tag, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::AE, PrimitiveValue::from(v))
}

/// CommandDataSetType (0000,0800) for a message with or without a data set.
pub fn data_set_type(present: bool) -> DataElement<InMemDicomObject> {
    us(
        tags::COMMAND_DATA_SET_TYPE,
        if present {
            DATA_SET_PRESENT
        } else {
            NO_DATA_SET
        },
    )
}

/// A response command: the request's class and instance, its message id, a status.
pub fn response(
    command_field: u16,
    sop_class: &str,
    sop_instance: Option<&str>,
    message_id: u16,
    status: u16,
) -> InMemDicomObject {
    let mut e = vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class),
        us(tags::COMMAND_FIELD, command_field),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        data_set_type(false),
        us(tags::STATUS, status),
    ];
    if let Some(i) = sop_instance {
        e.push(ui(tags::AFFECTED_SOP_INSTANCE_UID, i));
    }
    command_set(e)
}

/// Send a command set and, when given, its data set (already encoded in the context's
/// transfer syntax).
pub fn send<S, A>(
    assoc: &mut A,
    context_id: u8,
    command: &InMemDicomObject,
    data: Option<&[u8]>,
) -> Result<()>
where
    S: std::io::Read + std::io::Write + CloseSocket,
    A: SyncAssociation<S>,
{
    let mut bytes = Vec::with_capacity(128);
    command
        .write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| cannot_understand(format!("cannot encode a command set: {e}")))?;
    SyncAssociation::send(
        assoc,
        &Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        },
    )
    .map_err(|e| cannot_understand(format!("sending a command failed: {e}")))?;
    if let Some(data) = data {
        use std::io::Write;
        let mut w = assoc.send_pdata(context_id);
        w.write_all(data)
            .and_then(|()| w.finish())
            .map_err(|e| cannot_understand(format!("sending a data set failed: {e}")))?;
    }
    Ok(())
}

/// Receive the next message (command and data set), a release request or an abort. A data
/// set above `max_object_bytes` is refused (the association is aborted by the caller).
pub fn receive<S, A>(assoc: &mut A, max_object_bytes: u64) -> Result<Incoming>
where
    S: std::io::Read + std::io::Write + CloseSocket,
    A: SyncAssociation<S>,
{
    let mut command_bytes: Vec<u8> = Vec::new();
    let mut command: Option<(u8, InMemDicomObject, bool)> = None;
    let mut data: Vec<u8> = Vec::new();
    loop {
        let pdu = match SyncAssociation::receive(assoc) {
            Ok(p) => p,
            Err(dicom_ul::association::Error::Aborted { .. }) => return Ok(Incoming::Aborted),
            Err(e) => return Err(cannot_understand(format!("association broken off: {e}"))),
        };
        match pdu {
            Pdu::PData { data: values } => {
                for v in values {
                    match v.value_type {
                        PDataValueType::Command => {
                            if command.is_some() {
                                return Err(cannot_understand(
                                    "a second command set before the data set".into(),
                                ));
                            }
                            command_bytes.extend_from_slice(&v.data);
                            if command_bytes.len() > 64 * 1024 {
                                return Err(cannot_understand("a command set above 64 KiB".into()));
                            }
                            if v.is_last {
                                let obj = InMemDicomObject::read_dataset_with_ts(
                                    command_bytes.as_slice(),
                                    &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                                )
                                .map_err(|e| {
                                    cannot_understand(format!("unreadable command set: {e}"))
                                })?;
                                let has_data = obj
                                    .get(tags::COMMAND_DATA_SET_TYPE)
                                    .and_then(|e| e.to_int::<u16>().ok())
                                    .is_some_and(|t| t != NO_DATA_SET);
                                if !has_data {
                                    return Ok(Incoming::Message(Message {
                                        context_id: v.presentation_context_id,
                                        command: obj,
                                        data: None,
                                    }));
                                }
                                command = Some((v.presentation_context_id, obj, has_data));
                            }
                        }
                        PDataValueType::Data => {
                            let Some((ctx, _, _)) = &command else {
                                return Err(cannot_understand(
                                    "a data set before its command set".into(),
                                ));
                            };
                            if *ctx != v.presentation_context_id {
                                return Err(cannot_understand(format!(
                                    "data set on presentation context {} for a command on {ctx}",
                                    v.presentation_context_id
                                )));
                            }
                            if (data.len() + v.data.len()) as u64 > max_object_bytes {
                                return Err(cannot_understand(format!(
                                    "an object above the limit of {max_object_bytes} bytes"
                                )));
                            }
                            data.extend_from_slice(&v.data);
                            if v.is_last {
                                let (context_id, command, _) =
                                    command.take().expect("checked above");
                                return Ok(Incoming::Message(Message {
                                    context_id,
                                    command,
                                    data: Some(data),
                                }));
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                if command.is_some() || !command_bytes.is_empty() {
                    return Err(cannot_understand(
                        "release requested in the middle of a message".into(),
                    ));
                }
                return Ok(Incoming::Released);
            }
            Pdu::AbortRQ { .. } => return Ok(Incoming::Aborted),
            other => {
                return Err(cannot_understand(format!(
                    "unexpected {} during a DIMSE exchange",
                    other.short_description()
                )))
            }
        }
    }
}

/// Send a query/retrieve request: the command `command_field` of `sop_class` with
/// `extra` command elements, and `identifier` encoded in `ts`. Errors name `node`.
#[allow(clippy::too_many_arguments)]
pub fn send_request<S, A>(
    assoc: &mut A,
    context: (u8, &str),
    sop_class: &str,
    command_field: u16,
    message_id: u16,
    extra: Vec<DataElement<InMemDicomObject>>,
    identifier: &InMemDicomObject,
    node: &str,
) -> Result<()>
where
    S: std::io::Read + std::io::Write + CloseSocket,
    A: SyncAssociation<S>,
{
    let (ctx, ts) = context;
    let data = write_data_set(identifier, ts).map_err(|e| with_node(e, node))?;
    let mut elements = vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class),
        us(tags::COMMAND_FIELD, command_field),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, 0),
        data_set_type(true),
    ];
    elements.extend(extra);
    send(assoc, ctx, &command_set(elements), Some(&data)).map_err(|e| with_node(e, node))
}

/// The next message; an error naming `node` when the association ends instead (`during`
/// says in what: "a C-FIND").
pub fn expect_message<S, A>(
    assoc: &mut A,
    max_object_bytes: u64,
    node: &str,
    during: &str,
) -> Result<Message>
where
    S: std::io::Read + std::io::Write + CloseSocket,
    A: SyncAssociation<S>,
{
    match receive(assoc, max_object_bytes).map_err(|e| with_node(e, node))? {
        Incoming::Message(m) => Ok(m),
        Incoming::Released | Incoming::Aborted => Err(net_error(
            node,
            format!("the node ended the association during {during}"),
        )),
    }
}

/// The transfer syntax negotiated on presentation context `id` (trailing padding removed),
/// `None` when that context was not accepted.
pub fn context_transfer_syntax<A>(assoc: &A, id: u8) -> Option<String>
where
    A: Association,
{
    assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == id && pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string())
}

/// The accepted presentation context for `abstract_syntax`, preferring `preferred_ts`:
/// `(id, transfer syntax)`.
pub fn find_context<A>(
    assoc: &A,
    abstract_syntax: &str,
    preferred_ts: Option<&str>,
) -> Option<(u8, String)>
where
    A: Association,
{
    let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let accepted: Vec<(u8, String)> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && trim(&pc.abstract_syntax) == abstract_syntax
        })
        .map(|pc| (pc.id, trim(&pc.transfer_syntax)))
        .collect();
    preferred_ts
        .and_then(|ts| accepted.iter().find(|(_, t)| t == ts).cloned())
        .or_else(|| accepted.first().cloned())
}

/// A data set decoded in transfer syntax `ts` (native or deflated syntaxes rtopt can read).
pub fn read_data_set(bytes: &[u8], ts: &str) -> Result<InMemDicomObject> {
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    let syntax = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| cannot_understand(format!("unknown transfer syntax {ts}")))?;
    InMemDicomObject::read_dataset_with_ts(bytes, syntax)
        .map_err(|e| cannot_understand(format!("unreadable data set ({ts}): {e}")))
}

/// A data set encoded in transfer syntax `ts`.
pub fn write_data_set(obj: &InMemDicomObject, ts: &str) -> Result<Vec<u8>> {
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    let syntax = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| cannot_understand(format!("unknown transfer syntax {ts}")))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, syntax)
        .map_err(|e| cannot_understand(format!("cannot encode a data set in {ts}: {e}")))?;
    Ok(out)
}

/// A text element of a data set, trailing padding removed (`""` when absent).
pub fn text_of(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(status_ok(0x0000));
        assert!(status_ok(0xB007));
        assert!(!status_ok(0xA700));
        assert!(!status_ok(0xC000));
        assert!(status_pending(0xFF00));
        assert!(!status_pending(0x0000));
    }

    #[test]
    fn a_response_round_trips_through_implicit_vr() {
        let r = response(
            command::C_STORE_RSP,
            CT_IMAGE_STORAGE,
            Some("1.2.3"),
            7,
            0xA700,
        );
        let mut bytes = Vec::new();
        r.write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(
            bytes.as_slice(),
            &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        let m = Message {
            context_id: 1,
            command: back,
            data: None,
        };
        assert_eq!(m.command_field().unwrap(), command::C_STORE_RSP);
        assert_eq!(m.status().unwrap(), 0xA700);
        assert_eq!(m.text(tags::AFFECTED_SOP_INSTANCE_UID), "1.2.3");
        assert_eq!(m.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, "id").unwrap(), 7);
        // CommandGroupLength is the byte count after its own 12-byte element.
        let len = m
            .command
            .get(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(len as usize, bytes.len() - 12);
    }
}
