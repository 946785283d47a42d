//! The networking configuration (TOML, `docs/networking.md`): rtopt's own AE, the remote
//! nodes, which calling AE titles may send, timeouts, size limits, and where received studies
//! and plans go. Relative paths are taken from the configuration file's folder.
//!
//! ```toml
//! [local]
//! ae_title = "RTOPT"
//! bind = "127.0.0.1"
//! port = 11112
//!
//! [nodes.pacs]
//! ae_title = "ORTHANC"
//! host = "127.0.0.1"
//! port = 4242
//!
//! [listen]
//! allowed_callers = ["ORTHANC"]
//! rules = "rules.toml"
//! send_to = "pacs"
//!
//! [storage]
//! incoming = "incoming"
//! plans = "plans"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The file it was read from (named in every error about it).
    pub path: PathBuf,
    pub local: LocalAe,
    /// Remote nodes by the name the commands use (`--node pacs`).
    pub nodes: BTreeMap<String, Node>,
    pub listen: ListenSettings,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub storage: Storage,
    /// The DICOM TLS profile for every association, incoming and outgoing (feature `tls`).
    pub tls: Option<TlsSettings>,
}

/// TLS settings (PEM files, paths relative to the configuration file): rtopt's certificate
/// and key, presented to every peer, and the certificates it trusts; a peer must present a
/// certificate signed by one of them (both directions: mutual authentication).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub trusted: PathBuf,
}

/// rtopt's own application entity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAe {
    /// rtopt's AE title: calling AE title of its requests, called AE title it answers to.
    pub ae_title: String,
    /// Address the storage SCP listens on (default 127.0.0.1).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Port of the storage SCP (`rtopt listen`); 0: any free port.
    #[serde(default = "default_port")]
    pub port: u16,
}

/// A remote DICOM node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl Node {
    /// `host:port`, for dicom-ul.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// How errors name this node: `ORTHANC@127.0.0.1:4242`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.ae_title, self.address())
    }
}

/// The storage SCP's settings (`rtopt listen`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSettings {
    /// Calling AE titles that may open an association; every other is rejected. Empty: the
    /// listener refuses everyone.
    #[serde(default)]
    pub allowed_callers: Vec<String>,
    /// The rule file choosing a protocol per received study (required by `rtopt listen`).
    pub rules: Option<PathBuf>,
    /// The node (a key of `[nodes]`) the plans are sent to; none: plans stay local.
    pub send_to: Option<String>,
    /// Machine file of the plans (default: the shipped generic 6 MV machine).
    pub machine: Option<PathBuf>,
}

/// Timeouts, seconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Opening a TCP connection to a node.
    #[serde(default = "default_connect_s")]
    pub connect_s: u64,
    /// Waiting for the next PDU (a stalled peer is dropped after this).
    #[serde(default = "default_io_s")]
    pub read_s: u64,
    /// Writing a PDU.
    #[serde(default = "default_io_s")]
    pub write_s: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_s: default_connect_s(),
            read_s: default_io_s(),
            write_s: default_io_s(),
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_secs(self.connect_s)
    }
    pub fn read(&self) -> Duration {
        Duration::from_secs(self.read_s)
    }
    pub fn write(&self) -> Duration {
        Duration::from_secs(self.write_s)
    }
}

/// Bounds on what a peer can make rtopt hold or write.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest PDU rtopt accepts (and announces), bytes.
    #[serde(default = "default_max_pdu")]
    pub max_pdu_bytes: u32,
    /// Largest single object (data set), bytes.
    #[serde(default = "default_max_object")]
    pub max_object_bytes: u64,
    /// Most bytes of data sets in one association.
    #[serde(default = "default_max_association")]
    pub max_association_bytes: u64,
    /// Most objects in one association.
    #[serde(default = "default_max_objects")]
    pub max_objects_per_association: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pdu_bytes: default_max_pdu(),
            max_object_bytes: default_max_object(),
            max_association_bytes: default_max_association(),
            max_objects_per_association: default_max_objects(),
        }
    }
}

/// Where received studies and plans go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Complete, checked received studies, one folder each (default `incoming`). Objects are
    /// received into `<incoming>/.rtopt-staging/` and moved in by one rename.
    #[serde(default)]
    pub incoming: Option<PathBuf>,
    /// Plan folders of the listener (default `plans`).
    #[serde(default)]
    pub plans: Option<PathBuf>,
}

fn default_bind() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    11112
}
fn default_connect_s() -> u64 {
    10
}
fn default_io_s() -> u64 {
    60
}
fn default_max_pdu() -> u32 {
    65536
}
fn default_max_object() -> u64 {
    256 << 20
}
fn default_max_association() -> u64 {
    8 << 30
}
fn default_max_objects() -> usize {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    local: LocalAe,
    #[serde(default)]
    nodes: BTreeMap<String, Node>,
    #[serde(default)]
    listen: ListenSettings,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    storage: Storage,
    tls: Option<TlsSettings>,
}

