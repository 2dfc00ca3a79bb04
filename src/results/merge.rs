//! `merge`: put the folders of a sharded run (`<out>/shards/I-of-N/`) back together into the
//! folder one run would have written: every pair's parts checked (all there, from the same model,
//! manifest and preprocessing, rows neither missing nor twice), counts added, accuracies and
//! intervals computed again from the merged counts, predictions and failures concatenated in
//! manifest order, rows in the order one run stores them.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::engine::shard::Shard;
use crate::error::{Error, Location, Result};
use crate::files::write_atomic;
use crate::input::{check_name, is_safe_name};
use crate::results::lock::WriterLock;
use crate::results::store::{
    predictions_parquet, read_predictions, EvalRow, Evaluation, FailureRow, Predictions,
    ResultsStore, RowRange, RunInfo, ShardProvenance,
};

mod checks;
mod pairs;

use checks::*;
use pairs::*;

/// What a merge did.
#[derive(Debug, serde::Serialize)]
pub struct MergeSummary {
    pub out: PathBuf,
    pub shards: usize,
    pub pairs: usize,
    pub rows: usize,
    /// Images of the merged pairs that could not be read, each counted once.
    pub failed_images: u64,
}

/// One shard's folder, loaded. Its writer lock is taken only while its files are read, and
/// again, one shard at a time, before the merged tables are written (`check_unchanged`): a merge
/// of thousands of shards holds no file of theirs open, so it needs no more file descriptors
/// than a merge of two.
struct ShardFolder {
    name: String,
    store: ResultsStore,
    /// sha256 of the shard's run.json as read: the shard writes it last after every pair.
    run_json: String,
}

/// The shard folders in `<out>/shards/`: every `I-of-N` folder, all of one N.
pub fn find_shards(out: &Path) -> Result<Vec<PathBuf>> {
    let root = out.join("shards");
    let entries = std::fs::read_dir(&root).map_err(|e| {
        Error::input(
            Location::file(&root),
            format!("no shards to merge ({e}): run `robust-eval run ... --shard I/N` for each shard first"),
        )
    })?;
    let pattern = regex::Regex::new(r"^(\d{1,6})-of-(\d{1,6})$").expect("a valid pattern");
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(c) = pattern.captures(&name) {
            found.push((c[2].parse().unwrap_or(0), entry.path()));
        }
    }
    let mut counts: Vec<usize> = found.iter().map(|(n, _)| *n).collect();
    counts.sort_unstable();
    counts.dedup();
    match counts[..] {
        [] => Err(Error::input(
            Location::file(&root),
            "no shard folders (I-of-N) in it: run `robust-eval run ... --shard I/N` first",
        )),
        [_] => {
            let mut dirs: Vec<PathBuf> = found.into_iter().map(|(_, p)| p).collect();
            dirs.sort();
            Ok(dirs)
        }
        _ => {
            Err(Error::input(
                Location::file(&root),
                format!(
                "holds shards of runs split {} ways: delete the stale ones, or name the shards \
                 to merge with --shards",
                counts.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" and ")
            ),
            ))
        }
    }
}

fn load_shards(dirs: &[PathBuf]) -> Result<Vec<ShardFolder>> {
    if dirs.is_empty() {
        return Err(Error::Usage("no shard folders to merge".into()));
    }
    let mut shards: Vec<ShardFolder> = Vec::new();
    for dir in dirs {
        let run_json = dir.join("run.json");
        if !run_json.is_file() {
            return Err(Error::input(
                Location::file(&run_json),
                "missing: not a shard's results folder, or a shard that never started",
            ));
        }
        // A shard still writing (a requeued task) is named, not half read.
        let lock = WriterLock::acquire(dir)?;
        let run_json = run_json_digest(dir)?;
        let store = ResultsStore::open(dir)?;
        drop(lock);
        let name = check_shard(dir, &store)?;
        shards.push(ShardFolder {
            name,
            store,
            run_json,
        });
    }
    let count = shards
        .first()
        .and_then(|s| s.store.run.shard.as_ref())
        .map_or(0, |p| p.count);
    let mut seen = vec![None::<&Path>; count];
    for (shard, dir) in shards.iter().zip(dirs) {
        let plan = shard
            .store
            .run
            .shard
            .as_ref()
            .expect("checked by check_shard");
        if plan.count != count {
            return Err(Error::input(
                Location::file(dir.join("run.json")),
                format!(
                    "shard {} is one of {} shards, the others of {count}",
                    shard.name, plan.count
                ),
            ));
        }
        if let Some(other) = seen[plan.index].replace(dir) {
            return Err(Error::input(
                Location::file(dir.join("run.json")),
                format!(
                    "is shard {} again (also in {})",
                    shard.name,
                    other.display()
                ),
            ));
        }
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        let parent = dirs[0].parent().unwrap_or(Path::new("."));
        return Err(Error::input(
            Location::file(parent.join(format!("{missing}-of-{count}"))),
            format!(
                "shard {missing} of {count} is missing: run it (`robust-eval run ... --shard {missing}/{count}`; \
                 a shard run again resumes), then merge again"
            ),
        ));
    }
    shards.sort_by_key(|s| s.store.run.shard.as_ref().map_or(0, |p| p.index));
    Ok(shards)
}

