//! `report.html`: one self-contained page (no external resources) with the plan block, the
//! goal table, the cumulative DVH (SVG drawn with plotters), the structures' DVH points,
//! axial, coronal and sagittal dose washes through the isocentre over the CT with isodose
//! lines, structure outlines and a colour bar, and a beam's-eye view per beam (fluence of
//! the segments with the target's projection), PNG base64-embedded. A print stylesheet
//! keeps sections whole on paper: `chromium --headless --print-to-pdf=report.pdf
//! report.html` makes the PDF (`docs/report.md`).

use base64::Engine;
use plotters::prelude::*;

use crate::beams::{Beam, LpsPoint};
use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::geometry::{Grid3, Mask};
use crate::sequencing::SequencedBeam;

use super::{DvhCurve, Report};

/// What the page shows besides the report numbers.
pub struct HtmlInputs<'a> {
    pub report: &'a Report,
    pub ct: &'a CtVolume,
    /// Total dose (Gy) on `dose_grid`, one value per voxel of the full grid.
    pub dose_gy: &'a [f32],
    pub dose_grid: &'a Grid3,
    /// Structures to outline: name, colour, mask on the CT grid.
    pub outlines: Vec<(&'a str, [u8; 3], &'a Mask)>,
    /// Slice position for the three planes, LPS mm.
    pub isocenter_mm: [f64; 3],
    /// The plan's beams and their segments (the beam's-eye views).
    pub beams: &'a [Beam],
    pub sequenced: &'a [SequencedBeam],
    /// The target, projected into each beam's-eye view.
    pub target: Option<&'a Mask>,
}

/// Isodose lines drawn on the dose washes: % of the prescription and RGB colour.
pub const ISODOSE_LEVELS: [(f64, [u8; 3]); 5] = [
    (107.0, [255, 0, 255]),
    (100.0, [255, 0, 0]),
    (95.0, [255, 140, 0]),
    (80.0, [255, 255, 0]),
    (50.0, [0, 200, 255]),
];

/// A structure colour darkened when it is too light to read on white (a yellow PTV).
fn readable(c: [u8; 3]) -> [u8; 3] {
    let lum = (0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64) / 255.0;
    if lum > 0.6 {
        let f = 0.6 / lum;
        [
            (c[0] as f64 * f) as u8,
            (c[1] as f64 * f) as u8,
            (c[2] as f64 * f) as u8,
        ]
    } else {
        c
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Cumulative DVH of several structures as an SVG string (plotters).
pub fn dvh_svg(
    curves: &[DvhCurve],
    title: &str,
    dashed_second_set: Option<&[DvhCurve]>,
) -> Result<String> {
    let xmax = curves
        .iter()
        .chain(dashed_second_set.unwrap_or(&[]))
        .flat_map(|c| c.points.iter().map(|p| p.dose_gy))
        .fold(1.0f64, f64::max)
        * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 460)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| Error::Invalid(format!("DVH plot: {e}"));
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..xmax, 0f64..102f64)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("Dose (Gy)")
            .y_desc("Volume (%)")
            .draw()
            .map_err(|x| e(&x))?;
        for (set, dashed) in [(curves, false), (dashed_second_set.unwrap_or(&[]), true)] {
            for c in set {
                let [r, g, b] = readable(c.color);
                let col = RGBColor(r, g, b);
                let pts: Vec<(f64, f64)> =
                    c.points.iter().map(|p| (p.dose_gy, p.volume_pct)).collect();
                let label = if dashed {
                    format!("{} (B)", c.structure)
                } else {
                    c.structure.clone()
                };
                if dashed {
                    chart
                        .draw_series(DashedLineSeries::new(pts, 6, 4, col.stroke_width(2)))
                        .map_err(|x| e(&x))?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                        });
                } else {
                    chart
                        .draw_series(LineSeries::new(pts, col.stroke_width(2)))
                        .map_err(|x| e(&x))?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                        });
                }
            }
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// Jet-like colour map on [0, 1].
fn colormap(t: f64) -> [f64; 3] {
    let t = t.clamp(0.0, 1.0);
    let r = (1.5 - (4.0 * t - 3.0).abs()).clamp(0.0, 1.0);
    let g = (1.5 - (4.0 * t - 2.0).abs()).clamp(0.0, 1.0);
    let b = (1.5 - (4.0 * t - 1.0).abs()).clamp(0.0, 1.0);
    [r, g, b]
}

