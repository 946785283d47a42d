//! Opening an association to a node as a requestor (dicom-ul's `ClientAssociationOptions`):
//! rtopt's AE title as the calling AE, the node's as the called AE, the configured timeouts
//! and PDU limit, and the presentation contexts (and SCP roles, for C-GET) of one service.

use std::net::TcpStream;

use dicom_ul::association::{ClientAssociation, CloseSocket, SyncAssociation};
use dicom_ul::ClientAssociationOptions;

use super::config::{NetConfig, Node};
use super::dimse::net_error;
use crate::error::Result;

/// An association to a node.
pub type Association = ClientAssociation<TcpStream>;

/// What a requestor proposes.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    /// Abstract syntax and the transfer syntaxes offered for it (first preferred).
    pub contexts: Vec<(String, Vec<String>)>,
    /// SOP classes for which rtopt also takes the SCP role (storage sub-operations of
    /// C-GET arrive on the same association).
    pub scp_roles: Vec<String>,
}

impl Proposal {
    /// One context per abstract syntax with the same transfer syntaxes.
    pub fn new(abstract_syntaxes: &[&str], transfer_syntaxes: &[&str]) -> Self {
        Proposal {
            contexts: abstract_syntaxes
                .iter()
                .map(|a| {
                    (
                        a.to_string(),
                        transfer_syntaxes.iter().map(|t| t.to_string()).collect(),
                    )
                })
                .collect(),
            scp_roles: Vec::new(),
        }
    }
}

/// The client options of an association from rtopt's AE to `node`.
fn options<'a>(
    config: &'a NetConfig,
    node: &'a Node,
    proposal: &'a Proposal,
) -> ClientAssociationOptions<'a> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(config.local.ae_title.as_str())
        .called_ae_title(node.ae_title.as_str())
        .max_pdu_length(config.limits.max_pdu_bytes)
        .connection_timeout(config.timeouts.connect())
        .read_timeout(config.timeouts.read())
        .write_timeout(config.timeouts.write());
    for (abstract_syntax, tss) in &proposal.contexts {
        options = options.with_presentation_context(
            abstract_syntax.as_str(),
            tss.iter().map(|t| t.as_str()).collect(),
        );
    }
    for sop in &proposal.scp_roles {
        options = options.with_role_selection(sop.as_str(), false, true);
    }
    options
}

/// Open a plain (TCP) association from rtopt's AE to `node`. A rejection or an unreachable
/// node is an [`crate::Error::Network`] naming the node (rejections with dicom-ul's reason).
pub fn open(config: &NetConfig, node: &Node, proposal: &Proposal) -> Result<Association> {
    let mut assoc = options(config, node, proposal)
        .establish(node.address())
        .map_err(|e| net_error(&node.label(), describe_establish_error(&e)))?;
    // A command PDU, data PDUs and a short response per object: without TCP_NODELAY,
    // Nagle's algorithm and delayed ACKs add tens of milliseconds to every object.
    let _ = assoc.inner_stream().set_nodelay(true);
    Ok(assoc)
}

/// Work done on an open association, whatever its transport (TCP or TLS).
pub trait OnAssociation {
    type Output;
    /// Run on the association; it is released after `Ok` and aborted after `Err`.
    fn run<S, A>(self, assoc: &mut A) -> Result<Self::Output>
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>;
}

/// Open an association to `node` (with TLS when the configuration has `[tls]`), run `op` on
/// it, then release it (or abort it when `op` failed).
pub fn with_association<O: OnAssociation>(
    config: &NetConfig,
    node: &Node,
    proposal: &Proposal,
    op: O,
) -> Result<O::Output> {
    fn finish<S, A, T>(mut assoc: A, op: impl FnOnce(&mut A) -> Result<T>) -> Result<T>
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>,
    {
        match op(&mut assoc) {
            Ok(v) => {
                let _ = SyncAssociation::release(assoc);
                Ok(v)
            }
            Err(e) => {
                let _ = SyncAssociation::abort(assoc);
                Err(e)
            }
        }
    }
    match &config.tls {
        None => finish(open(config, node, proposal)?, |a| op.run(a)),
        #[cfg(feature = "tls")]
        Some(t) => {
            let mut assoc = options(config, node, proposal)
                .tls_config(super::tls::client_config(t)?)
                .server_name(&node.host)
                .establish_tls(node.address())
                .map_err(|e| net_error(&node.label(), describe_establish_error(&e)))?;
            let _ = assoc.inner_stream().sock.set_nodelay(true);
            finish(assoc, |a| op.run(a))
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(crate::error::Error::Config {
            path: config.path.clone(),
            reason: "[tls] is set but this build of rtopt has no TLS (cargo feature `tls`)".into(),
        }),
    }
}

/// dicom-ul's association errors in words; a rejection says who rejected and why.
fn describe_establish_error(e: &dicom_ul::association::Error) -> String {
    use dicom_ul::association::Error as E;
    match e {
        E::Rejected { association_rj, .. } => format!(
            "association rejected: {} ({:?})",
            association_rj.source, association_rj.result
        ),
        other => format!("cannot open an association: {other}"),
    }
}
