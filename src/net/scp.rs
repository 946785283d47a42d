//! The storage SCP of `rtopt listen`: accepts associations only from the calling AE titles of
//! the allow-list and only when called by rtopt's own AE title, answers C-ECHO, and receives
//! CT and RT Structure Set objects by C-STORE into a staging folder (one per association),
//! within the configured size bounds. What an association leaves is decided by how it ends:
//! an orderly release hands the staging folder on, an abort, a timeout or a broken connection
//! drops it (and with it every object of that association).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_ul::association::server::AccessControl;
use dicom_ul::association::{CloseSocket, SyncAssociation};
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use dicom_ul::{Pdu, ServerAssociationOptions};

use super::config::NetConfig;
use super::dimse::{
    self, command, net_error, status, Incoming, CT_IMAGE_STORAGE, EXPLICIT_VR_LE, IMPLICIT_VR_LE,
    RT_STRUCTURE_SET_STORAGE, VERIFICATION,
};
use super::receive::{answer_store, Staging};
use crate::error::{Error, Result};

/// The SOP classes the listener receives.
pub const RECEIVED_CLASSES: [&str; 2] = [CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE];

/// The calling AE titles that may open an association, and rtopt's own (called) AE title.
#[derive(Debug, Clone)]
struct AllowList {
    callers: Vec<String>,
}

impl AccessControl for AllowList {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> std::result::Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.callers.iter().any(|c| c == calling_ae_title.trim()) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// How one association ended.
#[derive(Debug)]
pub enum AssociationOutcome {
    /// Not established: rejected (allow-list, called AE title, no acceptable context) or
    /// not a DICOM peer.
    Refused { reason: String },
    /// Only C-ECHO (or nothing) and an orderly release.
    Empty { calling_ae: String },
    /// Released in order after objects were received. `refused` objects were answered with
    /// a failure status (their reasons in `reasons`); the caller decides whether the study
    /// is complete.
    Released {
        calling_ae: String,
        staging: Staging,
        refused: usize,
        reasons: Vec<String>,
    },
    /// Aborted, timed out or broken off: every object of the association is dropped.
    Broken {
        calling_ae: String,
        objects: usize,
        reason: String,
    },
}

/// A bound storage SCP.
#[derive(Debug)]
pub struct StorageScp {
    listener: TcpListener,
    config: NetConfig,
    /// The TLS server configuration, read once at start (bad files fail there).
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl StorageScp {
    /// Listen on `[local] bind:port`.
    pub fn bind(config: &NetConfig) -> Result<StorageScp> {
        let addr = format!("{}:{}", config.local.bind, config.local.port);
        let listener = TcpListener::bind(&addr)
            .map_err(|e| net_error(&format!("{}@{addr}", config.local.ae_title), e))?;
        #[cfg(not(feature = "tls"))]
        if config.tls.is_some() {
            return Err(Error::Config {
                path: config.path.clone(),
                reason: "[tls] is set but this build of rtopt has no TLS (cargo feature `tls`)"
                    .into(),
            });
        }
        Ok(StorageScp {
            listener,
            config: config.clone(),
            #[cfg(feature = "tls")]
            tls: match &config.tls {
                Some(t) => Some(super::tls::server_config(t)?),
                None => None,
            },
        })
    }

    /// The address it listens on (the real port when the configuration says 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| net_error(&self.config.local.ae_title, e))
    }

