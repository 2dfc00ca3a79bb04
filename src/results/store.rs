//! The results store (docs/design.md, section 7): `evals.csv`, `failures.csv`, `predictions/<model>/<dataset>.parquet`
//! and `run.json`, each written atomically (temporary file + rename) after every (model, dataset)
//! pair, so an interrupted run loses at most the pair in flight and never leaves a half-written file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::engine::preprocess::PreprocessSpec;
use crate::error::{Error, Location, Result};
use crate::input::card::Intervention;
pub use crate::results::evals::{self, EvalRow};
use crate::results::lock::WriterLock;

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
    }
}

/// `run.json`: provenance of everything in the results folder.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RunInfo {
    pub tool: String,
    pub tool_version: String,
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
}

/// Prefix of the temporary files `write_atomic` writes beside their target: a process killed
/// mid-write leaves one behind, which no reader opens and `remove_orphans` deletes.
pub const TEMP_PREFIX: &str = ".robust-eval-tmp-";

/// Write a file so that it is either the old one or the whole new one, whatever happens: the
/// bytes go to a temporary file beside it, are synced, and renamed over it; then the folder is
/// synced, so the rename itself survives a power cut. A failed write (disk full, read-only
/// folder) leaves the old file as it was and says which file could not be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        file.write_all(bytes)
            .map_err(|e| write_failed(path, e))
    })
}

/// Why `path` could not be written, with a hint for a full disk or a read-only file system.
pub fn write_failed(path: &Path, e: std::io::Error) -> Error {
    let hint = match e.kind() {
        std::io::ErrorKind::StorageFull => " (the disk is full; nothing stored before was changed)",
        std::io::ErrorKind::ReadOnlyFilesystem => " (the file system is read-only)",
        _ => "",
    };
    Error::Other(format!("cannot write {}: {e}{hint}", path.display()))
}

/// `write_atomic` with the contents written by `fill` into the temporary file (large outputs
/// streamed rather than held in memory); an error from `fill` leaves the old file as it was.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failed = |e: std::io::Error| write_failed(path, e);
    std::fs::create_dir_all(dir).map_err(failed)?;
    // Readable as any file the user writes (the umask applies), not tempfile's private 0600.
    #[cfg(unix)]
    let permissions = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666);
    #[cfg(not(unix))]
    let permissions = std::fs::metadata(dir).map_err(failed)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(permissions)
        .tempfile_in(dir)
        .map_err(failed)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(failed)?;
    tmp.persist(path).map_err(|e| failed(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// Delete the temporary files that killed runs left in a results folder (its top level,
/// `predictions/*/` and `plots/`). Only files named with `TEMP_PREFIX` are touched.
pub fn remove_orphans(dir: &Path) {
    let mut folders = vec![dir.to_path_buf(), dir.join("plots")];
    if let Ok(models) = std::fs::read_dir(dir.join("predictions")) {
        folders.extend(models.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

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

/// This machine's name, for provenance and the writer lock.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
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
    /// each with at least one image scored and its predictions file whole.
    pub fn up_to_date(&self, wanted: &Evaluation) -> bool {
        self.run.evaluations.iter().any(|e| e.same_inputs(wanted))
            && wanted.views.iter().all(|v| {
                self.evals.iter().any(|r| {
                    r.model == wanted.model && &r.dataset == v && (r.n > 0 || wanted.rows.is_some())
                }) && is_whole_parquet(&self.predictions_path(&wanted.model, v))
            })
    }

    pub fn predictions_path(&self, model: &str, view: &str) -> PathBuf {
        self.dir
            .join("predictions")
            .join(model)
            .join(format!("{view}.parquet"))
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

    pub fn save_run(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.run).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&self.dir.join("run.json"), &json)
    }
}

/// Whether a pair's rows are a result. A pair that scored no image at all (every one failed) is
/// none: its failures are listed, but no row of 0 % is stored and nothing marks it done, so the
/// next run tries it again and the fit never sees it. A shard's part is kept whatever it scored:
/// its rows may be all failures or hold none of a restricted view's classes, and the merge adds
/// it to the other parts.
fn is_result(evaluation: &Evaluation, rows: &[EvalRow]) -> bool {
    evaluation.rows.is_some() || rows.iter().any(|r| r.n > 0)
}

/// Whether a predictions file is there and whole: a Parquet file begins and ends with `PAR1`, so
/// a deleted or truncated one fails this without reading the table.
fn is_whole_parquet(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
    file.read_exact(&mut head).is_ok()
        && file.seek(SeekFrom::End(-4)).is_ok()
        && file.read_exact(&mut tail).is_ok()
        && &head == b"PAR1"
        && &tail == b"PAR1"
}

pub(crate) fn predictions_parquet(p: Predictions) -> Result<Vec<u8>> {
    let polars_err = |e: PolarsError| Error::Other(format!("writing predictions: {e}"));
    let top5: Vec<Series> = p
        .top5
        .into_iter()
        .map(|ids| Series::new("".into(), ids))
        .collect();
    let mut df = DataFrame::new_infer_height(vec![
        Column::new("index".into(), p.index),
        Column::new("path".into(), p.path),
        Column::new("label".into(), p.label),
        Column::new("target".into(), p.target),
        Column::new("top5".into(), top5),
        Column::new("correct".into(), p.correct),
        Column::new("correct_top5".into(), p.correct_top5),
    ])
    .map_err(polars_err)?;
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut df)
        .map_err(polars_err)?;
    Ok(bytes)
}

/// Read a predictions file back (used by tests and by the gate).
pub fn read_predictions(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::input(Location::file(path), e.to_string()))
}
