//! `rtopt compare`: side-by-side metrics, goal tables and overlaid DVHs of plan variants,
//! read from their `report.json` files.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::structures::RoiType;

use super::Report;

/// Accessor of one structure metric.
type MetricFn = fn(&super::StructureMetrics) -> f64;

/// A plan variant: its output folder and report.
pub struct Variant {
    pub dir: PathBuf,
    pub label: String,
    pub report: Report,
}

/// Load `report.json` from each output folder.
pub fn load_variants(dirs: &[PathBuf]) -> Result<Vec<Variant>> {
    if dirs.len() < 2 {
        return Err(Error::Invalid(
            "compare needs at least two plan output folders".into(),
        ));
    }
    dirs.iter()
        .map(|d| {
            let p = d.join("report.json");
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            let report: Report = serde_json::from_str(&text).map_err(|e| Error::Config {
                path: p.clone(),
                reason: format!("not an rtopt report: {e}"),
            })?;
            let label = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.display().to_string());
            Ok(Variant {
                dir: d.clone(),
                label,
                report,
            })
        })
        .collect()
}

fn metric(r: &Report, structure: &str, f: fn(&super::StructureMetrics) -> f64) -> Option<f64> {
    r.structures.iter().find(|s| s.name == structure).map(f)
}

/// D10 of a structure from its DVH curve (nearest sample at or above 10 %).
fn d_from_dvh(r: &Report, structure: &str, pct: f64) -> Option<f64> {
    let c = r.dvh.iter().find(|c| c.structure == structure)?;
    c.points
        .iter()
        .rev()
        .find(|p| p.volume_pct >= pct)
        .map(|p| p.dose_gy)
}

/// Text comparison: metrics per structure, goals, and the organ-sparing verdict at equal
/// target coverage.
pub fn compare_text(vs: &[Variant]) -> String {
    let mut s = String::new();
    let w = 14;
    s.push_str(&format!("{:<28}", "metric"));
    for v in vs {
        s.push_str(&format!("{:>w$}", truncate(&v.label, w - 1)));
    }
    s.push('\n');
    let first = &vs[0].report;
    let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for st in &first.structures {
        let n = st.name.clone();
        let is_target = n == first.target;
        let metrics: Vec<(&str, MetricFn)> = if is_target {
            vec![
                ("D98 Gy", |m| m.d98_gy),
                ("D95 Gy", |m| m.d95_gy),
                ("D50 Gy", |m| m.d50_gy),
                ("D2 Gy", |m| m.d2_gy),
            ]
        } else {
            vec![("mean Gy", |m| m.mean_gy), ("max Gy", |m| m.max_gy)]
        };
        for (label, f) in metrics {
            rows.push((
                format!("{n} {label}"),
                vs.iter().map(|v| metric(&v.report, &n, f)).collect(),
            ));
        }
        if !is_target {
            rows.push((
                format!("{n} D10 Gy"),
                vs.iter().map(|v| d_from_dvh(&v.report, &n, 10.0)).collect(),
            ));
        }
    }
    rows.push((
        "Paddick CI".into(),
        vs.iter()
            .map(|v| Some(v.report.quality.paddick_ci))
            .collect(),
    ));
    rows.push((
        "ICRU 83 HI".into(),
        vs.iter()
            .map(|v| Some(v.report.quality.icru83_hi))
            .collect(),
    ));
    rows.push((
        "total MU / fraction".into(),
        vs.iter()
            .map(|v| Some(v.report.beams.iter().map(|b| b.mu).sum()))
            .collect(),
    ));
    for (label, vals) in &rows {
        s.push_str(&format!("{:<28}", truncate(label, 27)));
        for v in vals {
            match v {
                Some(x) => s.push_str(&format!("{x:>w$.2}")),
                None => s.push_str(&format!("{:>w$}", "-")),
            }
        }
        s.push('\n');
    }
    s.push_str("\nconstraints met:\n");
    for v in vs {
        let judged = v.report.goals.iter().filter(|g| g.met.is_some()).count();
        let met = v
            .report
            .goals
            .iter()
            .filter(|g| g.met == Some(true))
            .count();
        s.push_str(&format!(
            "  {:<20} {met}/{judged} constraints met\n",
            v.label
        ));
    }
    s.push_str(&verdict(vs));
    s
}

/// Which variant spares each organ at risk more among those with equal target coverage
/// (target D95 within 0.5 Gy of the best covered variant).
pub fn verdict(vs: &[Variant]) -> String {
    let target = &vs[0].report.target;
    let d95: Vec<f64> = vs
        .iter()
        .map(|v| metric(&v.report, target, |m| m.d95_gy).unwrap_or(f64::NAN))
        .collect();
    let best = d95.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let eligible: Vec<usize> = (0..vs.len()).filter(|&i| d95[i] >= best - 0.5).collect();
    let mut s = format!(
        "\nat equal coverage ({target} D95 within 0.5 Gy of {best:.2} Gy: {}):\n",
        eligible
            .iter()
            .map(|&i| vs[i].label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for st in &vs[0].report.structures {
        if st.name == *target || RoiType::parse(&st.interpreted_type) == RoiType::External {
            continue;
        }
        let best_oar = eligible
            .iter()
            .filter_map(|&i| d_from_dvh(&vs[i].report, &st.name, 10.0).map(|d| (i, d)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, d)) = best_oar {
            s.push_str(&format!(
                "  {} is spared most by {} (D10 {:.2} Gy)\n",
                st.name, vs[i].label, d
            ));
        }
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(feature = "html-report")]
/// HTML comparison page: the text table and overlaid DVHs (first variant solid, second
/// dashed).
pub fn compare_html(vs: &[Variant]) -> Result<String> {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rtopt plan comparison</title>\
<style>body{font-family:sans-serif;margin:24px}pre{font-size:13px}</style></head><body>\n<h1>Plan comparison</h1>\n",
    );
    h.push_str("<pre id=\"comparison\">");
    h.push_str(
        &compare_text(vs)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    );
    h.push_str("</pre>\n<div id=\"dvh\">");
    let second = vs.get(1).map(|v| v.report.dvh.as_slice());
    h.push_str(&super::html::dvh_svg(
        &vs[0].report.dvh,
        &format!(
            "DVH: {} (solid) vs {} (dashed)",
            vs[0].label,
            vs.get(1).map(|v| v.label.as_str()).unwrap_or("")
        ),
        second,
    )?);
    h.push_str("</div></body></html>\n");
    Ok(h)
}

/// Write `compare.html` into `dir` atomically.
#[cfg(feature = "html-report")]
pub fn write_html(vs: &[Variant], path: &std::path::Path) -> Result<()> {
    crate::io::atomic::write_file(path, compare_html(vs)?.as_bytes())
}
