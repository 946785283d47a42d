//! `rtopt listen`: the auto-planning node. Associations are served one at a time by the
//! storage SCP ([`super::scp`]); a released association whose objects form a complete case
//! (every object accepted, one CT series and one RT Structure Set that `Case::load` reads) is
//! moved by one rename into `<incoming>/<StudyInstanceUID>`, then planned on a worker thread
//! with the protocol the rule file chooses, written atomically to `<plans>/<same name>`, and
//! its DICOM objects (RT Plan, RT Dose) are sent to the `send_to` node. Anything else (an
//! abort, a broken connection, a refused object, a case that does not load) is dropped whole:
//! nothing half-received is ever planned.
//!
//! Every step is reported as a [`ListenEvent`], whose text holds UIDs, AE titles, counts and
//! folder names only, never a patient's name or ID.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::config::NetConfig;
use super::receive::{remove_stale_staging, Staging};
use super::rules::{Rules, StudyFacts};
use super::scp::{AssociationOutcome, StorageScp};
use super::store::{dicom_files, push};
use crate::case::{Case, LoadOptions};
use crate::error::{Error, Result};
use crate::machine::MachineModel;
use crate::outputs::Replace;
use crate::plan::Planner;

/// What the listener did, one line each.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenEvent {
    Listening {
        ae_title: String,
        address: String,
    },
    /// An association was not established (allow-list, called AE title, bad request).
    Refused {
        reason: String,
    },
    /// An association broke off; its objects were dropped.
    Dropped {
        calling_ae: String,
        objects: usize,
        reason: String,
    },
    /// A released association's objects were not a complete case; dropped.
    Incomplete {
        calling_ae: String,
        objects: usize,
        reason: String,
    },
    /// A complete case is in place.
    Received {
        calling_ae: String,
        study_uid: String,
        objects: usize,
        bytes: u64,
        folder: PathBuf,
    },
    NoRule {
        study_uid: String,
    },
    Planning {
        study_uid: String,
        rule: String,
        protocol: PathBuf,
    },
    Planned {
        study_uid: String,
        folder: PathBuf,
        seconds: f64,
        constraints_met: bool,
    },
    PlanFailed {
        study_uid: String,
        error: String,
    },
    /// Plan objects sent: stored / total.
    Sent {
        study_uid: String,
        node: String,
        stored: usize,
        total: usize,
        seconds: f64,
    },
    SendFailed {
        study_uid: String,
        node: String,
        error: String,
    },
    /// A plan that is not sent (hard goals not met, or no `send_to` node).
    Kept {
        study_uid: String,
        reason: String,
    },
}

impl std::fmt::Display for ListenEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ListenEvent::*;
        match self {
            Listening { ae_title, address } => write!(f, "listening as {ae_title} on {address}"),
            Refused { reason } => write!(f, "association refused: {reason}"),
            Dropped {
                calling_ae,
                objects,
                reason,
            } => write!(
                f,
                "association from {calling_ae} broken off after {objects} objects ({reason}); nothing kept"
            ),
            Incomplete {
                calling_ae,
                objects,
                reason,
            } => write!(
                f,
                "association from {calling_ae}: {objects} objects are no complete case ({reason}); nothing kept"
            ),
            Received {
                calling_ae,
                study_uid,
                objects,
                bytes,
                folder,
            } => write!(
                f,
                "study {study_uid} received from {calling_ae}: {objects} objects, {bytes} bytes -> {}",
                folder.display()
            ),
            NoRule { study_uid } => write!(f, "study {study_uid}: no rule matches; not planned"),
            Planning {
                study_uid,
                rule,
                protocol,
            } => write!(
                f,
                "study {study_uid}: rule '{rule}', protocol {}",
                protocol.display()
            ),
            Planned {
                study_uid,
                folder,
                seconds,
                constraints_met,
            } => write!(
                f,
                "study {study_uid}: planned in {seconds:.1} s -> {} (hard goals {})",
                folder.display(),
                if *constraints_met { "met" } else { "NOT met" }
            ),
            PlanFailed { study_uid, error } => {
                write!(f, "study {study_uid}: planning failed: {error}")
            }
            Sent {
                study_uid,
                node,
                stored,
                total,
                seconds,
            } => write!(
                f,
                "study {study_uid}: {stored} of {total} plan objects stored at {node} in {seconds:.2} s"
            ),
            SendFailed {
                study_uid,
                node,
                error,
            } => write!(f, "study {study_uid}: sending to {node} failed: {error}"),
            Kept { study_uid, reason } => write!(f, "study {study_uid}: plan kept, not sent: {reason}"),
        }
    }
}

