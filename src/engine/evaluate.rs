//! The evaluation loop: for every dataset, the models that still need it are grouped by
//! preprocessing; each group reads the dataset once (decode and preprocess in parallel on a rayon
//! pool, a bounded queue to inference) and every model in the group scores the same batches.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rayon::prelude::*;

use crate::engine::preprocess::{preprocess_file, PreprocessSpec};
use crate::engine::progress::Progress;
use crate::engine::runtime::{
    Classifier, OrtClassifier, ProviderChoice, Runtime, SessionSettings, WorkerSessions,
};
use crate::engine::shard::{self, Shard};
use crate::engine::waves::{self, Budget, PassShape, Waves};
use crate::error::{Error, Location, Result};
use crate::input::card::ModelCard;
use crate::input::manifest::Manifest;
use crate::input::suite::{Dataset, Suite};
use crate::results::hash_cache::HashCache;
use crate::results::scoring::{LabelSpace, Scoring, Target};
use crate::results::store::{
    EvalRow, Evaluation, FailureRow, Predictions, ResultsStore, RowRange, ShardPlan,
};

/// Settings of a run, checked by the CLI.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub out: PathBuf,
    pub data_root: Option<PathBuf>,
    /// Datasets to evaluate (empty: the suite's defaults; "all": every one).
    pub datasets: Vec<String>,
    pub batch_size: usize,
    /// Threads that decode and preprocess images.
    pub loader_threads: usize,
    /// Batches prepared ahead of inference.
    pub prefetch: usize,
    /// On the CPU, batches inferred at once, each by its own session of the model with
    /// inference threads / workers intra-op threads. 0: one per inference thread.
    pub inference_workers: usize,
    pub session: SessionSettings,
    /// Re-evaluate pairs even if their stored results are up to date.
    pub force: bool,
    /// Evaluate only this shard's part of the work (`out` is then the shard's own folder).
    pub shard: Option<Shard>,
    /// Bytes the run's estimated footprint is held to (`--memory-budget`); None: the machine's
    /// default (see `waves`).
    pub memory_budget: Option<u64>,
}

/// One row of evals.csv's worth of scoring: a label space and which images count.
#[derive(Debug, Clone)]
pub struct View {
    /// Dataset name in evals.csv: the dataset's own, or `<id>@<shift>` for class-restricted ID views.
    pub name: String,
    pub space: LabelSpace,
    /// Per manifest row: what counts as correct, or `None` if this view does not score the row.
    pub targets: Vec<Option<Target>>,
}

/// A dataset ready to evaluate: manifest read, labels resolved, views built.
pub struct DatasetPlan {
    pub dataset: Dataset,
    pub manifest: Manifest,
    pub views: Vec<View>,
    /// Manifest rows at least one view scores; only these are read.
    pub load: Vec<usize>,
}

