//! The results store (docs/design.md, section 7): `evals.csv`, `failures.csv`, `predictions/<model>/<dataset>.parquet`
//! and `run.json`, each written atomically (temporary file + rename) after every (model, dataset)
//! pair, so an interrupted run loses at most the pair in flight and never leaves a half-written file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::engine::runtime::Execution;
use crate::error::{Error, Location, Result};
use crate::files::{remove_orphans, write_atomic};
use crate::input::card::Intervention;
use crate::input::preprocessing::{PreprocessSpec, ResizeMode};
pub use crate::results::evals::{self, EvalRow};
use crate::results::lock::WriterLock;

mod predictions;

pub use predictions::*;

/// One row of `failures.csv`: an image that could not be scored, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureRow {
    pub model: String,
    pub dataset: String,
    /// Row of the image in the manifest (0-based, header excluded).
    pub index: u64,
    pub path: String,
    pub reason: String,
}

/// Provenance of one evaluated (model, dataset) pair; equal keys mean the stored result still holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub model: String,
    pub dataset: String,
    /// The evals.csv rows this pair produced (the dataset, plus class-restricted ID views).
    pub views: Vec<String>,
    pub scoring: String,
    pub model_file: PathBuf,
    pub model_sha256: String,
    /// The card's input, output and head settings (with the head file's sha256), if any.
    #[serde(default)]
    pub model_setup: String,
    pub manifest: PathBuf,
    pub manifest_sha256: String,
    pub preprocess: PreprocessSpec,
    /// The suite's resize mode for the dataset; `preprocess` is the spec it gave (`none`: resize
    /// = crop). Absent in run.json for the default, `model`, so such runs' run.json is as before.
    #[serde(default, skip_serializing_if = "is_model_resize")]
    pub resize: ResizeMode,
    /// Pixels cropped from each edge before preprocessing (2 for ObjectNet).
    pub border: u32,
    pub provider: String,
    pub batch_size: usize,
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    /// Share of the pass inference spent waiting for decoded images (near 0: inference-bound);
    /// with several CPU workers decoding their own batches, the share of their time decoding.
    #[serde(default)]
    pub waiting_for_images: f64,
    /// A shard's part of the pair: which of the dataset's loaded rows it scored (none: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowRange>,
    /// The precision, the providers' settings and where the nodes ran.
    #[serde(default)]
    pub execution: Execution,
    /// False for an unlabelled dataset (predicted, never judged). Absent in run.json where true,
    /// so labelled runs' run.json is as before.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub labelled: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Rows `start..end` of the `of` rows of a dataset that a run reads (those some view scores).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RowRange {
    pub start: usize,
    pub end: usize,
    pub of: usize,
}

/// What a shard's run.json says of the whole sharded run, so `merge` can check the shards
/// against each other and order the merged rows as one run would.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ShardPlan {
    pub index: usize,
    pub count: usize,
    /// Every (model, dataset) pair of the whole run, in the order one run stores them.
    pub pairs: Vec<(String, String)>,
    /// This shard's part: per pair it works on, its rows.
    pub assigned: Vec<(String, String, RowRange)>,
}

/// Where and when one shard ran: kept in the merged run.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ShardProvenance {
    pub shard: String,
    pub host: String,
    pub started: String,
    pub finished: String,
    pub onnxruntime_version: String,
}

fn is_model_resize(mode: &ResizeMode) -> bool {
    *mode == ResizeMode::Model
}

impl Evaluation {
    /// Whether `other` was computed from the same model, manifest, preprocessing and scoring.
    pub fn same_inputs(&self, other: &Evaluation) -> bool {
        self.model == other.model
            && self.dataset == other.dataset
            && self.views == other.views
            && self.scoring == other.scoring
            && self.model_sha256 == other.model_sha256
            && self.model_setup == other.model_setup
            && self.manifest_sha256 == other.manifest_sha256
            && self.preprocess.key() == other.preprocess.key()
            && self.border == other.border
            && self.rows == other.rows
            && self.labelled == other.labelled
    }
}

