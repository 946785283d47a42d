//! DICOM networking against a real PACS (issue 21): Debian's Orthanc, started by the test on
//! the loopback with a generated configuration (its own storage folder, fixed AE titles, free
//! ports, HTTP off) and killed when the test ends, whatever the outcome (a guard that kills its
//! process group on drop; `.ci/run` also kills what the pid files under `target/tmp` name).
//!
//! A. `rtopt push` TG119 into Orthanc; `rtopt pull` it back: every CT slice's pixel data byte
//!    for byte, the same case for `rtopt inspect`; `rtopt plan` the pulled case; `rtopt push`
//!    the plan; C-FIND at IMAGE level finds exactly the study's CT, RTSTRUCT, RTPLAN and
//!    RTDOSE SOP instance UIDs.
//! B. `rtopt listen` with an allow-list and a rule file: a sender not on the allow-list is
//!    rejected; an association dropped mid-transfer leaves no case and no plan; a C-MOVE of
//!    TG119 (with a known patient name and ID) from Orthanc to the listener's AE is received,
//!    planned with the rule's protocol and sent back, and Orthanc then holds the listener's
//!    RTPLAN and RTDOSE (same SOP instance UIDs); the listener's log names neither the patient
//!    name nor the ID; `rtopt pull --accession` fetches the same study by its accession
//!    number; SIGTERM stops the listener in order (exit 0).
//! C. A test that panics while its Orthanc runs leaves no Orthanc process and no open port.
//! D. (No Orthanc needed: an in-process listener.) An object above `max_object_bytes` aborts
//!    the association and leaves nothing; a third object with `max_objects_per_association =
//!    2` is refused with status A700, reported per object, and the study is not kept; a
//!    sender stalling mid-object is dropped after `read_s` with what it had sent; a listener
//!    without an allow-list does not start.
//! E. (Feature `tls`.) The same through the DICOM TLS profile, certificates made by `openssl`
//!    and required both ways: push, pull (pixel data byte for byte), a C-MOVE of the CT series
//!    from Orthanc to a TLS listener; a plain association to Orthanc's TLS port fails.
//!
//! Without `Orthanc` on the PATH the tests say so and pass; with `RTOPT_TEST_ORTHANC=1`
//! (`.ci/run` sets it after installing Orthanc) they fail instead.

mod common;

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use rtopt::net::dimse::{self, command};
use rtopt::net::find::find_instances;
use rtopt::net::store::read_part10_meta;
use rtopt::net::NetConfig;

const ORTHANC_AE: &str = "ORTHANC";
const RTOPT_AE: &str = "RTOPT";
const LISTENER_AE: &str = "RTOPTLISTEN";

/// AccessionNumber given to the listener test's copy of TG119.
const ACCESSION: &str = "ACC-TG119-21";

/// SeriesInstanceUID of data/tg119's CT.
const TG119_CT_SERIES: &str = "2.25.20423824958025023944826868223864373349710663940189032395888";

/// StudyInstanceUID of data/tg119.
const TG119_STUDY: &str = "2.25.98384215349240921989320549991266716103653971269191017892415";

/// The `Orthanc` executable, or `None` (then the test is skipped, unless
/// `RTOPT_TEST_ORTHANC=1` asks for a failure).
fn orthanc_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|d| d.join("Orthanc"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("RTOPT_TEST_ORTHANC").as_deref() != Ok("1"),
            "RTOPT_TEST_ORTHANC=1 but no Orthanc executable on the PATH (apt-get install orthanc)"
        );
        eprintln!("skipped: Orthanc is not installed (apt-get install orthanc; .ci/run does)");
    }
    found
}

/// A free TCP port on the loopback (bound and released: a small race, fine for a test).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process killed with its whole process group when dropped; its pid is written to
/// `target/tmp/rtopt-pacs-<pid>.pid` so that `.ci/run` can kill it should the test process
/// itself die, and removed once the child is reaped.
struct Guard {
    child: Child,
    pid_file: PathBuf,
}

