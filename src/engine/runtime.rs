//! ONNX Runtime: finding the shared library without any download, choosing an execution provider,
//! and running a model on preprocessed batches.
//!
//! The library is searched, in order: `ORT_DYLIB_PATH`; beside the executable; a project-local
//! Python environment (`.venv/` in the working folder or above the executable) holding the
//! `onnxruntime` / `onnxruntime-gpu` wheel; the active virtualenv; then whatever `python3` imports.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::GlobalThreadPoolOptions;
use ort::ep::{
    ArbitrarilyConfigurableExecutionProvider, ExecutionProvider, ExecutionProviderDispatch,
    TensorRT, CPU, CUDA,
};
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use half::f16;

use crate::error::{Error, Result};
use crate::input::card::{ChannelOrder, Head, ModelCard, TensorLayout};

mod library;
mod providers;
mod tensors;

pub use library::*;
pub use providers::*;
use tensors::*;

/// The process-wide ONNX Runtime environment.
pub struct Runtime {
    pub library: Library,
    /// The CUDA / cuDNN / TensorRT libraries loaded from the wheels before ONNX Runtime started.
    pub gpu_libraries: crate::engine::gpu_libs::Preload,
    env: ort::environment::Environment,
    /// Whether one CPU arena is registered with the environment for all sessions to share.
    shared_arena: bool,
}

/// Execution provider choice on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderChoice {
    /// TensorRT, then CUDA, then CPU: the first that initialises.
    #[default]
    Auto,
    Tensorrt,
    Cuda,
    Cpu,
}

static INFERENCE_THREADS: OnceLock<usize> = OnceLock::new();

/// Set the number of ONNX Runtime intra-op threads, shared by all sessions of the process. Only
/// effective before the runtime is first loaded; returns whether it took effect.
pub fn set_inference_threads(threads: usize) -> bool {
    INFERENCE_THREADS.set(threads.max(1)).is_ok()
}

/// The intra-op threads of the process-wide pool: as set, else one per core.
pub fn inference_threads() -> usize {
    *INFERENCE_THREADS.get_or_init(crate::engine::cores)
}

/// Something that turns a batch of preprocessed images into logits. ONNX Runtime in real runs;
/// tests of scoring and storage can supply fixed logits.
pub trait Classifier {
    /// `batch` holds `n` images (NCHW, f32); returns `n × output_width` logits, row-major.
    fn classify(&mut self, batch: &[f32], n: usize) -> Result<Vec<f32>>;
    /// The execution provider that runs the model (e.g. "CPUExecutionProvider").
    fn provider(&self) -> &str;
    /// The batch size the model requires, if its batch dimension is fixed.
    fn fixed_batch(&self) -> Option<usize>;
}

/// The model's input and output as ONNX Runtime reports them (negative dimensions are dynamic).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelIo {
    pub input: String,
    pub input_type: &'static str,
    pub input_shape: Vec<i64>,
    pub output: String,
    pub output_type: &'static str,
    pub output_shape: Vec<i64>,
}

pub struct OrtClassifier {
    io: ModelIo,
    session: Session,
    input: String,
    output: String,
    /// What ran the model: the providers that took nodes, joined by '+' (evals.csv's provider).
    provider: String,
    /// The provider the session was opened with.
    engine: &'static str,
    placement: Placement,
    options: ProviderOptions,
    precision: &'static str,
    run_options: ort::session::RunOptions,
    crop: usize,
    /// Width of the model's own output row (the embedding width for a zero-shot model).
    model_width: usize,
    fixed_batch: Option<usize>,
    layout: TensorLayout,
    channels: ChannelOrder,
    input_f16: bool,
    output_f16: bool,
    head: Option<Head>,
    /// Reused between batches: the input re-laid out (NHWC, BGR) and converted (float16).
    scratch: Vec<f32>,
    scratch_f16: Vec<f16>,
}

/// How a session gets its CPU threads and shares memory with its siblings.
#[derive(Default)]
struct Threading<'a> {
    /// A pool of its own with this many intra-op threads; `None`: the environment's shared pool.
    own_threads: Option<usize>,
    /// Shared with the other sessions of the same model, so its weights are prepacked once.
    prepacked: Option<&'a PrepackedWeights>,
}

/// ONNX Runtime's node placement for one session, from its log: per provider, the nodes it took.
pub type Placement = Vec<(String, u64)>;