/// `run.json`: provenance of everything in the results folder.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RunInfo {
    pub tool: String,
    pub tool_version: String,
    /// Which build of robust-eval wrote the results (`build_identity`); empty in folders
    /// written before it was recorded.
    #[serde(default)]
    pub build: String,
    pub suite: String,
    /// The suite's in-distribution dataset, which fit, plot and report measure shifts against.
    #[serde(default)]
    pub id: String,
    /// The suite's default baseline for the fit (`group:standard`, say); empty for all models.
    #[serde(default)]
    pub baseline: String,
    pub onnxruntime_version: String,
    pub onnxruntime_library: String,
    pub host: String,
    pub started: String,
    pub finished: String,
    pub evaluations: Vec<Evaluation>,
    /// In a shard's folder: the shard and the plan of the whole sharded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardPlan>,
    /// In a merged folder: each shard's host and times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardProvenance>,
    /// Per model made from other models' weights (WiSE-FT, soups): its card's `[intervention]`.
    /// Absent when there are none, so such runs' run.json is as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelInfo>,
    /// What the latest `run` into this folder evaluated or found up to date: anything else the
    /// folder holds was kept from earlier runs, and the analysis says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_run: Option<LatestRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct LatestRun {
    pub models: Vec<String>,
    pub datasets: Vec<String>,
}

/// What a folder holds beyond its latest run: models, and datasets of its models, each with
/// the number of evals.csv rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Kept {
    pub models: Vec<(String, usize)>,
    pub datasets: Vec<(String, usize)>,
}

impl Kept {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.datasets.is_empty()
    }
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |items: &[(String, usize)]| {
            items
                .iter()
                .map(|(name, rows)| format!("{name} ({rows} rows)"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.models.is_empty() {
            parts.push(format!("models {}", list(&self.models)));
        }
        if !self.datasets.is_empty() {
            parts.push(format!("datasets {}", list(&self.datasets)));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// The rows of `evals` outside `latest`: models it did not evaluate, and, for its own models,
/// datasets it did not evaluate (view rows `a@b` count with their dataset `b`'s pair).
pub fn kept_from_earlier(evals: &[(String, String)], latest: &LatestRun) -> Kept {
    let mut kept = Kept::default();
    let bump = |list: &mut Vec<(String, usize)>, name: &str| match list
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some((_, rows)) => *rows += 1,
        None => list.push((name.to_string(), 1)),
    };
    for (model, dataset) in evals {
        if !latest.models.contains(model) {
            bump(&mut kept.models, model);
            continue;
        }
        let base = dataset.split('@').nth(1).unwrap_or(dataset);
        if !latest.datasets.iter().any(|d| d == dataset || d == base) {
            bump(&mut kept.datasets, dataset);
        }
    }
    kept
}

/// What run.json keeps of a model's card for analysis: its `[intervention]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub intervention: Intervention,
}

/// Per-image predictions for one dataset view, written as Parquet.
#[derive(Debug, Default)]
pub struct Predictions {
    pub index: Vec<u32>,
    pub path: Vec<String>,
    pub label: Vec<String>,
    /// The class (ImageNet index, or ObjectNet class for ObjectNet) the image counts as.
    pub target: Vec<u32>,
    pub top5: Vec<Vec<u32>>,
    pub correct: Vec<bool>,
    pub correct_top5: Vec<bool>,
    /// Max softmax probability over the scored classes (float64 in the file). Empty: the
    /// predictions carry no confidences (made before they were stored), and the file has no
    /// `confidence` and `entropy` columns.
    pub confidence: Vec<f64>,
    /// Entropy of that softmax in nats (float64).
    pub entropy: Vec<f64>,
    /// The view has no labels: `target`, `correct` and `correct_top5` are written as nulls (the
    /// vectors' values are placeholders) and `label` is empty.
    pub unlabelled: bool,
}

/// The predictions columns that hold confidences; a file without them was written before they
/// were stored.
pub const CONFIDENCE_COLUMNS: [&str; 2] = ["confidence", "entropy"];

pub(crate) fn csv_bytes<T: Serialize>(rows: &[T], header: &[&str]) -> Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(true)
        .from_writer(Vec::new());
    if rows.is_empty() {
        writer
            .write_record(header)
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    writer.into_inner().map_err(|e| Error::Other(e.to_string()))
}

fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| Error::input(Location::file(path), e.to_string()))?;
    let mut rows = Vec::new();
    for row in reader.deserialize() {
        rows.push(row.map_err(|e: csv::Error| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            Error::input(Location::file(path).line(line), e.to_string())
        })?);
    }
    Ok(rows)
}

pub(crate) const FAILURES_HEADER: &[&str] = &["model", "dataset", "index", "path", "reason"];