impl Guard {
    fn spawn(mut cmd: Command) -> Guard {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().expect("spawn child process");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("target/tmp");
        let pid_file = dir.join(format!("rtopt-pacs-{}.pid", child.id()));
        std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
        Guard { child, pid_file }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group this guard created; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// An Orthanc on the loopback with its own storage, AE title ORTHANC, and the given
/// modalities (name -> AE title, port) as the only peers it serves.
struct Orthanc {
    _guard: Guard,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Orthanc {
    fn start(binary: &Path, modalities: &[(&str, &str, u16)]) -> Orthanc {
        Orthanc::start_with_tls(binary, modalities, None)
    }

    /// With `tls` (a folder of [`Certificates`]): DICOM TLS on Orthanc's port and to every
    /// modality, peers' certificates required.
    fn start_with_tls(
        binary: &Path,
        modalities: &[(&str, &str, u16)],
        tls: Option<&Path>,
    ) -> Orthanc {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let storage = dir.path().join("storage");
        let mods: serde_json::Map<String, serde_json::Value> = modalities
            .iter()
            .map(|(name, ae, p)| {
                let m = serde_json::json!({
                    "AET": ae, "Host": "127.0.0.1", "Port": p, "UseDicomTls": tls.is_some()
                });
                (name.to_string(), m)
            })
            .collect();
        let mut config = serde_json::json!({
            "Name": "rtopt-test",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "DicomAet": ORTHANC_AE,
            "DicomPort": port,
            "HttpServerEnabled": false,
            "HttpPort": free_port(),
            "RemoteAccessAllowed": false,
            "DicomCheckCalledAet": true,
            "DicomCheckModalityHost": true,
            "DicomAlwaysAllowEcho": false,
            "DicomAlwaysAllowStore": false,
            "DicomAlwaysAllowFind": false,
            "DicomAlwaysAllowGet": false,
            "DicomAlwaysAllowMove": false,
            "DicomModalities": mods,
            "SyncStorageArea": false,
            "Plugins": [],
        });
        if let Some(t) = tls {
            let o = config.as_object_mut().unwrap();
            o.insert("DicomTlsEnabled".into(), true.into());
            for (k, f) in [
                ("DicomTlsCertificate", "orthanc.crt"),
                ("DicomTlsPrivateKey", "orthanc.key"),
                ("DicomTlsTrustedCertificates", "ca.crt"),
            ] {
                o.insert(k.into(), t.join(f).to_str().unwrap().into());
            }
            o.insert("DicomTlsRemoteCertificateRequired".into(), true.into());
        }
        let cfg = dir.path().join("orthanc.json");
        std::fs::write(&cfg, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg(&cfg)
            .current_dir(dir.path())
            // DCMTK (inside Orthanc) sets TCP_NODELAY when asked: without it every object
            // waits ~40 ms on Nagle's algorithm (docs/benchmarks.md).
            .env("TCP_NODELAY", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        let guard = Guard::spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Orthanc did not open port {port} within 30 s; its log: {}",
                std::fs::read_to_string(dir.path().join("orthanc.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Orthanc {
            _guard: guard,
            port,
            _dir: dir,
        }
    }
}

/// rtopt's networking configuration in `dir` (returned path), with `extra` TOML appended.
fn write_config(dir: &Path, ae: &str, orthanc_port: u16, extra: &str) -> PathBuf {
    let p = dir.join(format!("net-{ae}.toml"));
    let text = format!(
        "[local]\nae_title = \"{ae}\"\n\n[nodes.pacs]\nae_title = \"{ORTHANC_AE}\"\nhost = \"127.0.0.1\"\nport = {orthanc_port}\n\n[timeouts]\nread_s = 20\n\n{extra}"
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn rtopt(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtopt"))
        .args(args)
        .output()
        .expect("run rtopt")
}

/// `rtopt <cmd> --config <cfg> --node pacs <rest>`.
fn net(cmd: &str, cfg: &Path, rest: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut args = vec![
        os(cmd),
        os("--config"),
        cfg.as_os_str(),
        os("--node"),
        os("pacs"),
    ];
    args.extend_from_slice(rest);
    rtopt(&args)
}

/// `rtopt pull --config <cfg> --node pacs <key flag> <key> --out <out>`.
fn pull(cfg: &Path, key: (&str, &str), out: &Path) -> std::process::Output {
    net(
        "pull",
        cfg,
        &[os(key.0), os(key.1), os("--out"), out.as_os_str()],
    )
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pixel_bytes(p: &Path) -> Vec<u8> {
    dicom_object::open_file(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .element(tags::PIXEL_DATA)
        .expect("PixelData")
        .to_bytes()
        .expect("bytes")
        .into_owned()
}

/// SOP instance UIDs of the DICOM files of a folder.
fn instance_uids(dir: &Path) -> Vec<String> {
    let files = rtopt::net::store::dicom_files(&[dir.to_path_buf()]).unwrap();
    let mut v: Vec<String> = files
        .iter()
        .map(|f| read_part10_meta(f).unwrap().sop_instance_uid)
        .collect();
    v.sort();
    v
}

#[test]
fn push_pull_plan_push_round_trip_through_orthanc() {
    let Some(bin) = orthanc_binary() else { return };
    let work = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(&bin, &[("rtopt", RTOPT_AE, free_port())]);
    let cfg = write_config(work.path(), RTOPT_AE, orthanc.port, "");
    let tg119 = common::tg119_dir();

    // Store TG119 into Orthanc.
    let out = net("push", &cfg, &[tg119.as_os_str()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("130 of 130 objects stored at ORTHANC@127.0.0.1:"),
        "{t}"
    );
    assert_eq!(t.matches(": status 0000 (stored)").count(), 130, "{t}");

    // Pull it back.
    let case = work.path().join("pulled");
    let out = pull(&cfg, ("--study-uid", TG119_STUDY), &case);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.starts_with(&format!(
            "study {TG119_STUDY}: CT series {TG119_CT_SERIES} (167 x 167 x 129 voxels), RTSTRUCT series 2.25.37679535113484069330486753045922912321946865435220435838880 (3 structures); 130 objects"
        )),
        "{t}"
    );
    // Byte-identical pixel data, slice by slice, matched by SOP instance UID.
    let originals = common::ct_files(&tg119);
    assert_eq!(originals.len(), 129);
    for f in &originals {
        let uid = read_part10_meta(f).unwrap().sop_instance_uid;
        let pulled = case.join(format!("CT.{uid}.dcm"));
        assert_eq!(
            pixel_bytes(f),
            pixel_bytes(&pulled),
            "pixel data of {uid} differs"
        );
    }
    assert_eq!(instance_uids(&case), instance_uids(&tg119));
    // The same case for `rtopt inspect`.
    let inspect = |d: &Path| {
        let o = rtopt(&[os("inspect"), d.as_os_str(), os("--json")]);
        assert!(o.status.success(), "{}", text(&o));
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_object_mut().unwrap().remove("set_aside");
        v
    };
    assert_eq!(inspect(&case), inspect(&tg119));
    // Pulling into an existing folder is refused before any transfer.
    let again = pull(&cfg, ("--study-uid", TG119_STUDY), &case);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("exists already"), "{}", text(&again));
    // An unknown study is an error naming the key.
    let none = pull(
        &cfg,
        ("--accession", "NO-SUCH-ACC"),
        &work.path().join("none"),
    );
    assert_eq!(none.status.code(), Some(5), "{}", text(&none));
    assert!(
        text(&none).contains("no study with accession number NO-SUCH-ACC"),
        "{}",
        text(&none)
    );
    assert!(!work.path().join("none").exists());

    // Plan the pulled case, push the plan.
    let plan = work.path().join("plan");
    let out = rtopt(&[
        os("plan"),
        case.as_os_str(),
        os("--protocol"),
        tg119.join("protocol.toml").as_os_str(),
        os("--out"),
        plan.as_os_str(),
        os("--quiet"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = net("push", &cfg, &[plan.as_os_str()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let plan_uids = instance_uids(&plan);
    assert_eq!(plan_uids.len(), 2, "RTPLAN and RTDOSE: {plan_uids:?}");
    for uid in &plan_uids {
        assert!(t.contains(&format!("{uid}: status 0000 (stored)")), "{t}");
    }

    // C-FIND: the study now holds exactly TG119's instances and the plan's.
    let config = NetConfig::load(&cfg).unwrap();
    let found: Vec<String> =
        find_instances(&config, config.node("pacs").unwrap(), TG119_STUDY, None)
            .unwrap()
            .into_iter()
            .map(|i| i.sop_instance_uid)
            .collect();
    let mut expected = instance_uids(&tg119);
    expected.extend(plan_uids);
    expected.sort();
    assert_eq!(found, expected);
}

/// Lines of the listener's log as they come, shared with the test thread.
struct LogTail {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl LogTail {
    fn follow(stderr: std::process::ChildStderr) -> LogTail {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        LogTail { lines }
    }

    fn all(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Wait for a line containing `needle`; panics with the log after `timeout`, or at once
    /// when the listener reports a failure.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            let failed = self.lines.lock().unwrap().iter().any(|l| {
                l.contains("planning failed") || l.contains("sending to") || l.contains("not sent")
            });
            assert!(!failed, "the listener failed:\n{}", self.all());
            assert!(
                Instant::now() < deadline,
                "no '{needle}' in the listener's log within {timeout:?}:\n{}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A C-STORE request command for a file.
fn store_rq(meta: &rtopt::net::store::Part10, message_id: u16) -> dicom_object::InMemDicomObject {
    dimse::command_set(vec![
        dimse::ui(tags::AFFECTED_SOP_CLASS_UID, &meta.sop_class_uid),
        dimse::us(tags::COMMAND_FIELD, command::C_STORE_RQ),
        dimse::us(tags::MESSAGE_ID, message_id),
        dimse::us(tags::PRIORITY, 0),
        dimse::data_set_type(true),
        dimse::ui(tags::AFFECTED_SOP_INSTANCE_UID, &meta.sop_instance_uid),
    ])
}

/// Entries of a folder (none when it does not exist), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn listener_refuses_strangers_drops_broken_transfers_and_plans_a_moved_study() {
    let Some(bin) = orthanc_binary() else { return };
    let work = tempfile::tempdir().unwrap();
    let listen_port = free_port();
    let orthanc = Orthanc::start(
        &bin,
        &[
            ("rtopt", RTOPT_AE, free_port()),
            ("listener", LISTENER_AE, listen_port),
        ],
    );
    // The study carries a patient name and ID that must not reach the listener's log.
    let study = common::copy_tg119_with_identity();
    // And an accession number, to pull by it at the end.
    for e in std::fs::read_dir(study.path()).unwrap() {
        let p = e.unwrap().path();
        let mut f = rtopt::io::dicom::read::read(&p).unwrap();
        f.obj.put(dicom_core::DataElement::new(
            tags::ACCESSION_NUMBER,
            dicom_core::VR::SH,
            dicom_core::PrimitiveValue::from(ACCESSION),
        ));
        f.obj.write_to_file(&p).unwrap();
    }
    let scu_cfg = write_config(work.path(), RTOPT_AE, orthanc.port, "");
    let scu = NetConfig::load(&scu_cfg).unwrap();
    let pacs = scu.node("pacs").unwrap().clone();
    let files = rtopt::net::store::dicom_files(&[study.path().to_path_buf()]).unwrap();
    let stored = rtopt::net::push(&scu, &pacs, &files).unwrap();
    assert!(stored.all_ok(), "{:?}", stored.outcomes);

    // The listener: allow-list ORTHANC only, rules choose the C-shape protocol by ROI name
    // and study description (the first rule does not match TG119).
    let protocol = common::tg119_dir().join("protocol.toml");
    std::fs::write(
        work.path().join("rules.toml"),
        format!(
            "[[rule]]\nname = \"prostate\"\nroi = \"PTV_Prostate*\"\nprotocol = {p:?}\n\n\
             [[rule]]\nname = \"c-shape\"\nroi = \"outertarget\"\nstudy_description = \"*TG119*\"\nprotocol = {p:?}\n",
            p = protocol.to_str().unwrap()
        ),
    )
    .unwrap();
    let listen_cfg = write_config(
        work.path(),
        LISTENER_AE,
        orthanc.port,
        &format!(
            "[listen]\nallowed_callers = [\"{ORTHANC_AE}\"]\nrules = \"rules.toml\"\nsend_to = \"pacs\"\n\n[storage]\nincoming = \"incoming\"\nplans = \"plans\"\n"
        ),
    );
    // Its port.
    let mut text_cfg = std::fs::read_to_string(&listen_cfg).unwrap();
    text_cfg = text_cfg.replacen(
        &format!("ae_title = \"{LISTENER_AE}\"\n"),
        &format!("ae_title = \"{LISTENER_AE}\"\nport = {listen_port}\n"),
        1,
    );
    std::fs::write(&listen_cfg, text_cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtopt"));
    cmd.args([os("listen"), os("--config"), listen_cfg.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut guard = Guard::spawn(cmd);
    let log = LogTail::follow(guard.child.stderr.take().unwrap());
    log.wait_for(
        &format!("listening as {LISTENER_AE} on 127.0.0.1:{listen_port}"),
        Duration::from_secs(30),
    );
    let incoming = work.path().join("incoming");
    let plans = work.path().join("plans");

    // 1. A sender not on the allow-list is rejected.
    let intruder_cfg = write_config(work.path(), "INTRUDER", listen_port, "");
    let intruder = NetConfig::load(&intruder_cfg).unwrap();
    let listener_node = rtopt::net::Node {
        ae_title: LISTENER_AE.into(),
        host: "127.0.0.1".into(),
        port: listen_port,
    };
    let proposal = rtopt::net::association::Proposal::new(
        &[dimse::CT_IMAGE_STORAGE],
        &[dimse::EXPLICIT_VR_LE],
    );
    let err = rtopt::net::association::open(&intruder, &listener_node, &proposal)
        .expect_err("INTRUDER must be rejected");
    assert_eq!(
        err.to_string(),
        format!(
            "DICOM node {LISTENER_AE}@127.0.0.1:{listen_port}: association rejected: calling AE title not recognized (Permanent)"
        )
    );
    log.wait_for("association refused", Duration::from_secs(10));
    // Called by a wrong AE title: rejected too, even from an allowed caller.
    let as_orthanc_cfg = write_config(work.path(), ORTHANC_AE, listen_port, "");
    let as_orthanc = NetConfig::load(&as_orthanc_cfg).unwrap();
    let wrong_called = rtopt::net::Node {
        ae_title: "SOMEONEELSE".into(),
        ..listener_node.clone()
    };
    let err = rtopt::net::association::open(&as_orthanc, &wrong_called, &proposal)
        .expect_err("a wrong called AE title must be rejected");
    assert!(
        err.to_string()
            .ends_with("association rejected: called AE title not recognized (Permanent)"),
        "{err}"
    );

    // 2. An association dropped mid-transfer: three whole CT objects, half of a fourth, then
    //    the connection closes. Nothing may stay behind.
    {
        let mut assoc =
            rtopt::net::association::open(&as_orthanc, &listener_node, &proposal).unwrap();
        let (ctx, ts) = dimse::find_context(&assoc, dimse::CT_IMAGE_STORAGE, None).unwrap();
        assert_eq!(ts, dimse::EXPLICIT_VR_LE);
        let cts = common::ct_files(study.path());
        for (i, f) in cts.iter().take(4).enumerate() {
            let meta = read_part10_meta(f).unwrap();
            let bytes = std::fs::read(f).unwrap();
            let data = &bytes[meta.data_offset as usize..];
            let rq = store_rq(&meta, i as u16 + 1);
            if i < 3 {
                dimse::send(&mut assoc, ctx, &rq, Some(data)).unwrap();
                match dimse::receive(&mut assoc, 1 << 20).unwrap() {
                    dimse::Incoming::Message(m) => assert_eq!(m.status().unwrap(), 0),
                    other => panic!("{other:?}"),
                }
            } else {
                dimse::send(&mut assoc, ctx, &rq, None).unwrap();
                let mut w = assoc.send_pdata(ctx);
                w.write_all(&data[..data.len() / 2]).unwrap();
                w.abandon();
            }
        }
        assoc
            .inner_stream()
            .shutdown(std::net::Shutdown::Both)
            .unwrap();
    }
    log.wait_for(
        &format!("association from {ORTHANC_AE} broken off after 3 objects"),
        Duration::from_secs(30),
    );
    assert_eq!(entries(&incoming), Vec::<String>::new(), "no partial case");
    assert_eq!(entries(&plans), Vec::<String>::new(), "no plan");

    // 3. Orthanc C-MOVEs the study to the listener, which plans it and sends the plan back.
    let moved = rtopt::net::retrieve::c_move(&scu, &pacs, TG119_STUDY, None, LISTENER_AE).unwrap();
    assert_eq!((moved.completed, moved.failed), (130, 0));
    let received = log.wait_for(
        &format!("study {TG119_STUDY} received"),
        Duration::from_secs(60),
    );
    assert!(
        received.contains(&format!("from {ORTHANC_AE}: 130 objects")),
        "{received}"
    );
    log.wait_for(
        &format!("study {TG119_STUDY}: rule 'c-shape'"),
        Duration::from_secs(10),
    );
    let planned = log.wait_for(
        &format!("study {TG119_STUDY}: planned"),
        Duration::from_secs(600),
    );
    assert!(planned.contains("(hard goals met)"), "{}", log.all());
    let sent = log.wait_for(
        &format!("study {TG119_STUDY}: 2 of 2 plan objects stored at {ORTHANC_AE}@127.0.0.1:"),
        Duration::from_secs(60),
    );
    assert!(!sent.is_empty());
    assert_eq!(entries(&incoming), vec![TG119_STUDY.to_string()]);
    assert_eq!(entries(&incoming.join(TG119_STUDY)).len(), 130);
    let plan_dir = plans.join(TG119_STUDY);
    let plan_uids = instance_uids(&plan_dir);
    assert_eq!(plan_uids.len(), 2);
    let found: Vec<String> = find_instances(&scu, &pacs, TG119_STUDY, None)
        .unwrap()
        .into_iter()
        .map(|i| i.sop_instance_uid)
        .collect();
    for uid in &plan_uids {
        assert!(found.contains(uid), "{uid} not at Orthanc: {found:?}");
    }
    assert_eq!(found.len(), 132);

    // 4. `rtopt pull` by accession number: the same study (the plan's series are left
    //    behind), and no patient name or ID in its output either.
    let by_acc = work.path().join("by-accession");
    let out = pull(&scu_cfg, ("--accession", ACCESSION), &by_acc);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.starts_with(&format!("study {TG119_STUDY}: CT series ")),
        "{t}"
    );
    assert_eq!(entries(&by_acc).len(), 130);
    for secret in [common::SECRET_NAME, common::SECRET_ID, "Privacy"] {
        assert!(
            !t.contains(secret),
            "'{secret}' in rtopt pull's output:\n{t}"
        );
    }

    // Privacy: the log never names the patient.
    let all = log.all();
    for secret in [common::SECRET_NAME, common::SECRET_ID, "Privacy"] {
        assert!(
            !all.contains(secret),
            "'{secret}' in the listener's log:\n{all}"
        );
    }
    // SIGTERM: the listener stops in order (nothing under way) and exits 0.
    // SAFETY: kill(2) on the listener this test started.
    unsafe {
        libc::kill(guard.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = guard.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the listener ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    log.wait_for("stopped (SIGTERM or SIGINT)", Duration::from_secs(5));
    drop(guard);
}

#[test]
fn orthanc_is_stopped_when_a_test_fails() {
    let Some(bin) = orthanc_binary() else { return };
    let seen = std::sync::Mutex::new((0u32, 0u16));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let orthanc = Orthanc::start(&bin, &[]);
        *seen.lock().unwrap() = (orthanc._guard.child.id(), orthanc.port);
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    let (pid, port) = *seen.lock().unwrap();
    assert!(pid > 0);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "Orthanc (pid {pid}) still runs after the test failed"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rtopt-pacs-{pid}.pid"))
        .exists());
}

/// Run an in-process listener (no Orthanc needed) on a free loopback port that accepts the
/// callers SENDER and ORTHANC, with `extra` TOML (`[limits]`, `[timeouts]`), while `f` runs with the
/// listener's node, the events so far and the incoming folder.
fn with_listener(
    extra: &str,
    f: impl FnOnce(&rtopt::net::Node, &dyn Fn() -> Vec<rtopt::net::ListenEvent>, &Path),
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("rules.toml"),
        format!(
            "[[rule]]\nname = \"any\"\nprotocol = {:?}\n",
            common::tg119_dir().join("protocol.toml").to_str().unwrap()
        ),
    )
    .unwrap();
    let cfg_path = work.path().join("listen.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[local]\nae_title = \"{LISTENER_AE}\"\nport = 0\n\n[listen]\nallowed_callers = [\"SENDER\", \"{ORTHANC_AE}\"]\nrules = \"rules.toml\"\n\n{extra}\n"
        ),
    )
    .unwrap();
    let config = NetConfig::load(&cfg_path).unwrap();
    let listener = rtopt::net::Listener::new(&config).unwrap();
    let node = rtopt::net::Node {
        ae_title: LISTENER_AE.into(),
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
    };
    let events = std::sync::Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let l = &listener;
        let (stop_r, events_r) = (&stop, &events);
        s.spawn(move || {
            l.run(stop_r, &|e| events_r.lock().unwrap().push(e.clone()))
                .unwrap()
        });
        let snapshot = || events.lock().unwrap().clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&node, &snapshot, &config.incoming_dir())
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });
}

/// The first event for which `pick` says something, waited for up to 10 s.
fn wait_event<T>(
    events: &dyn Fn() -> Vec<rtopt::net::ListenEvent>,
    pick: impl Fn(&rtopt::net::ListenEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = events().iter().find_map(&pick) {
            return t;
        }
        assert!(Instant::now() < deadline, "no such event: {:?}", events());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn listener_bounds_object_size_and_objects_per_association() {
    use rtopt::net::ListenEvent;
    let dir = tempfile::tempdir().unwrap();
    let sender_cfg = dir.path().join("sender.toml");
    std::fs::write(&sender_cfg, "[local]\nae_title = \"SENDER\"\n").unwrap();
    let sender = NetConfig::load(&sender_cfg).unwrap();
    let cts = common::ct_files(&common::tg119_dir());

    // An object above max_object_bytes: the association is aborted, nothing is kept.
    with_listener(
        "[limits]\nmax_object_bytes = 40000",
        |node, events, incoming| {
            let err = rtopt::net::push(&sender, node, &cts[..1]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "DICOM node {}: the node ended the association during object 1 of 1",
                    node.label()
                )
            );
            let (objects, reason) = wait_event(events, |e| match e {
                ListenEvent::Dropped {
                    calling_ae,
                    objects,
                    reason,
                } if calling_ae == "SENDER" => Some((*objects, reason.clone())),
                _ => None,
            });
            assert_eq!(objects, 0);
            assert_eq!(reason, "an object above the limit of 40000 bytes");
            assert_eq!(entries(incoming), Vec::<String>::new());
        },
    );

    // More objects than max_objects_per_association: the third is refused with status A700
    // (reported per object), and the released association is no complete case.
    with_listener(
        "[limits]\nmax_objects_per_association = 2",
        |node, events, incoming| {
            let report = rtopt::net::push(&sender, node, &cts[..3]).unwrap();
            let statuses: Vec<Option<u16>> = report.outcomes.iter().map(|o| o.status).collect();
            assert_eq!(statuses, vec![Some(0x0000), Some(0x0000), Some(0xA700)]);
            let err = report.check().unwrap_err().to_string();
            assert!(
                err.contains("1 of 3 objects not stored: CT.TG119.0003.dcm")
                    && err.ends_with("status A700 (refused: out of resources)"),
                "{err}"
            );
            let (objects, reason) = wait_event(events, |e| match e {
                ListenEvent::Incomplete {
                    objects, reason, ..
                } => Some((*objects, reason.clone())),
                _ => None,
            });
            assert_eq!(objects, 2);
            assert_eq!(
                reason,
                "1 objects refused: more than 2 objects in one association"
            );
            assert_eq!(entries(incoming), Vec::<String>::new());
        },
    );

    // A sender that stalls mid-object (the connection stays open) is dropped after
    // [timeouts] read_s, with the object it had completed.
    with_listener("[timeouts]\nread_s = 1", |node, events, incoming| {
        let proposal = rtopt::net::association::Proposal::new(
            &[dimse::CT_IMAGE_STORAGE],
            &[dimse::EXPLICIT_VR_LE],
        );
        let mut assoc = rtopt::net::association::open(&sender, node, &proposal).unwrap();
        let (ctx, _) = dimse::find_context(&assoc, dimse::CT_IMAGE_STORAGE, None).unwrap();
        for (i, f) in cts.iter().take(2).enumerate() {
            let meta = read_part10_meta(f).unwrap();
            let bytes = std::fs::read(f).unwrap();
            let data = &bytes[meta.data_offset as usize..];
            let rq = store_rq(&meta, i as u16 + 1);
            if i == 0 {
                dimse::send(&mut assoc, ctx, &rq, Some(data)).unwrap();
                assert!(matches!(
                    dimse::receive(&mut assoc, 1 << 20).unwrap(),
                    dimse::Incoming::Message(_)
                ));
            } else {
                dimse::send(&mut assoc, ctx, &rq, None).unwrap();
                let mut w = assoc.send_pdata(ctx);
                w.write_all(&data[..data.len() / 2]).unwrap();
                w.abandon();
            }
        }
        let started = Instant::now();
        let objects = wait_event(events, |e| match e {
            ListenEvent::Dropped { objects, .. } => Some(*objects),
            _ => None,
        });
        assert_eq!(objects, 1);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(entries(incoming), Vec::<String>::new());
        drop(assoc);
    });

    // A listener without an allow-list is a configuration error, not an open door.
    let cfg = dir.path().join("open.toml");
    std::fs::write(
        &cfg,
        "[local]\nae_title = \"RTOPT\"\n[listen]\nrules = \"rules.toml\"\n",
    )
    .unwrap();
    let err = rtopt::net::Listener::new(&NetConfig::load(&cfg).unwrap())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: [listen] allowed_callers is empty: the listener would refuse every sender",
            cfg.display()
        )
    );
}

/// A test CA and certificates for Orthanc and rtopt signed by it (`openssl` command line):
/// `ca.crt`, `orthanc.{crt,key}`, `rtopt.{crt,key}`, valid for 127.0.0.1.
#[cfg(feature = "tls")]
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=rtopt test CA",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    for n in ["orthanc", "rtopt"] {
        let (key, csr, crt) = (format!("{n}.key"), format!("{n}.csr"), format!("{n}.crt"));
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={n}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
    }
}

#[cfg(feature = "tls")]
#[test]
fn tls_push_pull_and_move_to_the_listener_through_orthanc() {
    use rtopt::net::ListenEvent;
    let Some(bin) = orthanc_binary() else { return };
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let tls = format!(
        "[tls]\ncertificate = {:?}\nprivate_key = {:?}\ntrusted = {:?}\n",
        certs.path().join("rtopt.crt").to_str().unwrap(),
        certs.path().join("rtopt.key").to_str().unwrap(),
        certs.path().join("ca.crt").to_str().unwrap()
    );
    with_listener(&tls, |listener, events, incoming| {
        let orthanc = Orthanc::start_with_tls(
            &bin,
            &[
                ("rtopt", RTOPT_AE, free_port()),
                ("listener", LISTENER_AE, listener.port),
            ],
            Some(certs.path()),
        );
        let work = tempfile::tempdir().unwrap();
        let cfg = write_config(work.path(), RTOPT_AE, orthanc.port, &tls);
        let scu = NetConfig::load(&cfg).unwrap();
        let pacs = scu.node("pacs").unwrap().clone();
        let tg119 = common::tg119_dir();

        // Push over TLS; a plain association to the TLS port fails.
        let out = net("push", &cfg, &[tg119.as_os_str()]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("130 of 130 objects stored"),
            "{}",
            text(&out)
        );
        let plain_cfg = write_config(work.path(), "PLAIN", orthanc.port, "");
        let plain = NetConfig::load(&plain_cfg).unwrap();
        let err = rtopt::net::find::find_studies(
            &plain,
            plain.node("pacs").unwrap(),
            &rtopt::net::StudyKey::StudyUid(TG119_STUDY.into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!(
                "DICOM node {}: cannot open an association",
                pacs.label()
            )),
            "{err}"
        );

        // Pull over TLS: pixel data byte for byte.
        let case = work.path().join("pulled");
        let out = pull(&cfg, ("--study-uid", TG119_STUDY), &case);
        assert!(out.status.success(), "{}", text(&out));
        for f in common::ct_files(&tg119) {
            let uid = read_part10_meta(&f).unwrap().sop_instance_uid;
            assert_eq!(
                pixel_bytes(&f),
                pixel_bytes(&case.join(format!("CT.{uid}.dcm")))
            );
        }

        // Orthanc C-MOVEs the CT series to the listener over TLS: received whole, not kept
        // as a case (no RT Structure Set).
        let moved = rtopt::net::retrieve::c_move(
            &scu,
            &pacs,
            TG119_STUDY,
            Some(TG119_CT_SERIES),
            LISTENER_AE,
        )
        .unwrap();
        assert_eq!((moved.completed, moved.failed), (129, 0));
        let (calling, objects, reason) = wait_event(events, |e| match e {
            ListenEvent::Incomplete {
                calling_ae,
                objects,
                reason,
            } => Some((calling_ae.clone(), *objects, reason.clone())),
            _ => None,
        });
        assert_eq!((calling.as_str(), objects), (ORTHANC_AE, 129));
        assert_eq!(
            reason,
            format!("study {TG119_STUDY} has no RT Structure Set")
        );
        assert_eq!(entries(incoming), Vec::<String>::new());
    });
}