#[derive(Clone, Copy)]
enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

/// Render one plane at 1 mm pixels: CT (window -1000..1000 HU), dose wash above 10 % of the
/// prescription, structure outlines. Returns (width, height, RGB bytes).
fn render_plane(inp: &HtmlInputs, plane: Plane, rx_gy: f64) -> (u32, u32, Vec<u8>) {
    let g = inp.ct.grid;
    let (lo, hi) = g.bounds_mm();
    // (horizontal axis, vertical axis, fixed axis); vertical drawn top to bottom.
    let (ha, va, fa, vflip) = match plane {
        Plane::Axial => (0, 1, 2, false), // x right (patient left), y down (posterior)
        Plane::Coronal => (0, 2, 1, true), // x right, z up (superior)
        Plane::Sagittal => (1, 2, 0, true), // y right (posterior), z up
    };
    let w = (hi[ha] - lo[ha]).round().max(1.0) as usize;
    let h = (hi[va] - lo[va]).round().max(1.0) as usize;
    let mut img = vec![0u8; w * h * 3];
    let mut dose_img = vec![f64::NAN; w * h];
    let mut inside_img: Vec<Vec<bool>> = vec![vec![false; w * h]; inp.outlines.len()];
    let nearest = |p: [f64; 3]| -> Option<usize> {
        let c = g.continuous_index(p);
        let mut ijk = [0usize; 3];
        for a in 0..3 {
            let r = c[a].round();
            if r < 0.0 || r >= g.dims[a] as f64 {
                return None;
            }
            ijk[a] = r as usize;
        }
        Some(g.index(ijk[0], ijk[1], ijk[2]))
    };
    for py in 0..h {
        for px in 0..w {
            let mut p = [0.0; 3];
            p[ha] = lo[ha] + px as f64 + 0.5;
            p[va] = if vflip {
                hi[va] - py as f64 - 0.5
            } else {
                lo[va] + py as f64 + 0.5
            };
            p[fa] = inp.isocenter_mm[fa];
            let Some(idx) = nearest(p) else { continue };
            let hu = inp.ct.hu[idx] as f64;
            let grey = ((hu + 1000.0) / 2000.0).clamp(0.0, 1.0);
            let mut rgb = [grey, grey, grey];
            let d = inp.dose_grid.sample_trilinear(inp.dose_gy, p) as f64;
            let (dlo, dhi) = inp.dose_grid.bounds_mm();
            let inside_dose = (0..3).all(|a| p[a] >= dlo[a] && p[a] <= dhi[a]);
            if inside_dose {
                dose_img[py * w + px] = d;
            }
            if inside_dose && rx_gy > 0.0 && d >= 0.1 * rx_gy {
                let c = colormap(d / (1.1 * rx_gy));
                for k in 0..3 {
                    rgb[k] = 0.55 * rgb[k] + 0.45 * c[k];
                }
            }
            for (s, (_, _, m)) in inp.outlines.iter().enumerate() {
                inside_img[s][py * w + px] = m.inside[idx];
            }
            let o = (py * w + px) * 3;
            for k in 0..3 {
                img[o + k] = (rgb[k] * 255.0).round() as u8;
            }
        }
    }
    // Isodose lines: pixels at or above a level with a 4-neighbour below it.
    if rx_gy > 0.0 {
        for (pct, col) in ISODOSE_LEVELS.iter().rev() {
            let level = pct / 100.0 * rx_gy;
            let above = |x: usize, y: usize| dose_img[y * w + x] >= level;
            for py in 1..h.saturating_sub(1) {
                for px in 1..w.saturating_sub(1) {
                    if above(px, py)
                        && (!above(px - 1, py)
                            || !above(px + 1, py)
                            || !above(px, py - 1)
                            || !above(px, py + 1))
                    {
                        let o = (py * w + px) * 3;
                        img[o..o + 3].copy_from_slice(col);
                    }
                }
            }
        }
    }
    // Outlines: pixels inside a structure with a 4-neighbour outside it.
    for (s, (_, col, _)) in inp.outlines.iter().enumerate() {
        let ins = &inside_img[s];
        for py in 0..h {
            for px in 0..w {
                if !ins[py * w + px] {
                    continue;
                }
                let edge = px == 0
                    || py == 0
                    || px + 1 == w
                    || py + 1 == h
                    || !ins[py * w + px - 1]
                    || !ins[py * w + px + 1]
                    || !ins[(py - 1) * w + px]
                    || !ins[(py + 1) * w + px];
                if edge {
                    let o = (py * w + px) * 3;
                    img[o..o + 3].copy_from_slice(col);
                }
            }
        }
    }
    (w as u32, h as u32, img)
}

