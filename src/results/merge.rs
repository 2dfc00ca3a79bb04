//! `merge`: put the folders of a sharded run (`<out>/shards/I-of-N/`) back together into the
//! folder one run would have written: every pair's parts checked (all there, from the same model,
//! manifest and preprocessing, rows neither missing nor twice), counts added, accuracies and
//! intervals computed again from the merged counts, predictions and failures concatenated in
//! manifest order, rows in the order one run stores them.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::engine::shard::Shard;
use crate::error::{Error, Location, Result};
use crate::input::{check_name, is_safe_name};
use crate::results::lock::WriterLock;
use crate::results::store::{
    predictions_parquet, read_predictions, write_atomic, EvalRow, Evaluation, FailureRow,
    Predictions, ResultsStore, RowRange, RunInfo, ShardProvenance,
};

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

fn run_json_digest(dir: &Path) -> Result<String> {
    crate::input::manifest::sha256_file(&dir.join("run.json"))
}

/// Before the merged tables are written: every shard, its lock taken and released in turn, is
/// as it was read. A shard that a task wrote to meanwhile (a requeue the scheduler started) is
/// named, and nothing of the merged folder's evals.csv and run.json is changed.
fn check_unchanged(shards: &[ShardFolder]) -> Result<()> {
    for shard in shards {
        let dir = &shard.store.dir;
        let _lock = WriterLock::acquire(dir)?;
        if run_json_digest(dir)? != shard.run_json {
            return Err(Error::input(
                Location::file(dir.join("run.json")),
                format!(
                    "shard {} was written to while it was merged: merge again once its task has \
                     ended",
                    shard.name
                ),
            ));
        }
    }
    Ok(())
}

/// A shard's run.json is checked before any of it is used: a shard of a real split, in the
/// folder of its own name, whose model, dataset and view names are safe as file names (they
/// name the merged predictions files). Returns the shard's name, `I-of-N`.
fn check_shard(dir: &Path, store: &ResultsStore) -> Result<String> {
    let at = || Location::file(dir.join("run.json"));
    let plan = store.run.shard.as_ref().ok_or_else(|| {
        Error::input(
            at(),
            "not a shard's results (no `shard` entry): was it run with --shard I/N?",
        )
    })?;
    let shard = Shard::new(plan.index, plan.count)
        .map_err(|e| Error::input(at().field("shard"), e.to_string()))?;
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if folder.contains("-of-") && folder != shard.name() {
        return Err(Error::input(
            at().field("shard"),
            format!("says shard {}, but its folder is {folder}", shard.name()),
        ));
    }
    let unsafe_name = |what: &str, name: &str| {
        Error::input(
            at(),
            format!(
                "{what} name `{name}` is not a safe file name: this is no run.json `run` wrote"
            ),
        )
    };
    for (model, dataset) in &plan.pairs {
        check_name("model", model).map_err(|_| unsafe_name("model", model))?;
        check_name("dataset", dataset).map_err(|_| unsafe_name("dataset", dataset))?;
    }
    for (model, dataset, rows) in &plan.assigned {
        if !plan.pairs.iter().any(|(m, d)| m == model && d == dataset) {
            return Err(Error::input(
                at().field("shard.assigned"),
                format!("`{model}` on `{dataset}` is no pair of the run"),
            ));
        }
        if rows.start >= rows.end || rows.end > rows.of {
            return Err(Error::input(
                at().field("shard.assigned"),
                format!(
                    "`{model}` on `{dataset}`: rows {}..{} of {} is no range of rows",
                    rows.start, rows.end, rows.of
                ),
            ));
        }
    }
    for evaluation in &store.run.evaluations {
        if let Some(view) = evaluation.views.iter().find(|v| !is_safe_name(v)) {
            return Err(unsafe_name("view", view));
        }
    }
    Ok(shard.name())
}

/// The shards must be parts of one run: the same suite and the same pairs, in the same order.
fn check_same_run(shards: &[ShardFolder]) -> Result<()> {
    let first = &shards[0];
    let plan0 = first
        .store
        .run
        .shard
        .as_ref()
        .expect("loaded shards have a plan");
    for shard in &shards[1..] {
        let plan = shard
            .store
            .run
            .shard
            .as_ref()
            .expect("loaded shards have a plan");
        let differs = if shard.store.run.suite != first.store.run.suite {
            Some("suite")
        } else if shard.store.run.id != first.store.run.id {
            Some("in-distribution dataset")
        } else if plan.pairs != plan0.pairs {
            Some("models or datasets")
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(Error::input(
                Location::file(shard.store.dir.join("run.json")),
                format!(
                    "shard {} and shard {} differ in their {what}: every shard must be run with the \
                     same suite, models and datasets",
                    shard.name, first.name
                ),
            ));
        }
        check_same_build(first, shard)?;
    }
    Ok(())
}

