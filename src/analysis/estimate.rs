//! `robust-eval estimate`: accuracy on each shift estimated without its labels (AC, DoC, ATC-MC,
//! ATC-NE, ALine-S, ALine-D), and calibration (ECE, Brier), from a results folder's predictions
//! (docs/confidence.md). Writes estimates.csv, agreement.csv and calibration.csv.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analysis::estimators::{self, MISSING};
use crate::analysis::markup::Table;
use crate::analysis::reliability::{self, ReliabilityRow};
use crate::error::{Error, Location, Result};
use crate::files::write_atomic;
use crate::results::store::{csv_bytes, ResultsStore};

/// Below this R² of the agreement line, ALine's estimates are marked not trusted.
pub const DEFAULT_MIN_R2: f64 = 0.95;

#[derive(Debug, Clone)]
pub struct EstimateSettings {
    /// In-distribution dataset; default: the suite's (run.json).
    pub id: Option<String>,
    /// Only models whose names match.
    pub models: Option<regex::Regex>,
    pub min_r2: f64,
}

impl Default for EstimateSettings {
    fn default() -> Self {
        EstimateSettings {
            id: None,
            models: None,
            min_r2: DEFAULT_MIN_R2,
        }
    }
}

/// One row of estimates.csv.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EstimateRow {
    pub model: String,
    pub dataset: String,
    pub method: String,
    /// Estimated top-1, percent.
    pub estimate: f64,
    /// Measured top-1, percent; empty where the dataset has no labels.
    pub top1: Option<f64>,
    /// estimate − top1, percentage points.
    pub error: Option<f64>,
    /// False for ALine estimates whose agreement line's R² is below the mark.
    pub trusted: bool,
}

pub const ESTIMATES_HEADER: &[&str] = &[
    "model", "dataset", "method", "estimate", "top1", "error", "trusted",
];

/// One row of agreement.csv: the agreement line of a shift, or why ALine was refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgreementRow {
    pub dataset: String,
    /// The ID view the agreements and accuracies come from (`<id>@<shift>` where restricted).
    pub id_view: String,
    pub models: usize,
    pub pairs: usize,
    pub slope: Option<f64>,
    pub intercept: Option<f64>,
    pub r2: Option<f64>,
    pub trusted: bool,
    /// Why ALine was refused; empty when it ran.
    pub refused: String,
}

pub const AGREEMENT_HEADER: &[&str] = &[
    "dataset",
    "id_view",
    "models",
    "pairs",
    "slope",
    "intercept",
    "r2",
    "trusted",
    "refused",
];

/// One row of calibration.csv.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationRow {
    pub model: String,
    pub dataset: String,
    pub n: usize,
    /// Measured top-1, percent (from the predictions).
    pub top1: f64,
    /// Mean max-softmax confidence, percent.
    pub confidence: f64,
    /// Expected calibration error, percent (15 equal-width bins).
    pub ece: f64,
    /// Brier score of top-1 correctness (0 to 1).
    pub brier: f64,
}

pub const CALIBRATION_HEADER: &[&str] = &[
    "model",
    "dataset",
    "n",
    "top1",
    "confidence",
    "ece",
    "brier",
];

/// Everything `estimate` found, and what it could not estimate (dataset, reason).
#[derive(Debug, Default, Serialize)]
pub struct EstimateReport {
    pub estimates: Vec<EstimateRow>,
    pub agreement: Vec<AgreementRow>,
    pub calibration: Vec<CalibrationRow>,
    /// The non-empty confidence bins per model and view (reliability.csv), for the diagrams.
    #[serde(skip)]
    pub reliability: Vec<ReliabilityRow>,
    #[serde(skip)]
    pub refused: Vec<(String, String)>,
}

/// One model's predictions on one view, compact: top-1 class per manifest row (MISSING where
/// the model has none), and per stored row its correctness and confidences.
pub struct ViewPredictions {
    /// False where the view has no labels (its `correct` column all null): `correct` then holds
    /// placeholders, and no accuracy or calibration is computed from it.
    pub labelled: bool,
    pub top1: Vec<u16>,
    pub correct: Vec<bool>,
    pub confidence: Vec<f64>,
    pub entropy: Vec<f64>,
}