/// Beam's-eye view of one beam at 1 mm pixels in the isocentre plane (BLD frame, IEC 61217:
/// x along leaf travel to the right, y across the leaves upwards): the segments' fluence
/// (MU per fraction through each point, jet colour map from 0 to the beam's maximum), the
/// jaw union in white and the target's projection outlined in red. Returns (width, height,
/// RGB, maximum fluence in MU).
fn render_bev(beam: &Beam, sb: &SequencedBeam, target: Option<&Mask>) -> (u32, u32, Vec<u8>, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for s in &sb.segments {
        x0 = x0.min(s.jaw_x_mm[0]);
        x1 = x1.max(s.jaw_x_mm[1]);
        y0 = y0.min(s.jaw_y_mm[0]);
        y1 = y1.max(s.jaw_y_mm[1]);
    }
    if !(x1 > x0 && y1 > y0) {
        (x0, x1, y0, y1) = (-50.0, 50.0, -50.0, 50.0);
    }
    let pad = 15.0;
    let (x0, x1) = ((x0 - pad).max(-200.0), (x1 + pad).min(200.0));
    let (y0, y1) = ((y0 - pad).max(-200.0), (y1 + pad).min(200.0));
    let w = (x1 - x0).ceil().max(1.0) as usize;
    let h = (y1 - y0).ceil().max(1.0) as usize;
    let bnd = &sb.leaf_boundaries_mm;
    let mut fl = vec![0.0f64; w * h];
    for py in 0..h {
        let y = y1 - py as f64 - 0.5;
        let pair = bnd.windows(2).position(|b| y >= b[0] && y < b[1]);
        for px in 0..w {
            let x = x0 + px as f64 + 0.5;
            let mut f = 0.0;
            for s in &sb.segments {
                let in_jaws = x >= s.jaw_x_mm[0]
                    && x < s.jaw_x_mm[1]
                    && y >= s.jaw_y_mm[0]
                    && y < s.jaw_y_mm[1];
                let open = match (pair, s.leaf_pairs_mm.is_empty()) {
                    (_, true) => true,
                    (Some(p), false) => {
                        let [a, b] = s.leaf_pairs_mm[p];
                        x >= a && x < b
                    }
                    (None, false) => true,
                };
                if in_jaws && open {
                    f += s.mu;
                }
            }
            fl[py * w + px] = f;
        }
    }
    let fmax = fl.iter().cloned().fold(0.0, f64::max);
    let mut img = vec![0u8; w * h * 3];
    for (i, &f) in fl.iter().enumerate() {
        let c = if f > 0.0 && fmax > 0.0 {
            colormap(f / fmax)
        } else {
            [0.0; 3]
        };
        for k in 0..3 {
            img[i * 3 + k] = (c[k] * 255.0).round() as u8;
        }
    }
    // Target projection: every target voxel centre through the source onto the isocentre
    // plane, then its outline.
    if let Some(t) = target {
        let frame = beam.frame();
        let mut proj = vec![false; w * h];
        let g = &t.grid;
        for (idx, _) in t.inside.iter().enumerate().filter(|(_, &b)| b) {
            let [i, j, k] = g.ijk(idx);
            let q = frame.to_beam(LpsPoint(g.centre_mm(i, j, k)));
            let px = (q.x_iso_mm - x0).floor();
            let py = (y1 - q.y_iso_mm).floor();
            if px >= 0.0 && py >= 0.0 && (px as usize) < w && (py as usize) < h {
                proj[py as usize * w + px as usize] = true;
            }
        }
        // Close the pin-holes of the voxel sampling (3 x 3 dilation), then outline.
        let mut filled = proj.clone();
        for py in 0..h {
            for px in 0..w {
                if proj[py * w + px] {
                    for dy in -1i64..=1 {
                        for dx in -1i64..=1 {
                            let (x, y) = (px as i64 + dx, py as i64 + dy);
                            if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                                filled[y as usize * w + x as usize] = true;
                            }
                        }
                    }
                }
            }
        }
        for py in 1..h.saturating_sub(1) {
            for px in 1..w.saturating_sub(1) {
                let f = |x: usize, y: usize| filled[y * w + x];
                if f(px, py)
                    && (!f(px - 1, py) || !f(px + 1, py) || !f(px, py - 1) || !f(px, py + 1))
                {
                    let o = (py * w + px) * 3;
                    img[o..o + 3].copy_from_slice(&[255, 40, 40]);
                }
            }
        }
    }
    (w as u32, h as u32, img, fmax)
}

