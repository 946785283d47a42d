//! `rtopt pull`, `rtopt push` and `rtopt listen`: arguments and output of the DICOM
//! networking commands; the work is the library's (`rtopt::net`). Output names UIDs, AE
//! titles, counts and file names only.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use rtopt::error::Result;
use rtopt::net::{NetConfig, StudyKey};

/// `rtopt pull`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Networking configuration (TOML, docs/networking.md).
    #[arg(long)]
    config: PathBuf,
    /// The node to pull from (a key of [nodes]).
    #[arg(long)]
    node: String,
    /// StudyInstanceUID of the study.
    #[arg(
        long,
        conflicts_with = "accession",
        required_unless_present = "accession"
    )]
    study_uid: Option<String>,
    /// AccessionNumber of the study.
    #[arg(long)]
    accession: Option<String>,
    /// SeriesInstanceUID of the CT series when the study has several.
    #[arg(long)]
    series: Option<String>,
    /// The case folder to create (must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// `rtopt push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Networking configuration (TOML, docs/networking.md).
    #[arg(long)]
    config: PathBuf,
    /// The node to send to (a key of [nodes]).
    #[arg(long)]
    node: String,
    /// Plan folders (their DICOM files: RTPLAN, RTDOSE, any RTSTRUCT) or DICOM files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// `rtopt listen`.
#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    /// Networking configuration (TOML, docs/networking.md) with [listen] rules and callers.
    #[arg(long)]
    config: PathBuf,
}

pub fn pull(a: &PullArgs) -> Result<String> {
    let config = NetConfig::load(&a.config)?;
    let node = config.node(&a.node)?;
    let study = match (&a.study_uid, &a.accession) {
        (Some(u), _) => StudyKey::StudyUid(u.clone()),
        (None, Some(acc)) => StudyKey::Accession(acc.clone()),
        (None, None) => {
            return Err(rtopt::Error::Invalid(
                "rtopt pull needs --study-uid or --accession".into(),
            ))
        }
    };
    let r = rtopt::net::pull(
        &config,
        node,
        &rtopt::net::PullRequest {
            study,
            out: a.out.clone(),
            ct_series: a.series.clone(),
        },
    )?;
    let ins = &r.inspection;
    Ok(format!(
        "study {}: CT series {} ({} x {} x {} voxels), RTSTRUCT series {} ({} structures); {} objects, {} bytes in {:.2} s -> {}\n",
        r.study_instance_uid,
        r.ct_series_instance_uid,
        ins.dims[0],
        ins.dims[1],
        ins.dims[2],
        r.rtstruct_series_instance_uids.join(", "),
        ins.structures.len(),
        r.objects,
        r.bytes,
        r.transfer_seconds,
        r.out.display()
    ))
}

/// The per-object lines, and an error when any object was not stored.
pub fn push(a: &PushArgs) -> (String, Result<()>) {
    let run = || -> Result<rtopt::net::PushReport> {
        let config = NetConfig::load(&a.config)?;
        let node = config.node(&a.node)?;
        let files = rtopt::net::store::dicom_files(&a.paths)?;
        rtopt::net::push(&config, node, &files)
    };
    match run() {
        Ok(r) => {
            let mut text: String = r.outcomes.iter().map(|o| format!("{o}\n")).collect();
            text.push_str(&format!(
                "{} of {} objects stored at {}, {} bytes in {:.2} s\n",
                r.outcomes.iter().filter(|o| o.ok()).count(),
                r.outcomes.len(),
                r.node,
                r.bytes,
                r.seconds
            ));
            (text, r.check())
        }
        Err(e) => (String::new(), Err(e)),
    }
}

/// Set by SIGTERM and SIGINT: the listener stops taking associations, finishes the plan under
/// way and returns.
static STOP: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Serve until SIGTERM or SIGINT (elsewhere: until the process is killed); events go to
/// stderr with a UTC time stamp.
pub fn listen(a: &ListenArgs) -> Result<()> {
    let config = NetConfig::load(&a.config)?;
    let listener = rtopt::net::Listener::new(&config)?;
    #[cfg(target_os = "linux")]
    // SAFETY: installs a handler that only stores to a static atomic.
    unsafe {
        let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let log = |line: &dyn std::fmt::Display| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let when = chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        eprintln!("{when} {line}");
    };
    listener.run(&STOP, &|e| log(e))?;
    log(&"stopped (SIGTERM or SIGINT): no association open, no plan under way");
    Ok(())
}
