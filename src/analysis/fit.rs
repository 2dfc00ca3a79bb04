//! Trend fit and effective robustness (docs/design.md, section 5): per shift, ordinary least squares of
//! T(OOD top-1) on T(ID top-1) over the baseline models, T = probit (default, as in "Accuracy on the
//! Line") or logit (as in the imagenet-testbed plots); a 95 % bootstrap band over baseline models;
//! each model's effective robustness `ood − T⁻¹(a·T(id) + b)` in percentage points.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{Error, Result};
use crate::input::scoring::Scoring;
use crate::results::evals::{self, EvalRow};

mod line;

pub use line::*;

/// One row of evals.csv as fit, plot and report read it: only model, dataset and top1 are required,
/// so users can bring published numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Accuracy {
    pub model: String,
    pub group: String,
    pub dataset: String,
    pub top1: f64,
    pub ci: Option<(f64, f64)>,
}

impl From<&EvalRow> for Accuracy {
    fn from(r: &EvalRow) -> Accuracy {
        Accuracy {
            model: r.model.clone(),
            group: r.group.clone(),
            dataset: r.dataset.clone(),
            top1: r.top1,
            ci: Some((r.top1_ci_low, r.top1_ci_high)),
        }
    }
}

/// Read an evals.csv (the one reader, `results::evals`) as fit, plot and report use it. Rows of
/// unlabelled datasets measure nothing and are left out: those datasets appear only through
/// `estimate`'s estimates.
pub fn read_accuracies(path: &Path) -> Result<Vec<Accuracy>> {
    Ok(measured(&evals::read(path)?))
}

fn read_accuracies_from(path: &Path, text: &str) -> Result<Vec<Accuracy>> {
    Ok(measured(&evals::read_from(path, text)?))
}

fn measured(rows: &[EvalRow]) -> Vec<Accuracy> {
    rows.iter()
        .filter(|r| r.labelled)
        .map(Accuracy::from)
        .collect()
}

/// Which models form the baseline.
#[derive(Debug, Clone)]
pub enum BaselineSpec {
    All,
    Group(String),
    Regex(regex::Regex),
    Names(BTreeSet<String>),
}

impl BaselineSpec {
    /// `all`, `group:NAME`, `file:PATH` (one model name per line) or a regex on model names.
    pub fn parse(spec: &str) -> Result<BaselineSpec> {
        if spec == "all" {
            return Ok(BaselineSpec::All);
        }
        if let Some(g) = spec.strip_prefix("group:") {
            return Ok(BaselineSpec::Group(g.to_string()));
        }
        if let Some(file) = spec.strip_prefix("file:") {
            let text = crate::input::read_text(Path::new(file), crate::input::MAX_SETTINGS_BYTES)?;
            let names = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            return Ok(BaselineSpec::Names(names));
        }
        let pattern = spec.strip_prefix("regex:").unwrap_or(spec);
        regex::Regex::new(pattern)
            .map(BaselineSpec::Regex)
            .map_err(|e| Error::Usage(format!("--baseline: `{pattern}` is not a valid regex: {e}")))
    }

    fn admits(&self, model: &str, group: &str) -> bool {
        match self {
            BaselineSpec::All => true,
            BaselineSpec::Group(g) => g == group,
            BaselineSpec::Regex(r) => r.is_match(model),
            BaselineSpec::Names(n) => n.contains(model),
        }
    }

    /// Whether a model made from other models' weights (a WiSE-FT point, a soup) is in the
    /// baseline: only when named, by its group or in a file of names; `all` and a regex leave it
    /// out, since it is a point on a curve between models, not another model of the cloud.
    fn admits_intervention(&self, model: &str, group: &str) -> bool {
        matches!(self, BaselineSpec::Group(_) | BaselineSpec::Names(_)) && self.admits(model, group)
    }
}

/// Settings of a fit.
#[derive(Debug, Clone)]
pub struct FitSettings {
    pub transform: Transform,
    /// The in-distribution dataset's name.
    pub id: String,
    pub baseline: BaselineSpec,
    pub resamples: usize,
    pub seed: u64,
    /// Fit ImageNet-A piecewise, split at this model's ID accuracy.
    pub split_a: Option<String>,
    /// Each dataset's declared scoring (from run.json); empty for published numbers.
    pub scorings: BTreeMap<String, Scoring>,
    /// Models made from other models' weights (run.json's `models`), out of the baseline unless
    /// named (`BaselineSpec::admits_intervention`).
    pub interventions: BTreeSet<String>,
}