/// The providers that took nodes, from a session's placement log lines (`All nodes placed on
/// [CPUExecutionProvider]. Number of nodes: 93`, `Node(s) placed on [CUDAExecutionProvider].
/// Number of nodes: 88`).
pub fn parse_placement(lines: &[String]) -> Placement {
    let mut out: Placement = Vec::new();
    for line in lines {
        let Some(rest) = line.split("placed on [").nth(1) else {
            continue;
        };
        let Some((provider, tail)) = rest.split_once(']') else {
            continue;
        };
        let Some(count) = tail.split("Number of nodes:").nth(1) else {
            continue;
        };
        let digits: String = count
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse::<u64>() {
            match out.iter_mut().find(|(p, _)| p == provider) {
                Some(entry) => entry.1 += n,
                None => out.push((provider.to_string(), n)),
            }
        }
    }
    out
}

fn try_session(
    card: &ModelCard,
    eps: Vec<ExecutionProviderDispatch>,
    threading: &Threading<'_>,
    placement: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> Result<Session> {
    let rt = runtime()?;
    let on_gpu = !eps.is_empty();
    let mut builder = Session::builder(&rt.env)?;
    // Threads come from the environment's shared pool (see `load`) unless the session has its own.
    if let Some(threads) = threading.own_threads {
        builder = builder
            .with_independent_thread_pool()
            .map_err(ort::Error::from)?;
        builder = builder
            .with_intra_threads(threads.max(1))
            .map_err(ort::Error::from)?;
        builder = builder.with_inter_threads(1).map_err(ort::Error::from)?;
        builder = builder
            .with_intra_op_spinning(true)
            .map_err(ort::Error::from)?;
    }
    if rt.shared_arena {
        builder = builder.with_env_allocators().map_err(ort::Error::from)?;
    }
    if let Some(prepacked) = threading.prepacked {
        builder = builder
            .with_prepacked_weights(prepacked)
            .map_err(ort::Error::from)?;
    }
    // The session logs its node placement at the verbose level while it initialises; the
    // logger keeps those lines and passes warnings on to stderr. Inference runs at the warning
    // level (`RUN_LOG_LEVEL`), so the verbose level costs nothing per batch.
    let lines = placement.clone();
    let model = card.name.clone();
    let threshold = log_level();
    builder = builder
        .with_log_level(ort::logging::LogLevel::Verbose)
        .map_err(ort::Error::from)?;
    builder = builder
        .with_logger(std::sync::Arc::new(
            move |level: ort::logging::LogLevel,
                  _category: &str,
                  _id: &str,
                  _at: &str,
                  message: &str| {
                if message.contains("placed on [") {
                    if let Ok(mut l) = lines.lock() {
                        l.push(message.to_string());
                    }
                }
                if level >= threshold {
                    eprintln!(
                        "onnxruntime {} ({model}): {message}",
                        format!("{level:?}").to_lowercase()
                    );
                }
            },
        ))
        .map_err(ort::Error::from)?;
    if on_gpu {
        // The first provider must initialise; the next (CUDA under TensorRT) takes what it leaves.
        let eps: Vec<ExecutionProviderDispatch> = eps
            .into_iter()
            .enumerate()
            .map(|(i, ep)| if i == 0 { ep.error_on_failure() } else { ep })
            .collect();
        builder = builder
            .with_execution_providers(eps)
            .map_err(ort::Error::from)?;
        builder = builder
            .with_deterministic_compute(true)
            .map_err(ort::Error::from)?;
    }
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?;
    builder
        .commit_from_file(&card.onnx)
        .map_err(|e| Error::Runtime(format!("cannot load {}: {e}", card.onnx.display())))
}

/// The log level inference runs at (sessions open at the verbose level to log their placement).
const RUN_LOG_LEVEL: ort::logging::LogLevel = ort::logging::LogLevel::Warning;

/// A warm-up batch of zeros at the run's batch size: a GPU provider builds its engines and
/// kernels on the first run, and a failure there must fall back (or fail) before any image
/// is scored.
fn warm_up(classifier: &mut OrtClassifier, batch_size: usize) -> Result<()> {
    if batch_size == 0 || classifier.engine == CPU::NAME {
        return Ok(());
    }
    let n = classifier.fixed_batch.unwrap_or(batch_size);
    let zeros = vec![0f32; n * 3 * classifier.crop * classifier.crop];
    classifier
        .classify(&zeros, n)
        .map(|_| ())
        .map_err(|e| Error::Runtime(format!("the warm-up batch of {n} failed: {e}")))
}

/// What ran a model: the providers its placement gave nodes to, in the session's order of
/// preference, joined by '+'; the session's provider where the placement is unknown.
pub fn ran_on(engine: &str, placement: &Placement) -> String {
    let took: Vec<&str> = placement
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(p, _)| p.as_str())
        .collect();
    if took.is_empty() {
        return engine.to_string();
    }
    let order = [TensorRT::NAME, CUDA::NAME, CPU::NAME];
    let mut sorted = took.clone();
    sorted.sort_by_key(|p| order.iter().position(|o| o == p).unwrap_or(order.len()));
    sorted.join("+")
}

