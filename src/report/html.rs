//! `report.html`: one self-contained page (no external resources) with the goal table, the
//! cumulative DVH (SVG drawn with plotters) and axial, coronal and sagittal dose-wash slices
//! through the isocentre over the CT with structure outlines (PNG, base64-embedded).

use base64::Engine;
use plotters::prelude::*;

use crate::ct::CtVolume;
use crate::error::{Error, Result};
use crate::geometry::{Grid3, Mask};

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
                let col = RGBColor(c.color[0], c.color[1], c.color[2]);
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
.wash figure{margin:0}.note{color:#555;font-size:90%}</style></head><body>\n",
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
    h.push_str("</div>\n<h2>Structures</h2><table id=\"structures\"><tr><th class=\"l\">Structure</th><th class=\"l\">Type</th><th>Volume cm3</th><th>Min Gy</th><th>Mean Gy</th><th>Max Gy</th><th>D98</th><th>D95</th><th>D50</th><th>D2</th></tr>\n");
    for s in &r.structures {
        h.push_str(&format!(
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>\n",
            esc(&s.name), esc(&s.interpreted_type), s.volume_cm3, s.min_gy, s.mean_gy, s.max_gy, s.d98_gy, s.d95_gy, s.d50_gy, s.d2_gy
        ));
    }
    let q = &r.quality;
    h.push_str(&format!(
        "</table><p>Paddick CI {:.3} &middot; RTOG CI {:.3} &middot; ICRU 83 HI {:.3} &middot; gradient index {:.2} (prescription {:.2} Gy)</p>\n",
        q.paddick_ci, q.rtog_ci, q.icru83_hi, q.gradient_index, q.prescription_gy
    ));
    h.push_str("<h2>Beams</h2><table id=\"beams\"><tr><th>#</th><th class=\"l\">Name</th><th>Gantry</th><th>Couch</th><th>Collimator</th><th>MU / fraction</th><th>Segments</th></tr>\n");
    for b in &r.beams {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>\n",
            b.number, esc(&b.name), b.gantry_deg, b.couch_deg, b.collimator_deg, b.mu, b.segments
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
    h.push_str("</div><p class=\"note\">Colour wash from 10 % to 110 % of the prescription; structure outlines in their RTSTRUCT colours. Axial view from the feet (patient left on the right).</p>\n");
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