/// Read every manifest and resolve every label before any image is read.
pub fn plan_datasets(suite: &Suite, settings: &RunSettings) -> Result<Vec<DatasetPlan>> {
    let selected = suite.select(&settings.datasets)?;
    check_manifests_exist(suite, &selected, settings)?;
    let mut plans: Vec<DatasetPlan> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for dataset in &selected {
        let path = suite.manifest_path(dataset, settings.data_root.as_deref())?;
        if !path.is_file() && dataset.optional && dataset.name != suite.id {
            skipped.push(dataset.name.clone());
            continue;
        }
        let manifest = Manifest::load(&path)?;
        let targets = manifest.targets(dataset.scoring)?;
        let space = match dataset.scoring {
            Scoring::ImageNet1k | Scoring::AllClasses => LabelSpace::All,
            other => other
                .restriction()
                .expect("restricted scorings have a label space"),
        };
        let views = vec![View {
            name: dataset.name.clone(),
            space,
            targets,
        }];
        plans.push(DatasetPlan {
            dataset: dataset.clone(),
            manifest,
            views,
            load: Vec::new(),
        });
    }
    if !skipped.is_empty() {
        eprintln!(
            "note: {} optional dataset(s) skipped, no manifest: {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    // Class-restricted ID views, one per restricted shift: the ID point the literature compares to.
    let id_scoring = plans[0].dataset.scoring;
    if id_scoring == Scoring::ImageNet1k {
        let restricted: Vec<(String, LabelSpace)> = plans[1..]
            .iter()
            .filter_map(|p| {
                p.dataset
                    .scoring
                    .restriction()
                    .map(|s| (p.dataset.name.clone(), s))
            })
            .collect();
        let id = &mut plans[0];
        let id_targets = id.views[0].targets.clone();
        for (shift, space) in restricted {
            let LabelSpace::Subset(classes) = &space else {
                continue;
            };
            let targets = id_targets
                .iter()
                .map(|t| match t {
                    Some(Target::Class(c)) if classes.binary_search(c).is_ok() => {
                        Some(Target::Class(*c))
                    }
                    _ => None,
                })
                .collect();
            id.views.push(View {
                name: format!("{}@{shift}", id.dataset.name),
                space,
                targets,
            });
        }
    }
    for plan in &mut plans {
        plan.load = (0..plan.manifest.rows.len())
            .filter(|&i| plan.views.iter().any(|v| v.targets[i].is_some()))
            .collect();
    }
    Ok(plans)
}

/// Every selected dataset's manifest is there, or one error names all that are missing and the
/// `--datasets` that would run the ones present (the ID dataset among them).
fn check_manifests_exist(
    suite: &Suite,
    selected: &[Dataset],
    settings: &RunSettings,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut present = Vec::new();
    for dataset in selected {
        let path = suite.manifest_path(dataset, settings.data_root.as_deref())?;
        if path.is_file() {
            present.push(dataset.name.as_str());
        } else if !(dataset.optional && dataset.name != suite.id) {
            missing.push(format!("{} ({})", dataset.name, path.display()));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let hint = if present.contains(&suite.id.as_str()) {
        format!("; to run what is there: --datasets {}", present.join(","))
    } else {
        String::new()
    };
    let first_missing = selected
        .iter()
        .find(|d| !present.contains(&d.name.as_str()))
        .map_or("", |d| d.name.as_str());
    Err(Error::input(
        Location::file(&suite.file).field(format!("datasets.{first_missing}.manifest")),
        format!(
            "{} of {} manifests do not exist: {} (build them with `robust-eval manifest`){hint}",
            missing.len(),
            selected.len(),
            missing.join(", ")
        ),
    ))
}

/// Check that every model can be scored on every dataset (label space, class count), before work.
pub fn check_models_fit(models: &[ModelCard], plans: &[DatasetPlan]) -> Result<()> {
    for model in models {
        for plan in plans {
            let at = || model.card_file.clone().unwrap_or(model.onnx.clone());
            if plan.dataset.scoring.needs_imagenet_logits() && model.num_classes != 1000 {
                return Err(Error::input(
                    Location::file(at()).field("output.num_classes"),
                    format!(
                        "model `{}` has {} classes, but dataset `{}` is scored `{}`, which needs the 1000 ImageNet classes",
                        model.name, model.num_classes, plan.dataset.name, plan.dataset.scoring
                    ),
                ));
            }
            if plan.dataset.scoring == Scoring::AllClasses {
                for (i, t) in plan.views[0].targets.iter().enumerate() {
                    if let Some(Target::Class(c)) = t {
                        if *c >= model.num_classes {
                            return Err(Error::input(
                                Location::file(&plan.manifest.file)
                                    .line(plan.manifest.rows[i].line)
                                    .field("label"),
                                format!(
                                    "class {c} is out of range for model `{}` ({} classes)",
                                    model.name, model.num_classes
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// CPU inference workers for a requested count (0: one per inference thread).
pub fn cpu_workers(requested: usize) -> usize {
    match requested {
        0 => crate::engine::runtime::inference_threads(),
        n => n,
    }
}

/// What a finished run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunSummary {
    pub evaluated: Vec<(String, String)>,
    pub up_to_date: Vec<(String, String)>,
    pub failed_images: u64,
    pub out: PathBuf,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// How a run's inference is spread: workers, each with its own session of every model.
#[derive(Debug, Clone, Copy)]
struct Workers {
    count: usize,
    threads_each: usize,
    on_cpu: bool,
}

impl Workers {
    fn plan(settings: &RunSettings) -> Result<Workers> {
        let on_cpu = crate::engine::runtime::runs_on_cpu(settings.session.provider)?;
        // On the CPU, several single-threaded sessions inferring different batches use the cores
        // better than one session splitting each operator across threads: no thread waits at an
        // operator's barrier for one the decoders preempted, and the per-operator split costs ~8 %.
        let count = if on_cpu {
            cpu_workers(settings.inference_workers)
        } else {
            1
        };
        let threads_each = (crate::engine::runtime::inference_threads() / count).max(1);
        Ok(Workers {
            count,
            threads_each,
            on_cpu,
        })
    }
}

/// Every model's input and output are checked against its card before any image is read. On the
/// CPU the checking session is the model's first worker session, kept for the run; with a GPU the
/// check runs on the CPU (cheap, and the same graph whatever provider runs it later).
fn check_models(
    models: &[ModelCard],
    works: &[bool],
    keep: &[bool],
    settings: &RunSettings,
    workers: Workers,
    progress: &dyn Progress,
) -> Result<Vec<Option<WorkerSessions>>> {
    let check = SessionSettings {
        provider: ProviderChoice::Cpu,
        trt_cache: settings.session.trt_cache.clone(),
        ..Default::default()
    };
    models
        .iter()
        .zip(works.iter().zip(keep))
        .map(|(model, (&works, &keep))| {
            if !works {
                Ok(None)
            } else if workers.on_cpu {
                let mut note = |line: String| progress.message(&format!("{}: {line}", model.name));
                let session = WorkerSessions::open_first(
                    model,
                    &settings.session,
                    workers.count,
                    workers.threads_each,
                    &mut note,
                )?;
                // Only the first wave's sessions are kept: the others would hold memory the
                // budget has not counted, and are opened again when their wave comes.
                Ok(keep.then_some(session))
            } else {
                OrtClassifier::open(model, &check, &mut |_| {}).map(|_| None)
            }
        })
        .collect()
}

/// The run's settings for its sessions, and the worker plan for the provider the first session
/// actually got: with a GPU provider in the library, `auto` opens the first model's session on
/// it, and if that falls back to the CPU, the run takes the CPU plan (and the CPU provider for
/// every model) and says so. Sessions learn the batch size (profiles, warm-up) and each model's
/// content key (the TensorRT engine cache prefix).
fn settle_provider(
    models: &[ModelCard],
    works: &[bool],
    settings: &RunSettings,
    workers: Workers,
    checked: &mut [Option<WorkerSessions>],
    progress: &dyn Progress,
) -> Result<(RunSettings, Workers)> {
    let mut settings = settings.clone();
    settings.session.batch_size = settings.batch_size;
    settings.session.content_keys = content_keys(models, works, &settings.out)?;
    let first = works.iter().position(|&w| w);
    let (Some(m), false) = (first, workers.on_cpu) else {
        return Ok((settings, workers));
    };
    let model = &models[m];
    let mut note = |line: String| progress.message(&format!("{}: {line}", model.name));
    let set = WorkerSessions::open_first(
        model,
        &settings.session,
        workers.count,
        workers.threads_each,
        &mut note,
    )?;
    if !set.sessions[0].on_cpu() {
        checked[m] = Some(set);
        return Ok((settings, workers));
    }
    settings.session.provider = ProviderChoice::Cpu;
    let cpu = Workers::plan(&settings)?;
    progress.message(&format!(
        "no GPU provider initialised (see above): the run uses the CPU plan, {} inference worker(s) \
         of {} thread(s) each",
        cpu.count, cpu.threads_each
    ));
    Ok((settings, cpu))
}

/// Per ONNX file of the models with work: its content key (sha256 of the file and its external
/// data; see `runtime::content_key`), from the hashes `model_keys` just cached.
fn content_keys(
    models: &[ModelCard],
    works: &[bool],
    out: &Path,
) -> Result<BTreeMap<PathBuf, String>> {
    let mut cache = HashCache::open(out);
    let mut keys = BTreeMap::new();
    for (m, _) in models.iter().zip(works).filter(|(_, &w)| w) {
        let external = m
            .external_data
            .iter()
            .map(|d| {
                Ok((
                    d.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    cache.sha256(d)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let key = crate::engine::runtime::content_key(&cache.sha256(&m.onnx)?, &external);
        keys.insert(m.onnx.clone(), key);
    }
    Ok(keys)
}

/// Per model: the sha256 of its ONNX file and its setup key, hashes cached in the results folder.
fn model_keys(models: &[ModelCard], works: &[bool], out: &Path) -> Result<Vec<(String, String)>> {
    let mut cache = HashCache::open(out);
    let keys = models
        .iter()
        .zip(works)
        .map(|(m, &works)| {
            if !works {
                return Ok((String::new(), String::new()));
            }
            let head_sha = match &m.head {
                Some(head) => Some(cache.sha256(&head.weights_file)?),
                None => None,
            };
            let mut setup = m.setup_key(head_sha.as_deref());
            // Weights in external-data files change predictions as much as the graph does.
            for data in &m.external_data {
                let name = data.file_name().unwrap_or_default().to_string_lossy();
                setup.push_str(&format!(" data={name}:{}", cache.sha256(data)?));
            }
            Ok((cache.sha256(&m.onnx)?, setup))
        })
        .collect::<Result<Vec<_>>>()?;
    cache.save()?;
    Ok(keys)
}

fn open_store(suite: &Suite, settings: &RunSettings, rt: &Runtime) -> Result<ResultsStore> {
    let mut store = ResultsStore::open_to_write(&settings.out)?;
    store.run.tool = "robust-eval".into();
    store.run.tool_version = env!("CARGO_PKG_VERSION").into();
    store.run.build = crate::results::store::build_identity(&settings.out)?;
    store.run.suite = suite.name.clone();
    store.run.id = suite.id.clone();
    store.run.baseline = suite.baseline.clone().unwrap_or_default();
    store.run.onnxruntime_version = rt.library.version.clone();
    store.run.onnxruntime_library = rt.library.path.display().to_string();
    store.run.host = crate::results::store::host();
    store.run.started = now();
    Ok(store)
}

/// The models grouped by preprocessing (in a fixed order: the group's key, then the models'
/// order), so each group decodes a dataset once; the order is the order results are stored in.
fn preprocessing_groups(models: &[ModelCard]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (m, model) in models.iter().enumerate() {
        groups.entry(model.preprocess.key()).or_default().push(m);
    }
    groups.into_values().collect()
}

/// Per group and dataset, the loaded rows this process evaluates: all of them, or, in a
/// shard, its part (none where the cell is other shards' work).
fn cell_rows(
    groups: &[Vec<usize>],
    plans: &[DatasetPlan],
    shard: Option<Shard>,
) -> Vec<Vec<Option<Range<usize>>>> {
    let Some(shard) = shard else {
        return groups
            .iter()
            .map(|_| plans.iter().map(|p| Some(0..p.load.len())).collect())
            .collect();
    };
    let cells: Vec<(usize, usize)> = groups
        .iter()
        .flat_map(|g| plans.iter().map(move |p| (g.len(), p.load.len())))
        .collect();
    let assigned = shard::assign(&cells, shard);
    assigned
        .chunks(plans.len().max(1))
        .map(<[Option<Range<usize>>]>::to_vec)
        .collect()
}

/// A shard's run.json entry: every pair of the whole run in stored order, and its own part.
fn shard_plan(
    shard: Shard,
    models: &[ModelCard],
    groups: &[Vec<usize>],
    plans: &[DatasetPlan],
    rows: &[Vec<Option<Range<usize>>>],
) -> ShardPlan {
    let mut plan = ShardPlan {
        index: shard.index,
        count: shard.count,
        ..Default::default()
    };
    for (g, group) in groups.iter().enumerate() {
        for (p, dataset) in plans.iter().enumerate() {
            for &m in group {
                let pair = (models[m].name.clone(), dataset.dataset.name.clone());
                if let Some(r) = &rows[g][p] {
                    let range = row_range(r, dataset);
                    plan.assigned.push((pair.0.clone(), pair.1.clone(), range));
                }
                plan.pairs.push(pair);
            }
        }
    }
    plan
}

fn row_range(rows: &Range<usize>, plan: &DatasetPlan) -> RowRange {
    RowRange {
        start: rows.start,
        end: rows.end,
        of: plan.load.len(),
    }
}

/// Per model and dataset: the evaluation to run, or `None` when stored results are up to date
/// or the pair is another shard's work.
#[allow(clippy::too_many_arguments)]
fn pending_pairs(
    models: &[ModelCard],
    keys: &[(String, String)],
    plans: &[DatasetPlan],
    rows_of: &dyn Fn(usize, usize) -> Option<Range<usize>>,
    settings: &RunSettings,
    store: &ResultsStore,
    progress: &dyn Progress,
    summary: &mut RunSummary,
) -> Vec<Vec<Option<Evaluation>>> {
    models
        .iter()
        .zip(keys)
        .enumerate()
        .map(|(m, (model, (sha256, setup)))| {
            plans
                .iter()
                .enumerate()
                .map(|(p, plan)| {
                    let rows = rows_of(m, p)?;
                    let evaluation = Evaluation {
                        model: model.name.clone(),
                        dataset: plan.dataset.name.clone(),
                        views: plan.views.iter().map(|v| v.name.clone()).collect(),
                        scoring: plan.dataset.scoring.to_string(),
                        model_file: model.onnx.clone(),
                        model_sha256: sha256.clone(),
                        model_setup: setup.clone(),
                        manifest: plan.manifest.file.clone(),
                        manifest_sha256: plan.manifest.sha256.clone(),
                        preprocess: plan.dataset.resize.apply(model.preprocess),
                        resize: plan.dataset.resize,
                        border: plan.dataset.scoring.border(),
                        provider: String::new(),
                        batch_size: settings.batch_size,
                        started: String::new(),
                        finished: String::new(),
                        seconds: 0.0,
                        waiting_for_images: 0.0,
                        rows: settings.shard.map(|_| row_range(&rows, plan)),
                        execution: Default::default(),
                    };
                    if settings.force || !store.up_to_date(&evaluation) {
                        return Some(evaluation);
                    }
                    progress.message(&format!(
                        "{} on {}: up to date, not evaluated again",
                        model.name, plan.dataset.name
                    ));
                    summary
                        .up_to_date
                        .push((model.name.clone(), plan.dataset.name.clone()));
                    None
                })
                .collect()
        })
        .collect()
}

/// One session per worker for a model: the checking session if there is one, more as needed.
fn worker_sessions(
    model: &ModelCard,
    checked: Option<WorkerSessions>,
    settings: &RunSettings,
    workers: Workers,
    progress: &dyn Progress,
) -> Result<WorkerSessions> {
    let mut note = |line: String| progress.message(&format!("{}: {line}", model.name));
    let mut set = match checked {
        Some(set) => set,
        None => WorkerSessions::open_first(
            model,
            &settings.session,
            workers.count,
            workers.threads_each,
            &mut note,
        )?,
    };
    set.fill(model, &settings.session, workers.count, &mut note)?;
    if let Some(fixed) = set.sessions[0].fixed_batch() {
        if fixed != settings.batch_size {
            note(format!(
                "its batch dimension is fixed at {fixed}, so it runs at batch size {fixed} \
                 (not --batch-size {}; a short last batch is padded)",
                settings.batch_size
            ));
        }
    }
    Ok(set)
}

/// Evaluate `models` on the suite, skipping pairs whose stored results are up to date. Each
/// model's sessions are opened once and serve every dataset; one preprocessing group's sessions
/// are held at a time.
pub fn run(
    suite: &Suite,
    models: &[ModelCard],
    settings: &RunSettings,
    progress: &dyn Progress,
) -> Result<RunSummary> {
    let plans = plan_datasets(suite, settings)?;
    check_models_fit(models, &plans)?;
    let rt = crate::engine::runtime::runtime()?;
    crate::engine::runtime::check_provider(settings.session.provider)?;
    crate::engine::runtime::check_gpu_options(
        settings.session.provider,
        &settings.session.gpu,
        &crate::engine::runtime::available_providers()?,
        crate::engine::runtime::visible_gpus(),
    )?;
    let workers = Workers::plan(settings)?;
    let groups = preprocessing_groups(models);
    let rows = cell_rows(&groups, &plans, settings.shard);
    let group_of: Vec<usize> = (0..models.len())
        .map(|m| groups.iter().position(|g| g.contains(&m)).unwrap_or(0))
        .collect();
    // A shard opens and hashes only the models it has work for: with many shards these fixed
    // costs, paid once per model in every shard, would come to dominate.
    let works: Vec<bool> = group_of
        .iter()
        .map(|&g| rows[g].iter().any(Option::is_some))
        .collect();
    let budget = Budget::resolve(settings.memory_budget, !workers.on_cpu);
    let sizes: Vec<u64> = models
        .iter()
        .map(|m| waves::model_bytes(&m.onnx, &m.external_data))
        .collect();
    let shape_of = |group: &[usize]| pass_shape(&models[group[0]], settings, workers);
    let working: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| g.iter().copied().filter(|&m| works[m]).collect())
        .collect();
    // A budget that cannot hold one batch is refused before any session opens.
    if let Some(budget) = &budget {
        for group in working.iter().filter(|g| !g.is_empty()) {
            let smallest = group.iter().map(|&m| sizes[m]).min().unwrap_or(0);
            budget
                .check_fits(&shape_of(group), smallest)
                .map_err(Error::Usage)?;
        }
    }
    // The sessions that check the models are kept for their passes where every model's fit in
    // the budget at once; else only the first wave's are, and the others opened again in turn.
    let mut keep = works.clone();
    if let Some(budget) = &budget {
        let fits_all = working.iter().filter(|g| !g.is_empty()).all(|g| {
            let all: u64 = works
                .iter()
                .zip(&sizes)
                .filter(|(&w, _)| w)
                .map(|(_, &s)| shape_of(g).model(s))
                .sum();
            all <= budget.room(&shape_of(g))
        });
        if !fits_all {
            keep = vec![false; models.len()];
            if let Some(group) = working.iter().find(|g| !g.is_empty()) {
                let split = split_group(group, &sizes, &shape_of(group), Some(budget));
                for &m in &group[split.waves[0].clone()] {
                    keep[m] = true;
                }
            }
        }
    }
    let mut checked = check_models(models, &works, &keep, settings, workers, progress)?;
    let mut store = open_store(suite, settings, rt)?;
    let keys = model_keys(models, &works, &settings.out)?;
    let (settings, workers) =
        settle_provider(models, &works, settings, workers, &mut checked, progress)?;
    let settings = &settings;
    // A card's group is no input to predictions, only to the baseline: stored rows take the
    // card's current group without being evaluated again.
    store.regroup(models.iter().map(|m| (m.name.as_str(), m.group.as_str())))?;
    store.set_interventions(
        models
            .iter()
            .map(|m| (m.name.as_str(), m.intervention.as_ref())),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.loader_threads.max(1))
        .thread_name(|i| format!("loader-{i}"))
        .build()
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut summary = RunSummary {
        out: settings.out.clone(),
        ..Default::default()
    };
    if let Some(shard) = settings.shard {
        store.run.shard = Some(shard_plan(shard, models, &groups, &plans, &rows));
        store.save_run()?;
    }
    let mut failed: std::collections::BTreeSet<(usize, usize)> = Default::default();
    let mut pending = pending_pairs(
        models,
        &keys,
        &plans,
        &|m, p| rows[group_of[m]][p].clone(),
        settings,
        &store,
        progress,
        &mut summary,
    );
    for (g, group) in groups.iter().enumerate() {
        // Sessions only for the models with work here.
        let group: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&m| pending[m].iter().any(Option::is_some))
            .collect();
        for &m in &groups[g] {
            if !group.contains(&m) {
                checked[m] = None;
            }
        }
        if group.is_empty() {
            continue;
        }
        let shape = shape_of(&group);
        let split = split_group(&group, &sizes, &shape, budget.as_ref());
        if let Some(budget) = &budget {
            announce_waves(models, &group, &sizes, &shape, &split, budget, progress);
        }
        let evaluated_before = summary.evaluated.len();
        for wave in &split.waves {
            let wave = &group[wave.clone()];
            // The wave's sessions, closed when its passes are done.
            let mut sets: Vec<WorkerSessions> = wave
                .iter()
                .map(|&m| {
                    worker_sessions(&models[m], checked[m].take(), settings, workers, progress)
                })
                .collect::<Result<_>>()?;
            for (p, plan) in plans.iter().enumerate() {
                // This dataset's pending members and, per worker, their sessions.
                let mut members: Vec<Member> = Vec::new();
                let mut sessions: Vec<Vec<&mut OrtClassifier>> =
                    (0..workers.count).map(|_| Vec::new()).collect();
                for (&m, set) in wave.iter().zip(sets.iter_mut()) {
                    let Some(evaluation) = pending[m][p].take() else {
                        continue;
                    };
                    members.push(Member {
                        card: &models[m],
                        evaluation,
                        provider: set.sessions[0].provider().to_string(),
                        execution: set.sessions[0].execution(),
                    });
                    for (w, session) in set.sessions.iter_mut().enumerate() {
                        sessions[w].push(session);
                    }
                }
                let Some(range) = rows[g][p].clone().filter(|_| !members.is_empty()) else {
                    continue;
                };
                let context = Context {
                    plan,
                    rows: range,
                    settings,
                    pool: &pool,
                    progress,
                };
                let failed_rows =
                    evaluate_group(&context, &mut members, &mut sessions, &mut store)?;
                failed.extend(failed_rows.into_iter().map(|r| (p, r)));
                for member in &members {
                    summary
                        .evaluated
                        .push((member.card.name.clone(), plan.dataset.name.clone()));
                }
            }
            drop(sets);
            release_freed_memory();
        }
        // Waves, and runs resumed or extended, store pairs out of order: put the group's rows
        // back in the order one uninterrupted pass stores them.
        if summary.evaluated.len() > evaluated_before {
            store.order_pairs(&stored_order(models, &groups[g], &plans))?;
        }
    }
    // Each image that failed counted once, however many preprocessing groups read it: the rule
    // `merge` counts by too.
    summary.failed_images = failed.len() as u64;
    store.run.finished = now();
    store.save_run()?;
    Ok(summary)
}

/// The shape of a group's passes, for estimating their memory.
fn pass_shape(first: &ModelCard, settings: &RunSettings, workers: Workers) -> PassShape {
    PassShape {
        batch_size: settings.batch_size.max(1),
        per_image: first.preprocess.tensor_len(),
        workers: workers.count,
        prefetch: settings.prefetch,
    }
}

/// A group's models (indices into `models`) cut into waves under the budget; one wave without.
fn split_group(
    group: &[usize],
    sizes: &[u64],
    shape: &PassShape,
    budget: Option<&Budget>,
) -> Waves {
    match budget {
        Some(budget) => {
            let footprints: Vec<u64> = group.iter().map(|&m| shape.model(sizes[m])).collect();
            waves::plan(&footprints, budget.room(shape))
        }
        None => Waves {
            waves: std::iter::once(0..group.len()).collect(),
            oversized: Vec::new(),
        },
    }
}

/// Say how many waves a group takes and why, and warn of a model over the budget on its own.
fn announce_waves(
    models: &[ModelCard],
    group: &[usize],
    sizes: &[u64],
    shape: &PassShape,
    split: &Waves,
    budget: &Budget,
    progress: &dyn Progress,
) {
    for &i in &split.oversized {
        let m = group[i];
        progress.message(&format!(
            "warning: model `{}` alone is estimated at {} besides {} for a batch, over the memory \
             budget of {} ({}); it runs in a wave of its own",
            models[m].name,
            waves::show(shape.model(sizes[m])),
            waves::show(shape.fixed()),
            waves::show(budget.bytes),
            budget.why
        ));
    }
    if split.waves.len() < 2 {
        return;
    }
    let total: u64 = group.iter().map(|&m| shape.model(sizes[m])).sum();
    let largest = split
        .waves
        .iter()
        .map(ExactSizeIterator::len)
        .max()
        .unwrap_or(0);
    progress.message(&format!(
        "memory: {} models sharing preprocessing run in {} waves of at most {largest}, each its \
         own pass over the datasets: their sessions are estimated at {} and a batch at {}, over \
         the memory budget of {} ({})",
        group.len(),
        split.waves.len(),
        waves::show(total),
        waves::show(shape.fixed()),
        waves::show(budget.bytes),
        budget.why
    ));
}

/// Per (model, view) of a group: its place in the order one pass over every dataset stores
/// pairs (dataset, then model, then view).
fn stored_order(
    models: &[ModelCard],
    group: &[usize],
    plans: &[DatasetPlan],
) -> std::collections::HashMap<(String, String), usize> {
    let mut order = std::collections::HashMap::new();
    for plan in plans {
        for &m in group {
            for view in &plan.views {
                let next = order.len();
                order.insert((models[m].name.clone(), view.name.clone()), next);
            }
        }
    }
    order
}

/// Hand the memory of closed sessions back to the system, so the next wave starts from what
/// the budget counts (glibc keeps freed heap pages otherwise).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only returns free pages of the heap to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// What a group's pass over a dataset reads from the run.
struct Context<'a> {
    plan: &'a DatasetPlan,
    /// The loaded rows (indices into `plan.load`) this pass reads: all, or a shard's part.
    rows: Range<usize>,
    settings: &'a RunSettings,
    pool: &'a rayon::ThreadPool,
    progress: &'a dyn Progress,
}

struct Member<'a> {
    card: &'a ModelCard,
    evaluation: Evaluation,
    /// The execution provider its sessions run on.
    provider: String,
    /// Precision, provider settings and node placement of its sessions.
    execution: crate::results::store::Execution,
}

/// A batch of preprocessed images on its way to inference.
struct Batch {
    /// Position in the dataset's order of batches.
    seq: usize,
    /// Manifest rows, in order.
    rows: Vec<usize>,
    /// `rows.len()` images, NCHW.
    pixels: Vec<f32>,
    /// Per image: why it could not be read, if it could not.
    errors: Vec<Option<String>>,
}

/// A batch's logits, one vector per member, on its way back to scoring.
struct Inferred {
    seq: usize,
    rows: Vec<usize>,
    errors: Vec<Option<String>>,
    logits: Vec<Vec<f32>>,
}

/// Counts and per-image records for one view of one model.
#[derive(Default)]
struct Tally {
    n: u64,
    correct: u64,
    correct5: u64,
    failed: u64,
    skipped: u64,
    predictions: Predictions,
}

/// Where a worker's next batch comes from: the loader's queue, or decoded by the worker itself.
enum Feed {
    Queue(Arc<Mutex<std::sync::mpsc::Receiver<Batch>>>),
    Own(Vec<f32>),
}

/// One group's pass over a dataset: what every stage reads.
struct Pass<'a> {
    plan: &'a DatasetPlan,
    spec: PreprocessSpec,
    border: u32,
    per_image: usize,
    chunks: Vec<&'a [usize]>,
    pool: &'a rayon::ThreadPool,
    next_chunk: AtomicUsize,
}

impl Pass<'_> {
    /// Decode and preprocess batch `seq` into `pixels` (reused), in parallel on the loader pool
    /// or on the calling thread.
    fn read_batch(&self, seq: usize, mut pixels: Vec<f32>, parallel: bool) -> Batch {
        let chunk = self.chunks[seq];
        let per_image = self.per_image;
        pixels.resize(chunk.len() * per_image, 0.0);
        let read = |(out, &row): (&mut [f32], &usize)| {
            let path = self.plan.manifest.resolve(&self.plan.manifest.rows[row]);
            preprocess_file(&path, &self.spec, self.border, out).err()
        };
        let errors = if parallel {
            self.pool.install(|| {
                pixels
                    .par_chunks_mut(per_image)
                    .zip(chunk.par_iter())
                    .map(read)
                    .collect()
            })
        } else {
            pixels
                .chunks_mut(per_image)
                .zip(chunk.iter())
                .map(read)
                .collect()
        };
        Batch {
            seq,
            rows: chunk.to_vec(),
            pixels,
            errors,
        }
    }

    /// The next batch for a worker, and the seconds spent waiting for (or decoding) it.
    fn next_batch(&self, feed: &mut Feed) -> (Option<Batch>, f64) {
        // Time inference spends waiting for decoded images says which side bounds the run.
        let waiting = Instant::now();
        let next = match feed {
            Feed::Queue(rx) => rx.lock().ok().and_then(|r| r.recv().ok()),
            Feed::Own(pixels) => {
                let seq = self.next_chunk.fetch_add(1, Ordering::Relaxed);
                (seq < self.chunks.len())
                    .then(|| self.read_batch(seq, std::mem::take(pixels), false))
            }
        };
        (next, waiting.elapsed().as_secs_f64())
    }

    /// A worker: infer batches with its sessions (one per member) until there are none or one
    /// fails. Returns the seconds it waited for batches.
    fn work(
        &self,
        mut feed: Feed,
        sessions: &mut [&mut OrtClassifier],
        done: std::sync::mpsc::Sender<Result<Inferred>>,
        free: std::sync::mpsc::Sender<Vec<f32>>,
    ) -> f64 {
        let mut waited = 0.0;
        loop {
            let (next, wait) = self.next_batch(&mut feed);
            waited += wait;
            let Some(batch) = next else { break };
            let n = batch.rows.len();
            let logits: Result<Vec<Vec<f32>>> = sessions
                .iter_mut()
                .map(|s| classify_chunked(&mut **s, &batch.pixels, n, self.per_image))
                .collect();
            match &mut feed {
                Feed::Queue(_) => {
                    let _ = free.send(batch.pixels);
                }
                Feed::Own(pixels) => *pixels = batch.pixels,
            }
            let inferred = logits.map(|logits| Inferred {
                seq: batch.seq,
                rows: batch.rows,
                errors: batch.errors,
                logits,
            });
            let failed = inferred.is_err();
            if done.send(inferred).is_err() || failed {
                break;
            }
        }
        waited
    }
}

/// What a pass produced: per member and view the tallies, the images that failed, and the mean
/// seconds a worker waited for batches.
struct Scored {
    tallies: Vec<Vec<Tally>>,
    failures: Vec<(usize, String)>,
    waited: f64,
}

/// Decode, infer and score every batch of the pass. With several workers (the CPU), each decodes
/// a batch on its own thread and then infers it: every core alternates between the two stages
/// and no thread preempts another, where decoders on threads of their own would thrash the
/// caches of inference running beside them. A single worker (a GPU, or --inference-workers 1) is
/// fed by the loader pool through a bounded queue, so decoding overlaps inference.
fn infer_and_score(
    pass: &Pass<'_>,
    members: &[Member<'_>],
    workers: &mut [Vec<&mut OrtClassifier>],
    prefetch: usize,
    task: &mut dyn crate::engine::progress::Task,
) -> Result<Scored> {
    let plan = pass.plan;
    let mut scored = Scored {
        tallies: members
            .iter()
            .map(|_| plan.views.iter().map(|_| Tally::default()).collect())
            .collect(),
        failures: Vec::new(),
        waited: 0.0,
    };
    let worker_count = workers.len().max(1);
    let decode_in_workers = worker_count > 1;
    std::thread::scope(|scope| {
        // Batch buffers are reused once inferred: at most prefetch + workers + 1 are ever
        // allocated, whatever the dataset's length, and none is faulted in afresh per batch.
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<f32>>();
        let queue = if decode_in_workers {
            None
        } else {
            let (tx, rx) = sync_channel::<Batch>(prefetch.max(1));
            scope.spawn(move || {
                for seq in 0..pass.chunks.len() {
                    let pixels = free_rx.try_recv().unwrap_or_default();
                    if tx.send(pass.read_batch(seq, pixels, true)).is_err() {
                        return; // inference stopped on an error
                    }
                }
            });
            // Dropped with the last worker, which stops the loader if scoring gave up early.
            Some(Arc::new(Mutex::new(rx)))
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<Inferred>>();
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|sessions| {
                let feed = match &queue {
                    Some(rx) => Feed::Queue(Arc::clone(rx)),
                    None => Feed::Own(Vec::new()),
                };
                let (done, free) = (done_tx.clone(), free_tx.clone());
                scope.spawn(move || pass.work(feed, sessions, done, free))
            })
            .collect();
        drop((done_tx, free_tx, queue));
        // Scored in dataset order, whichever worker finished first.
        let mut ready: BTreeMap<usize, Inferred> = BTreeMap::new();
        let mut next_seq = 0;
        for inferred in done_rx {
            let inferred = inferred?;
            ready.insert(inferred.seq, inferred);
            while let Some(batch) = ready.remove(&next_seq) {
                next_seq += 1;
                score_batch(
                    plan,
                    members,
                    &mut scored.tallies,
                    &mut scored.failures,
                    &batch,
                );
                task.inc(batch.rows.len() as u64);
            }
        }
        let waited: f64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
        scored.waited = waited / worker_count as f64;
        Ok(scored)
    })
}

fn evaluate_group(
    context: &Context<'_>,
    members: &mut [Member<'_>],
    workers: &mut [Vec<&mut OrtClassifier>],
    store: &mut ResultsStore,
) -> Result<Vec<usize>> {
    let plan = context.plan;
    let spec = plan.dataset.resize.apply(members[0].card.preprocess);
    let batch_size = context.settings.batch_size.max(1);
    let started = now();
    let clock = Instant::now();
    // One progress task per group: its models advance together on the same decoded batches.
    let label = match &*members {
        [only] => format!("{} · {}", only.card.name, plan.dataset.name),
        _ => format!("{} models · {}", members.len(), plan.dataset.name),
    };
    let load = &plan.load[context.rows.clone()];
    let mut task = context.progress.start(&label, load.len() as u64);
    let pass = Pass {
        plan,
        spec,
        border: plan.dataset.scoring.border(),
        per_image: spec.tensor_len(),
        chunks: load.chunks(batch_size).collect(),
        pool: context.pool,
        next_chunk: AtomicUsize::new(0),
    };
    let scored = infer_and_score(
        &pass,
        members,
        workers,
        context.settings.prefetch,
        task.as_mut(),
    )?;
    let seconds = clock.elapsed().as_secs_f64();
    let timing = Timing {
        started,
        finished: now(),
        seconds,
        bound: Boundedness::judge(scored.waited, seconds, workers.len() > 1),
    };
    task.finish(&format!("{label}: done in {seconds:.1}s"));
    context
        .progress
        .message(&format!("{label}: {}", timing.bound.describe()));
    for (member, tally) in members.iter_mut().zip(scored.tallies) {
        let summary = record_member(
            plan,
            &context.rows,
            member,
            tally,
            &scored.failures,
            &timing,
            store,
        )?;
        context.progress.message(&summary);
    }
    Ok(scored.failures.iter().map(|(row, _)| *row).collect())
}

/// When a pass ran and what bounded it.
struct Timing {
    started: String,
    finished: String,
    seconds: f64,
    bound: Boundedness,
}

/// Store one member's results of a pass; returns the line that summarises them.
fn record_member(
    plan: &DatasetPlan,
    rows_read: &Range<usize>,
    member: &Member<'_>,
    tally: Vec<Tally>,
    failures: &[(usize, String)],
    timing: &Timing,
    store: &mut ResultsStore,
) -> Result<String> {
    let (seconds, loaded) = (timing.seconds, rows_read.len() as u64);
    let manifest_rows = manifest_span(plan, rows_read);
    let provider = member.provider.clone();
    let mut rows = Vec::new();
    let mut predictions = Vec::new();
    for (view, mut t) in plan.views.iter().zip(tally) {
        t.skipped = view.targets[manifest_rows.clone()]
            .iter()
            .filter(|t| t.is_none())
            .count() as u64;
        let mut row = EvalRow {
            model: member.card.name.clone(),
            group: member.card.group.clone(),
            dataset: view.name.clone(),
            n: 0,
            correct: 0,
            top1: 0.0,
            top5: None,
            top1_ci_low: 0.0,
            top1_ci_high: 0.0,
            failed: t.failed,
            skipped: t.skipped,
            provider: provider.clone(),
            seconds,
            images_per_s: if seconds > 0.0 {
                loaded as f64 / seconds
            } else {
                0.0
            },
        };
        let top5 = view.space.len(member.card.num_classes) >= 5;
        row.set_counts(t.n, t.correct, top5.then_some(t.correct5));
        rows.push(row);
        predictions.push((view.name.clone(), t.predictions));
    }
    let failure_rows: Vec<FailureRow> = failures
        .iter()
        .map(|(row, reason)| FailureRow {
            model: member.card.name.clone(),
            dataset: plan.dataset.name.clone(),
            index: *row as u64,
            path: plan.manifest.rows[*row].path.clone(),
            reason: reason.clone(),
        })
        .collect();
    let mut evaluation = member.evaluation.clone();
    evaluation.provider = provider.clone();
    evaluation.execution = member.execution.clone();
    evaluation.started = timing.started.clone();
    evaluation.finished = timing.finished.clone();
    evaluation.seconds = seconds;
    evaluation.waiting_for_images = timing.bound.waiting_fraction;
    let first = &rows[0];
    let summary = format!(
        "{} · {}: top-1 {:.2}% of {} images{}{} [{:.1}s, {:.0} images/s, {}]",
        member.card.name,
        plan.dataset.name,
        first.top1,
        first.n,
        if first.failed > 0 {
            format!(", {} failed", first.failed)
        } else {
            String::new()
        },
        if first.skipped > 0 {
            format!(", {} skipped (unmapped classes)", first.skipped)
        } else {
            String::new()
        },
        seconds,
        first.images_per_s,
        provider
    );
    store.record(evaluation, rows, failure_rows, predictions)?;
    Ok(summary)
}

/// The manifest rows a range of loaded rows spans, so that the skipped rows between them are
/// counted by exactly one shard: from the first loaded row (the manifest's start for the first
/// range) to the next range's first row (the manifest's end for the last).
fn manifest_span(plan: &DatasetPlan, rows: &Range<usize>) -> Range<usize> {
    let at = |i: usize| match i {
        0 => 0,
        i if i >= plan.load.len() => plan.manifest.rows.len(),
        i => plan.load[i],
    };
    at(rows.start)..at(rows.end)
}

/// Add one inferred batch to every member's tallies.
fn score_batch(
    plan: &DatasetPlan,
    members: &[Member<'_>],
    tallies: &mut [Vec<Tally>],
    failures: &mut Vec<(usize, String)>,
    batch: &Inferred,
) {
    for (i, error) in batch.errors.iter().enumerate() {
        if let Some(reason) = error {
            failures.push((batch.rows[i], reason.clone()));
        }
    }
    for ((member, tally), logits) in members.iter().zip(tallies.iter_mut()).zip(&batch.logits) {
        let width = member.card.output_width();
        for (i, &row) in batch.rows.iter().enumerate() {
            let class_logits = &logits[i * width + member.card.offset..(i + 1) * width];
            for (view, t) in plan.views.iter().zip(tally.iter_mut()) {
                let Some(target) = view.targets[row] else {
                    continue;
                };
                if batch.errors[i].is_some() {
                    t.failed += 1;
                    continue;
                }
                let scored = view.space.score(class_logits, target);
                t.n += 1;
                t.correct += scored.correct as u64;
                t.correct5 += scored.correct_top5 as u64;
                let p = &mut t.predictions;
                let manifest_row = &plan.manifest.rows[row];
                p.index.push(row as u32);
                p.path.push(manifest_row.path.clone());
                p.label.push(manifest_row.label.clone());
                p.target.push(match target {
                    Target::Class(c) | Target::ObjectNet(c) => c as u32,
                });
                p.top5.push(scored.top5);
                p.correct.push(scored.correct);
                p.correct_top5.push(scored.correct_top5);
                p.confidence.push(scored.confidence.max_probability);
                p.entropy.push(scored.confidence.entropy);
            }
        }
    }
}

/// Whether decoding or inference limited a group's pass.
///
/// With one worker fed by the loader pool, `waiting_fraction` is the share of the pass inference
/// spent waiting for decoded batches. When workers decode their own batches (the CPU), it is the
/// share of the workers' time spent decoding rather than inferring.
#[derive(Debug, Clone, Copy)]
pub struct Boundedness {
    pub waiting_fraction: f64,
    pub decode_in_workers: bool,
}

impl Boundedness {
    pub fn judge(waited: f64, seconds: f64, decode_in_workers: bool) -> Boundedness {
        Boundedness {
            waiting_fraction: if seconds > 0.0 {
                (waited / seconds).clamp(0.0, 1.0)
            } else {
                0.0
            },
            decode_in_workers,
        }
    }

    /// Fed by the loader: inference waiting more than a tenth of the time (the first batch
    /// included) means decoding could not keep up. Decoding in the workers: decoding taking
    /// most of their time.
    pub fn decode_bound(&self) -> bool {
        if self.decode_in_workers {
            self.waiting_fraction > 0.5
        } else {
            self.waiting_fraction > 0.10
        }
    }

    pub fn describe(&self) -> String {
        let pct = 100.0 * self.waiting_fraction;
        let bound = if self.decode_bound() {
            "decode-bound"
        } else {
            "inference-bound"
        };
        if self.decode_in_workers {
            format!(
                "{bound}: the workers spent {pct:.0} % of their time decoding images and {:.0} % \
                 inferring",
                100.0 - pct
            )
        } else if self.decode_bound() {
            format!(
                "{bound}: inference waited for decoded images {pct:.0} % of the time \
                 (more --loader-threads, or fewer inference --threads, may help)"
            )
        } else {
            format!("{bound}: inference waited for decoded images {pct:.0} % of the time")
        }
    }
}

/// Run a batch through a classifier, in pieces if the model has a fixed batch size.
fn classify_chunked(
    classifier: &mut dyn Classifier,
    pixels: &[f32],
    n: usize,
    per_image: usize,
) -> Result<Vec<f32>> {
    let step = classifier.fixed_batch().unwrap_or(n).max(1);
    let mut logits = Vec::new();
    for start in (0..n).step_by(step) {
        let count = step.min(n - start);
        logits.extend(classifier.classify(
            &pixels[start * per_image..(start + count) * per_image],
            count,
        )?);
    }
    Ok(logits)
}
