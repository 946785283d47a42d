//! `rtopt plan` end to end on the shipped TG-119 case (project issue 7), run through the
//! binary as a planner would. One pipeline run is expensive (about two minutes on 2 cores),
//! so the runs are made once, in order, in a single test, and every check reuses them:
//!
//! A. TG119 with a known PatientName/PatientID in every file, `RUST_LOG=trace`: outputs exist,
//!    report.json parses, TG-119 goals met (Ezzell et al., Med Phys 36:5359, 2009: PTV D95 >=
//!    50 Gy, D10 <= 55 Gy, Core D10 <= 25 Gy), no patient identity in the output, the report's
//!    DVH agrees with a DVH recomputed from RTDOSE.dcm and the RTSTRUCT (D95, mean within 0.1 %;
//!    an independent fine-sampling DVH is `tests/partial_volume.rs`).
//!    The RT Plan checklist of issue 19 passes on A (reference point in the CT, BeamDose
//!    summing to the prescription per fraction within 1 %, every segment within the machine's
//!    limits, ...), A is dated today (no SOURCE_DATE_EPOCH), dciodvfy finds no error.
//! B. The same command again into A's folder: refused without `--force` (a previous output);
//!    with `--force` and SOURCE_DATE_EPOCH, twice: dated by the epoch, byte-identical RTPLAN
//!    and RTDOSE.
//!    `rtopt dose --plan A/RTPLAN.dcm --reference-dose A/RTDOSE.dcm` (the secondary dose
//!    check) reproduces A's RT Dose: 1 %/1 mm gamma >= 99 %.
//! C. A variant with the Core overdose weight x2: `rtopt compare A C` shows a lower Core D10
//!    for C (the dosimetrist's question: which variant spares the core more at equal coverage).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{SECRET_ID, SECRET_NAME};

fn rtopt(args: &[&std::ffi::OsStr]) -> Output {
    rtopt_at(args, None)
}

/// `rtopt` with `SOURCE_DATE_EPOCH` set to `epoch` (or removed from the environment).
fn rtopt_at(args: &[&std::ffi::OsStr], epoch: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rtopt"));
    c.args(args).env("RUST_LOG", "trace");
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    c.output().expect("run rtopt")
}

/// 2026-12-02T16:46:56Z.
const EPOCH: &str = "1796230016";

/// The DOM of `html` after headless Chromium rendered it (`None`: no Chromium).
fn chromium_dom(html: &Path) -> Option<String> {
    let profile = tempfile::tempdir().ok()?;
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn dicom_str(path: &Path, tag: dicom_core::Tag) -> String {
    let f = rtopt::io::dicom::read::read(path).expect("read");
    rtopt::io::dicom::read::opt_str(&f.obj, tag).unwrap_or_default()
}

fn plan(case: &Path, protocol: &Path, out: &Path) -> Output {
    let o = rtopt(&[
        "plan".as_ref(),
        case.as_os_str(),
        "--protocol".as_ref(),
        protocol.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        o.status.success(),
        "rtopt plan failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json parses")
}

fn goal<'a>(r: &'a serde_json::Value, structure: &str, text: &str) -> &'a serde_json::Value {
    r["goals"]
        .as_array()
        .expect("goals")
        .iter()
        .find(|g| g["structure"] == structure && g["goal"].as_str() == Some(text))
        .unwrap_or_else(|| panic!("goal {structure} {text} missing"))
}

fn structure<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["structures"]
        .as_array()
        .expect("structures")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("structure {name} missing"))
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().expect("number")
}