/// Read the columns `estimate` needs from a predictions file. Err(reason) where the file has no
/// confidences (written before they were stored) or a class index beyond u16.
pub fn read_view(path: &Path) -> Result<std::result::Result<ViewPredictions, String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::input(Location::file(path), e.to_string()))?;
    let bad = |e: PolarsError| Error::input(Location::file(path), format!("predictions: {e}"));
    let height = df.height();
    if height > 0
        && crate::results::store::CONFIDENCE_COLUMNS
            .iter()
            .any(|c| df.column(c).is_err())
    {
        return Ok(Err(
            "its predictions have no confidences (written by an earlier robust-eval): run it again"
                .into(),
        ));
    }
    if height == 0 {
        return Ok(Ok(ViewPredictions {
            labelled: true,
            top1: Vec::new(),
            correct: Vec::new(),
            confidence: Vec::new(),
            entropy: Vec::new(),
        }));
    }
    let null = |name: &str| {
        Error::input(
            Location::file(path),
            format!("predictions: a null in `{name}`"),
        )
    };
    let index = df.column("index").map_err(bad)?.u32().map_err(bad)?.clone();
    let floats = |name: &str| -> Result<Vec<f64>> {
        let c = df.column(name).map_err(bad)?.f64().map_err(bad)?.clone();
        (0..height)
            .map(|i| c.get(i).ok_or_else(|| null(name)))
            .collect()
    };
    let correct_column = df.column("correct").map_err(bad)?;
    let labelled = correct_column.null_count() < height;
    let correct: Vec<bool> = if labelled {
        let c = correct_column.bool().map_err(bad)?.clone();
        (0..height)
            .map(|i| c.get(i).ok_or_else(|| null("correct")))
            .collect::<Result<_>>()?
    } else {
        vec![false; height]
    };
    let lists = df.column("top5").map_err(bad)?.list().map_err(bad)?.clone();
    let rows: Vec<u32> = (0..height)
        .map(|i| index.get(i).ok_or_else(|| null("index")))
        .collect::<Result<_>>()?;
    let last = rows.iter().copied().max().unwrap_or(0) as usize;
    let mut top1 = vec![MISSING; last + 1];
    for (row, list) in rows.iter().zip(lists.amortized_iter()) {
        let class = list
            .and_then(|s| s.as_ref().u32().ok().and_then(|ids| ids.get(0)))
            .ok_or_else(|| null("top5"))?;
        if class >= MISSING as u32 {
            return Ok(Err(format!(
                "class index {class} is beyond what estimate handles (65534)"
            )));
        }
        top1[*row as usize] = class as u16;
    }
    Ok(Ok(ViewPredictions {
        labelled,
        top1,
        correct,
        confidence: floats("confidence")?,
        entropy: floats("entropy")?,
    }))
}

