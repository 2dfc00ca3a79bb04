//! The analysis steps on a results folder: fit (fit.json, robustness.csv), plots and reports.
//! `run` ends with all of them; the `fit`, `plot` and `report` commands redo one step on stored
//! results, and work on a folder that holds only an `evals.csv` (e.g. published numbers).

pub mod corruptions;
pub mod estimate;
pub mod estimated;
pub mod estimators;
pub mod fit;
pub mod gate;
pub mod markup;
pub mod plot;
pub mod reliability;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::fit::{
    Accuracy, BaselineSpec, FitReport, FitSettings, Point, Robustness, Transform,
};
use crate::analysis::plot::ShiftChart;
use crate::analysis::report::Format;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::input::scoring::Scoring;
use crate::results::store::{read_run_info, RunInfo};

/// Settings shared by fit, plot and report.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    pub transform: Transform,
    /// In-distribution dataset; default: the suite's (from run.json), else `imagenet`.
    pub id: Option<String>,
    /// `all`, `group:NAME`, `file:PATH` or a regex on model names; default: the suite's choice
    /// (recorded in run.json), else `all`.
    pub baseline: Option<String>,
    /// `timm`, `testbed` or a path to an evals.csv-shaped table whose models form the baseline.
    pub cloud: Option<String>,
    pub resamples: usize,
    pub seed: u64,
    pub label_points: bool,
    /// Fit ImageNet-A piecewise, split at this model's ID accuracy.
    pub split_a: Option<String>,
    /// A dataset held out for choosing WiSE-FT's α: not a shift.
    pub held_out: Option<String>,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        AnalysisSettings {
            transform: Transform::Probit,
            id: None,
            baseline: None,
            cloud: None,
            resamples: 1000,
            seed: 20200707,
            label_points: false,
            split_a: None,
            held_out: None,
        }
    }
}

/// A results folder's accuracies, provenance, and the fit over them.
pub struct Analysis {
    pub dir: PathBuf,
    pub evals: Vec<Accuracy>,
    pub run: Option<RunInfo>,
    pub cloud: Option<Vec<Accuracy>>,
    pub fit: FitReport,
    pub robustness: Vec<Robustness>,
    /// ImageNet-C's metrics, when the folder holds corruption datasets.
    pub corruptions: Option<corruptions::CorruptionReport>,
    /// The dataset WiSE-FT's α is chosen on (`--held-out`), checked to be in evals.csv.
    pub held_out: Option<String>,
    /// `estimate`'s estimates as the charts draw them (empty where it has not run).
    pub estimated: estimated::Estimated,
}