impl OrtClassifier {
    /// Open a model with the chosen provider and check its input and output against the card.
    /// `note` receives fallbacks worth telling the user about.
    pub fn open(
        card: &ModelCard,
        settings: &SessionSettings,
        note: &mut dyn FnMut(String),
    ) -> Result<OrtClassifier> {
        Self::open_with(card, settings, note, &Threading::default())
    }

    /// `copies` sessions of one model for inferring that many batches at once on the CPU, each
    /// with `threads_each` intra-op threads of its own; their prepacked weights are shared.
    pub fn open_copies(
        card: &ModelCard,
        settings: &SessionSettings,
        copies: usize,
        threads_each: usize,
        note: &mut dyn FnMut(String),
    ) -> Result<Vec<OrtClassifier>> {
        runtime()?; // before any ort call: without the library, ort panics
        let prepacked = PrepackedWeights::new();
        let threading = Threading {
            own_threads: Some(threads_each),
            prepacked: Some(&prepacked),
        };
        (0..copies.max(1))
            .map(|_| Self::open_with(card, settings, note, &threading))
            .collect()
    }

    fn open_with(
        card: &ModelCard,
        settings: &SessionSettings,
        note: &mut dyn FnMut(String),
        threading: &Threading<'_>,
    ) -> Result<OrtClassifier> {
        let tried = attempts(settings.provider, &available_providers()?);
        check_provider(settings.provider)?;
        let mut failure = None;
        for (i, &attempt) in tried.iter().enumerate() {
            let name = provider_name(attempt);
            let placement = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let opened =
                execution_providers(card, settings, attempt, note).and_then(|(eps, options)| {
                    let session = try_session(card, eps, threading, &placement)?;
                    let lines = placement.lock().map(|l| l.clone()).unwrap_or_default();
                    let mut classifier =
                        Self::checked(card, session, name, parse_placement(&lines))?;
                    classifier.options = options;
                    classifier.precision = precision(name, &settings.gpu);
                    warm_up(&mut classifier, settings.batch_size)?;
                    Ok(classifier)
                });
            let e = match opened {
                Ok(classifier) => return Ok(classifier),
                // The card does not fit the model: no other provider changes that.
                Err(e @ Error::Usage(_)) => return Err(e),
                Err(e) => e,
            };
            match tried.get(i + 1) {
                Some(&ProviderChoice::Cpu) => {
                    note(format!("{name} did not initialise ({e}); using the CPU"))
                }
                Some(&next) => note(format!(
                    "{name} did not initialise ({e}); trying {}",
                    provider_name(next)
                )),
                None if attempt == ProviderChoice::Cpu => failure = Some(e),
                None => failure = Some(Error::Runtime(format!("{name} did not initialise: {e}"))),
            }
        }
        Err(failure.unwrap_or_else(|| Error::Runtime("no execution provider to try".into())))
    }

    /// The provider the session was opened with (whatever its placement).
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// Whether the session was opened on the CPU provider (asked for, or `auto`'s fallback).
    pub fn on_cpu(&self) -> bool {
        self.engine == CPU::NAME
    }

    /// Per provider, the nodes it took (empty when ONNX Runtime did not log its placement).
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The precision and provider settings, and the node placement, for run.json.
    pub fn execution(&self) -> Execution {
        Execution {
            precision: self.precision.to_string(),
            provider_options: self.options.clone(),
            nodes: self.placement.clone(),
        }
    }