#[test]
fn plan_tg119_end_to_end() {
    let case = common::copy_tg119_with_identity();
    let protocol = common::repo().join("data/protocols/tg119.toml");
    let work = tempfile::tempdir().expect("tmp");
    let (a, c) = (work.path().join("A"), work.path().join("C"));

    // ---- A ----
    let today_before = rtopt::io::dicom::identity::CreationTime::now().dicom_date();
    let out = plan(case.path(), &protocol, &a);
    let today_after = rtopt::io::dicom::identity::CreationTime::now().dicom_date();
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for secret in [SECRET_NAME, SECRET_ID, "Privacy", "SECRET"] {
            assert!(!text.contains(secret), "{stream} shows '{secret}':\n{text}");
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("D95 >= 50 Gy"),
        "goal table printed: {stdout}"
    );
    for name in ["RTPLAN.dcm", "RTDOSE.dcm", "report.json", "report.html"] {
        assert!(a.join(name).is_file(), "{name} missing");
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(work.path())
        .expect("list")
        .map(|e| e.expect("e").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );

    let ra = report(&a);
    for (s, g) in [
        ("OuterTarget", "D95 >= 50 Gy"),
        ("OuterTarget", "D10 <= 55 Gy"),
        ("Core", "D10 <= 25 Gy"),
    ] {
        let row = goal(&ra, s, g);
        assert_eq!(row["met"], true, "{s} {g}: {row}");
    }
    let ptv = structure(&ra, "OuterTarget");
    // Normalised to D95 = 50 Gy on the deliverable dose (exactly, up to the 0.5 % tolerance).
    assert!((f(&ptv["d95_gy"]) - 50.0).abs() < 0.25, "{ptv}");
    // Hot spots outside the target: 60.8 Gy before the protocol's overdose term above
    // 52.5 Gy (data/protocols/tg119.toml), 56.5 Gy with it when the plan was normalised on
    // the voxel-centre D95 (x1.042); normalised on the supersampled D95 of a planning system
    // (issue 17 item 4: x1.064, the same fluence 2.1 % hotter) 57.5 Gy. 58 Gy (116 %) is the
    // guard.
    let hot = f(&goal(&ra, "BODY", "max dose <= 55 Gy")["achieved"]);
    println!("TG119 max dose outside the PTV {hot:.2} Gy");
    assert!(hot <= 58.0, "hot spot outside the PTV: {hot:.2} Gy");
    let core_d10 = f(&goal(&ra, "Core", "D10 <= 25 Gy")["achieved"]);
    println!("TG119 Core D10 {core_d10:.2} Gy (TG-119 'hard' goal 10 Gy; matRad 23.8 Gy)");
    // The gamma compares the normalised deliverable with the un-normalised optimised dose, so
    // the normalisation factor is part of it: 97.4 % at x1.042 (normalised on the voxel-centre
    // D95), 94.1 % at x1.064 (on the supersampled D95 of a planning system, issue 17 item 4;
    // the segments and their MU before normalisation are unchanged). 93 % is the guard (the
    // acceptance check refuses below TG-218's 90 %).
    assert!(
        f(&ra["delivery"]["gamma"]["pass_rate_percent"]) >= 93.0,
        "deliverable vs optimised gamma: {}",
        ra["delivery"]["gamma"]
    );

    // DVH in the report vs DVH recomputed from RTDOSE.dcm and the RTSTRUCT: the structures
    // supersampled on the RTDOSE grid, dose interpolated in the file's values.
    let rd = rtopt::io::dicom::rtdose::read_rtdose(&a.join("RTDOSE.dcm")).expect("RTDOSE reads");
    assert_eq!(rd.units, "GY");
    let loaded = rtopt::Case::load(case.path(), &Default::default()).expect("case");
    let full: Vec<f64> = rd.dose.iter().map(|&v| v as f64).collect();
    for name in ["OuterTarget", "Core"] {
        let roi = &loaded.structure(name).expect("s").roi;
        let (_, points) =
            rtopt::structures::supersample(roi, &loaded.ct.grid, &rd.grid).expect("points");
        let doses = rtopt::dvh::WeightedDoses::new(&points.doses(&full), &points.weights());
        let s = structure(&ra, name);
        let d95 = doses.dose_at_volume(95.0);
        let mean = doses.mean();
        for (what, ours, theirs) in [
            ("D95", d95, f(&s["d95_gy"])),
            ("mean", mean, f(&s["mean_gy"])),
        ] {
            println!("{name} {what}: RTDOSE {ours:.4} Gy, report {theirs:.4} Gy");
            assert!(
                (ours - theirs).abs() <= 0.001 * theirs,
                "{name} {what}: RTDOSE {ours:.3} Gy vs report {theirs:.3} Gy"
            );
        }
    }

    // ---- A: the RT Plan checklist (issue 19), identity and conformance ----
    use dicom_core::Tag;
    use rtopt::io::dicom::plan_checklist::{check_rtplan, Context};
    let machine =
        rtopt::sequencing::DeliveryMachine::from(&rtopt::machine::MachineModel::default_6x());
    let rtplan = a.join("RTPLAN.dcm");
    let checklist = check_rtplan(
        &rtplan,
        &Context {
            ct_grid: Some(&loaded.ct.grid),
            machine: Some(&machine),
            ct_patient_identity_removed: Some(&loaded.ct.meta.patient_identity_removed),
        },
    )
    .expect("checklist");
    println!("RT Plan checklist:\n{}", checklist.describe());
    assert!(checklist.all_pass(), "{}", checklist.describe());
    assert!(checklist.item("within the machine's limits").is_some());
    assert!(checklist
        .item("beam doses sum to the point's dose")
        .is_some());
    assert_eq!(loaded.ct.meta.patient_identity_removed, "YES");
    // BeamDose against the prescription per fraction (50 Gy in 30), not only the point's
    // own planned dose: the point is chosen near the prescription.
    let imported = rtopt::io::dicom::rtplan::read_rtplan(&rtplan).expect("plan reads");
    let f0 = rtopt::io::dicom::read::read(&rtplan).expect("read");
    let fa = rtopt::io::dicom::read::Attr::new(&rtplan, &f0.obj);
    let groups = fa.items(Tag(0x300A, 0x0070));
    let beam_sum: f64 = rtopt::io::dicom::read::Attr::new(&rtplan, &groups[0])
        .items(Tag(0x300C, 0x0004))
        .iter()
        .map(|r| rtopt::io::dicom::read::opt_f64s(r, Tag(0x300A, 0x0084)).expect("BeamDose")[0])
        .sum();
    let rx_per_fraction = 50.0 / 30.0;
    println!("BeamDose sum {beam_sum:.4} Gy vs prescription {rx_per_fraction:.4} Gy per fraction");
    assert!((beam_sum - rx_per_fraction).abs() <= 0.01 * rx_per_fraction);
    assert_eq!(imported.beams.len(), 9);
    // Without SOURCE_DATE_EPOCH the plan is dated today (UTC), and so is the RT Dose.
    let date = dicom_str(&rtplan, Tag(0x300A, 0x0006));
    assert!(
        date == today_before || date == today_after,
        "RTPlanDate {date}, today {today_after}"
    );
    assert_eq!(dicom_str(&a.join("RTDOSE.dcm"), Tag(0x0008, 0x0012)), date);
    // Distinct series, de-identification carried over, the machine file's name.
    let series: Vec<String> = ["RTPLAN.dcm", "RTDOSE.dcm"]
        .iter()
        .map(|n| dicom_str(&a.join(n), Tag(0x0020, 0x0011)))
        .collect();
    assert_ne!(series[0], series[1]);
    for n in ["RTPLAN.dcm", "RTDOSE.dcm"] {
        assert_eq!(dicom_str(&a.join(n), Tag(0x0012, 0x0062)), "YES", "{n}");
        common::assert_dciodvfy_clean(&a.join(n));
    }
    assert_eq!(imported.beams[0].treatment_machine, machine.name);
    // The delivery-time estimate: at least the beam-on time at 600 MU/min (10 MU/s), and
    // below an hour.
    let (t, mu) = (
        f(&ra["plan"]["delivery_time_s"]),
        f(&ra["plan"]["total_mu_per_fraction"]),
    );
    println!("delivery time estimate {t:.0} s for {mu:.0} MU per fraction");
    assert!(
        t > mu / 10.0 && t < 3600.0,
        "delivery time {t} s for {mu} MU"
    );
    // The report as a browser renders it (headless Chromium, where installed; CI installs
    // it): the plan block, the isodose legend and one beam's-eye view per beam.
    match chromium_dom(&a.join("report.html")) {
        None => eprintln!("chromium not installed: the rendered-report check is skipped"),
        Some(dom) => {
            for id in ["plan-block", "isodose-legend", "goal-table", "structures"] {
                assert!(
                    dom.contains(&format!("id=\"{id}\"")),
                    "rendered report lacks #{id}"
                );
            }
            let bevs = (1..=9)
                .filter(|n| dom.contains(&format!("id=\"bev-{n}\"")))
                .count();
            assert_eq!(bevs, 9, "one beam's-eye view per beam");
            assert!(dom.contains(&machine.name) && dom.contains("D0.03cc"));
        }
    }

    // ---- A: rtopt dose --plan on rtopt's own plan reproduces its RT Dose (issue 19) ----
    let d = work.path().join("D");
    let o = rtopt(&[
        "dose".as_ref(),
        case.path().as_os_str(),
        "--plan".as_ref(),
        rtplan.as_os_str(),
        "--reference-dose".as_ref(),
        a.join("RTDOSE.dcm").as_os_str(),
        "--out".as_ref(),
        d.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!("{}", String::from_utf8_lossy(&o.stdout));
    let check: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("dose-check.json")).expect("json"))
            .expect("dose-check.json parses");
    let g11 = f(&check["comparison"]["gamma_1_1_percent"]);
    assert!(g11 >= 99.0, "1 %/1 mm gamma {g11} % of rtopt's own RT Dose");
    let recalc = rtopt::io::dicom::rtdose::read_rtdose(&d.join("RTDOSE.dcm")).expect("RD");
    assert_eq!(
        recalc.referenced_plan_uid.as_deref(),
        Some(imported.sop_instance_uid.as_str())
    );
    common::assert_dciodvfy_clean(&d.join("RTDOSE.dcm"));

    // ---- B: same inputs and SOURCE_DATE_EPOCH, same bytes; --force needed ----
    let rerun: [&std::ffi::OsStr; 6] = [
        "plan".as_ref(),
        case.path().as_os_str(),
        "--protocol".as_ref(),
        protocol.as_os_str(),
        "--out".as_ref(),
        a.as_os_str(),
    ];
    let again = rtopt(&rerun);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a previous plan needs --force"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = [&rerun[..], &["--force".as_ref(), "--beam-doses".as_ref()]].concat();
    let o = rtopt_at(&forced, Some(EPOCH));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first: Vec<Vec<u8>> = ["RTPLAN.dcm", "RTDOSE.dcm"]
        .iter()
        .map(|n| std::fs::read(a.join(n)).expect("a"))
        .collect();
    assert_eq!(dicom_str(&rtplan, Tag(0x300A, 0x0006)), "20261202");
    assert_eq!(dicom_str(&rtplan, Tag(0x300A, 0x0007)), "164656");
    let o = rtopt_at(&forced, Some(EPOCH));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, x) in ["RTPLAN.dcm", "RTDOSE.dcm"].iter().zip(&first) {
        let y = std::fs::read(a.join(name)).expect("replaced A");
        assert!(
            *x == y,
            "{name} differs between two runs at one SOURCE_DATE_EPOCH"
        );
    }
    // --beam-doses: one RT Dose per beam (BEAM summation) that sum to the plan's RT Dose
    // within the 16-bit quantisation of the ten files.
    let plan_dose = rtopt::io::dicom::rtdose::read_rtdose(&a.join("RTDOSE.dcm")).expect("RD");
    let mut sum = vec![0.0f64; plan_dose.dose.len()];
    let mut quantum = plan_dose.dose_grid_scaling;
    for n in 1..=9 {
        let p = a.join(format!("RTDOSE_beam{n}.dcm"));
        let d = rtopt::io::dicom::rtdose::read_rtdose(&p).expect("beam RD");
        assert_eq!(d.summation_type, "BEAM");
        assert_eq!(d.referenced_plan_uid, plan_dose.referenced_plan_uid);
        quantum += d.dose_grid_scaling;
        for (s, v) in sum.iter_mut().zip(&d.dose) {
            *s += *v as f64;
        }
        common::assert_dciodvfy_clean(&p);
    }
    let worst = sum
        .iter()
        .zip(&plan_dose.dose)
        .map(|(s, d)| (s - *d as f64).abs())
        .fold(0.0, f64::max);
    println!("per-beam doses vs plan dose: worst {worst:.5} Gy (quantum sum {quantum:.5} Gy)");
    assert!(worst <= quantum, "per-beam doses sum off by {worst} Gy");

    // ---- C: Core weight x2, then compare ----
    // (x2, not x4: with the dose-fidelity loop the x4 variant is refused, exit 4, 2026-12-02:
    // the MU normalisation to the contour-sampled PTV D95, x1.026 because the optimiser still
    // constrains D95 on voxel centres, lifts PTV D10 to 55.4 Gy > 55 Gy; issue 17.)
    let text = std::fs::read_to_string(&protocol).expect("protocol");
    let heavier = text.replace(
        "{ type = \"overdose\", dose_gy = 10.0, weight = 300.0 }",
        "{ type = \"overdose\", dose_gy = 10.0, weight = 600.0 }",
    );
    assert_ne!(heavier, text, "the variant must change the Core weight");
    let variant = work.path().join("tg119_core_x2.toml");
    std::fs::write(&variant, heavier).expect("write variant");
    plan(case.path(), &variant, &c);
    let rc = report(&c);
    let core_d10_c = f(&goal(&rc, "Core", "D10 <= 25 Gy")["achieved"]);
    assert!(
        core_d10_c < core_d10,
        "Core weight x2 must lower Core D10: {core_d10_c:.2} vs {core_d10:.2} Gy"
    );
    let html = work.path().join("compare.html");
    let cmp = rtopt(&[
        "compare".as_ref(),
        a.as_os_str(),
        c.as_os_str(),
        "--html".as_ref(),
        html.as_os_str(),
    ]);
    assert!(cmp.status.success());
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(
        text.contains("Core is spared most by C"),
        "compare output:\n{text}"
    );
    assert!(html.is_file());

    // The HTML report renders in a headless browser: the DVH plot and the goal table.
    browser_check(&a.join("report.html"));
}