/// How each dataset was scored, as its suite declared it: from run.json; for a folder of
/// published numbers (no run.json), as the shipped `imagenet-shifts` suite declares the datasets
/// it names exactly. This decides class restriction and ImageNet-A's flag, never a name's look
/// (`imagenet-real` is not `imagenet-r`).
fn declared_scorings(run: Option<&RunInfo>) -> BTreeMap<String, Scoring> {
    match run {
        Some(r) => r
            .evaluations
            .iter()
            .filter_map(|e| Some((e.dataset.clone(), e.scoring.parse().ok()?)))
            .collect(),
        None => crate::input::suite::Suite::find("imagenet-shifts")
            .map(|suite| {
                suite
                    .datasets
                    .into_iter()
                    .map(|d| (d.name, d.scoring))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Models made from other models' weights, kept out of an `all` or regex baseline: run.json's
/// `models` (the cards' `[intervention]`) and, whether or not run.json is there, every model of
/// the groups `interpolate` and `soup` write (`wise-ft`, `soup`), so a folder holding only an
/// evals.csv is fitted on the same models as the run that wrote it.
fn intervention_models(
    evals: &[Accuracy],
    run: Option<&RunInfo>,
) -> std::collections::BTreeSet<String> {
    let mut models: std::collections::BTreeSet<String> = run
        .map(|r| r.models.keys().cloned().collect())
        .unwrap_or_default();
    models.extend(
        evals
            .iter()
            .filter(|r| INTERVENTION_GROUPS.contains(&r.group.as_str()))
            .map(|r| r.model.clone()),
    );
    models
}

/// The groups `interpolate` and `soup` write by default.
pub const INTERVENTION_GROUPS: [&str; 2] = ["wise-ft", "soup"];

pub fn analyse(dir: &Path, settings: &AnalysisSettings) -> Result<Analysis> {
    let (analysis, fit_error) = load_and_fit(dir, settings)?;
    match fit_error {
        Some(e) => Err(e),
        None => Ok(analysis),
    }
}

/// As `analyse`, but a fit that cannot be made (too few models, one shift lacking) leaves the
/// accuracies to report alone: no shifts, no effective robustness, and a caution saying why.
/// For `report`, which shows the accuracy tables with any number of models.
pub fn analyse_accuracies(dir: &Path, settings: &AnalysisSettings) -> Result<Analysis> {
    match load_and_fit(dir, settings)? {
        (_, Some(e)) if !fit::too_few_to_fit(&e) => Err(e),
        (analysis, _) => Ok(analysis),
    }
}

/// The folder's accuracies and the fit over them, or the fit's error beside an empty fit.
fn load_and_fit(dir: &Path, settings: &AnalysisSettings) -> Result<(Analysis, Option<Error>)> {
    let evals_path = dir.join("evals.csv");
    if !evals_path.is_file() {
        return Err(Error::Usage(format!(
            "{} has no evals.csv: run `robust-eval run` first, or put one there",
            dir.display()
        )));
    }
    let evals = fit::read_accuracies(&evals_path)?;
    let run = read_run_info(dir)?;
    let id = settings
        .id
        .clone()
        .or_else(|| run.as_ref().map(|r| r.id.clone()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "imagenet".to_string());
    let cloud = settings.cloud.as_deref().map(fit::cloud).transpose()?;
    check_held_out(&evals_path, &evals, &id, settings.held_out.as_deref())?;
    let corruption_report = corruptions::compute(&evals, &id);
    let fit_settings = FitSettings {
        transform: settings.transform,
        id,
        baseline: BaselineSpec::parse(
            settings
                .baseline
                .as_deref()
                .or(run
                    .as_ref()
                    .map(|r| r.baseline.as_str())
                    .filter(|b| !b.is_empty()))
                .unwrap_or("all"),
        )?,
        resamples: settings.resamples,
        seed: settings.seed,
        split_a: settings.split_a.clone(),
        scorings: declared_scorings(run.as_ref()),
        interventions: intervention_models(&evals, run.as_ref()),
    };
    // Corruptions are summarised by their own metrics, not fitted one by one as shifts: the
    // fit's shifts and average effective robustness stay the natural ones. Neither is the
    // held-out dataset a shift: it is there to choose on.
    let natural: Vec<Accuracy> = evals
        .iter()
        .filter(|a| !crate::input::corruptions::is_corruption_dataset(&a.dataset))
        .filter(|a| settings.held_out.as_deref() != Some(a.dataset.as_str()))
        .cloned()
        .collect();
    let (mut fit, robustness, fit_error) = match fit::fit_all(
        &natural,
        cloud.as_deref(),
        &fit_settings,
    ) {
        Ok((fit, robustness)) => (fit, robustness, None),
        Err(e) => {
            let fit = fit::FitReport {
                    transform: fit_settings.transform,
                    id_dataset: fit_settings.id.clone(),
                    epsilon: fit::EPSILON,
                    shifts: Vec::new(),
                    notes: Vec::new(),
                    cautions: vec![format!(
                        "no trend fit and no effective robustness: {e}; the accuracy table stands alone"
                    )],
                };
            (fit, Vec::new(), Some(e))
        }
    };
    if let Some(kept) = kept_caution(&evals, run.as_ref()) {
        fit.cautions.push(kept);
    }
    let estimated = match estimate::EstimateReport::read(dir) {
        Ok(Some(report)) => estimated::gather(&report, &evals, &fit_settings),
        Ok(None) => estimated::Estimated::default(),
        Err(e) => estimated::Estimated {
            notes: vec![format!("estimates not drawn: {e}")],
            ..Default::default()
        },
    };
    let analysis = Analysis {
        dir: dir.to_path_buf(),
        evals,
        run,
        cloud,
        fit,
        robustness,
        corruptions: corruption_report,
        held_out: settings.held_out.clone(),
        estimated,
    };
    Ok((analysis, fit_error))
}

/// `--held-out` must name a dataset of evals.csv other than the ID one (choosing α on the ID
/// test set is the bias held-out data avoids).
fn check_held_out(path: &Path, evals: &[Accuracy], id: &str, held_out: Option<&str>) -> Result<()> {
    let Some(name) = held_out else {
        return Ok(());
    };
    if name == id {
        return Err(Error::Usage(format!(
            "--held-out {name}: `{name}` is the in-distribution dataset; a choice made on the ID \
             test set is biased there. Give a dataset held out from it, such as a split of the \
             training set"
        )));
    }
    if !evals.iter().any(|a| a.dataset == name) {
        let mut datasets: Vec<&str> = evals.iter().map(|a| a.dataset.as_str()).collect();
        datasets.sort();
        datasets.dedup();
        return Err(Error::Usage(format!(
            "--held-out {name}: {} has no rows for dataset `{name}` (it has {})",
            path.display(),
            datasets.join(", ")
        )));
    }
    Ok(())
}

/// How many of the folder's models (and datasets) came from runs before its latest one.
fn kept_caution(evals: &[Accuracy], run: Option<&RunInfo>) -> Option<String> {
    let latest = run?.latest_run.as_ref()?;
    let rows: Vec<(String, String)> = evals
        .iter()
        .map(|r| (r.model.clone(), r.dataset.clone()))
        .collect();
    let kept = crate::results::store::kept_from_earlier(&rows, latest);
    if kept.is_empty() {
        return None;
    }
    let mut models: Vec<&str> = evals.iter().map(|r| r.model.as_str()).collect();
    models.sort();
    models.dedup();
    Some(format!(
        "{} of {} models come from earlier runs kept in this folder, not from the latest run: {kept} \
         (`robust-eval prune` removes a model)",
        kept.models.len(),
        models.len()
    ))
}

impl Analysis {
    /// fit.json and robustness.csv.
    pub fn write_fit(&self) -> Result<Vec<PathBuf>> {
        let json = self.fit_json()?;
        let fit_path = self.dir.join("fit.json");
        write_atomic(&fit_path, json.as_bytes())?;
        let mut writer = csv::Writer::from_writer(Vec::new());
        for r in &self.robustness {
            writer
                .serialize(r)
                .map_err(|e| Error::Other(e.to_string()))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| Error::Other(e.to_string()))?;
        let rob_path = self.dir.join("robustness.csv");
        write_atomic(&rob_path, &bytes)?;
        let mut files = vec![fit_path, rob_path];
        if let Some(c) = &self.corruptions {
            files.extend(c.write(&self.dir)?);
        }
        Ok(files)
    }

    pub fn fit_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.fit).map_err(|e| Error::Other(e.to_string()))
    }

    fn points(&self, shift: &str) -> Vec<Point> {
        self.robustness
            .iter()
            .filter(|r| r.shift == shift)
            .map(|r| Point {
                model: r.model.clone(),
                group: r.group.clone(),
                id: r.id_top1,
                ood: r.ood_top1,
                ood_ci: None,
            })
            .collect()
    }

    /// Per shift: the results' points and the cloud's (less the results' own models).
    fn chart_points(&self) -> Vec<(Vec<Point>, Vec<Point>)> {
        let own: std::collections::BTreeSet<&str> =
            self.evals.iter().map(|r| r.model.as_str()).collect();
        self.fit
            .shifts
            .iter()
            .map(|s| {
                let cloud = match &self.cloud {
                    Some(cloud) => fit::points_for(cloud, &self.fit.id_dataset, &s.shift)
                        .0
                        .into_iter()
                        .filter(|p| !own.contains(p.model.as_str()))
                        .collect(),
                    None => Vec::new(),
                };
                (self.points(&s.shift), cloud)
            })
            .collect()
    }

    /// Calls `draw` with one chart per shift.
    fn with_charts<T>(&self, label_points: bool, draw: impl FnOnce(&[ShiftChart]) -> T) -> T {
        let points = self.chart_points();
        let none = BTreeMap::new();
        let interventions = self.run.as_ref().map_or(&none, |r| &r.models);
        let estimates = |shift: &str| match self.estimated.points.get(shift) {
            Some((method, points)) => (method.as_str(), points.as_slice()),
            None => ("", &[][..]),
        };
        let mut charts: Vec<ShiftChart> = self
            .fit
            .shifts
            .iter()
            .zip(&points)
            .map(|(fit, (points, cloud))| {
                let (estimate_method, estimates) = estimates(&fit.shift);
                ShiftChart {
                    fit,
                    points,
                    cloud,
                    label_points,
                    interventions,
                    estimates,
                    estimate_method,
                    estimated_line: false,
                }
            })
            .collect();
        // Unlabelled shifts: their estimates against the line fitted to them.
        charts.extend(self.estimated.fits.iter().map(|fit| {
            let (estimate_method, estimates) = estimates(&fit.shift);
            ShiftChart {
                fit,
                points: &[],
                cloud: &[],
                label_points,
                interventions,
                estimates,
                estimate_method,
                estimated_line: true,
            }
        }));
        draw(&charts)
    }

    /// Charts into `plots/`. Whether points were labelled is remembered there
    /// (plots/labels.json), so a later `run`, which redraws, keeps the labels (`labels_kept`).
    pub fn write_plots(&self, label_points: bool) -> Result<Vec<PathBuf>> {
        let mut files = self.with_charts(label_points, |charts| {
            plot::write_all(&self.dir.join("plots"), charts, &self.robustness)
        })?;
        if let Some(c) = &self.corruptions {
            let scatter = corruptions::synthetic_vs_natural(c, &self.robustness);
            files.extend(corruptions::write_plots(
                &self.dir.join("plots"),
                c,
                &scatter,
            )?);
        }
        let remembered = serde_json::json!({ "labels": label_points }).to_string();
        write_atomic(&self.dir.join(LABELS_FILE), remembered.as_bytes())?;
        Ok(files)
    }
}

const LABELS_FILE: &str = "plots/labels.json";

/// Whether the folder's charts were last drawn with labels (`plot --labels`, `run --labels`).
pub fn labels_kept(dir: &Path) -> bool {
    crate::input::read_text(&dir.join(LABELS_FILE), 1024)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["labels"].as_bool())
        .unwrap_or(false)
}

impl Analysis {
    fn report_data(&self) -> report::ReportData {
        let title = match &self.run {
            Some(r) if !r.suite.is_empty() => format!("robust-eval report: {}", r.suite),
            _ => format!("robust-eval report: {}", self.dir.display()),
        };
        let mut data = report::gather(
            &title,
            &self.evals,
            &self.fit,
            &self.robustness,
            self.run.as_ref(),
            self.held_out.as_deref(),
        );
        match estimate::EstimateReport::read(&self.dir) {
            Ok(confidence) => data.confidence = confidence,
            Err(e) => data.notes.push(format!("estimates not shown: {e}")),
        }
        data.notes.extend(self.estimated.notes.iter().cloned());
        if let Some(c) = &self.corruptions {
            data.notes.extend(c.notes());
            data.corruptions = Some(c.clone());
            data.synthetic_vs_natural = corruptions::synthetic_vs_natural(c, &self.robustness);
        }
        data
    }

    /// The result in a few lines: each shift's fit, the models with the highest and lowest
    /// average effective robustness (`k` of each at most).
    pub fn headline(&self, k: usize) -> report::Headline {
        report::headline(&self.report_data(), k)
    }

    pub fn report(&self, format: Format) -> String {
        let mut data = self.report_data();
        match format {
            Format::Md => report::markdown(&data),
            Format::Json => report::json(&data),
            Format::Html => {
                // Drawn here, in memory: only what this analysis drew goes inline.
                match self.with_charts(false, |c| plot::svg_charts(c, &self.robustness)) {
                    Ok(charts) => data.charts = charts,
                    Err(e) => data.notes.push(format!("charts could not be drawn: {e}")),
                }
                report::html(&data)
            }
        }
    }

    /// report.md and report.html.
    pub fn write_reports(&self) -> Result<Vec<PathBuf>> {
        let md = self.dir.join("report.md");
        write_atomic(&md, self.report(Format::Md).as_bytes())?;
        let html = self.dir.join("report.html");
        write_atomic(&html, self.report(Format::Html).as_bytes())?;
        Ok(vec![md, html])
    }
}