/// A received, checked case waiting to be planned.
struct Arrived {
    study_uid: String,
    case: Case,
    facts: StudyFacts,
    name: String,
}

/// The listener: a bound storage SCP, the rules and the machine.
pub struct Listener {
    scp: StorageScp,
    config: NetConfig,
    rules: Rules,
    machine: MachineModel,
}

impl Listener {
    /// Check the configuration for listening (rules, allow-list), read the rules, their
    /// protocols and the machine, remove staging folders of dead processes, and bind.
    pub fn new(config: &NetConfig) -> Result<Listener> {
        let bad = |reason: &str| Error::Config {
            path: config.path.clone(),
            reason: reason.into(),
        };
        let rules_path = config
            .listen
            .rules
            .as_deref()
            .ok_or_else(|| bad("[listen] rules: rtopt listen needs a rule file"))?;
        if config.listen.allowed_callers.is_empty() {
            return Err(bad(
                "[listen] allowed_callers is empty: the listener would refuse every sender",
            ));
        }
        let rules = Rules::load(rules_path)?;
        let machine = match &config.listen.machine {
            Some(m) => MachineModel::load(m)?,
            None => MachineModel::default_6x(),
        };
        for d in [config.incoming_dir(), config.plans_dir()] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        remove_stale_staging(&config.incoming_dir())?;
        let scp = StorageScp::bind(config)?;
        Ok(Listener {
            scp,
            config: config.clone(),
            rules,
            machine,
        })
    }

    /// The address the SCP listens on.
    pub fn local_addr(&self) -> Result<std::net::SocketAddr> {
        self.scp.local_addr()
    }