/// Load report.html in headless Chromium (Debian `chromium`, installed by `.ci/run`) and check
/// the rendered DOM holds the DVH SVG and the goal table; keep a screenshot for the README.
fn browser_check(report: &Path) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("headless Chromium not found: install Debian's `chromium` (bash .ci/run does)")
        });
    let profile = tempfile::tempdir().expect("profile");
    let common_args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let url = format!("file://{}", report.display());
    let dom = Command::new(chromium)
        .args(common_args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("id=\"goal-table\""), "goal table not rendered");
    assert!(
        dom.contains("<svg") && dom.contains("Cumulative DVH"),
        "DVH plot not rendered"
    );
    assert!(dom.contains("id=\"wash-axial\""), "dose wash not rendered");
    let shot = report.with_file_name("report.png");
    let o = Command::new(chromium)
        .args(common_args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=1300,2600")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("screenshot");
    assert!(o.status.success() && shot.is_file(), "screenshot failed");
}

/// `rtopt plan data/tg119 --machine <file>`: the demo's hard goals hold on the exported dose,
/// the plan is normalised to D95 = 50 Gy within a 5 % band, and the deliverable still agrees
/// with the optimised dose (the guard of `plan_tg119_end_to_end`). Returns the report.
fn plan_tg119_on_machine(machine_file: &str) -> serde_json::Value {
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("plan");
    let repo = common::repo();
    let o = rtopt(&[
        "plan".as_ref(),
        repo.join("data/tg119").as_os_str(),
        "--machine".as_ref(),
        repo.join(machine_file).as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        o.status.success(),
        "rtopt plan ({machine_file}) failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report(&out);
    for (s, g) in [
        ("OuterTarget", "D95 >= 50 Gy"),
        ("OuterTarget", "D10 <= 55 Gy"),
        ("Core", "D10 <= 25 Gy"),
    ] {
        let row = goal(&r, s, g);
        assert_eq!(row["met"], true, "{machine_file}: {s} {g}: {row}");
    }
    assert!((f(&structure(&r, "OuterTarget")["d95_gy"]) - 50.0).abs() < 0.25);
    let nf = f(&r["plan"]["normalisation_factor"]);
    assert!((0.95..=1.05).contains(&nf), "normalisation x{nf}");
    let gamma = f(&r["delivery"]["gamma"]["pass_rate_percent"]);
    assert!(gamma >= 93.0, "deliverable vs optimised gamma {gamma} %");
    println!(
        "{machine_file}: engine {}, Core D10 {:.2} Gy, normalisation x{nf:.4}, gamma {gamma:.2} %",
        r["plan"]["dose_engine"],
        f(&goal(&r, "Core", "D10 <= 25 Gy")["achieved"])
    );
    r
}

/// TG-119 through beam model v2 (`data/machines/truebeam_6x_v2.json`: head-scatter source,
/// electron contamination, refit to the TrueBeam 6X golden beam data; issue 18). Measured
/// 2026-12-06 with the 4-term fit and leaf and jaw transmission: Core D10 17.54 Gy (17.17 Gy
/// with the generic machine), normalisation x0.987, 3 %/2 mm deliverable gamma 99.8 % (3-term
/// fit, opaque collimators: 17.25 Gy, x0.987, 99.8 %).
#[test]
fn plan_tg119_with_beam_model_v2() {
    let r = plan_tg119_on_machine("data/machines/truebeam_6x_v2.json");
    assert_eq!(r["plan"]["dose_engine"], "pencil_beam");
}

/// TG-119 through the heterogeneous engine (`truebeam_6x_v2_superposition.json`, issue 18:
/// "TG119 plan through the new engine"): the influence matrix, the correction step, the
/// deliverable dose and the RT Dose all come from the density-scaled superposition, and the
/// report names it. Measured 2026-12-06 with the 4-term fit and leaf and jaw transmission:
/// Core D10 17.33 Gy, normalisation x0.987, deliverable gamma 99.3 % (3-term fit, opaque
/// collimators: 17.05 Gy, x0.988, 99.6 %).
#[test]
fn plan_tg119_with_the_superposition_engine() {
    let r = plan_tg119_on_machine("data/machines/truebeam_6x_v2_superposition.json");
    assert_eq!(r["plan"]["dose_engine"], "superposition");
}