/// Shards of one run come from one build of robust-eval on one ONNX Runtime: another build may
/// decode, resize or score differently, and the merged run.json names one build for all.
fn check_same_build(first: &ShardFolder, shard: &ShardFolder) -> Result<()> {
    let (a, b) = (&first.store.run, &shard.store.run);
    let differs = if a.build != b.build {
        Some(("robust-eval build", &a.build, &b.build))
    } else if a.onnxruntime_version != b.onnxruntime_version {
        Some((
            "ONNX Runtime version",
            &a.onnxruntime_version,
            &b.onnxruntime_version,
        ))
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some((what, ours, theirs)) => Err(Error::input(
            Location::file(shard.store.dir.join("run.json")).field(if what.starts_with("ONNX") {
                "onnxruntime_version"
            } else {
                "build"
            }),
            format!(
                "shard {} was run with {what} `{}` and shard {} with `{}`: run every shard with the \
                 same robust-eval and ONNX Runtime (run the odd shards again after deleting their \
                 folders), then merge again",
                first.name,
                shown(ours),
                shard.name,
                shown(theirs)
            ),
        )),
    }
}

fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(not recorded)"
    } else {
        value
    }
}

/// One shard's part of a pair.
struct Part<'a> {
    shard: &'a ShardFolder,
    rows: RowRange,
    evaluation: &'a Evaluation,
}

/// Every part of one pair, in row order, checked to tile the dataset's rows and to come from
/// the same inputs.
fn parts_of<'a>(shards: &'a [ShardFolder], model: &str, dataset: &str) -> Result<Vec<Part<'a>>> {
    let mut parts = Vec::new();
    for shard in shards {
        let plan = shard
            .store
            .run
            .shard
            .as_ref()
            .expect("loaded shards have a plan");
        for (_, _, rows) in plan
            .assigned
            .iter()
            .filter(|(m, d, _)| m == model && d == dataset)
        {
            let evaluation = shard
                .store
                .run
                .evaluations
                .iter()
                .find(|e| e.model == model && e.dataset == dataset && e.rows.as_ref() == Some(rows))
                .ok_or_else(|| {
                    Error::input(
                        Location::file(shard.store.dir.join("run.json")),
                        format!(
                            "shard {} has not finished `{model}` on `{dataset}` (rows {}..{} of {}): \
                             run the shard again (it resumes), then merge again",
                            shard.name, rows.start, rows.end, rows.of
                        ),
                    )
                })?;
            parts.push(Part {
                shard,
                rows: *rows,
                evaluation,
            });
        }
    }
    parts.sort_by_key(|p| p.rows.start);
    let mut next = 0;
    let of = parts.first().map_or(0, |p| p.rows.of);
    for part in &parts {
        let at = Location::file(part.shard.store.dir.join("run.json"));
        if part.rows.of != of || part.rows.start != next {
            return Err(Error::input(
                at,
                format!(
                    "`{model}` on `{dataset}`: rows {}..{} of {} in shard {} do not follow rows ..{next} \
                     of {of}: the shards were not split the same way",
                    part.rows.start, part.rows.end, part.rows.of, part.shard.name
                ),
            ));
        }
        if let Some((field, first, this)) = different_input(parts[0].evaluation, part.evaluation) {
            return Err(Error::input(
                at,
                format!(
                    "`{model}` on `{dataset}`: shard {} has {field} `{first}` and shard {} `{this}`: \
                     run every shard on the same files with the same settings",
                    parts[0].shard.name, part.shard.name
                ),
            ));
        }
        next = part.rows.end;
    }
    if next != of {
        return Err(Error::input(
            Location::file(shards[0].store.dir.join("run.json")),
            format!(
                "`{model}` on `{dataset}`: rows {next}..{of} are in no shard: the shards were not \
                 split the same way"
            ),
        ));
    }
    Ok(parts)
}