/// Estimate every shift of a results folder.
pub fn estimate(dir: &Path, settings: &EstimateSettings) -> Result<EstimateReport> {
    let store = ResultsStore::open(dir)?;
    if store.run.evaluations.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no run.json with evaluations: estimate reads a run's predictions",
            dir.display()
        )));
    }
    let id = settings
        .id
        .clone()
        .or_else(|| Some(store.run.id.clone()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "imagenet".into());
    let wanted = |m: &str| settings.models.as_ref().is_none_or(|r| r.is_match(m));
    // Per view: the models with a stored row for it.
    let mut views: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for row in &store.evals {
        if wanted(&row.model) {
            views.entry(&row.dataset).or_default().insert(&row.model);
        }
    }
    if !views.contains_key(id.as_str()) {
        return Err(Error::Usage(format!(
            "{}: no model was scored on the ID dataset `{id}` (name it with --id)",
            dir.display()
        )));
    }
    let mut report = EstimateReport::default();
    let mut loaded: BTreeMap<(String, String), std::result::Result<ViewPredictions, String>> =
        BTreeMap::new();
    let mut load = |model: &str, view: &str| -> Result<()> {
        let key = (model.to_string(), view.to_string());
        if let std::collections::btree_map::Entry::Vacant(slot) = loaded.entry(key) {
            slot.insert(read_view(&store.predictions_path(model, view))?);
        }
        Ok(())
    };
    for (&view, models) in &views {
        for &model in models {
            load(model, view)?;
        }
    }
    for ((model, view), v) in &loaded {
        match v {
            // Calibration needs labels; an unlabelled view gets estimates only.
            Ok(v) if !v.correct.is_empty() && v.labelled => {
                report.calibration.push(calibration_row(model, view, v));
                report.reliability.extend(reliability::rows(
                    model,
                    view,
                    &v.confidence,
                    &v.correct,
                ));
            }
            Ok(_) => {}
            Err(why) => report
                .refused
                .push((view.clone(), format!("`{model}`: {why}"))),
        }
    }
    let shifts: Vec<&str> = views
        .keys()
        .copied()
        .filter(|v| *v != id && !v.contains('@'))
        .collect();
    for shift in shifts {
        let restricted = format!("{id}@{shift}");
        let id_view = if views.contains_key(restricted.as_str()) {
            restricted
        } else {
            id.clone()
        };
        if let Err(why) = same_images(&store, &id, shift) {
            report.refused.push((shift.to_string(), why));
            continue;
        }
        let models: Vec<&str> = views[shift]
            .iter()
            .copied()
            .filter(|m| views[id_view.as_str()].contains(m))
            .filter(|m| {
                matches!(loaded.get(&(m.to_string(), shift.to_string())), Some(Ok(v)) if !v.correct.is_empty())
                    && matches!(loaded.get(&(m.to_string(), id_view.clone())), Some(Ok(v)) if !v.correct.is_empty())
            })
            .collect();
        if models.is_empty() {
            report.refused.push((
                shift.to_string(),
                format!(
                    "no model has predictions with confidences on both `{shift}` and `{id_view}`"
                ),
            ));
            continue;
        }
        let get = |m: &str, v: &str| match &loaded[&(m.to_string(), v.to_string())] {
            Ok(p) => p,
            Err(_) => unreachable!("models with unusable predictions were left out"),
        };
        let ood: Vec<&ViewPredictions> = models.iter().map(|m| get(m, shift)).collect();
        let idp: Vec<&ViewPredictions> = models.iter().map(|m| get(m, &id_view)).collect();
        let labelled = ood.iter().all(|v| v.labelled);
        if idp.iter().any(|v| !v.labelled) {
            report.refused.push((
                shift.to_string(),
                format!("the ID view `{id_view}` has no labels: ATC, DoC and ALine fit on them"),
            ));
            continue;
        }
        estimate_shift(
            shift,
            &id_view,
            &models,
            &idp,
            &ood,
            labelled,
            settings.min_r2,
            &mut report,
        );
    }
    Ok(report)
}

/// Whether every model read the same images of a dataset (one manifest hash in run.json).
fn same_images(store: &ResultsStore, id: &str, shift: &str) -> std::result::Result<(), String> {
    for dataset in [id, shift] {
        let hashes: BTreeSet<&str> = store
            .run
            .evaluations
            .iter()
            .filter(|e| e.dataset == dataset)
            .map(|e| e.manifest_sha256.as_str())
            .collect();
        if hashes.len() > 1 {
            return Err(format!(
                "the models read different images of `{dataset}` ({} manifest hashes in run.json): \
                 agreement needs the same images; run them again on one manifest",
                hashes.len()
            ));
        }
    }
    Ok(())
}

fn calibration_row(model: &str, view: &str, v: &ViewPredictions) -> CalibrationRow {
    let c = estimators::calibration(&v.confidence, &v.correct);
    let n = v.correct.len();
    CalibrationRow {
        model: model.to_string(),
        dataset: view.to_string(),
        n,
        top1: 100.0 * v.correct.iter().filter(|&&c| c).count() as f64 / n as f64,
        confidence: 100.0 * estimators::mean(&v.confidence),
        ece: 100.0 * c.ece,
        brier: c.brier,
    }
}

fn accuracy(v: &ViewPredictions) -> f64 {
    v.correct.iter().filter(|&&c| c).count() as f64 / v.correct.len() as f64
}