/// Merge the shards in `dirs` (every `I-of-N` under `<out>/shards` when `None`) into `out`.
/// Every pair is checked before anything is written; then each pair's predictions are written
/// as it is merged (memory holds one pair's), and the tables and run.json last, so a merge killed
/// half-way leaves nothing run.json vouches for that is not there. Results `out` holds of other
/// pairs are kept, as a run into it keeps them.
pub fn merge(out: &Path, dirs: Option<&[PathBuf]>) -> Result<MergeSummary> {
    let dirs = match dirs {
        Some(d) => d.to_vec(),
        None => find_shards(out)?,
    };
    let shards = load_shards(&dirs)?;
    check_same_run(&shards)?;
    let plan = shards[0]
        .store
        .run
        .shard
        .clone()
        .expect("loaded shards have a plan");
    let pairs: Vec<Vec<Part>> = plan
        .pairs
        .iter()
        .map(|(model, dataset)| parts_of(&shards, model, dataset))
        .collect::<Result<_>>()?;
    let mut store = ResultsStore::open_to_write(out)?;
    let mut summary = MergeSummary {
        out: out.to_path_buf(),
        shards: shards.len(),
        pairs: 0,
        rows: 0,
        failed_images: 0,
    };
    let mut failed = std::collections::BTreeSet::new();
    // A dataset with no row to read has no parts: one run stores nothing for it either.
    for parts in pairs.iter().filter(|p| !p.is_empty()) {
        let pair = merge_pair(parts)?;
        if pair.rows.iter().any(|r| r.n > 0) {
            for (view, predictions) in pair.predictions {
                let path = store.predictions_path(&pair.evaluation.model, &view);
                write_atomic(&path, &predictions_parquet(predictions)?)?;
            }
            summary.pairs += 1;
            summary.rows += pair.rows.len();
        }
        failed.extend(pair.failures.iter().map(|f| (f.dataset.clone(), f.index)));
        store.absorb(pair.evaluation, pair.rows, pair.failures);
    }
    summary.failed_images = failed.len() as u64;
    check_unchanged(&shards)?;
    store.save_tables()?;
    record_provenance(&mut store.run, &shards);
    store.save_run()?;
    Ok(summary)
}

/// The merged run.json's provenance: the shards' tool, suite and ONNX Runtime, the span of
/// their times, each shard's host and times, and what the cards said of the models.
fn record_provenance(run: &mut RunInfo, shards: &[ShardFolder]) {
    let first = &shards[0].store.run;
    run.tool = first.tool.clone();
    run.tool_version = first.tool_version.clone();
    run.build = first.build.clone();
    run.suite = first.suite.clone();
    run.id = first.id.clone();
    run.baseline = first.baseline.clone();
    run.onnxruntime_version = joined(
        shards
            .iter()
            .map(|s| s.store.run.onnxruntime_version.as_str()),
    );
    run.onnxruntime_library = first.onnxruntime_library.clone();
    run.host = crate::results::lock::host();
    run.started = shards
        .iter()
        .map(|s| s.store.run.started.clone())
        .min()
        .unwrap_or_default();
    run.finished = shards
        .iter()
        .map(|s| s.store.run.finished.clone())
        .max()
        .unwrap_or_default();
    run.models
        .extend(shards.iter().flat_map(|s| s.store.run.models.clone()));
    run.shard = None;
    run.shards = shards
        .iter()
        .map(|s| ShardProvenance {
            shard: s.name.clone(),
            host: s.store.run.host.clone(),
            started: s.store.run.started.clone(),
            finished: s.store.run.finished.clone(),
            onnxruntime_version: s.store.run.onnxruntime_version.clone(),
        })
        .collect();
}