/// Largest run.json read: a few KB per (model, dataset) pair, so room for a hundred thousand.
const MAX_RUN_JSON_BYTES: u64 = 512 << 20;

/// A results folder, loaded so that new pairs can be added and finished ones skipped.
pub struct ResultsStore {
    pub dir: PathBuf,
    pub evals: Vec<EvalRow>,
    pub failures: Vec<FailureRow>,
    pub run: RunInfo,
    /// Held by a store opened to write (`open_to_write`), for as long as the store lives.
    lock: Option<WriterLock>,
}

/// Where a results folder keeps a model's predictions on one view (dataset).
pub fn predictions_file(dir: &Path, model: &str, view: &str) -> PathBuf {
    dir.join("predictions")
        .join(model)
        .join(format!("{view}.parquet"))
}

/// A results folder's failures.csv (empty where there is none).
pub fn read_failures(dir: &Path) -> Result<Vec<FailureRow>> {
    read_csv(&dir.join("failures.csv"))
}

/// A results folder's run.json: None where there is none (a folder of published numbers); an
/// error naming the file and line where it is not one, for every command alike.
pub fn read_run_info(dir: &Path) -> Result<Option<RunInfo>> {
    let path = dir.join("run.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = crate::input::read_text(&path, MAX_RUN_JSON_BYTES)?;
    let run: RunInfo = serde_json::from_str(&text).map_err(|e| {
        Error::input(
            Location::file(&path).line(e.line()),
            format!("not a robust-eval run.json: {e} (move it away to analyse evals.csv alone)"),
        )
    })?;
    // Its names reach charts and reports: checked as the cards they came from were.
    for (model, info) in &run.models {
        crate::input::check_name("model", model)
            .and_then(|()| info.intervention.check())
            .map_err(|why| {
                Error::input(Location::file(&path).field(format!("models.{model}")), why)
            })?;
    }
    Ok(Some(run))
}

/// Which build of robust-eval this is: its version, the git commit it was built from when the
/// build was given one (ROBUST_EVAL_COMMIT at compile time), and the sha256 of the running
/// binary, so two builds of one version (a rebuilt tree, another machine's compiler) are told
/// apart. The hash is cached in `out` by the binary's size and mtime, as model hashes are.
pub fn build_identity(out: &Path) -> Result<String> {
    let mut identity = format!("robust-eval {}", env!("CARGO_PKG_VERSION"));
    if let Some(commit) = option_env!("ROBUST_EVAL_COMMIT").filter(|c| !c.is_empty()) {
        identity.push_str(&format!(", commit {commit}"));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("robust-eval", e))?;
    let mut cache = crate::results::hash_cache::HashCache::open(out);
    let sha256 = cache.sha256(&exe)?;
    cache.save()?;
    identity.push_str(&format!(", binary sha256 {sha256}"));
    Ok(identity)
}

impl ResultsStore {
    pub fn open(dir: &Path) -> Result<ResultsStore> {
        let run = read_run_info(dir)?.unwrap_or_default();
        Ok(ResultsStore {
            dir: dir.to_path_buf(),
            evals: match dir.join("evals.csv") {
                path if path.exists() => evals::read(&path)?,
                _ => Vec::new(),
            },
            failures: read_csv(&dir.join("failures.csv"))?,
            run,
            lock: None,
        })
    }

    /// Open a results folder to add results to it: take its writer lock (exit 2 naming the
    /// holder if another run has it), delete the temporary files killed runs left, then load it.
    pub fn open_to_write(dir: &Path) -> Result<ResultsStore> {
        let lock = WriterLock::acquire(dir)?;
        remove_orphans(dir);
        let mut store = ResultsStore::open(dir)?;
        store.lock = Some(lock);
        Ok(store)
    }

    /// Give every stored row of each model the group its card has now; evals.csv is rewritten
    /// only when one changed.
    pub fn regroup<'a>(&mut self, groups: impl Iterator<Item = (&'a str, &'a str)>) -> Result<()> {
        let mut changed = false;
        for (model, group) in groups {
            for row in self.evals.iter_mut().filter(|r| r.model == model) {
                if row.group != group {
                    row.group = group.to_string();
                    changed = true;
                }
            }
        }
        if changed {
            write_atomic(
                &self.dir.join("evals.csv"),
                &csv_bytes(&self.evals, evals::HEADER)?,
            )?;
        }
        Ok(())
    }

    /// Keep each model's `[intervention]` as its card says now in run.json's `models` (saved
    /// with run.json); models not in this run keep theirs.
    pub fn set_interventions<'a>(
        &mut self,
        models: impl Iterator<Item = (&'a str, Option<&'a Intervention>)>,
    ) {
        for (model, intervention) in models {
            match intervention {
                Some(i) => {
                    let info = ModelInfo {
                        intervention: i.clone(),
                    };
                    self.run.models.insert(model.to_string(), info);
                }
                None => {
                    self.run.models.remove(model);
                }
            }
        }
    }

    /// The stored evaluation of a pair, if its inputs are unchanged and all its rows are present,
    /// each with at least one image scored and its predictions file whole. A shard's part may
    /// hold views with no image (none of a restricted view's classes in its rows), but not a part
    /// that scored no image at all: its images all failed (a node missing a mount, say), and it
    /// is tried again, as a single run tries such a pair again.
    pub fn up_to_date(&self, wanted: &Evaluation) -> bool {
        let stored = |v: &String| {
            self.evals
                .iter()
                .find(|r| r.model == wanted.model && &r.dataset == v)
        };
        let part = wanted.rows.is_some();
        self.run.evaluations.iter().any(|e| e.same_inputs(wanted))
            && wanted.views.iter().all(|v| {
                stored(v).is_some_and(|r| r.n > 0 || part)
                    && is_whole_parquet(&self.predictions_path(&wanted.model, v))
                    && has_confidences(&self.predictions_path(&wanted.model, v))
            })
            && (!part
                || wanted
                    .views
                    .iter()
                    .any(|v| stored(v).is_some_and(|r| r.n > 0)))
    }

    pub fn predictions_path(&self, model: &str, view: &str) -> PathBuf {
        predictions_file(&self.dir, model, view)
    }

    /// Store one finished pair: predictions first, then evals.csv and failures.csv, then run.json,
    /// so run.json never vouches for rows that are not on disk.
    pub fn record(
        &mut self,
        evaluation: Evaluation,
        rows: Vec<EvalRow>,
        failures: Vec<FailureRow>,
        predictions: Vec<(String, Predictions)>,
    ) -> Result<()> {
        let scored = is_result(&evaluation, &rows);
        if scored {
            for (view, preds) in predictions {
                write_atomic(
                    &self.predictions_path(&evaluation.model, &view),
                    &predictions_parquet(preds)?,
                )?;
            }
        }
        self.absorb(evaluation, rows, failures);
        if !scored {
            return write_atomic(
                &self.dir.join("failures.csv"),
                &csv_bytes(&self.failures, FAILURES_HEADER)?,
            );
        }
        self.save_tables()?;
        self.save_run()
    }

    /// Take a finished pair into the tables in memory, as `record` stores it: its rows replace
    /// the pair's stored rows in place (or are added at the end), its failures and evaluation
    /// replace the stored ones. A pair that is no result keeps only its failures.
    pub(crate) fn absorb(
        &mut self,
        evaluation: Evaluation,
        rows: Vec<EvalRow>,
        failures: Vec<FailureRow>,
    ) {
        let pair =
            |model: &str, dataset: &str| model == evaluation.model && dataset == evaluation.dataset;
        self.failures.retain(|f| !pair(&f.model, &f.dataset));
        self.failures.extend(failures);
        if !is_result(&evaluation, &rows) {
            return;
        }
        for row in rows {
            match self
                .evals
                .iter_mut()
                .find(|r| r.model == row.model && r.dataset == row.dataset)
            {
                Some(existing) => *existing = row,
                None => self.evals.push(row),
            }
        }
        self.run.evaluations.retain(|e| !pair(&e.model, &e.dataset));
        self.run.evaluations.push(evaluation);
    }

    /// Put the rows, failures and evaluations of the pairs `order` ranks (by model and view or
    /// dataset) in that order, in the places they hold; the rest stay where they are. Stores the
    /// tables and run.json if anything moved.
    pub fn order_pairs(
        &mut self,
        order: &std::collections::HashMap<(String, String), usize>,
    ) -> Result<()> {
        let rank = |model: &str, dataset: &str| {
            order
                .get(&(model.to_string(), dataset.to_string()))
                .copied()
        };
        let moved = reorder_in_place(&mut self.evals, |r| rank(&r.model, &r.dataset))
            | reorder_in_place(&mut self.failures, |f| rank(&f.model, &f.dataset))
            | reorder_in_place(&mut self.run.evaluations, |e| rank(&e.model, &e.dataset));
        if !moved {
            return Ok(());
        }
        self.save_tables()?;
        self.save_run()
    }

    /// Write evals.csv and failures.csv as they are in memory.
    pub(crate) fn save_tables(&self) -> Result<()> {
        write_atomic(
            &self.dir.join("evals.csv"),
            &csv_bytes(&self.evals, evals::HEADER)?,
        )?;
        write_atomic(
            &self.dir.join("failures.csv"),
            &csv_bytes(&self.failures, FAILURES_HEADER)?,
        )
    }

    /// Remove models from the folder: their run.json entries first (so run.json never vouches
    /// for rows that are gone), then their evals.csv and failures.csv rows, then their
    /// predictions. Each file is replaced atomically under the writer lock (open the store with
    /// `open_to_write`); a prune killed part way leaves rows no run.json vouches for, which the
    /// same prune run again removes. Returns the evals.csv rows removed per model.
    pub fn prune(&mut self, models: &[String]) -> Result<Vec<(String, usize)>> {
        if self.lock.is_none() {
            return Err(Error::Other(
                "a results folder is pruned only under its writer lock".into(),
            ));
        }
        let held = |m: &String| {
            self.evals.iter().any(|r| &r.model == m)
                || self.run.evaluations.iter().any(|e| &e.model == m)
                || self.failures.iter().any(|f| &f.model == m)
        };
        if let Some(unknown) = models.iter().find(|m| !held(m)) {
            let mut names: Vec<&str> = self.evals.iter().map(|r| r.model.as_str()).collect();
            names.sort();
            names.dedup();
            return Err(Error::Usage(format!(
                "--models {unknown}: {} holds no model `{unknown}` (models: {})",
                self.dir.display(),
                names.join(", ")
            )));
        }
        let removed: Vec<(String, usize)> = models
            .iter()
            .map(|m| {
                (
                    m.clone(),
                    self.evals.iter().filter(|r| &r.model == m).count(),
                )
            })
            .collect();
        self.run.evaluations.retain(|e| !models.contains(&e.model));
        for m in models {
            self.run.models.remove(m);
        }
        if let Some(latest) = &mut self.run.latest_run {
            latest.models.retain(|m| !models.contains(m));
        }
        self.save_run()?;
        self.evals.retain(|r| !models.contains(&r.model));
        self.failures.retain(|f| !models.contains(&f.model));
        self.save_tables()?;
        for m in models {
            // A name from run.json or evals.csv that could leave predictions/ names no folder of ours.
            let folder = self.dir.join("predictions").join(m);
            if crate::input::is_safe_name(m) && folder.is_dir() {
                std::fs::remove_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            }
        }
        Ok(removed)
    }

    pub fn save_run(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.run).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&self.dir.join("run.json"), &json)
    }
}