impl FitSettings {
    fn in_baseline(&self, model: &str, group: &str) -> bool {
        if self.interventions.contains(model) {
            self.baseline.admits_intervention(model, group)
        } else {
            self.baseline.admits(model, group)
        }
    }

    /// A note naming the WiSE-FT and soup models the selector would have taken but left out.
    fn interventions_left_out(&self, rows: &[Accuracy]) -> Option<String> {
        let left: BTreeSet<&str> = rows
            .iter()
            .filter(|r| self.interventions.contains(&r.model))
            .filter(|r| {
                self.baseline.admits(&r.model, &r.group) && !self.in_baseline(&r.model, &r.group)
            })
            .map(|r| r.model.as_str())
            .collect();
        (!left.is_empty()).then(|| {
            format!(
                "left out of the baseline: {} model(s) made from other models' weights (WiSE-FT, soups): {}; \
                 name them with --baseline group:NAME or file:PATH to fit on them",
                left.len(),
                left.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Everything a fit produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitReport {
    pub transform: Transform,
    pub id_dataset: String,
    pub epsilon: f64,
    pub shifts: Vec<ShiftFit>,
    /// Lines said aloud: ID fallbacks, models left out.
    pub notes: Vec<String>,
    /// What limits the result's meaning, said in reports and the terminal headline too: fits
    /// on too few models or with a low R², models kept from earlier runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cautions: Vec<String>,
}

/// One row of robustness.csv.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Robustness {
    pub model: String,
    pub group: String,
    pub shift: String,
    pub id_dataset: String,
    pub id_top1: f64,
    pub ood_top1: f64,
    pub expected_ood_top1: f64,
    pub effective_robustness: f64,
    pub er_low: f64,
    pub er_high: f64,
}

/// Datasets that are shifts: everything except the ID dataset and `X@Y` class-restricted views.
pub fn shifts_of(rows: &[Accuracy], id: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for r in rows {
        if r.dataset != id && !r.dataset.contains('@') && !seen.contains(&r.dataset) {
            seen.push(r.dataset.clone());
        }
    }
    seen
}

/// Accuracy pairs on a shift: the class-restricted ID point `id@shift` where the model has one,
/// else the plain ID accuracy. Returns the points and the ID dataset used for most of them.
pub fn points_for(rows: &[Accuracy], id: &str, shift: &str) -> (Vec<Point>, String) {
    let restricted = format!("{id}@{shift}");
    // Per model: its shift row, its class-restricted ID row, its plain ID row.
    type Rows<'a> = (
        Option<&'a Accuracy>,
        Option<&'a Accuracy>,
        Option<&'a Accuracy>,
    );
    let mut by_model: BTreeMap<&str, Rows> = BTreeMap::new();
    for r in rows {
        let e = by_model.entry(&r.model).or_default();
        if r.dataset == shift {
            e.0 = Some(r);
        } else if r.dataset == restricted {
            e.1 = Some(r);
        } else if r.dataset == id {
            e.2 = Some(r);
        }
    }
    let mut points = Vec::new();
    let mut restricted_used = 0;
    for (model, (ood, rid, fid)) in by_model {
        let (Some(ood), Some(idacc)) = (ood, rid.or(fid)) else {
            continue;
        };
        restricted_used += rid.is_some() as usize;
        points.push(Point {
            model: model.to_string(),
            group: ood.group.clone(),
            id: idacc.top1,
            ood: ood.top1,
            ood_ci: ood.ci,
        });
    }
    let used = if restricted_used * 2 > points.len() {
        restricted
    } else {
        id.to_string()
    };
    (points, used)
}

/// Fit every shift: the line on the baseline models (from `cloud` when given, else from `rows`),
/// and the effective robustness of every model in `rows`.
pub fn fit_all(
    rows: &[Accuracy],
    cloud: Option<&[Accuracy]>,
    settings: &FitSettings,
) -> Result<(FitReport, Vec<Robustness>)> {
    let base_rows = cloud.unwrap_or(rows);
    check_fit_inputs(rows, base_rows, settings)?;
    let mut report = FitReport {
        transform: settings.transform,
        id_dataset: settings.id.clone(),
        epsilon: EPSILON,
        shifts: Vec::new(),
        notes: Vec::new(),
        cautions: Vec::new(),
    };
    let mut robustness = Vec::new();
    for shift in shifts_of(rows, &settings.id) {
        let (base_points, base_id) = points_for(base_rows, &settings.id, &shift);
        // Published models are no interventions of this folder's, whatever their names.
        let baseline: Vec<&Point> = base_points
            .iter()
            .filter(|p| match cloud {
                Some(_) => settings.baseline.admits(&p.model, &p.group),
                None => settings.in_baseline(&p.model, &p.group),
            })
            .collect();
        if baseline.len() < 3 {
            return Err(Error::Usage(format!(
                "shift `{shift}`: {} baseline model(s) have both ID and OOD accuracy; {TOO_FEW_TO_FIT}",
                baseline.len()
            )));
        }
        let (points, id_used) = points_for(rows, &settings.id, &shift);
        let scoring = settings.scorings.get(&shift).copied();
        if id_used == settings.id && scoring.is_some_and(restricts_classes) {
            report.notes.push(format!(
                "{shift}: no `{}@{shift}` rows, so the class-restricted ID accuracy is not known; using full `{}` accuracy",
                settings.id, settings.id
            ));
        }
        let mut fit = if scoring == Some(Scoring::ImageNetA) {
            fit_imagenet_a(&shift, &base_id, &base_points, &baseline, settings)?
        } else {
            fit_line(&shift, &base_id, &baseline, settings)?
        };
        fit.caution = caution(&fit.line);
        if let Some(c) = &fit.caution {
            report.cautions.push(format!("{shift}: {c}"));
        }
        robustness.extend(
            points
                .iter()
                .map(|p| robustness_of(p, &fit, &shift, &id_used)),
        );
        report.shifts.push(fit);
    }
    if let Some(note) = settings
        .interventions_left_out(base_rows)
        .filter(|_| cloud.is_none())
    {
        report.notes.push(note);
    }
    let averages = average_robustness(&robustness, report.shifts.len(), &settings.id);
    robustness.extend(averages);
    Ok((report, robustness))
}

/// The baseline group exists and the ID dataset has rows: checked before any fit, so the error
/// names what the user can change.
fn check_fit_inputs(
    rows: &[Accuracy],
    base_rows: &[Accuracy],
    settings: &FitSettings,
) -> Result<()> {
    if settings.resamples > MAX_RESAMPLES {
        return Err(Error::Usage(format!(
            "--bootstrap {}: at most {MAX_RESAMPLES} resamples",
            settings.resamples
        )));
    }
    if let BaselineSpec::Group(g) = &settings.baseline {
        let groups: BTreeSet<&str> = base_rows.iter().map(|r| r.group.as_str()).collect();
        if !groups.contains(g.as_str()) {
            return Err(Error::Usage(format!(
                "--baseline group:{g}: no model is in group `{g}` (groups: {})",
                groups.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if !rows.iter().any(|r| r.dataset == settings.id) {
        let datasets: BTreeSet<&str> = rows.iter().map(|r| r.dataset.as_str()).collect();
        return Err(Error::Usage(format!(
            "no rows for the in-distribution dataset `{}`; name it with --id (datasets: {})",
            settings.id,
            datasets.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

fn fit_line(
    shift: &str,
    base_id: &str,
    baseline: &[&Point],
    settings: &FitSettings,
) -> Result<ShiftFit> {
    fit_shift(
        shift,
        base_id,
        baseline,
        settings.transform,
        settings.resamples,
        settings.seed,
    )
}

/// ImageNet-A's fit is flagged as not linear; with `--split-a MODEL` it is fitted piecewise,
/// split at that model's ID accuracy, as imagenet-testbed does.
fn fit_imagenet_a(
    shift: &str,
    base_id: &str,
    base_points: &[Point],
    baseline: &[&Point],
    settings: &FitSettings,
) -> Result<ShiftFit> {
    let Some(model) = &settings.split_a else {
        let mut fit = fit_line(shift, base_id, baseline, settings)?;
        fit.linear = false;
        fit.note = Some(
            "ImageNet-A was adversarially filtered against ResNet-50, so its accuracies do not follow a line; \
             read this fit with care"
                .into(),
        );
        return Ok(fit);
    };
    let Some(at) = base_points.iter().find(|p| &p.model == model).map(|p| p.id) else {
        return Err(Error::Usage(format!(
            "--split-a: no model `{model}` with accuracies on `{shift}`"
        )));
    };
    let (below, above): (Vec<&Point>, Vec<&Point>) = baseline.iter().partition(|p| p.id < at);
    if below.len() < 3 || above.len() < 3 {
        return Err(Error::Usage(format!(
            "--split-a {model}: {} baseline models lie below its ID accuracy and {} at or above; each piece needs at least 3",
            below.len(),
            above.len()
        )));
    }
    let mut lower = fit_line(shift, base_id, &below, settings)?;
    let upper = fit_line(shift, base_id, &above, settings)?;
    lower.linear = false;
    lower.note = Some(format!(
        "piecewise fit, split at {model}'s ID accuracy ({at:.2} %): `slope`/`intercept` below it, `upper` at or above it"
    ));
    lower.upper = Some(Box::new(upper));
    lower.split_at = Some(at);
    lower.split_model = Some(model.clone());
    Ok(lower)
}

/// A model's effective robustness on one shift, with its interval: the model's Clopper–Pearson
/// interval against the fit's bootstrap band.
fn robustness_of(p: &Point, fit: &ShiftFit, shift: &str, id_used: &str) -> Robustness {
    let expected = fit.expected(p.id);
    let (e_lo, e_hi) = fit.expected_interval(p.id);
    let (o_lo, o_hi) = p.ood_ci.unwrap_or((p.ood, p.ood));
    Robustness {
        model: p.model.clone(),
        group: p.group.clone(),
        shift: shift.to_string(),
        id_dataset: id_used.to_string(),
        id_top1: p.id,
        ood_top1: p.ood,
        expected_ood_top1: expected,
        effective_robustness: p.ood - expected,
        er_low: o_lo - e_hi,
        er_high: o_hi - e_lo,
    }
}

/// The average over shifts (`shift = "average"`), for models scored on every one of them.
fn average_robustness(robustness: &[Robustness], n_shifts: usize, id: &str) -> Vec<Robustness> {
    let mut by_model: BTreeMap<&str, Vec<&Robustness>> = BTreeMap::new();
    for r in robustness {
        by_model.entry(&r.model).or_default().push(r);
    }
    let mut averages = Vec::new();
    for (model, rs) in by_model {
        if rs.len() != n_shifts || n_shifts == 0 {
            continue;
        }
        let mean =
            |f: &dyn Fn(&Robustness) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / rs.len() as f64;
        averages.push(Robustness {
            model: model.to_string(),
            group: rs[0].group.clone(),
            shift: "average".into(),
            id_dataset: id.to_string(),
            id_top1: mean(&|r| r.id_top1),
            ood_top1: mean(&|r| r.ood_top1),
            expected_ood_top1: mean(&|r| r.expected_ood_top1),
            effective_robustness: mean(&|r| r.effective_robustness),
            er_low: mean(&|r| r.er_low),
            er_high: mean(&|r| r.er_high),
        });
    }
    averages
}

/// Whether a shift's scoring restricts classes (so its ID point should be restricted too).
fn restricts_classes(scoring: Scoring) -> bool {
    matches!(
        scoring,
        Scoring::ImageNetR | Scoring::ImageNetA | Scoring::ObjectNet
    )
}

/// Published baseline clouds shipped with the tool (see assets/baselines/SOURCES.md).
pub fn cloud(name: &str) -> Result<Vec<Accuracy>> {
    let (file, text) = match name {
        "timm" => (
            "<built-in>/assets/baselines/timm.csv",
            include_str!("../../assets/baselines/timm.csv"),
        ),
        "testbed" => (
            "<built-in>/assets/baselines/testbed.csv",
            include_str!("../../assets/baselines/testbed.csv"),
        ),
        path => return read_accuracies(Path::new(path)),
    };
    read_accuracies_from(Path::new(file), text)
}

#[cfg(test)]
mod tests;