impl NetConfig {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<NetConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// Parse and check configuration text; `path` names it in errors and anchors relative
    /// paths.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<NetConfig> {
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let f: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        check_ae_title(&f.local.ae_title).map_err(|r| bad(format!("[local] ae_title: {r}")))?;
        for (name, n) in &f.nodes {
            check_ae_title(&n.ae_title)
                .map_err(|r| bad(format!("[nodes.{name}] ae_title: {r}")))?;
            if n.host.trim().is_empty() {
                return Err(bad(format!("[nodes.{name}] host is empty")));
            }
            if n.port == 0 {
                return Err(bad(format!("[nodes.{name}] port 0 is not a port")));
            }
        }
        for a in &f.listen.allowed_callers {
            check_ae_title(a).map_err(|r| bad(format!("[listen] allowed_callers: {r}")))?;
        }
        if let Some(s) = &f.listen.send_to {
            if !f.nodes.contains_key(s) {
                return Err(bad(format!(
                    "[listen] send_to = '{s}' is not a node of [nodes] (present: {})",
                    f.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let l = &f.limits;
        if l.max_pdu_bytes < 4096 {
            return Err(bad(format!(
                "[limits] max_pdu_bytes = {} is below the 4096 bytes rtopt needs",
                l.max_pdu_bytes
            )));
        }
        if l.max_object_bytes == 0
            || l.max_association_bytes == 0
            || l.max_objects_per_association == 0
        {
            return Err(bad("[limits] every limit must be above 0".into()));
        }
        let t = &f.timeouts;
        if t.connect_s == 0 || t.read_s == 0 || t.write_s == 0 {
            return Err(bad("[timeouts] every timeout must be at least 1 s".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut listen = f.listen.clone();
        listen.rules = listen.rules.as_deref().map(anchor);
        listen.machine = listen.machine.as_deref().map(anchor);
        let storage = Storage {
            incoming: Some(anchor(
                f.storage
                    .incoming
                    .as_deref()
                    .unwrap_or(Path::new("incoming")),
            )),
            plans: Some(anchor(
                f.storage.plans.as_deref().unwrap_or(Path::new("plans")),
            )),
        };
        let tls = f.tls.as_ref().map(|t| TlsSettings {
            certificate: anchor(&t.certificate),
            private_key: anchor(&t.private_key),
            trusted: anchor(&t.trusted),
        });
        Ok(NetConfig {
            tls,
            path: path.to_path_buf(),
            local: f.local,
            nodes: f.nodes,
            listen,
            timeouts: f.timeouts,
            limits: f.limits,
            storage,
        })
    }

    /// The node called `name` in `[nodes]`.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.get(name).ok_or_else(|| Error::Config {
            path: self.path.clone(),
            reason: format!(
                "no node '{name}' in [nodes] (present: {})",
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// Folder of complete received studies.
    pub fn incoming_dir(&self) -> PathBuf {
        self.storage.incoming.clone().unwrap_or_default()
    }

    /// Folder of the listener's plans.
    pub fn plans_dir(&self) -> PathBuf {
        self.storage.plans.clone().unwrap_or_default()
    }

    /// Whether `calling_ae` may open an association (exact match after trimming the spaces
    /// DICOM pads AE titles with).
    pub fn caller_allowed(&self, calling_ae: &str) -> bool {
        let c = calling_ae.trim();
        self.listen.allowed_callers.iter().any(|a| a.trim() == c)
    }
}

/// An AE title: 1 to 16 characters of printable ASCII without backslash, not only spaces
/// (PS3.5 6.2, VR AE).
pub fn check_ae_title(ae: &str) -> std::result::Result<(), String> {
    if ae.trim().is_empty() {
        return Err("an AE title cannot be empty".into());
    }
    if ae.len() > 16 {
        return Err(format!("AE title '{ae}' is longer than 16 characters"));
    }
    if ae.chars().any(|c| !(' '..='~').contains(&c) || c == '\\') {
        return Err(format!(
            "AE title '{}' holds a character outside printable ASCII or a backslash",
            ae.escape_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [local]
        ae_title = "RTOPT"
        port = 11112
        [nodes.pacs]
        ae_title = "ORTHANC"
        host = "127.0.0.1"
        port = 4242
        [listen]
        allowed_callers = ["ORTHANC"]
        rules = "rules.toml"
        send_to = "pacs"
        [limits]
        max_object_bytes = 1000000
    "#;

    #[test]
    fn a_configuration_reads_with_paths_from_its_folder() {
        let c = NetConfig::from_toml_str(GOOD, Path::new("/etc/rtopt/net.toml")).unwrap();
        assert_eq!(c.node("pacs").unwrap().label(), "ORTHANC@127.0.0.1:4242");
        assert_eq!(
            c.listen.rules.as_deref(),
            Some(Path::new("/etc/rtopt/rules.toml"))
        );
        assert_eq!(c.incoming_dir(), PathBuf::from("/etc/rtopt/incoming"));
        assert_eq!(c.limits.max_object_bytes, 1_000_000);
        assert_eq!(c.limits.max_pdu_bytes, 65536);
        assert!(c.caller_allowed("ORTHANC "));
        assert!(!c.caller_allowed("INTRUDER"));
    }

    #[test]
    fn bad_configurations_name_the_key() {
        let e = NetConfig::from_toml_str(
            &GOOD.replace("send_to = \"pacs\"", "send_to = \"tps\""),
            Path::new("n.toml"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "n.toml: [listen] send_to = 'tps' is not a node of [nodes] (present: pacs)"
        );
        let e = NetConfig::from_toml_str(
            &GOOD.replace(
                "\"ORTHANC\"\n        host",
                "\"A_VERY_LONG_AE_TITLE\"\n        host",
            ),
            Path::new("n.toml"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "n.toml: [nodes.pacs] ae_title: AE title 'A_VERY_LONG_AE_TITLE' is longer than 16 characters"
        );
        let e =
            NetConfig::from_toml_str(&GOOD.replace("[limits]", "[limitz]"), Path::new("n.toml"))
                .unwrap_err();
        assert!(e.to_string().contains("limitz"), "{e}");
    }
}