/// The first input or result-changing setting two parts of a pair disagree on, if any, with
/// both values. The execution provider and the batch size change the kernels ONNX Runtime runs
/// and so the last digits of the logits (a near-tie can flip): parts must agree on them too.
fn different_input(a: &Evaluation, b: &Evaluation) -> Option<(&'static str, String, String)> {
    let pairs: [(&'static str, String, String); 9] = [
        (
            "model sha256",
            a.model_sha256.clone(),
            b.model_sha256.clone(),
        ),
        (
            "model card settings",
            a.model_setup.clone(),
            b.model_setup.clone(),
        ),
        (
            "manifest sha256",
            a.manifest_sha256.clone(),
            b.manifest_sha256.clone(),
        ),
        ("preprocessing", a.preprocess.key(), b.preprocess.key()),
        ("border", a.border.to_string(), b.border.to_string()),
        (
            "scoring",
            format!("{} {:?}", a.scoring, a.views),
            format!("{} {:?}", b.scoring, b.views),
        ),
        ("execution provider", a.provider.clone(), b.provider.clone()),
        (
            "batch size",
            a.batch_size.to_string(),
            b.batch_size.to_string(),
        ),
        // fp32, TF32 and fp16 logits differ in the last bits, enough to flip near ties.
        (
            "precision (--tf32, --fp16)",
            a.execution.precision.clone(),
            b.execution.precision.clone(),
        ),
    ];
    pairs.into_iter().find(|(_, x, y)| x != y)
}

/// Read a predictions file back into columns, to be written again as one.
fn read_columns(path: &Path) -> Result<Predictions> {
    let df = read_predictions(path)?;
    let bad = |e: PolarsError| Error::input(Location::file(path), format!("predictions: {e}"));
    let height = df.height();
    if height == 0 {
        // A view that scored no row of this part: an empty file, whose list column has no type.
        return Ok(Predictions::default());
    }
    let missing = |name: &str| {
        Error::input(
            Location::file(path),
            format!("predictions: a null in `{name}`"),
        )
    };
    let u32s = |name: &str| -> Result<Vec<u32>> {
        let column = df.column(name).map_err(bad)?.u32().map_err(bad)?.clone();
        (0..height)
            .map(|i| column.get(i).ok_or_else(|| missing(name)))
            .collect()
    };
    let strings = |name: &str| -> Result<Vec<String>> {
        let column = df.column(name).map_err(bad)?.str().map_err(bad)?.clone();
        (0..height)
            .map(|i| {
                column
                    .get(i)
                    .map(str::to_string)
                    .ok_or_else(|| missing(name))
            })
            .collect()
    };
    let bools = |name: &str| -> Result<Vec<bool>> {
        let column = df.column(name).map_err(bad)?.bool().map_err(bad)?.clone();
        (0..height)
            .map(|i| column.get(i).ok_or_else(|| missing(name)))
            .collect()
    };
    // Files written before confidences were stored have none: the merged file then has none.
    let floats = |name: &str| -> Result<Vec<f64>> {
        let Ok(column) = df.column(name) else {
            return Ok(Vec::new());
        };
        let column = column.f64().map_err(bad)?.clone();
        (0..height)
            .map(|i| column.get(i).ok_or_else(|| missing(name)))
            .collect()
    };
    let lists = df.column("top5").map_err(bad)?.list().map_err(bad)?.clone();
    let mut top5 = Vec::with_capacity(height);
    for i in 0..height {
        let ids = lists.get_as_series(i).ok_or_else(|| missing("top5"))?;
        let ids = ids.u32().map_err(bad)?;
        top5.push((0..ids.len()).filter_map(|k| ids.get(k)).collect());
    }
    Ok(Predictions {
        index: u32s("index")?,
        path: strings("path")?,
        label: strings("label")?,
        target: u32s("target")?,
        top5,
        correct: bools("correct")?,
        correct_top5: bools("correct_top5")?,
        confidence: floats("confidence")?,
        entropy: floats("entropy")?,
    })
}

fn append(all: &mut Predictions, part: Predictions) {
    let (rows_before, rows) = (all.index.len(), part.index.len());
    all.index.extend(part.index);
    all.path.extend(part.path);
    all.label.extend(part.label);
    all.target.extend(part.target);
    all.top5.extend(part.top5);
    all.correct.extend(part.correct);
    all.correct_top5.extend(part.correct_top5);
    // Confidences only where every part has them (an empty part has nothing to lack).
    if rows == 0 {
        return;
    }
    if all.confidence.len() == rows_before && part.confidence.len() == rows {
        all.confidence.extend(part.confidence);
        all.entropy.extend(part.entropy);
    } else {
        all.confidence.clear();
        all.entropy.clear();
    }
}

/// A pair merged: its rows of evals.csv, predictions per view, failures and provenance.
struct MergedPair {
    rows: Vec<EvalRow>,
    predictions: Vec<(String, Predictions)>,
    failures: Vec<FailureRow>,
    evaluation: Evaluation,
}

fn merge_pair(parts: &[Part<'_>]) -> Result<MergedPair> {
    let first = parts[0].evaluation;
    let mut evaluation = first.clone();
    evaluation.rows = None;
    evaluation.seconds = parts.iter().map(|p| p.evaluation.seconds).sum();
    evaluation.started = parts
        .iter()
        .map(|p| p.evaluation.started.clone())
        .min()
        .unwrap_or_default();
    evaluation.finished = parts
        .iter()
        .map(|p| p.evaluation.finished.clone())
        .max()
        .unwrap_or_default();
    evaluation.provider = joined(parts.iter().map(|p| p.evaluation.provider.as_str()));
    evaluation.waiting_for_images = if evaluation.seconds > 0.0 {
        parts
            .iter()
            .map(|p| p.evaluation.waiting_for_images * p.evaluation.seconds)
            .sum::<f64>()
            / evaluation.seconds
    } else {
        0.0
    };
    let mut merged = MergedPair {
        rows: Vec::new(),
        predictions: Vec::new(),
        failures: Vec::new(),
        evaluation,
    };
    for view in &first.views {
        let (row, predictions) = merge_view(parts, &first.model, view)?;
        merged.rows.push(row);
        merged.predictions.push((view.clone(), predictions));
    }
    for part in parts {
        let store = &part.shard.store;
        merged.failures.extend(
            store
                .failures
                .iter()
                .filter(|f| f.model == first.model && f.dataset == first.dataset)
                .cloned(),
        );
    }
    Ok(merged)
}

/// One view's row: counts added over the parts, numbers computed from them as one run does.
fn merge_view(parts: &[Part<'_>], model: &str, view: &str) -> Result<(EvalRow, Predictions)> {
    let mut all = Predictions::default();
    let mut merged: Option<EvalRow> = None;
    let mut has_top5 = false;
    let (mut n, mut correct, mut loaded) = (0u64, 0u64, 0usize);
    for part in parts {
        let store = &part.shard.store;
        let row = store
            .evals
            .iter()
            .find(|r| r.model == model && r.dataset == view)
            .ok_or_else(|| {
                Error::input(
                    Location::file(store.dir.join("evals.csv")),
                    format!("has no row for `{model}` on `{view}`, which its run.json lists: run the shard again"),
                )
            })?;
        let path = store.predictions_path(model, view);
        let predictions = read_columns(&path)?;
        if predictions.index.len() as u64 != row.n {
            return Err(Error::input(
                Location::file(&path),
                format!(
                    "holds {} predictions where evals.csv counts {}: run the shard again",
                    predictions.index.len(),
                    row.n
                ),
            ));
        }
        append(&mut all, predictions);
        n += row.n;
        correct += row.correct;
        loaded += part.rows.end - part.rows.start;
        has_top5 |= row.top5.is_some();
        match &mut merged {
            None => merged = Some(row.clone()),
            Some(m) => {
                m.failed += row.failed;
                m.skipped += row.skipped;
                m.seconds += row.seconds;
                if !m.provider.split(',').any(|p| p == row.provider) {
                    m.provider = format!("{},{}", m.provider, row.provider);
                }
            }
        }
    }
    let mut row = merged.ok_or_else(|| Error::Other(format!("`{model}` on `{view}`: no parts")))?;
    let correct5 = all.correct_top5.iter().filter(|&&c| c).count() as u64;
    row.set_counts(n, correct, has_top5.then_some(correct5));
    row.images_per_s = if row.seconds > 0.0 {
        loaded as f64 / row.seconds
    } else {
        0.0
    };
    Ok((row, all))
}

fn joined<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for v in values {
        if !unique.contains(&v) {
            unique.push(v);
        }
    }
    unique.join(",")
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
    run.host = crate::results::store::host();
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