/// Pairwise agreement of every pair i < j on one view (None on the diagonal and below).
pub fn agreement_matrix(views: &[&ViewPredictions]) -> Vec<Vec<Option<f64>>> {
    let n = views.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            (0..n)
                .map(|j| {
                    (j > i)
                        .then(|| estimators::agreement(&views[i].top1, &views[j].top1))
                        .flatten()
                })
                .collect()
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn estimate_shift(
    shift: &str,
    id_view: &str,
    models: &[&str],
    idp: &[&ViewPredictions],
    ood: &[&ViewPredictions],
    labelled: bool,
    min_r2: f64,
    report: &mut EstimateReport,
) {
    let id_acc: Vec<f64> = idp.iter().map(|v| accuracy(v)).collect();
    let mut rows = Vec::new();
    let mut push = |model: &str, method: &str, estimate: f64, truth: Option<f64>, trusted: bool| {
        let estimate = 100.0 * estimate;
        let top1 = truth.map(|t| 100.0 * t);
        rows.push(EstimateRow {
            model: model.to_string(),
            dataset: shift.to_string(),
            method: method.to_string(),
            estimate,
            top1,
            error: top1.map(|t| estimate - t),
            trusted,
        });
    };
    for (k, &model) in models.iter().enumerate() {
        let truth = labelled.then(|| accuracy(ood[k]));
        let (id_conf, ood_conf) = (
            estimators::mean(&idp[k].confidence),
            estimators::mean(&ood[k].confidence),
        );
        push(model, "AC", ood_conf, truth, true);
        push(model, "DoC", id_acc[k] - (id_conf - ood_conf), truth, true);
        let t = estimators::atc_threshold(&idp[k].confidence, &idp[k].correct);
        push(
            model,
            "ATC-MC",
            estimators::atc_estimate(t, &ood[k].confidence),
            truth,
            true,
        );
        let neg = |v: &ViewPredictions| v.entropy.iter().map(|h| -h).collect::<Vec<f64>>();
        let t = estimators::atc_threshold(&neg(idp[k]), &idp[k].correct);
        push(
            model,
            "ATC-NE",
            estimators::atc_estimate(t, &neg(ood[k])),
            truth,
            true,
        );
    }
    let id_agr = agreement_matrix(idp);
    let ood_agr = agreement_matrix(ood);
    let mut diag = AgreementRow {
        dataset: shift.to_string(),
        id_view: id_view.to_string(),
        models: models.len(),
        pairs: 0,
        slope: None,
        intercept: None,
        r2: None,
        trusted: false,
        refused: String::new(),
    };
    match estimators::aline(&id_acc, &id_agr, &ood_agr) {
        Ok(a) => {
            let trusted = a.line.r2 >= min_r2;
            diag.pairs = a.line.pairs;
            diag.slope = Some(a.line.slope);
            diag.intercept = Some(a.line.intercept);
            diag.r2 = Some(a.line.r2);
            diag.trusted = trusted;
            for (k, &model) in models.iter().enumerate() {
                let truth = labelled.then(|| accuracy(ood[k]));
                push(model, "ALine-S", a.s[k], truth, trusted);
                match a.d[k] {
                    Some(d) => push(model, "ALine-D", d, truth, trusted),
                    None => report.refused.push((
                        shift.to_string(),
                        format!("ALine-D for `{model}`: it is in no pair of models left after filtering"),
                    )),
                }
            }
        }
        Err(why) => {
            diag.refused = why.clone();
            report.refused.push((shift.to_string(), why));
        }
    }
    report.estimates.extend(rows);
    report.agreement.push(diag);
}

impl EstimateReport {
    /// Write estimates.csv, agreement.csv and calibration.csv into the results folder.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let files = [
            (
                "estimates.csv",
                csv_bytes(&self.estimates, ESTIMATES_HEADER)?,
            ),
            (
                "agreement.csv",
                csv_bytes(&self.agreement, AGREEMENT_HEADER)?,
            ),
            (
                "calibration.csv",
                csv_bytes(&self.calibration, CALIBRATION_HEADER)?,
            ),
            (
                "reliability.csv",
                csv_bytes(&self.reliability, reliability::HEADER)?,
            ),
        ];
        let mut written = Vec::new();
        for (name, bytes) in files {
            let path = dir.join(name);
            write_atomic(&path, &bytes)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Largest estimate CSV read back for a report.
const MAX_CSV_BYTES: u64 = 256 << 20;

fn read_rows<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = crate::input::read_text(path, MAX_CSV_BYTES)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .deserialize()
        .map(|row| {
            row.map_err(|e: csv::Error| {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                Error::input(Location::file(path).line(line), e.to_string())
            })
        })
        .collect()
}

impl EstimateReport {
    /// What `estimate` last wrote in a results folder, for the reports; None where it has not
    /// run there.
    pub fn read(dir: &Path) -> Result<Option<EstimateReport>> {
        let path = |name: &str| dir.join(name);
        if !path("calibration.csv").is_file() {
            return Ok(None);
        }
        let optional = |name: &str| path(name).is_file();
        Ok(Some(EstimateReport {
            calibration: read_rows(&path("calibration.csv"))?,
            estimates: if optional("estimates.csv") {
                read_rows(&path("estimates.csv"))?
            } else {
                Vec::new()
            },
            agreement: if optional("agreement.csv") {
                read_rows(&path("agreement.csv"))?
            } else {
                Vec::new()
            },
            reliability: if optional("reliability.csv") {
                read_rows(&path("reliability.csv"))?
            } else {
                Vec::new()
            },
            refused: Vec::new(),
        }))
    }

    /// The report's sections (heading, text, table): calibration, the agreement lines, and the
    /// estimates with the mean absolute error per method where the shift is labelled.
    pub fn sections(&self) -> Vec<(String, String, Table)> {
        let num = |v: f64| format!("{v:.2}");
        let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "–".into());
        let mut out = Vec::new();
        let header = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rows = self
            .calibration
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.dataset.clone(),
                    r.n.to_string(),
                    num(r.top1),
                    num(r.confidence),
                    num(r.ece),
                    format!("{:.4}", r.brier),
                ]
            })
            .collect();
        out.push((
            "Calibration".to_string(),
            "Expected calibration error (ECE, %) over 15 equal-width confidence bins, each weighted by its share of images; Brier score of top-1 correctness. Confidence is the max softmax probability over the scored classes.".to_string(),
            (header(&["model", "dataset", "images", "top-1", "mean confidence", "ECE", "Brier"]), rows),
        ));
        if !self.agreement.is_empty() {
            let rows = self
                .agreement
                .iter()
                .map(|r| {
                    vec![
                        r.dataset.clone(),
                        r.id_view.clone(),
                        r.models.to_string(),
                        r.pairs.to_string(),
                        opt(r.slope),
                        opt(r.intercept),
                        r.r2.map(|v| format!("{v:.3}"))
                            .unwrap_or_else(|| "–".into()),
                        if r.refused.is_empty() {
                            if r.trusted {
                                "yes".into()
                            } else {
                                "no (R² below the mark)".into()
                            }
                        } else {
                            format!("refused: {}", r.refused)
                        },
                    ]
                })
                .collect();
            out.push((
                "Agreement on the line".to_string(),
                "Per shift, the OLS line of probit shift agreement on probit ID agreement over the model pairs whose agreements both lie in [0.05, 0.98] (Baek et al. 2022). ALine's estimates are trusted where R² reaches the mark.".to_string(),
                (header(&["shift", "ID view", "models", "pairs", "slope", "intercept", "R²", "ALine trusted"]), rows),
            ));
        }
        if !self.estimates.is_empty() {
            let mut errors: BTreeMap<(&str, &str), (f64, usize)> = BTreeMap::new();
            for r in &self.estimates {
                if let Some(e) = r.error {
                    let entry = errors
                        .entry((r.dataset.as_str(), r.method.as_str()))
                        .or_default();
                    entry.0 += e.abs();
                    entry.1 += 1;
                }
            }
            let rows = errors
                .iter()
                .map(|((dataset, method), (sum, n))| {
                    vec![
                        dataset.to_string(),
                        method.to_string(),
                        n.to_string(),
                        num(sum / *n as f64),
                    ]
                })
                .collect();
            out.push((
                "Estimated accuracy: error per method".to_string(),
                "Each shift's top-1 estimated as if it had no labels, against the measured top-1: mean absolute error in percentage points.".to_string(),
                (header(&["shift", "method", "models", "MAE (pp)"]), rows),
            ));
            let rows = self
                .estimates
                .iter()
                .map(|r| {
                    vec![
                        r.model.clone(),
                        r.dataset.clone(),
                        r.method.clone(),
                        num(r.estimate),
                        opt(r.top1),
                        opt(r.error),
                        if r.trusted { "yes".into() } else { "no".into() },
                    ]
                })
                .collect();
            out.push((
                "Estimated accuracy".to_string(),
                "Top-1 (%) estimated without the shift's labels (AC, DoC, ATC-MC, ATC-NE, ALine-S, ALine-D), the measured top-1 where labelled, and the difference.".to_string(),
                (header(&["model", "shift", "method", "estimate", "top-1", "error", "trusted"]), rows),
            ));
        }
        out
    }
}
