//! `rtopt pull`: find one study by accession number or StudyInstanceUID (C-FIND), C-GET its
//! CT series and RT Structure Set into a staging folder, check it as `rtopt inspect` does
//! (`Case::load`), and only then rename it into the case folder. A failed or interrupted pull
//! leaves no case folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::{NetConfig, Node};
use super::dimse::{net_error, CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE};
use super::find::{find_series, find_studies, SeriesMatch, StudyKey};
use super::receive::{remove_stale_staging, Staging};
use super::retrieve::c_get;
use crate::case::{Case, Inspection, LoadOptions};
use crate::error::{Error, Result};

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub study: StudyKey,
    /// The case folder to create (must not exist).
    pub out: PathBuf,
    /// SeriesInstanceUID of the CT series when the study has several.
    pub ct_series: Option<String>,
}

/// What a pull fetched.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub study_instance_uid: String,
    pub ct_series_instance_uid: String,
    pub rtstruct_series_instance_uids: Vec<String>,
    /// Objects received.
    pub objects: usize,
    /// Data-set bytes received.
    pub bytes: u64,
    /// Wall time of the C-GET (association open to release), s.
    pub transfer_seconds: f64,
    /// The case as `rtopt inspect` reads it.
    pub inspection: Inspection,
    pub out: PathBuf,
}

/// Pull a study from `node` into `req.out`.
pub fn pull(config: &NetConfig, node: &Node, req: &PullRequest) -> Result<PullReport> {
    let label = node.label();
    if req.out.exists() {
        return Err(Error::Output {
            path: req.out.clone(),
            reason: "exists already; rtopt pull only creates a new case folder".into(),
        });
    }
    let studies = find_studies(config, node, &req.study)?;
    let study = match studies.as_slice() {
        [one] => one.clone(),
        [] => return Err(net_error(&label, format!("no study with {}", req.study))),
        many => {
            return Err(net_error(
                &label,
                format!(
                    "{} studies match {}: {}; pull one by StudyInstanceUID",
                    many.len(),
                    req.study,
                    many.iter()
                        .map(|s| s.study_instance_uid.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    let series = find_series(config, node, &study.study_instance_uid)?;
    let (ct, rs) = choose_series(&series, req.ct_series.as_deref()).map_err(|reason| {
        net_error(
            &label,
            format!("study {}: {reason}", study.study_instance_uid),
        )
    })?;
    let parent = parent_of(&req.out);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    remove_stale_staging(&parent)?;
    let mut staging = Staging::create(
        &parent,
        config.limits,
        &[CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE],
    )?;
    let mut wanted = vec![ct.series_instance_uid.clone()];
    wanted.extend(rs.iter().map(|s| s.series_instance_uid.clone()));
    let start = Instant::now();
    c_get(
        config,
        node,
        &study.study_instance_uid,
        &wanted,
        &mut staging,
    )?;
    let transfer_seconds = start.elapsed().as_secs_f64();
    // Every instance the node listed arrived, and nothing else.
    for s in std::iter::once(&ct).chain(rs.iter()) {
        let got = staging
            .objects()
            .iter()
            .filter(|o| o.series_instance_uid == s.series_instance_uid)
            .count();
        if let Some(n) = s.instances {
            if got != n {
                return Err(net_error(
                    &label,
                    format!(
                        "series {} has {n} instances at the node, {got} arrived",
                        s.series_instance_uid
                    ),
                ));
            }
        }
    }
    let case = Case::load(staging.dir(), &LoadOptions::default())?;
    if case.structure_set.is_none() {
        return Err(net_error(
            &label,
            format!(
                "study {} arrived without an RT Structure Set",
                study.study_instance_uid
            ),
        ));
    }
    let inspection = case.inspect();
    let objects = staging.objects().len();
    let bytes = staging.bytes();
    let out = staging.commit(&req.out)?;
    Ok(PullReport {
        study_instance_uid: study.study_instance_uid,
        ct_series_instance_uid: ct.series_instance_uid.clone(),
        rtstruct_series_instance_uids: rs.iter().map(|s| s.series_instance_uid.clone()).collect(),
        objects,
        bytes,
        transfer_seconds,
        inspection,
        out,
    })
}

/// The CT series (the only one, or the one named) and the RT Structure Set series (exactly
/// one) of a study's series list.
fn choose_series(
    series: &[SeriesMatch],
    ct_series: Option<&str>,
) -> std::result::Result<(SeriesMatch, Vec<SeriesMatch>), String> {
    let cts: Vec<&SeriesMatch> = series.iter().filter(|s| s.modality == "CT").collect();
    let ct = match (ct_series, cts.as_slice()) {
        (Some(uid), _) => cts
            .iter()
            .find(|s| s.series_instance_uid == uid)
            .copied()
            .ok_or_else(|| format!("no CT series {uid}"))?,
        (None, [one]) => *one,
        (None, []) => return Err("no CT series".into()),
        (None, many) => {
            return Err(format!(
                "{} CT series ({}); name one with --series",
                many.len(),
                many.iter()
                    .map(|s| s.series_instance_uid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    let rs: Vec<SeriesMatch> = series
        .iter()
        .filter(|s| s.modality == "RTSTRUCT")
        .cloned()
        .collect();
    match rs.len() {
        0 => Err("no RTSTRUCT series".into()),
        1 => Ok((ct.clone(), rs)),
        n => Err(format!(
            "{n} RTSTRUCT series ({}); rtopt pull takes a study with one",
            rs.iter()
                .map(|s| s.series_instance_uid.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(uid: &str, m: &str) -> SeriesMatch {
        SeriesMatch {
            series_instance_uid: uid.into(),
            modality: m.into(),
            instances: None,
        }
    }

    #[test]
    fn series_are_chosen_or_the_ambiguity_named() {
        let (ct, rs) =
            choose_series(&[s("1", "CT"), s("2", "RTSTRUCT"), s("3", "RTPLAN")], None).unwrap();
        assert_eq!(ct.series_instance_uid, "1");
        assert_eq!(rs, vec![s("2", "RTSTRUCT")]);
        assert_eq!(
            choose_series(&[s("1", "CT"), s("4", "CT"), s("2", "RTSTRUCT")], None).unwrap_err(),
            "2 CT series (1, 4); name one with --series"
        );
        assert_eq!(
            choose_series(&[s("1", "CT"), s("4", "CT"), s("2", "RTSTRUCT")], Some("4"))
                .unwrap()
                .0
                .series_instance_uid,
            "4"
        );
        assert_eq!(
            choose_series(&[s("1", "CT")], None).unwrap_err(),
            "no RTSTRUCT series"
        );
    }
}
