//! ImageNet-C's metrics (Hendrycks & Dietterich 2019), from evals.csv's top-1 on the datasets named
//! `imagenet-c-<corruption>-<severity>` and on the clean (ID) dataset. All in %:
//!
//! - E(c,s) = 100 − top-1 on corruption c at severity s; E_clean the same on the clean set.
//! - CE_c = 100 · Σ_s E(c,s) / Σ_s E_AlexNet(c,s), with Σ_s E_AlexNet(c,s) = 5 · AlexNet's published
//!   mean error on c (only the means are published; see assets/corruptions/SOURCES.md).
//! - relative CE_c = 100 · Σ_s (E(c,s) − E_clean) / Σ_s (E_AlexNet(c,s) − E_AlexNet,clean).
//! - mCE, relative mCE: the means of CE_c, relative CE_c over the 15 benchmark corruptions.
//! - mean error: the mean of mean_s E(c,s) over the 15 (test.py's "mCE (unnormalized)").
//!
//! A corruption counts only with all five severities. With fewer than the 15, mCE is withheld and
//! the mean over what is there is given separately, marked partial. The 4 extras get errors only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::fit::{Accuracy, Robustness};
use crate::analysis::markup::{escape_xml, Table};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::input::corruptions::{self, SEVERITIES};

mod figures;

pub use figures::*;

/// One model on one corruption.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptionRow {
    pub model: String,
    pub group: String,
    pub corruption: String,
    /// noise, blur, weather, digital; the set's name for a named set's corruption
    /// (`imagenet-c-bar`, `imagenet-3dcc`); `unknown` for any other.
    pub family: String,
    /// One of the 15 mCE averages over.
    pub in_mce: bool,
    pub error_s1: Option<f64>,
    pub error_s2: Option<f64>,
    pub error_s3: Option<f64>,
    pub error_s4: Option<f64>,
    pub error_s5: Option<f64>,
    /// mean_s E(c,s), when all five severities are there.
    pub mean_error: Option<f64>,
    pub ce: Option<f64>,
    pub relative_ce: Option<f64>,
}

impl CorruptionRow {
    pub fn errors(&self) -> [Option<f64>; 5] {
        [
            self.error_s1,
            self.error_s2,
            self.error_s3,
            self.error_s4,
            self.error_s5,
        ]
    }
}

/// One model's summary.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub group: String,
    /// E_clean: 100 − top-1 on the clean (ID) dataset; absent without it.
    pub clean_error: Option<f64>,
    /// Over all 15 benchmark corruptions, else withheld (absent).
    pub mce: Option<f64>,
    pub relative_mce: Option<f64>,
    pub mean_error: Option<f64>,
    /// `complete` (all 15 × 5), `partial` (mCE withheld) or `none` (no benchmark corruption whole).
    pub status: String,
    /// Benchmark corruptions with all five severities.
    pub corruptions_complete: usize,
    /// Means over the complete benchmark corruptions only, when that is fewer than 15: marked
    /// partial, never reported as mCE.
    pub partial_mce: Option<f64>,
    pub partial_relative_mce: Option<f64>,
    /// Benchmark corruption-severities without a result, as `corruption/severity`.
    pub missing: Vec<String>,
    /// Mean error over the extras with all five severities (never in mCE).
    pub extras_mean_error: Option<f64>,
}

/// The corruption metrics of a results folder.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptionReport {
    pub clean_dataset: String,
    pub alexnet_clean_error: f64,
    pub models: Vec<ModelSummary>,
    pub corruptions: Vec<CorruptionRow>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The metrics over `evals`, or None when no dataset is a corruption.
