//! `merge`: put the folders of a sharded run (`<out>/shards/I-of-N/`) back together into the
//! folder one run would have written: every pair's parts checked (all there, from the same model,
//! manifest and preprocessing, rows neither missing nor twice), counts added, accuracies and
//! intervals computed again from the merged counts, predictions and failures concatenated in
//! manifest order, rows in the order one run stores them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::engine::shard::Shard;
use crate::error::{Error, Location, Result};
use crate::files::write_atomic;
use crate::input::{check_name, is_safe_name};
use crate::results::lock::WriterLock;
use crate::results::store::{
    evals, predictions_file, predictions_parquet, read_failures, read_predictions, read_run_info,
    EvalRow, Evaluation, FailureRow, Predictions, ResultsStore, RowRange, RunInfo, ShardPlan,
    ShardProvenance,
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

/// What merge keeps of one shard between checking and writing: where it is, its run.json's
/// digest, a few numbers per part it holds, and its provenance. Its writer lock is taken only
/// while its files are read, and again, one shard at a time, before the merged tables are
/// written (`check_unchanged`), so a merge of thousands of shards holds no file of theirs open.
/// Its plan of the whole run is compared with the first shard's and let go (one copy is kept);
/// of its parts' provenance only a digest of what must agree is kept (one full copy per pair,
/// the first part's); its tables (evals.csv, failures.csv) are read only when the pairs it
/// holds are merged ([`Tables`]). So what memory keeps per shard is a few hundred bytes and a
/// hundred per part, not its run.json.
struct ShardFolder {
    name: String,
    dir: PathBuf,
    index: usize,
    /// sha256 of the shard's run.json as read: the shard writes it last after every pair.
    run_json: String,
    parts: Vec<PartOf>,
    provenance: ShardProvenance,
}

/// What merge keeps of a shard's part of a pair.
struct PartOf {
    /// The pair's place in the run's plan.
    pair: usize,
    rows: RowRange,
    /// sha256 of the inputs and settings the parts of a pair must agree on (`agreed_on`).
    inputs: [u8; 32],
    seconds: f64,
    waiting_for_images: f64,
}

/// Per pair of the run, what its merged provenance starts from: the evaluation of the part
/// holding its first row, and the span of all its parts' times.
#[derive(Default)]
struct PairStart {
    evaluation: Option<Evaluation>,
    started: Option<String>,
    finished: Option<String>,
}

/// The shards, checked to be the parts of one run: the first shard's run.json (its header
/// fields; no evaluation), the run's pairs in the order one run stores them, the models'
/// interventions of every shard, each pair's start, and each shard, in index order.
struct Loaded {
    first: RunInfo,
    pairs: Vec<(String, String)>,
    starts: Vec<PairStart>,
    shards: Vec<ShardFolder>,
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

/// Reads every shard's run.json, one at a time under its writer lock, and checks it: a shard of
/// a real split, of the same run as the first (suite, pairs, build), every part it was given
/// finished; then that every shard of the split is there once.
fn load_shards(dirs: &[PathBuf]) -> Result<Loaded> {
    if dirs.is_empty() {
        return Err(Error::Usage("no shard folders to merge".into()));
    }
    let mut loaded: Option<Loaded> = None;
    let mut pair_index: HashMap<(String, String), usize> = HashMap::new();
    let mut count = 0;
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
        let digest = run_json_digest(dir)?;
        let mut run = read_run_info(dir)?.unwrap_or_default();
        drop(lock);
        let name = check_shard(dir, &run)?;
        let plan = run.shard.take().expect("checked by check_shard");
        match loaded.as_mut() {
            Some(all) => {
                check_same_run(all, &name, &run, &plan, dir)?;
                all.first.models.append(&mut run.models);
            }
            None => {
                count = plan.count;
                for (i, pair) in plan.pairs.iter().enumerate() {
                    pair_index.entry(pair.clone()).or_insert(i);
                }
                let mut first = run.clone();
                first.evaluations.clear();
                loaded = Some(Loaded {
                    first,
                    starts: plan.pairs.iter().map(|_| PairStart::default()).collect(),
                    pairs: plan.pairs.clone(),
                    shards: Vec::new(),
                });
            }
        }
        let all = loaded.as_mut().expect("set above");
        if plan.count != count {
            return Err(Error::input(
                Location::file(dir.join("run.json")),
                format!(
                    "shard {name} is one of {} shards, the others of {count}",
                    plan.count
                ),
            ));
        }
        let mut parts = Vec::with_capacity(plan.assigned.len());
        for (model, dataset, rows) in plan.assigned {
            let evaluation = finished_part(&mut run, &name, dir, &model, &dataset, &rows)?;
            let pair = pair_index[&(model, dataset)];
            parts.push(PartOf {
                pair,
                rows,
                inputs: inputs_digest(&evaluation),
                seconds: evaluation.seconds,
                waiting_for_images: evaluation.waiting_for_images,
            });
            all.starts[pair].take_in(evaluation, rows.start == 0);
        }
        all.shards.push(ShardFolder {
            provenance: ShardProvenance {
                shard: name.clone(),
                host: std::mem::take(&mut run.host),
                started: std::mem::take(&mut run.started),
                finished: std::mem::take(&mut run.finished),
                onnxruntime_version: std::mem::take(&mut run.onnxruntime_version),
            },
            name,
            dir: dir.clone(),
            index: plan.index,
            run_json: digest,
            parts,
        });
    }
    let mut loaded = loaded.expect("at least one shard was read");
    check_every_shard_once(&mut loaded.shards, count)?;
    Ok(loaded)
}

impl PairStart {
    /// A part's evaluation: its times widen the span; the first part's is kept whole.
    fn take_in(&mut self, evaluation: Evaluation, first_rows: bool) {
        if self
            .started
            .as_ref()
            .is_none_or(|s| evaluation.started < *s)
        {
            self.started = Some(evaluation.started.clone());
        }
        if self
            .finished
            .as_ref()
            .is_none_or(|f| evaluation.finished > *f)
        {
            self.finished = Some(evaluation.finished.clone());
        }
        if first_rows && self.evaluation.is_none() {
            self.evaluation = Some(evaluation);
        }
    }
}

/// The evaluation a shard stored for its part of a pair, taken out of its run.json; a part it
/// was given but has not finished is named.
fn finished_part(
    run: &mut RunInfo,
    name: &str,
    dir: &Path,
    model: &str,
    dataset: &str,
    rows: &RowRange,
) -> Result<Evaluation> {
    let at = run
        .evaluations
        .iter()
        .position(|e| e.model == model && e.dataset == dataset && e.rows.as_ref() == Some(rows))
        .ok_or_else(|| {
            Error::input(
                Location::file(dir.join("run.json")),
                format!(
                    "shard {name} has not finished `{model}` on `{dataset}` (rows {}..{} of {}): \
                     run the shard again (it resumes), then merge again",
                    rows.start, rows.end, rows.of
                ),
            )
        })?;
    Ok(run.evaluations.swap_remove(at))
}

/// Every shard of the split once, none missing; the shards then put in index order.
fn check_every_shard_once(shards: &mut [ShardFolder], count: usize) -> Result<()> {
    let mut seen = vec![None::<&Path>; count];
    for shard in shards.iter() {
        if let Some(other) = seen[shard.index].replace(&shard.dir) {
            return Err(Error::input(
                Location::file(shard.dir.join("run.json")),
                format!(
                    "is shard {} again (also in {})",
                    shard.name,
                    other.display()
                ),
            ));
        }
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        let parent = shards[0].dir.parent().unwrap_or(Path::new("."));
        return Err(Error::input(
            Location::file(parent.join(format!("{missing}-of-{count}"))),
            format!(
                "shard {missing} of {count} is missing: run it (`robust-eval run ... --shard {missing}/{count}`; \
                 a shard run again resumes), then merge again"
            ),
        ));
    }
    shards.sort_by_key(|s| s.index);
    Ok(())
}

/// Merge the shards in `dirs` (every `I-of-N` under `<out>/shards` when `None`) into `out`.
/// Every pair is checked before anything is written; then each pair's predictions are written
/// as it is merged (memory holds one pair's, and the tables of the shards that hold it), and
/// the tables and run.json last, so a merge killed half-way leaves nothing run.json vouches for
/// that is not there. Results `out` holds of other pairs are kept, as a run into it keeps them.
pub fn merge(out: &Path, dirs: Option<&[PathBuf]>) -> Result<MergeSummary> {
    let dirs = match dirs {
        Some(d) => d.to_vec(),
        None => find_shards(out)?,
    };
    let loaded = load_shards(&dirs)?;
    let shards = &loaded.shards;
    let pairs: Vec<Vec<Part>> = loaded
        .pairs
        .iter()
        .enumerate()
        .map(|(p, pair)| parts_of(shards, &loaded.starts[p], p, pair))
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
    let mut tables = Tables::new(shards);
    // A dataset with no row to read has no parts: one run stores nothing for it either.
    for (p, parts) in pairs.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
        tables.load(parts)?;
        let pair = merge_pair(parts, &loaded.starts[p], &tables)?;
        tables.release_done(p);
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
    check_unchanged(shards)?;
    store.save_tables()?;
    record_provenance(&mut store.run, &loaded);
    store.save_run()?;
    Ok(summary)
}

/// The merged run.json's provenance: the shards' tool, suite and ONNX Runtime, the span of
/// their times, each shard's host and times, and what the cards said of the models.
fn record_provenance(run: &mut RunInfo, loaded: &Loaded) {
    let (first, shards) = (&loaded.first, &loaded.shards);
    run.tool = first.tool.clone();
    run.tool_version = first.tool_version.clone();
    run.build = first.build.clone();
    run.suite = first.suite.clone();
    run.id = first.id.clone();
    run.baseline = first.baseline.clone();
    run.onnxruntime_version = joined(
        shards
            .iter()
            .map(|s| s.provenance.onnxruntime_version.as_str()),
    );
    run.onnxruntime_library = first.onnxruntime_library.clone();
    run.host = crate::results::lock::host();
    run.started = shards
        .iter()
        .map(|s| s.provenance.started.clone())
        .min()
        .unwrap_or_default();
    run.finished = shards
        .iter()
        .map(|s| s.provenance.finished.clone())
        .max()
        .unwrap_or_default();
    run.models
        .extend(first.models.iter().map(|(k, v)| (k.clone(), v.clone())));
    run.shard = None;
    run.shards = shards.iter().map(|s| s.provenance.clone()).collect();
}