/// Sort the items `rank` ranks among the places they hold (stably: a pair's failures keep their
/// order), leaving the others in place; returns whether anything moved.
fn reorder_in_place<T: Clone>(items: &mut [T], rank: impl Fn(&T) -> Option<usize>) -> bool {
    let places: Vec<usize> = (0..items.len())
        .filter(|&i| rank(&items[i]).is_some())
        .collect();
    let mut ranked: Vec<T> = places.iter().map(|&i| items[i].clone()).collect();
    ranked.sort_by_key(|item| rank(item));
    let unchanged = places
        .iter()
        .zip(&ranked)
        .all(|(&i, item)| rank(&items[i]) == rank(item));
    if unchanged {
        return false;
    }
    for (&i, item) in places.iter().zip(ranked) {
        items[i] = item;
    }
    true
}

/// Whether a pair's rows are a result. A pair that scored no image at all (every one failed) is
/// none: its failures are listed, but no row of 0 % is stored and nothing marks it done, so the
/// next run tries it again and the fit never sees it. A shard's part is kept whatever it scored:
/// its rows may be all failures or hold none of a restricted view's classes, and the merge adds
/// it to the other parts.
fn is_result(evaluation: &Evaluation, rows: &[EvalRow]) -> bool {
    evaluation.rows.is_some() || rows.iter().any(|r| r.n > 0)
}