pub fn compute(evals: &[Accuracy], clean_dataset: &str) -> Option<CorruptionReport> {
    let table = corruptions::imagenet_c();
    // model → (group, corruption → errors by severity)
    type Errors = BTreeMap<String, [Option<f64>; 5]>;
    let mut by_model: BTreeMap<&str, (&str, Errors)> = BTreeMap::new();
    let mut clean: BTreeMap<&str, f64> = BTreeMap::new();
    for a in evals {
        if a.dataset == clean_dataset {
            clean.insert(a.model.as_str(), 100.0 - a.top1);
        }
        if let Some((c, s)) = corruptions::parse_dataset(&a.dataset) {
            let entry = by_model
                .entry(a.model.as_str())
                .or_insert((a.group.as_str(), Errors::new()));
            entry.1.entry(c.to_string()).or_insert([None; 5])[(s - 1) as usize] =
                Some(100.0 - a.top1);
        }
    }
    if by_model.is_empty() {
        return None;
    }
    let mut models = Vec::new();
    let mut rows = Vec::new();
    for (model, (group, errors)) in by_model {
        let e_clean = clean.get(model).copied();
        // Benchmark corruptions first, in the table's order, then the rest by name.
        let mut names: Vec<String> = table
            .corruptions
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| errors.contains_key(n))
            .collect();
        names.extend(errors.keys().filter(|n| table.get(n).is_none()).cloned());
        let mut ces = Vec::new();
        let mut rel_ces = Vec::new();
        let mut means = Vec::new();
        let mut extra_means = Vec::new();
        for name in names {
            let errs = errors[&name];
            let known = table.get(&name);
            let whole: Option<Vec<f64>> = errs.iter().copied().collect();
            let mean_error = whole.as_deref().and_then(mean);
            let alexnet = known.and_then(|c| c.alexnet_error);
            let in_mce = known.is_some_and(|c| c.in_mce);
            let ce = whole
                .as_ref()
                .zip(alexnet)
                .map(|(w, a)| w.iter().sum::<f64>() / (5.0 * a));
            let relative_ce = whole
                .as_ref()
                .zip(alexnet)
                .zip(e_clean)
                .map(|((w, a), ec)| {
                    w.iter().map(|e| e - ec).sum::<f64>() / (5.0 * (a - table.alexnet_clean_error))
                });
            if in_mce {
                ces.extend(ce);
                rel_ces.extend(relative_ce);
                means.extend(mean_error);
            } else if known.is_some() {
                extra_means.extend(mean_error);
            }
            rows.push(CorruptionRow {
                model: model.to_string(),
                group: group.to_string(),
                corruption: name.clone(),
                family: known
                    .map(|c| c.family.clone())
                    .or_else(|| corruptions::named_set_of(&name).map(|s| s.name.clone()))
                    .unwrap_or_else(|| "unknown".into()),
                in_mce,
                error_s1: errs[0],
                error_s2: errs[1],
                error_s3: errs[2],
                error_s4: errs[3],
                error_s5: errs[4],
                mean_error,
                ce,
                relative_ce,
            });
        }
        let missing: Vec<String> = table
            .benchmark()
            .flat_map(|c| SEVERITIES.map(move |s| (c, s)))
            .filter(|(c, s)| {
                errors
                    .get(&c.name)
                    .and_then(|e| e[(*s - 1) as usize])
                    .is_none()
            })
            .map(|(c, s)| format!("{}/{s}", c.name))
            .collect();
        let complete = ces.len();
        let all = complete == table.benchmark().count();
        let rel_all = all && rel_ces.len() == complete;
        models.push(ModelSummary {
            model: model.to_string(),
            group: group.to_string(),
            clean_error: e_clean,
            mce: if all { mean(&ces) } else { None },
            relative_mce: if rel_all { mean(&rel_ces) } else { None },
            mean_error: if all { mean(&means) } else { None },
            status: match complete {
                0 => "none".into(),
                _ if all => "complete".into(),
                _ => "partial".into(),
            },
            corruptions_complete: complete,
            partial_mce: if all { None } else { mean(&ces) },
            partial_relative_mce: if all { None } else { mean(&rel_ces) },
            missing,
            extras_mean_error: mean(&extra_means),
        });
    }
    Some(CorruptionReport {
        clean_dataset: clean_dataset.to_string(),
        alexnet_clean_error: 100.0 * table.alexnet_clean_error,
        models,
        corruptions: rows,
    })
}

/// `mce.csv` row: the summary with `missing` joined by spaces.
#[derive(Serialize)]
struct SummaryRecord<'a> {
    model: &'a str,
    group: &'a str,
    clean_error: Option<f64>,
    mce: Option<f64>,
    relative_mce: Option<f64>,
    mean_error: Option<f64>,
    status: &'a str,
    corruptions_complete: usize,
    partial_mce: Option<f64>,
    partial_relative_mce: Option<f64>,
    extras_mean_error: Option<f64>,
    missing: String,
}

fn csv_bytes<T: Serialize>(records: impl IntoIterator<Item = T>) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for r in records {
        writer
            .serialize(r)
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    writer.into_inner().map_err(|e| Error::Other(e.to_string()))
}

impl CorruptionReport {
    /// corruptions.csv (per model and corruption) and mce.csv (per model), each atomically.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let per_corruption = dir.join("corruptions.csv");
        write_atomic(&per_corruption, &csv_bytes(&self.corruptions)?)?;
        let summary = dir.join("mce.csv");
        let records = self.models.iter().map(|m| SummaryRecord {
            model: &m.model,
            group: &m.group,
            clean_error: m.clean_error,
            mce: m.mce,
            relative_mce: m.relative_mce,
            mean_error: m.mean_error,
            status: &m.status,
            corruptions_complete: m.corruptions_complete,
            partial_mce: m.partial_mce,
            partial_relative_mce: m.partial_relative_mce,
            extras_mean_error: m.extras_mean_error,
            missing: m.missing.join(" "),
        });
        write_atomic(&summary, &csv_bytes(records)?)?;
        Ok(vec![per_corruption, summary])
    }

    /// Lines for the report: what is withheld and why.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let table = corruptions::imagenet_c();
        // A model with no ImageNet-C row at all (a C̄-only folder, say) has no mCE to withhold.
        let has_imagenet_c = |model: &str| {
            self.corruptions
                .iter()
                .any(|r| r.model == model && table.get(&r.corruption).is_some())
        };
        for m in self
            .models
            .iter()
            .filter(|m| m.status != "complete" && has_imagenet_c(&m.model))
        {
            notes.push(format!(
                "{}: mCE withheld, {} of the 15 corruptions have all 5 severities (missing: {}); the partial means are over those only",
                m.model,
                m.corruptions_complete,
                compact_missing(&m.missing).join(", ")
            ));
        }
        for set in corruptions::named_sets() {
            if self.corruptions.iter().any(|r| r.family == set.name) && set.reference.is_none() {
                notes.push(format!(
                    "{} ({}): no normalising reference is published, so its corruptions get errors only, no CE and no mCE",
                    set.title, set.name
                ));
            }
        }
        if self.models.iter().any(|m| m.clean_error.is_none()) {
            notes.push(format!(
                "relative CE needs the clean error: models without a `{}` row have none",
                self.clean_dataset
            ));
        }
        notes
    }
}