/// The colour bar of the dose wash (10 % to 110 % of the prescription) and the isodose
/// lines' legend, as HTML.
fn isodose_legend() -> String {
    let stops: Vec<String> = (0..=10)
        .map(|i| {
            let t = i as f64 / 10.0;
            let c = colormap(t);
            format!(
                "rgb({},{},{}) {}%",
                (c[0] * 255.0).round(),
                (c[1] * 255.0).round(),
                (c[2] * 255.0).round(),
                i * 10
            )
        })
        .collect();
    let mut h = String::from("<div id=\"isodose-legend\"><p>Dose wash, % of the prescription:</p>");
    h.push_str(&format!(
        "<div class=\"bar\" style=\"background:linear-gradient(to right,{})\"></div><div class=\"ticks\"><span>0</span><span>55</span><span>110 %</span></div><p>Isodose lines:",
        stops.join(",")
    ));
    for (pct, c) in ISODOSE_LEVELS {
        h.push_str(&format!(
            " <span class=\"iso\"><span class=\"sw\" style=\"background:rgb({},{},{})\"></span>{pct:.0} %</span>",
            c[0], c[1], c[2]
        ));
    }
    h.push_str("</p></div>\n");
    h
}

fn png_base64(w: u32, h: u32, rgb: &[u8]) -> Result<String> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| Error::Invalid(format!("PNG encoding: {e}")))?;
        wr.write_image_data(rgb)
            .map_err(|e| Error::Invalid(format!("PNG encoding: {e}")))?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(&buf))
}