    /// The listening socket (the listener polls it).
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Serve one association on an accepted connection, staging its objects under
    /// `staging_parent`.
    pub fn serve(&self, socket: TcpStream, staging_parent: &Path) -> AssociationOutcome {
        let c = &self.config;
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(AllowList {
                callers: c
                    .listen
                    .allowed_callers
                    .iter()
                    .map(|a| a.trim().to_string())
                    .collect(),
            })
            .ae_title(c.local.ae_title.as_str())
            .max_pdu_length(c.limits.max_pdu_bytes)
            .strict(true)
            .read_timeout(c.timeouts.read())
            .write_timeout(c.timeouts.write())
            .with_abstract_syntax(VERIFICATION)
            .with_transfer_syntax(EXPLICIT_VR_LE)
            .with_transfer_syntax(IMPLICIT_VR_LE);
        for class in RECEIVED_CLASSES {
            options = options.with_abstract_syntax(class);
        }
        // Without TCP_NODELAY every C-STORE response waits on Nagle's algorithm.
        if socket.set_nonblocking(false).is_err() || socket.set_nodelay(true).is_err() {
            return AssociationOutcome::Refused {
                reason: "cannot configure the connection".into(),
            };
        }
        let refused = |e: dicom_ul::association::Error| AssociationOutcome::Refused {
            reason: e.to_string(),
        };
        #[cfg(feature = "tls")]
        let tls = self.tls.clone();
        #[cfg(not(feature = "tls"))]
        let tls: Option<std::convert::Infallible> = None;
        let (outcome, _aborted) = match tls {
            None => match options.establish(socket) {
                Ok(mut a) => {
                    let r = self.receive_on(&mut a, staging_parent);
                    finish(a, r)
                }
                Err(e) => return refused(e),
            },
            #[cfg(feature = "tls")]
            Some(config) => match options.tls_config(config).establish_tls(socket) {
                Ok(mut a) => {
                    let r = self.receive_on(&mut a, staging_parent);
                    finish(a, r)
                }
                Err(e) => return refused(e),
            },
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
        };
        outcome
    }

    /// Receive on an established association until it ends; the flag says whether it must
    /// be aborted.
    fn receive_on<S, A>(&self, assoc: &mut A, staging_parent: &Path) -> (AssociationOutcome, bool)
    where
        S: std::io::Read + std::io::Write + CloseSocket,
        A: SyncAssociation<S>,
    {
        let c = &self.config;
        let calling_ae = assoc.peer_ae_title().trim().to_string();
        let mut staging = match Staging::create(staging_parent, c.limits, &RECEIVED_CLASSES) {
            Ok(s) => s,
            Err(e) => {
                return (
                    AssociationOutcome::Broken {
                        calling_ae,
                        objects: 0,
                        reason: e.to_string(),
                    },
                    true,
                );
            }
        };
        let mut refused = 0;
        let mut reasons = Vec::new();
        let broken = |staging: &Staging, reason: String| AssociationOutcome::Broken {
            calling_ae: calling_ae.clone(),
            objects: staging.objects().len(),
            reason,
        };
        loop {
            let msg = match dimse::receive(assoc, c.limits.max_object_bytes) {
                Ok(Incoming::Message(m)) => m,
                Ok(Incoming::Released) => {
                    let _ = SyncAssociation::send(assoc, &Pdu::ReleaseRP);
                    if staging.objects().is_empty() && refused == 0 {
                        return (AssociationOutcome::Empty { calling_ae }, false);
                    }
                    return (
                        AssociationOutcome::Released {
                            calling_ae,
                            staging,
                            refused,
                            reasons,
                        },
                        false,
                    );
                }
                Ok(Incoming::Aborted) => {
                    return (broken(&staging, "aborted by the peer".into()), false)
                }
                Err(e) => {
                    return (broken(&staging, reason_of(&e)), true);
                }
            };
            let field = match msg.command_field() {
                Ok(f) => f,
                Err(e) => {
                    return (broken(&staging, reason_of(&e)), true);
                }
            };
            let answered = match field {
                command::C_ECHO_RQ => msg.u16(tags::MESSAGE_ID, "MessageID").and_then(|id| {
                    let rsp = dimse::response(
                        command::C_ECHO_RSP,
                        VERIFICATION,
                        None,
                        id,
                        status::SUCCESS,
                    );
                    dimse::send(assoc, msg.context_id, &rsp, None)
                }),
                command::C_STORE_RQ => answer_store(assoc, &msg, &mut staging).map(|(st, why)| {
                    if !dimse::status_ok(st) {
                        refused += 1;
                        reasons.extend(why);
                    }
                }),
                other => Err(net_error(
                    &calling_ae,
                    format!("command {other:04X} is not served here"),
                )),
            };
            if let Err(e) = answered {
                return (broken(&staging, reason_of(&e)), true);
            }
        }
    }
}

/// Abort an association that ended in error (the peer may be gone already); release needs
/// nothing more (the release response was sent).
fn finish<S, A>(
    assoc: A,
    (outcome, abort): (AssociationOutcome, bool),
) -> (AssociationOutcome, bool)
where
    S: std::io::Read + std::io::Write + CloseSocket,
    A: SyncAssociation<S>,
{
    if abort {
        let _ = SyncAssociation::abort(assoc);
    }
    (outcome, abort)
}

fn reason_of(e: &Error) -> String {
    match e {
        Error::Network { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
