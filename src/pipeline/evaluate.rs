//! A run: for every dataset, the models that still need it are grouped by preprocessing; each
//! group reads the dataset once (decode and preprocess in parallel on a rayon pool, a bounded window
//! of batches ahead of inference) and every model in the group scores the same batches. Here: the run's settings,
//! its checks and its loop over datasets and groups; `plan` decides the work, `pass` does one
//! group's pass over a dataset, `record` stores each finished pair.

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
use crate::input::scoring::{LabelSpace, Scoring, Target};
use crate::input::suite::{Dataset, Suite};
use crate::results::hash_cache::HashCache;
use crate::results::store::{
    EvalRow, Evaluation, FailureRow, Predictions, ResultsStore, RowRange, ShardPlan,
};

mod pass;
mod plan;
mod record;

pub use pass::*;
pub use plan::*;
use record::*;

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

/// The study's engine cache a shard shares engines through: `<out>/tensorrt-cache` of the whole
/// run, for a shard whose own cache is the default (`<out>/shards/I-of-N/tensorrt-cache`) and
/// whose provider may be TensorRT. None for a run that is no shard, a `--trt-cache` of the
/// user's (used as is by every shard), and the CPU and CUDA providers, which build no engines.
pub fn study_cache(settings: &RunSettings) -> Option<PathBuf> {
    let provider = settings.session.provider;
    if settings.shard.is_none()
        || matches!(provider, ProviderChoice::Cpu | ProviderChoice::Cuda)
        || settings.session.trt_cache != settings.out.join("tensorrt-cache")
    {
        return None;
    }
    // `<out>/shards/I-of-N`: two folders up is the run's results folder.
    let run = settings.out.parent()?.parent()?;
    Some(run.join("tensorrt-cache"))
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
    store.run.host = crate::results::lock::host();
    store.run.started = now();
    Ok(store)
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
    // A shard loads the TensorRT engines the engine job or earlier shards published, and
    // publishes the ones it builds (engine_share): a copy that fails costs only a rebuild.
    let study_engines = study_cache(settings);
    if let Some(study) = &study_engines {
        if let Err(e) = crate::engine::engine_share::seed(study, &settings.session.trt_cache) {
            progress.message(&format!(
                "warning: engines not loaded from {}: {e}",
                study.display()
            ));
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
    if let Some(study) = &study_engines {
        if let Err(e) = crate::engine::engine_share::publish(&settings.session.trt_cache, study) {
            progress.message(&format!(
                "warning: engines not published to {}: {e}",
                study.display()
            ));
        }
    }
    Ok(summary)
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