    /// Wrap a session, checking its input and output against the card.
    fn checked(
        card: &ModelCard,
        session: Session,
        engine: &'static str,
        placement: Placement,
    ) -> Result<OrtClassifier> {
        let at = card
            .card_file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| card.onnx.display().to_string());
        let input = pick_outlet(
            session.inputs(),
            card.input.name.as_deref(),
            "input",
            &card.name,
            &at,
        )?;
        let output = pick_outlet(
            session.outputs(),
            card.output_name.as_deref(),
            "output",
            &card.name,
            &at,
        )?;
        let (input_f16, in_dims) = tensor_dims(&card.name, "input", input.name(), input.dtype())?;
        let (output_f16, out_dims) =
            tensor_dims(&card.name, "output", output.name(), output.dtype())?;
        check_input_shape(card, &at, input.name(), &in_dims)?;
        check_output_width(card, &at, output.name(), &out_dims)?;
        let model_width = card.model_output_width();
        let fixed_batch = (in_dims[0] > 0).then_some(in_dims[0] as usize);
        let type_name = |f16: bool| if f16 { "float16" } else { "float32" };
        Ok(OrtClassifier {
            io: ModelIo {
                input: input.name().to_string(),
                input_type: type_name(input_f16),
                input_shape: in_dims.clone(),
                output: output.name().to_string(),
                output_type: type_name(output_f16),
                output_shape: out_dims.clone(),
            },
            input: input.name().to_string(),
            output: output.name().to_string(),
            session,
            provider: ran_on(engine, &placement),
            engine,
            placement,
            options: Vec::new(),
            precision: "fp32",
            run_options: ort::session::RunOptions::new()
                .and_then(|mut o| o.set_log_level(RUN_LOG_LEVEL).map(|()| o))?,
            crop: card.preprocess.crop as usize,
            model_width,
            fixed_batch,
            layout: card.input.layout,
            channels: card.input.channels,
            input_f16,
            output_f16,
            head: card.head.clone(),
            scratch: Vec::new(),
            scratch_f16: Vec::new(),
        })
    }
}

/// The sessions of one model for a run's inference workers, opened once and kept for every
/// dataset. The first may be opened alone (the check before any image is read) and the rest added
/// later with the same threading, sharing its prepacked weights.
pub struct WorkerSessions {
    pub sessions: Vec<OrtClassifier>,
    /// Several workers: each session has `threads_each` threads of its own and shares these.
    prepacked: Option<PrepackedWeights>,
    threads_each: usize,
}

impl WorkerSessions {
    /// One session, opened as worker 0 of `workers` will run it.
    pub fn open_first(
        card: &ModelCard,
        settings: &SessionSettings,
        workers: usize,
        threads_each: usize,
        note: &mut dyn FnMut(String),
    ) -> Result<WorkerSessions> {
        runtime()?; // before any ort call: without the library, ort panics
        let mut set = WorkerSessions {
            sessions: Vec::new(),
            prepacked: (workers > 1).then(PrepackedWeights::new),
            threads_each,
        };
        set.fill(card, settings, 1, note)?;
        Ok(set)
    }

    /// Open sessions until there is one per worker.
    pub fn fill(
        &mut self,
        card: &ModelCard,
        settings: &SessionSettings,
        workers: usize,
        note: &mut dyn FnMut(String),
    ) -> Result<()> {
        while self.sessions.len() < workers.max(1) {
            let threading = Threading {
                own_threads: self.prepacked.is_some().then_some(self.threads_each),
                prepacked: self.prepacked.as_ref(),
            };
            let session = OrtClassifier::open_with(card, settings, note, &threading)?;
            self.sessions.push(session);
        }
        Ok(())
    }
}

impl OrtClassifier {
    pub fn io(&self) -> &ModelIo {
        &self.io
    }
}

/// How a pair's inference ran.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Default)]
pub struct Execution {
    /// "fp32", or the reduced precision a GPU provider was allowed ("tf32 ...", "fp16 ...").
    pub precision: String,
    /// The options the GPU providers were given, as `provider.key` = value (none on the CPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_options: Vec<(String, String)>,
    /// Per provider, the nodes it took, from ONNX Runtime's placement log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<(String, u64)>,
}

#[cfg(test)]
mod layout_tests;

#[cfg(test)]
mod gpu_option_tests;