/// Render the whole page.
pub fn render(inp: &HtmlInputs) -> Result<String> {
    let r = inp.report;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<title>rtopt plan report: {}</title>",
        esc(&r.case)
    ));
    h.push_str(
        "<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 20px}\
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}td.l,th.l{text-align:left}\
tr.met td.s{background:#c8f0c8}tr.notmet td.s{background:#f6c0c0}.wash{display:flex;gap:12px;flex-wrap:wrap}\
.wash figure{margin:0}.note{color:#555;font-size:90%}\
#isodose-legend .bar{width:440px;height:14px;border:1px solid #888}#isodose-legend .ticks{width:440px;display:flex;justify-content:space-between;font-size:85%}\
.iso{margin-right:10px}.sw{display:inline-block;width:22px;height:4px;margin-right:4px;vertical-align:middle}\
@media print{body{margin:10mm;font-size:10pt}h2{break-after:avoid}table,figure,#isodose-legend,#dvh{break-inside:avoid}.wash img{max-width:80mm;height:auto}}\
</style></head><body>\n",
    );
    h.push_str(&format!(
        "<h1>Plan report: {}</h1><p>Protocol <b>{}</b>: {:.2} Gy in {} fractions to {}. rtopt {}. Not for clinical use.</p>\n",
        esc(&r.case),
        esc(&r.protocol),
        r.prescription_gy,
        r.fractions,
        esc(&r.target),
        esc(&r.rtopt_version)
    ));
    let pb = &r.plan;
    h.push_str("<h2>Plan</h2><table id=\"plan-block\">\n");
    let rows: Vec<(&str, String)> = vec![
        ("Plan label / name", format!("{} / {}", pb.label, pb.name)),
        ("Description", pb.description.clone()),
        ("RT Plan UID", pb.sop_instance_uid.clone()),
        ("Created (UTC)", pb.created_utc.clone()),
        (
            "Machine, energy",
            format!("{}, {} MV", pb.machine, crate::io::dicom::builder::ds(pb.energy_mv)),
        ),
        ("Technique", pb.technique.clone()),
        (
            "Isocentre (LPS, mm)",
            format!(
                "({:.1}, {:.1}, {:.1})",
                pb.isocenter_mm[0], pb.isocenter_mm[1], pb.isocenter_mm[2]
            ),
        ),
        ("Dose algorithm", pb.dose_algorithm.clone()),
        (
            "Dose grid (mm)",
            format!(
                "{:.2} x {:.2} x {:.2}",
                pb.dose_grid_mm[0], pb.dose_grid_mm[1], pb.dose_grid_mm[2]
            ),
        ),
        (
            "Prescription",
            format!(
                "{:.2} Gy in {} fractions to {}",
                r.prescription_gy, r.fractions, r.target
            ),
        ),
        ("Normalisation factor", format!("x{:.4}", pb.normalisation_factor)),
        ("Total MU per fraction", format!("{:.1}", pb.total_mu_per_fraction)),
        (
            "Delivery time per fraction (estimate)",
            format!(
                "{:.0} s beam-on and leaf travel, a lower bound (no beam-hold, jaw or gantry time)",
                pb.delivery_time_s
            ),
        ),
        (
            "Dose reference point",
            format!(
                "({:.1}, {:.1}, {:.1}) mm in {}: {:.3} Gy per fraction (RT Dose), beam doses sum to {:.3} Gy",
                pb.reference_point_mm[0],
                pb.reference_point_mm[1],
                pb.reference_point_mm[2],
                pb.reference_structure,
                pb.reference_dose_per_fraction_gy,
                pb.reference_beam_dose_sum_gy
            ),
        ),
    ];
    for (k, v) in rows {
        h.push_str(&format!(
            "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>\n",
            esc(k),
            esc(&v)
        ));
    }
    h.push_str("</table>\n");
    h.push_str("<h2>Goals</h2><table id=\"goal-table\"><tr><th class=\"l\">Structure</th><th class=\"l\">Goal</th><th class=\"l\">Kind</th><th class=\"l\">Metric</th><th>Achieved</th><th>Status / objective term</th></tr>\n");
    for g in &r.goals {
        let (class, status) = match (g.met, g.objective_value) {
            (Some(true), _) => ("met", "met".to_string()),
            (Some(false), _) => ("notmet", "not met".to_string()),
            (None, Some(v)) => ("objective", format!("{v:.4}")),
            (None, None) => ("objective", "-".to_string()),
        };
        h.push_str(&format!(
            "<tr class=\"{class}\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.2} {}</td><td class=\"s\">{}</td></tr>\n",
            esc(&g.structure),
            esc(&g.goal),
            esc(g.kind.name()),
            esc(&g.metric),
            g.achieved,
            esc(&g.unit),
            esc(&status)
        ));
    }
    h.push_str("</table>\n");
    for n in &r.notes {
        h.push_str(&format!("<p class=\"note\">{}</p>\n", esc(n)));
    }
    h.push_str("<h2>Dose-volume histogram</h2><div id=\"dvh\">");
    h.push_str(&dvh_svg(&r.dvh, "Cumulative DVH", None)?);
    h.push_str("</div>\n<h2>Structures</h2><table id=\"structures\"><tr><th class=\"l\">Structure</th><th class=\"l\">Type</th><th>Volume cm3</th><th>Min Gy</th><th>Mean Gy</th><th>Max Gy</th><th>D98</th><th>D95</th><th>D50</th><th>D2</th><th>D0.03cc</th><th>V95 % Rx</th><th>V107 % Rx</th></tr>\n");
    for s in &r.structures {
        h.push_str(&format!(
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1} %</td><td>{:.1} %</td></tr>\n",
            esc(&s.name), esc(&s.interpreted_type), s.volume_cm3, s.min_gy, s.mean_gy, s.max_gy, s.d98_gy, s.d95_gy, s.d50_gy, s.d2_gy, s.d0_03cc_gy, s.v95_rx_percent, s.v107_rx_percent
        ));
    }
    let q = &r.quality;
    h.push_str(&format!(
        "</table><p>Paddick CI {:.3} &middot; RTOG CI {:.3} &middot; ICRU 83 HI {:.3} &middot; gradient index {:.2} (prescription {:.2} Gy)</p>\n",
        q.paddick_ci, q.rtog_ci, q.icru83_hi, q.gradient_index, q.prescription_gy
    ));
    h.push_str("<h2>Beams</h2><table id=\"beams\"><tr><th>#</th><th class=\"l\">Name</th><th>Gantry</th><th>Couch</th><th>Collimator</th><th>MU / fraction</th><th>Segments</th><th>SSD mm</th><th>Dose at reference, Gy / fraction</th><th>Delivery s</th></tr>\n");
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    for b in &r.beams {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            b.number, esc(&b.name), b.gantry_deg, b.couch_deg, b.collimator_deg, b.mu, b.segments,
            opt(b.ssd_mm, 1), opt(b.reference_dose_gy, 4), opt(b.delivery_time_s, 0)
        ));
    }
    h.push_str("</table>\n<h2>Dose wash through the isocentre</h2><div class=\"wash\">\n");
    for (plane, name) in [
        (Plane::Axial, "axial"),
        (Plane::Coronal, "coronal"),
        (Plane::Sagittal, "sagittal"),
    ] {
        let (w, ht, rgb) = render_plane(inp, plane, r.prescription_gy);
        h.push_str(&format!(
            "<figure><img id=\"wash-{name}\" alt=\"{name} dose wash\" width=\"{w}\" height=\"{ht}\" src=\"data:image/png;base64,{}\"><figcaption>{name}</figcaption></figure>\n",
            png_base64(w, ht, &rgb)?
        ));
    }
    h.push_str("</div>\n");
    h.push_str(&isodose_legend());
    h.push_str("<p class=\"note\">Colour wash from 10 % to 110 % of the prescription; structure outlines in their RTSTRUCT colours. Axial view from the feet (patient left on the right).</p>\n");
    h.push_str("<h2>Beam's-eye views</h2><div class=\"wash\" id=\"bev\">\n");
    for sb in inp.sequenced {
        let Some(beam) = inp.beams.get(sb.beam_index) else {
            continue;
        };
        let (w, ht, rgb, fmax) = render_bev(beam, sb, inp.target);
        h.push_str(&format!(
            "<figure><img id=\"bev-{}\" class=\"bev\" alt=\"beam's-eye view of beam {}\" width=\"{}\" height=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{} (gantry {:.0}), {} segments, up to {:.1} MU</figcaption></figure>\n",
            beam.number,
            beam.number,
            2 * w,
            2 * ht,
            png_base64(w, ht, &rgb)?,
            esc(&beam.name),
            beam.gantry_deg,
            sb.segments.len(),
            fmax
        ));
    }
    h.push_str("</div><p class=\"note\">Beam's-eye views in the isocentre plane (x along leaf travel to the right, y across the leaves upwards): the segments' fluence (MU per fraction, colour map from 0 to the beam's maximum) and the target's projection outlined in red.</p>\n");
    h.push_str("<h2>Stage timings</h2><table id=\"timings\"><tr><th class=\"l\">Stage</th><th>Seconds</th></tr>\n");
    for t in &r.timings {
        h.push_str(&format!(
            "<tr><td class=\"l\">{}</td><td>{:.2}</td></tr>\n",
            esc(&t.stage),
            t.seconds
        ));
    }
    h.push_str("</table></body></html>\n");
    Ok(h)
}