    /// Serve until `stop` is set: associations one at a time on this thread, planning and
    /// sending on a worker thread (a study arriving while another is planned waits in a
    /// queue). Returns after the plan under way is finished.
    pub fn run(&self, stop: &AtomicBool, events: &(dyn Fn(&ListenEvent) + Sync)) -> Result<()> {
        let addr = self.local_addr()?;
        events(&ListenEvent::Listening {
            ae_title: self.config.local.ae_title.clone(),
            address: addr.to_string(),
        });
        self.scp
            .listener()
            .set_nonblocking(true)
            .map_err(|e| Error::io(PathBuf::from(addr.to_string()), e))?;
        let (tx, rx) = mpsc::channel::<Arrived>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for a in rx {
                    self.plan_and_send(a, events);
                }
            });
            while !stop.load(Ordering::Relaxed) {
                match self.scp.listener().accept() {
                    Ok((socket, _)) => {
                        if let Some(a) = self.serve(socket, events) {
                            let _ = tx.send(a);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            drop(tx);
        });
        Ok(())
    }

    /// Serve one association; a complete case is put in place and returned for planning.
    fn serve(
        &self,
        socket: std::net::TcpStream,
        events: &(dyn Fn(&ListenEvent) + Sync),
    ) -> Option<Arrived> {
        let incoming = self.config.incoming_dir();
        match self.scp.serve(socket, &incoming) {
            AssociationOutcome::Refused { reason } => {
                events(&ListenEvent::Refused { reason });
                None
            }
            AssociationOutcome::Empty { .. } => None,
            AssociationOutcome::Broken {
                calling_ae,
                objects,
                reason,
            } => {
                events(&ListenEvent::Dropped {
                    calling_ae,
                    objects,
                    reason,
                });
                None
            }
            AssociationOutcome::Released {
                calling_ae,
                staging,
                refused,
                reasons,
            } => {
                let objects = staging.objects().len();
                match self.accept_case(staging, refused, &reasons) {
                    Ok((arrived, bytes, folder)) => {
                        events(&ListenEvent::Received {
                            calling_ae,
                            study_uid: arrived.study_uid.clone(),
                            objects,
                            bytes,
                            folder,
                        });
                        Some(arrived)
                    }
                    Err(reason) => {
                        events(&ListenEvent::Incomplete {
                            calling_ae,
                            objects,
                            reason,
                        });
                        None
                    }
                }
            }
        }
    }

    /// Check a released association's objects and move them into place.
    fn accept_case(
        &self,
        staging: Staging,
        refused: usize,
        reasons: &[String],
    ) -> std::result::Result<(Arrived, u64, PathBuf), String> {
        if refused > 0 {
            return Err(format!("{refused} objects refused: {}", reasons.join("; ")));
        }
        let mut studies: Vec<&str> = staging
            .objects()
            .iter()
            .map(|o| o.study_instance_uid.as_str())
            .collect();
        studies.sort_unstable();
        studies.dedup();
        let study_uid = match studies.as_slice() {
            [one] if super::receive::valid_uid(one) => one.to_string(),
            [_] => return Err("StudyInstanceUID is not a valid UID".into()),
            many => return Err(format!("{} studies in one association", many.len())),
        };
        let checked =
            Case::load(staging.dir(), &LoadOptions::default()).map_err(|e| e.to_string())?;
        if checked.structure_set.is_none() {
            return Err(format!("study {study_uid} has no RT Structure Set"));
        }
        let study_description = study_description(staging.dir());
        let name = self.free_name(&study_uid);
        let dest = self.config.incoming_dir().join(&name);
        let bytes = staging.bytes();
        let folder = staging.commit(&dest).map_err(|e| e.to_string())?;
        // Read again from its final place: the case keeps its files' paths (the planner
        // reads the CT files again when it writes the plan).
        let case = Case::load(&folder, &LoadOptions::default()).map_err(|e| e.to_string())?;
        let facts = StudyFacts {
            study_description,
            roi_names: case.structure_names(),
        };
        Ok((
            Arrived {
                study_uid,
                case,
                facts,
                name,
            },
            bytes,
            folder,
        ))
    }

    /// `<StudyInstanceUID>`, or `<StudyInstanceUID>.<n>` when the study came before: free
    /// in both the incoming and the plans folder.
    fn free_name(&self, study_uid: &str) -> String {
        let taken = |n: &str| {
            self.config.incoming_dir().join(n).exists() || self.config.plans_dir().join(n).exists()
        };
        if !taken(study_uid) {
            return study_uid.to_string();
        }
        (2..)
            .map(|k| format!("{study_uid}.{k}"))
            .find(|n| !taken(n))
            .expect("an unbounded range has a free name")
    }

    /// Plan an arrived case with the chosen rule's protocol and send the plan's objects.
    fn plan_and_send(&self, a: Arrived, events: &(dyn Fn(&ListenEvent) + Sync)) {
        let study_uid = a.study_uid.clone();
        let Some((rule, protocol)) = self.rules.choose(&a.facts) else {
            events(&ListenEvent::NoRule { study_uid });
            return;
        };
        events(&ListenEvent::Planning {
            study_uid: study_uid.clone(),
            rule: rule.name.clone(),
            protocol: rule.protocol.clone(),
        });
        let start = Instant::now();
        let out = self.config.plans_dir().join(&a.name);
        let name = rule
            .protocol
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "protocol".into());
        let planned = Planner::new(a.case, protocol.clone())
            .with_protocol_source(&name, Some(&rule.protocol))
            .with_machine(self.machine.clone())
            .run()
            .and_then(|p| p.write(&out, Replace::Never).map(|()| p));
        let planned = match planned {
            Ok(p) => p,
            Err(e) => {
                events(&ListenEvent::PlanFailed {
                    study_uid,
                    error: e.to_string(),
                });
                return;
            }
        };
        let constraints_met = planned.report.constraints_met();
        events(&ListenEvent::Planned {
            study_uid: study_uid.clone(),
            folder: out.clone(),
            seconds: start.elapsed().as_secs_f64(),
            constraints_met,
        });
        let Some(node_name) = &self.config.listen.send_to else {
            events(&ListenEvent::Kept {
                study_uid,
                reason: "no [listen] send_to node".into(),
            });
            return;
        };
        if !constraints_met {
            events(&ListenEvent::Kept {
                study_uid,
                reason: "hard goals not met on the deliverable dose".into(),
            });
            return;
        }
        self.send(&study_uid, node_name, &out, events);
    }

    fn send(
        &self,
        study_uid: &str,
        node_name: &str,
        plan_dir: &Path,
        events: &(dyn Fn(&ListenEvent) + Sync),
    ) {
        let result = self.config.node(node_name).and_then(|node| {
            let files = dicom_files(&[plan_dir.to_path_buf()])?;
            push(&self.config, node, &files)
        });
        match result {
            Ok(r) => events(&ListenEvent::Sent {
                study_uid: study_uid.to_string(),
                node: r.node.clone(),
                stored: r.outcomes.iter().filter(|o| o.ok()).count(),
                total: r.outcomes.len(),
                seconds: r.seconds,
            }),
            Err(e) => events(&ListenEvent::SendFailed {
                study_uid: study_uid.to_string(),
                node: node_name.to_string(),
                error: e.to_string(),
            }),
        }
    }
}

/// The StudyDescription of the first CT file of a folder (`""` when none).
fn study_description(dir: &Path) -> String {
    use dicom_dictionary_std::tags;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .find_map(|f| {
            let obj = dicom_object::OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(f)
                .ok()?;
            Some(super::dimse::text_of(&obj, tags::STUDY_DESCRIPTION))
        })
        .unwrap_or_default()
}
