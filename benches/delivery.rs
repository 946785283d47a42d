//! Sequencing and export time for a TG119-sized plan: 9 beams of 322 active beamlets
//! (2,898 in all, 5 mm), 10 levels, Bortfeld sweep; RT Plan and RT Dose encoding
//! (100 x 100 x 80 dose grid, 0.8 M voxels); gamma 3 %/2 mm on a 60^3 grid.
//! Run: `cargo bench --bench delivery`.

use criterion::{criterion_group, criterion_main, Criterion};
use rtopt::beams::{Beam, BeamletGrid};
use rtopt::ct::CtMeta;
use rtopt::gamma::{gamma_3d, GammaOptions};
use rtopt::geometry::Grid3;
use rtopt::io::dicom::rtdose::{rtdose_bytes, DoseExport};
use rtopt::io::dicom::rtplan::{rtplan_bytes, PlanExport, TargetPrescription};
use rtopt::machine::{default_leaf_boundaries_mm, Jaws, Mlc};
use rtopt::sequencing::{deliverable_weights, sequence_plan, DeliveryMachine, SequencingOptions};

fn setup() -> (Vec<Beam>, Vec<f64>, DeliveryMachine, CtMeta) {
    let (nx, ny) = (23usize, 14usize);
    let mut beams = Vec::new();
    let mut w = Vec::new();
    for b in 0..9usize {
        let first = w.len();
        let mut bl = Vec::new();
        for iy in 0..ny {
            for ix in 0..nx {
                bl.push([ix, iy]);
                let v = 0.5
                    + 0.5
                        * (0.61 * ix as f64 + 1.7 * iy as f64 + 0.9 * b as f64).sin()
                        * (0.23 * (ix * iy) as f64).cos();
                w.push(15.0 * v);
            }
        }
        beams.push(Beam {
            number: b + 1,
            name: format!("B{}", b + 1),
            gantry_deg: 40.0 * b as f64,
            couch_deg: 0.0,
            collimator_deg: 0.0,
            isocenter_mm: [0.0; 3],
            sad_mm: 1000.0,
            grid: BeamletGrid {
                size_x_mm: 5.0,
                size_y_mm: 5.0,
                nx,
                ny,
                x0_mm: -55.0,
                y0_mm: -32.5,
            },
            beamlets: bl,
            first_column: first,
        });
    }
    let m = DeliveryMachine {
        name: "Bench6X".into(),
        energy_mv: 6.0,
        mlc: Mlc {
            leaf_boundaries_mm: default_leaf_boundaries_mm(),
            min_leaf_gap_mm: 0.5,
            interdigitation: true,
            x_min_mm: -200.0,
            x_max_mm: 200.0,
            model: String::new(),
            max_leaf_span_mm: None,
            max_leaf_speed_mm_per_s: None,
            transmission: None,
            source_distance_mm: None,
        },
        jaws: Jaws {
            x_min_mm: -200.0,
            x_max_mm: 200.0,
            y_min_mm: -200.0,
            y_max_mm: 200.0,
            x1_max_mm: None,
            x2_min_mm: None,
            y1_max_mm: None,
            y2_min_mm: None,
            transmission: None,
            x_source_distance_mm: None,
            y_source_distance_mm: None,
        },
        min_segment_mu: 1.0,
        min_segment_area_mm2: 0.0,
        min_leaf_opening_mm: 0.0,
        manufacturer: String::new(),
        model_name: String::new(),
        setup_technique: "ISOCENTRIC".into(),
        dose_rate_mu_per_min: 600.0,
        tolerance_table: None,
    };
    let ct = CtMeta {
        study_instance_uid: "2.25.1".into(),
        frame_of_reference_uid: "2.25.2".into(),
        patient_position: "HFS".into(),
        ..Default::default()
    };
    (beams, w, m, ct)
}

fn bench(c: &mut Criterion) {
    let (beams, w, m, ct) = setup();
    let opts = SequencingOptions::default();
    let mut g = c.benchmark_group("delivery");
    g.sample_size(20);
    g.bench_function("sequence_9_beams_2898_beamlets", |b| {
        b.iter(|| sequence_plan(&beams, &w, &m, &opts).unwrap())
    });
    let seq = sequence_plan(&beams, &w, &m, &opts).unwrap();
    let n_seg: usize = seq.beams.iter().map(|b| b.segments.len()).sum();
    eprintln!("segments: {n_seg}, total MU {:.1}", seq.total_mu());
    g.bench_function("deliverable_weights", |b| {
        b.iter(|| deliverable_weights(&beams, &seq.beams, w.len()).unwrap())
    });
    let plan = PlanExport {
        label: "bench".into(),
        ct: &ct,
        structure_set_uid: "2.25.3".into(),
        target: TargetPrescription {
            roi_number: 1,
            roi_name: "PTV".into(),
            prescription_gy: 50.0,
        },
        fractions: 25,
        machine: &m,
        beams: &beams,
        sequenced: &seq.beams,
        name: String::new(),
        description: String::new(),
        reference_point: None,
        ssd_mm: vec![None; seq.beams.len()],
        created: fixed_time(),
    };
    g.bench_function("rtplan_bytes", |b| b.iter(|| rtplan_bytes(&plan).unwrap()));
    let grid = Grid3 {
        dims: [100, 100, 80],
        origin_mm: [-150.0, -150.0, -120.0],
        spacing_mm: [3.0, 3.0, 3.0],
    };
    let dose: Vec<f32> = (0..grid.len()).map(|i| ((i % 977) as f32) * 0.05).collect();
    g.bench_function("rtdose_bytes_800k_voxels", |b| {
        b.iter(|| {
            rtdose_bytes(&DoseExport {
                ct: &ct,
                grid: &grid,
                dose_gy: &dose,
                plan_sop_uid: "2.25.4",
                created: fixed_time(),
                beam_number: None,
                tissue_heterogeneity_correction: "IMAGE",
            })
            .unwrap()
        })
    });
    let gg = Grid3 {
        dims: [60, 60, 60],
        origin_mm: [0.0; 3],
        spacing_mm: [2.5; 3],
    };
    let r: Vec<f32> = (0..gg.len())
        .map(|i| {
            let [a, b, k] = gg.ijk(i);
            let d2 =
                (a as f32 - 30.0).powi(2) + (b as f32 - 30.0).powi(2) + (k as f32 - 30.0).powi(2);
            60.0 * (-d2 / 200.0).exp()
        })
        .collect();
    let e: Vec<f32> = r.iter().map(|v| v * 1.02).collect();
    g.bench_function("gamma_3pct_2mm_60cubed", |b| {
        b.iter(|| gamma_3d(&gg, &r, &gg, &e, &GammaOptions::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// A fixed creation time (2026-12-02T16:46:56Z), so written files are reproducible.
fn fixed_time() -> rtopt::io::dicom::identity::CreationTime {
    rtopt::io::dicom::identity::CreationTime::from_unix_seconds(1_796_230_016).expect("time")
}