/// `corruption/severity` pairs, a corruption missing all five named once (`snow (all)`).
fn compact_missing(missing: &[String]) -> Vec<String> {
    let mut by_corruption: Vec<(&str, Vec<&str>)> = Vec::new();
    for m in missing {
        let (c, s) = m.rsplit_once('/').unwrap_or((m, ""));
        match by_corruption.iter_mut().find(|(name, _)| *name == c) {
            Some((_, sev)) => sev.push(s),
            None => by_corruption.push((c, vec![s])),
        }
    }
    by_corruption
        .into_iter()
        .flat_map(|(c, sev)| {
            if sev.len() == 5 {
                vec![format!("{c} (all)")]
            } else {
                sev.into_iter().map(|s| format!("{c}/{s}")).collect()
            }
        })
        .collect()
}

/// Per model: relative mCE (or the partial one) and average effective robustness on the natural
/// shifts (`robustness`' `average` rows, which never include corruption datasets).
pub fn synthetic_vs_natural(
    report: &CorruptionReport,
    robustness: &[Robustness],
) -> Vec<(String, String, f64, f64)> {
    report
        .models
        .iter()
        .filter_map(|m| {
            let rel = m.relative_mce.or(m.partial_relative_mce)?;
            let er = robustness
                .iter()
                .find(|r| r.model == m.model && r.shift == "average")?
                .effective_robustness;
            Some((m.model.clone(), m.group.clone(), rel, er))
        })
        .collect()
}

/// What the corruption tables say, for the report.
pub const EXPLAINER: &str = "ImageNet-C (Hendrycks & Dietterich 2019), errors in %. E(c,s) = 100 − top-1 on \
corruption c at severity s. CE_c = 100 · Σ_s E(c,s) / Σ_s E_AlexNet(c,s); relative CE_c = 100 · Σ_s (E(c,s) − E_clean) \
/ Σ_s (E_AlexNet(c,s) − E_AlexNet,clean); mCE and relative mCE are their means over the 15 benchmark corruptions \
(AlexNet = 100). Mean error: the unnormalised mean of E over the 15. The 4 extras are never in mCE. A model \
missing any of the 75 corruption-severities gets no mCE; its partial means (over the corruptions it has whole) \
are shown separately.";

fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

/// Corruption names in column order: the benchmark ones present, then the extras and others.
fn columns(report: &CorruptionReport) -> Vec<(String, bool)> {
    let mut cols: Vec<(String, bool)> = Vec::new();
    for in_mce in [true, false] {
        for r in report.corruptions.iter().filter(|r| r.in_mce == in_mce) {
            if !cols.iter().any(|(c, _)| c == &r.corruption) {
                cols.push((r.corruption.clone(), in_mce));
            }
        }
    }
    cols
}

/// The summary table (one row per model) and the CE table (model × corruption: CE for the 15,
/// mean error for the others), shared by Markdown and HTML.
pub fn tables(report: &CorruptionReport) -> (Table, Table) {
    let header = [
        "model",
        "group",
        "clean error",
        "mCE",
        "relative mCE",
        "mean error",
        "status",
        "partial mCE",
        "partial relative mCE",
        "extras mean error",
    ]
    .map(String::from)
    .to_vec();
    let rows = report
        .models
        .iter()
        .map(|m| {
            vec![
                m.model.clone(),
                m.group.clone(),
                cell(m.clean_error),
                cell(m.mce),
                cell(m.relative_mce),
                cell(m.mean_error),
                format!("{} ({}/15)", m.status, m.corruptions_complete),
                cell(m.partial_mce),
                cell(m.partial_relative_mce),
                cell(m.extras_mean_error),
            ]
        })
        .collect();
    let cols = columns(report);
    let mut ce_header = vec!["model".to_string()];
    ce_header.extend(cols.iter().map(|(c, in_mce)| {
        if *in_mce {
            format!("CE {c}")
        } else {
            format!("error {c} (not in mCE)")
        }
    }));
    let ce_rows = report
        .models
        .iter()
        .map(|m| {
            let mut row = vec![m.model.clone()];
            row.extend(cols.iter().map(|(c, in_mce)| {
                let r = report
                    .corruptions
                    .iter()
                    .find(|r| r.model == m.model && &r.corruption == c);
                cell(r.and_then(|r| if *in_mce { r.ce } else { r.mean_error }))
            }));
            row
        })
        .collect();
    ((header, rows), (ce_header, ce_rows))
}

#[cfg(test)]
mod tests;
