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

/// Where the ONNX Runtime library came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Library {
    pub path: PathBuf,
    /// How it was found, e.g. "ORT_DYLIB_PATH" or "python package onnxruntime".
    pub found_by: String,
    pub version: String,
}

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

fn library_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "libonnxruntime.so"
                || name.starts_with("libonnxruntime.so.")
                || name == "libonnxruntime.dylib"
                || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
                || name == "onnxruntime.dll"
        })
        .collect();
    found.sort();
    found
}

/// `capi/` folders of onnxruntime wheels installed in a Python environment rooted at `venv`.
fn wheel_dirs_in_venv(venv: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let site = entry
                .path()
                .join("site-packages")
                .join("onnxruntime")
                .join("capi");
            if site.is_dir() {
                dirs.push(site);
            }
        }
    }
    dirs.sort();
    dirs
}

/// Candidate library locations, in search order, each with how it was found.
pub fn candidates() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push((PathBuf::from(p), "ORT_DYLIB_PATH".to_string()));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    if let Some(dir) = &exe_dir {
        for f in library_files_in(dir) {
            out.push((f, "beside the executable".to_string()));
        }
    }
    let mut venvs: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        venvs.push(cwd.join(".venv"));
    }
    if let Some(dir) = &exe_dir {
        // target/release/robust-eval → the checkout's .venv
        for ancestor in dir.ancestors().skip(1).take(3) {
            venvs.push(ancestor.join(".venv"));
        }
    }
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(v));
    }
    for venv in venvs {
        for dir in wheel_dirs_in_venv(&venv) {
            for f in library_files_in(&dir) {
                out.push((f, format!("Python environment {}", venv.display())));
            }
        }
    }
    // The same library can be reached twice (lib64 → lib, nested checkouts): keep the first.
    let mut seen = std::collections::HashSet::new();
    out.retain(|(p, _)| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    out
}

/// Ask the system `python3` where its onnxruntime package is (the last resort: it is slow).
fn python_package_library() -> Option<(PathBuf, String)> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("capi");
    library_files_in(&dir)
        .into_iter()
        .next()
        .map(|f| (f, "python3's onnxruntime package".to_string()))
}

fn version_of(path: &Path) -> String {
    let info = ort::info();
    if let Some(rest) = info.split("git-branch=rel-").nth(1) {
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_prefix("libonnxruntime.so.")
        .unwrap_or("unknown")
        .to_string()
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

/// The ONNX Runtime environment, loaded once per process.
pub fn runtime() -> Result<&'static Runtime> {
    static CELL: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    CELL.get_or_init(load)
        .as_ref()
        .map_err(|e| Error::Runtime(e.clone()))
}

fn load() -> std::result::Result<Runtime, String> {
    let mut tried = Vec::new();
    let mut candidates = candidates();
    if candidates.is_empty() {
        candidates.extend(python_package_library());
    }
    for (path, found_by) in candidates {
        if !path.is_file() {
            if found_by == "ORT_DYLIB_PATH" {
                // An explicit choice is not silently replaced by another library.
                return Err(format!("ORT_DYLIB_PATH={}: no such file", path.display()));
            }
            tried.push(format!("{} ({found_by}): no such file", path.display()));
            continue;
        }
        // Before ONNX Runtime loads a provider library, whose NEEDED CUDA libraries must
        // then already be in the process.
        let gpu_libraries = crate::engine::gpu_libs::preload_beside(&path);
        match ort::init_from(&path) {
            Ok(builder) => {
                // One intra-op pool for every session, its idle threads spinning between
                // operators: waking sleeping threads for each of a CNN's many small operators
                // costs ~15 % of CPU inference, and with one pool the models of a group (run in
                // turn on each batch) do not each keep threads spinning.
                let pool = GlobalThreadPoolOptions::default()
                    .with_intra_threads(inference_threads())
                    .and_then(|p| p.with_inter_threads(1))
                    .and_then(|p| p.with_spin_control(true))
                    .map_err(|e| e.to_string())?;
                let env = builder
                    .with_name("robust-eval")
                    .with_logger(std::sync::Arc::new(forward_log))
                    .with_global_thread_pool(pool)
                    .build()
                    .map_err(|e| e.to_string())?;
                // ort's `tracing` feature sets the environment to VERBOSE; keep ONNX Runtime from
                // producing messages nobody reads.
                env.set_log_level(log_level());
                let shared_arena = share_cpu_arena(&env).is_ok();
                let version = version_of(&path);
                return Ok(Runtime {
                    library: Library {
                        path,
                        found_by,
                        version,
                    },
                    gpu_libraries,
                    env,
                    shared_arena,
                });
            }
            // The first library loaded stays loaded for the process, so a failure here is final.
            Err(e) => {
                return Err(format!(
                    "{} ({found_by}) could not be loaded: {e}",
                    path.display()
                ))
            }
        }
    }
    let mut msg = String::from(
        "the ONNX Runtime library was not found. Run scripts/setup.sh (installs the onnxruntime wheel into .venv), \
         `pip install onnxruntime` (or onnxruntime-gpu), or set ORT_DYLIB_PATH to libonnxruntime.so",
    );
    if !tried.is_empty() {
        msg.push_str(&format!("; tried: {}", tried.join("; ")));
    }
    Err(msg)
}

/// Register one CPU arena allocator with the environment, for every session to take its working
/// memory from (`with_env_allocators`). Each session would otherwise grow an arena of its own,
/// several hundred MB for a CNN at batch 64: N models on W CPU workers held N x W of them, and
/// faulting those pages in cost more than a second of system time per model. Models run in turn
/// on a worker, so one arena serves them all.
fn share_cpu_arena(env: &ort::environment::Environment) -> std::result::Result<(), String> {
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
    use ort::AsPointer;
    let info = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Arena,
        MemoryType::Default,
    )
    .map_err(|e| e.to_string())?;
    let api = ort::api();
    // SAFETY: a live environment and memory info; a null arena config means ONNX Runtime's
    // defaults. The environment copies what it needs.
    let status = unsafe {
        (api.CreateAndRegisterAllocator)(env.ptr() as *mut _, info.ptr(), std::ptr::null())
    };
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status carries a message; it is released once.
    let message = unsafe {
        let text = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(status.0);
        text
    };
    Err(message)
}

/// ONNX Runtime's messages (at `log_level()` and above) on stderr, where ort would otherwise hand
/// them to a `tracing` subscriber nobody installed: the "nodes not assigned to the preferred
/// execution provider" warning is one of them.
fn forward_log(
    level: ort::logging::LogLevel,
    _category: &str,
    _id: &str,
    _at: &str,
    message: &str,
) {
    // The environment logs at the verbose level while it is built, before its level is set.
    if level < log_level() {
        return;
    }
    eprintln!(
        "onnxruntime {}: {message}",
        format!("{level:?}").to_lowercase()
    );
}

/// ONNX Runtime's log level: `ORT_LOG` (verbose, info, warning, error, fatal), else warning.
fn log_level() -> ort::logging::LogLevel {
    use ort::logging::LogLevel;
    match std::env::var("ORT_LOG").as_deref() {
        Ok("verbose") => LogLevel::Verbose,
        Ok("info") => LogLevel::Info,
        Ok("error") => LogLevel::Error,
        Ok("fatal") => LogLevel::Fatal,
        _ => LogLevel::Warning,
    }
}

/// Execution providers the loaded library was built with (the C API's GetAvailableProviders).
pub fn available_providers() -> Result<Vec<String>> {
    runtime()?;
    let api = ort::api();
    let mut list: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut len: std::ffi::c_int = 0;
    // SAFETY: the API writes an array of `len` C strings that we copy and then release.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut list, &mut len);
        if !status.0.is_null() || list.is_null() {
            return Err(Error::Runtime("GetAvailableProviders failed".into()));
        }
        let names = (0..len as usize)
            .map(|i| {
                std::ffi::CStr::from_ptr(*list.add(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let _ = (api.ReleaseAvailableProviders)(list, len);
        Ok(names)
    }
}

/// An explicitly requested provider must be in the library: say so before any work starts.
pub fn check_provider(choice: ProviderChoice) -> Result<()> {
    let name = match choice {
        ProviderChoice::Auto | ProviderChoice::Cpu => return Ok(()),
        ProviderChoice::Cuda => CUDA::NAME,
        ProviderChoice::Tensorrt => TensorRT::NAME,
    };
    let available = available_providers()?;
    if available.iter().any(|a| a == name) {
        return Ok(());
    }
    Err(Error::Runtime(format!(
        "--provider {}: the library at {} does not include {name} (it has: {}); install onnxruntime-gpu \
         (scripts/setup.sh --gpu) with a matching CUDA, or use --provider auto|cpu",
        format!("{choice:?}").to_lowercase(),
        runtime()?.library.path.display(),
        available.join(", ")
    )))
}

/// Whether `choice` will run on the CPU: asked for, or `auto` with no GPU provider in the library.
pub fn runs_on_cpu(choice: ProviderChoice) -> Result<bool> {
    Ok(match choice {
        ProviderChoice::Cpu => true,
        ProviderChoice::Cuda | ProviderChoice::Tensorrt => false,
        ProviderChoice::Auto => {
            let available = available_providers()?;
            !available
                .iter()
                .any(|a| a == CUDA::NAME || a == TensorRT::NAME)
        }
    })
}

/// Settings for opening model sessions.
#[derive(Debug, Clone, Default)]
pub struct SessionSettings {
    pub provider: ProviderChoice,
    /// TensorRT engine cache, so a second run does not rebuild engines.
    pub trt_cache: PathBuf,
    /// Device and precision for the GPU providers.
    pub gpu: GpuOptions,
    /// The run's batch size: TensorRT's optimisation profile and the warm-up batch a GPU session
    /// runs when it opens. 0: no profile and no warm-up.
    pub batch_size: usize,
    /// Per ONNX file, its content key (sha256 of the file and its external data) as the run
    /// computed it; a model missing here is hashed when TensorRT needs its key.
    pub content_keys: std::collections::BTreeMap<PathBuf, String>,
}

/// What the GPU providers are given beyond the defaults, as the command line set it; recorded per
/// pair in run.json, and one run's shards must agree on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuOptions {
    /// CUDA device ordinal (`--device`).
    pub device: u32,
    /// TF32 tensor-core math in the CUDA provider (`--tf32`); off, matmuls and convolutions are
    /// fp32 as on the CPU.
    pub tf32: bool,
    /// fp16 TensorRT engines (`--fp16`).
    pub fp16: bool,
}

/// GPUs this process can see, where that can be known: the entries of `CUDA_VISIBLE_DEVICES` when
/// it is set, else the GPUs `nvidia-smi -L` lists; `None` when neither says.
pub fn visible_gpus() -> Option<usize> {
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        let list = list.trim();
        // CUDA stops at the first invalid entry; "-1" and "" hide every GPU.
        return Some(
            list.split(',')
                .map(str::trim)
                .take_while(|e| !e.is_empty() && !e.starts_with('-'))
                .count(),
        );
    }
    let output = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.starts_with("GPU "))
            .count()
    })
}

/// `--device`, `--tf32` and `--fp16` against the provider asked for, the providers in the library
/// and the GPUs visible (when known): a setting that cannot take effect is a usage error.
pub fn check_gpu_options(
    provider: ProviderChoice,
    gpu: &GpuOptions,
    available: &[String],
    visible: Option<usize>,
) -> Result<()> {
    let has_trt = available.iter().any(|a| a == TensorRT::NAME);
    let has_gpu = has_trt || available.iter().any(|a| a == CUDA::NAME);
    let cpu_only =
        provider == ProviderChoice::Cpu || (provider == ProviderChoice::Auto && !has_gpu);
    let why_cpu = if provider == ProviderChoice::Cpu {
        "--provider cpu".to_string()
    } else {
        "this ONNX Runtime has no GPU provider (scripts/setup.sh --gpu installs one)".to_string()
    };
    if gpu.fp16 && cpu_only {
        return Err(Error::Usage(format!(
            "--fp16: the CPU computes in fp32 only ({why_cpu})"
        )));
    }
    if gpu.fp16 && (provider == ProviderChoice::Cuda || !has_trt) {
        return Err(Error::Usage(
            "--fp16 builds fp16 TensorRT engines: it needs --provider tensorrt (or auto with TensorRT \
             in the library; scripts/setup.sh --gpu --tensorrt installs it)"
                .into(),
        ));
    }
    if gpu.tf32 && cpu_only {
        return Err(Error::Usage(format!(
            "--tf32: the CPU has no TF32 ({why_cpu})"
        )));
    }
    if gpu.device > 0 && cpu_only {
        return Err(Error::Usage(format!(
            "--device {}: no GPU is used ({why_cpu})",
            gpu.device
        )));
    }
    let explicit = matches!(provider, ProviderChoice::Cuda | ProviderChoice::Tensorrt);
    if let Some(n) = visible.filter(|&n| gpu.device as usize >= n && (gpu.device > 0 || explicit)) {
        let seen = match n {
            0 => "no GPU is visible to this process".to_string(),
            n => format!(
                "{n} GPU(s) are visible to this process (devices 0 to {})",
                n - 1
            ),
        };
        return Err(Error::Usage(format!(
            "--device {}: {seen}, as CUDA_VISIBLE_DEVICES or nvidia-smi -L say",
            gpu.device
        )));
    }
    Ok(())
}

/// cuDNN's convolution algorithm search for the CUDA provider. ONNX Runtime's own default,
/// EXHAUSTIVE, times every algorithm on the first run and keeps the fastest, so the algorithm (and
/// the last bits of the logits) can change from run to run; DEFAULT always uses
/// IMPLICIT_PRECOMP_GEMM, the same on every run and every GPU.
pub const CUDNN_CONV_ALGO_SEARCH: &str = "DEFAULT";

/// The CUDA provider's options (also TensorRT's fallback for the nodes TensorRT does not take).
pub fn cuda_options(gpu: &GpuOptions) -> Vec<(&'static str, String)> {
    vec![
        ("device_id", gpu.device.to_string()),
        ("use_tf32", u8::from(gpu.tf32).to_string()),
        ("cudnn_conv_algo_search", CUDNN_CONV_ALGO_SEARCH.to_string()),
    ]
}

/// TensorRT's min/opt/max shapes for a dynamic batch: batches of 1 to `batch` images, tuned for
/// `batch`, so one engine serves every short last batch and shard range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProfile {
    pub min: String,
    pub opt: String,
    pub max: String,
}

/// The profile for input `name` of dimensions `dims` (the model's, negative where dynamic) at
/// `batch`, with the card's `crop` for dynamic image sides. `None` where the batch is fixed (no
/// profile is needed), or the name cannot be written in ONNX Runtime's `name:AxBxC` option syntax.
pub fn batch_profile(
    name: &str,
    dims: &[i64],
    crop: usize,
    layout: TensorLayout,
    batch: usize,
) -> Option<BatchProfile> {
    if dims.len() != 4 || dims[0] > 0 || batch == 0 || name.is_empty() || name.contains([':', ','])
    {
        return None;
    }
    let want = match layout {
        TensorLayout::Nchw => [3, crop as i64, crop as i64],
        TensorLayout::Nhwc => [crop as i64, crop as i64, 3],
    };
    let rest: Vec<String> = dims[1..]
        .iter()
        .zip(want)
        .map(|(&d, w)| if d > 0 { d } else { w }.to_string())
        .collect();
    let shape = |n: usize| format!("{name}:{n}x{}", rest.join("x"));
    Some(BatchProfile {
        min: shape(1),
        opt: shape(batch),
        max: shape(batch),
    })
}

/// TensorRT's options. Engines are cached under the model's content key: ONNX Runtime names an
/// engine by a hash of the graph's file name, tensor names and versions, not its weights, so two
/// models that differ only in weights (WiSE-FT mixes, soups, a re-export in place) would share
/// one engine. The timing cache (kernel timings per layer shape, valid whatever the weights) stays
/// shared in the folder.
pub fn tensorrt_options(
    gpu: &GpuOptions,
    cache: &Path,
    content_key: &str,
    profile: Option<&BatchProfile>,
) -> Vec<(&'static str, String)> {
    let mut options = vec![
        ("device_id", gpu.device.to_string()),
        ("trt_fp16_enable", u8::from(gpu.fp16).to_string()),
        ("trt_engine_cache_enable", "1".to_string()),
        ("trt_engine_cache_path", cache.display().to_string()),
        ("trt_engine_cache_prefix", content_key.to_string()),
        ("trt_timing_cache_enable", "1".to_string()),
        ("trt_timing_cache_path", cache.display().to_string()),
    ];
    if let Some(p) = profile {
        options.push(("trt_profile_min_shapes", p.min.clone()));
        options.push(("trt_profile_opt_shapes", p.opt.clone()));
        options.push(("trt_profile_max_shapes", p.max.clone()));
    }
    options
}

/// The precision a provider computes in with these options, as run.json records it.
pub fn precision(provider: &str, gpu: &GpuOptions) -> &'static str {
    match provider {
        p if p == TensorRT::NAME && gpu.fp16 => "fp16 (TensorRT engines built with fp16 allowed)",
        p if (p == TensorRT::NAME || p == CUDA::NAME) && gpu.tf32 => "tf32 (CUDA use_tf32=1)",
        _ => "fp32",
    }
}

/// The content key of a model: the sha256 of its ONNX file alone, or, with external-data files,
/// the sha256 over the file's and each data file's hash (name and digest, in the card's order).
pub fn content_key(onnx_sha256: &str, external: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    if external.is_empty() {
        return onnx_sha256.to_string();
    }
    let mut h = Sha256::new();
    h.update(onnx_sha256.as_bytes());
    for (name, sha) in external {
        h.update(format!(" data={name}:{sha}").as_bytes());
    }
    format!("{:x}", h.finalize())
}

/// The content key of a card's model, as the run computed it, else hashed now.
fn model_content_key(card: &ModelCard, settings: &SessionSettings) -> Result<String> {
    if let Some(key) = settings.content_keys.get(&card.onnx) {
        return Ok(key.clone());
    }
    let sha = |path: &Path| -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut h = Sha256::new();
        std::io::copy(&mut file, &mut h).map_err(|e| Error::io(path, e))?;
        Ok(format!("{:x}", h.finalize()))
    };
    let external = card
        .external_data
        .iter()
        .map(|d| {
            Ok((
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                sha(d)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(content_key(&sha(&card.onnx)?, &external))
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

/// Element type and dimensions of a tensor outlet; float32 and float16 are accepted.
fn tensor_dims(model: &str, what: &str, name: &str, dtype: &ValueType) -> Result<(bool, Vec<i64>)> {
    match dtype {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Ok((false, shape.to_vec())),
        ValueType::Tensor { ty: TensorElementType::Float16, shape, .. } => Ok((true, shape.to_vec())),
        ValueType::Tensor { ty, .. } => Err(Error::Usage(format!(
            "model `{model}`: {what} `{name}` is {ty:?}; only float32 and float16 inputs and outputs are supported"
        ))),
        other => Err(Error::Usage(format!("model `{model}`: {what} `{name}` is not a tensor ({other:?})"))),
    }
}

/// The outlet named in the card, or the first; an error lists the names there are.
fn pick_outlet<'s>(
    outlets: &'s [ort::value::Outlet],
    wanted: Option<&str>,
    what: &str,
    model: &str,
    at: &str,
) -> Result<&'s ort::value::Outlet> {
    let names = || {
        outlets
            .iter()
            .map(|o| format!("`{}`", o.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(name) => outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
            Error::Usage(format!(
                "{at}: field `{what}.name`: model `{model}` has no {what} `{name}` (it has {})",
                names()
            ))
        }),
        None => {
            if what == "input" && outlets.len() > 1 {
                return Err(Error::Usage(format!(
                    "{at}: model `{model}` has {} inputs ({}); robust-eval feeds one image tensor",
                    outlets.len(),
                    names()
                )));
            }
            outlets
                .first()
                .ok_or_else(|| Error::Usage(format!("model `{model}` has no {what}s")))
        }
    }
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

/// The providers to try, in order: `auto` tries TensorRT, then CUDA (those in the library), then
/// the CPU; a named provider is tried alone.
fn attempts(choice: ProviderChoice, available: &[String]) -> Vec<ProviderChoice> {
    let has = |name: &str| available.iter().any(|a| a == name);
    match choice {
        ProviderChoice::Auto => {
            let mut out = Vec::new();
            if has(TensorRT::NAME) {
                out.push(ProviderChoice::Tensorrt);
            }
            if has(CUDA::NAME) {
                out.push(ProviderChoice::Cuda);
            }
            out.push(ProviderChoice::Cpu);
            out
        }
        other => vec![other],
    }
}

fn provider_name(choice: ProviderChoice) -> &'static str {
    match choice {
        ProviderChoice::Tensorrt => TensorRT::NAME,
        ProviderChoice::Cuda => CUDA::NAME,
        _ => CPU::NAME,
    }
}

fn configured<E: ArbitrarilyConfigurableExecutionProvider>(ep: E, options: &[(&str, String)]) -> E {
    options
        .iter()
        .fold(ep, |ep, (k, v)| ep.with_arbitrary_config(k, v))
}

/// The input's name and dimensions, read from a CPU session opened without optimisation (for
/// TensorRT's profile, which must name the input before the TensorRT session exists).
fn inspect_input(card: &ModelCard) -> Result<(String, Vec<i64>)> {
    let rt = runtime()?;
    let session = Session::builder(&rt.env)?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(ort::Error::from)?
        .commit_from_file(&card.onnx)
        .map_err(|e| Error::Runtime(format!("cannot load {}: {e}", card.onnx.display())))?;
    let at = card.onnx.display().to_string();
    let input = pick_outlet(
        session.inputs(),
        card.input.name.as_deref(),
        "input",
        &card.name,
        &at,
    )?;
    let (_, dims) = tensor_dims(&card.name, "input", input.name(), input.dtype())?;
    Ok((input.name().to_string(), dims))
}

/// The options a session's providers were given, as `provider.key` = value, for run.json.
pub type ProviderOptions = Vec<(String, String)>;

/// The execution providers of one attempt, configured (see `cuda_options`, `tensorrt_options`).
fn execution_providers(
    card: &ModelCard,
    settings: &SessionSettings,
    attempt: ProviderChoice,
    note: &mut dyn FnMut(String),
) -> Result<(Vec<ExecutionProviderDispatch>, ProviderOptions)> {
    let cuda_opts = cuda_options(&settings.gpu);
    let cuda = || configured(CUDA::default(), &cuda_opts).build();
    let record = |ep: &str, options: &[(&str, String)]| -> ProviderOptions {
        options
            .iter()
            .map(|(k, v)| (format!("{ep}.{k}"), v.clone()))
            .collect()
    };
    Ok(match attempt {
        ProviderChoice::Cpu | ProviderChoice::Auto => (Vec::new(), Vec::new()),
        ProviderChoice::Cuda => (vec![cuda()], record("cuda", &cuda_opts)),
        ProviderChoice::Tensorrt => {
            std::fs::create_dir_all(&settings.trt_cache).ok();
            let key = model_content_key(card, settings)?;
            let (input, dims) = inspect_input(card)?;
            let profile = batch_profile(
                &input,
                &dims,
                card.preprocess.crop as usize,
                card.input.layout,
                settings.batch_size,
            );
            if profile.is_none() && dims.first().is_some_and(|d| *d <= 0) && settings.batch_size > 0
            {
                note(format!(
                    "input `{input}` cannot be named in TensorRT's profile options; \
                     TensorRT builds an engine per batch shape"
                ));
            }
            let options =
                tensorrt_options(&settings.gpu, &settings.trt_cache, &key, profile.as_ref());
            let mut recorded = record("tensorrt", &options);
            recorded.extend(record("cuda", &cuda_opts));
            (
                vec![configured(TensorRT::default(), &options).build(), cuda()],
                recorded,
            )
        }
    })
}

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

/// The input tensor must take `[N, 3, crop, crop]` (or NHWC) images as the card describes them.
fn check_input_shape(card: &ModelCard, at: &str, input: &str, in_dims: &[i64]) -> Result<()> {
    let crop = card.preprocess.crop as i64;
    let fits = |dim: i64, want: i64| dim == want || dim < 0;
    let (expected, shape_ok) = match card.input.layout {
        TensorLayout::Nchw => (
            format!("[N, 3, {crop}, {crop}]"),
            in_dims.len() == 4
                && fits(in_dims[1], 3)
                && fits(in_dims[2], crop)
                && fits(in_dims[3], crop),
        ),
        TensorLayout::Nhwc => (
            format!("[N, {crop}, {crop}, 3]"),
            in_dims.len() == 4
                && fits(in_dims[1], crop)
                && fits(in_dims[2], crop)
                && fits(in_dims[3], 3),
        ),
    };
    if !shape_ok {
        return Err(Error::Usage(format!(
            "{at}: model `{}` takes input `{}` of shape {in_dims:?}, which does not fit the card \
             (expected {expected} from preprocess.crop = {crop} and input.layout = {})",
            card.name,
            input,
            format!("{:?}", card.input.layout).to_lowercase()
        )));
    }
    Ok(())
}

/// The output must be `[N, width]` with the width the card implies (classes + offset, or the
/// zero-shot head's embedding width).
fn check_output_width(card: &ModelCard, at: &str, output: &str, out_dims: &[i64]) -> Result<()> {
    let model_width = card.model_output_width();
    let width_ok = out_dims.len() == 2 && (out_dims[1] < 0 || out_dims[1] as usize == model_width);
    if !width_ok {
        let from = match &card.head {
            Some(head) => format!(
                "the embedding width of the head's weights {}",
                head.weights_file.display()
            ),
            None => format!(
                "output.num_classes = {} and offset = {}",
                card.num_classes + card.offset,
                card.offset
            ),
        };
        return Err(Error::Usage(format!(
            "{at}: model `{}` output `{}` has shape {out_dims:?}, which does not fit the card \
             (expected [N, {model_width}] from {from})",
            card.name, output,
        )));
    }
    Ok(())
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
    pub fn execution(&self) -> crate::results::store::Execution {
        crate::results::store::Execution {
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

/// Re-lay out an NCHW RGB batch as the model takes it: channels reversed for BGR, and
/// interleaved for NHWC.
fn relayout(
    batch: &[f32],
    side: usize,
    layout: TensorLayout,
    channels: ChannelOrder,
    out: &mut Vec<f32>,
) {
    let plane = side * side;
    out.clear();
    out.resize(batch.len(), 0.0);
    for (image, dst) in batch
        .chunks_exact(3 * plane)
        .zip(out.chunks_exact_mut(3 * plane))
    {
        for c in 0..3 {
            let from = match channels {
                ChannelOrder::Rgb => c,
                ChannelOrder::Bgr => 2 - c,
            };
            let src = &image[from * plane..(from + 1) * plane];
            match layout {
                TensorLayout::Nchw => dst[c * plane..(c + 1) * plane].copy_from_slice(src),
                TensorLayout::Nhwc => {
                    for (p, v) in src.iter().enumerate() {
                        dst[p * 3 + c] = *v;
                    }
                }
            }
        }
    }
}

/// A head's logits: `scale · normalize?(e) · Wᵀ + bias` (the card's `[head]`), each embedding
/// row L2-normalised first when the head says so.
fn head_logits(embeddings: &[f32], n: usize, head: &Head) -> Vec<f32> {
    let dim = head.embedding_width();
    let mut e = ndarray::Array2::from_shape_vec((n, dim), embeddings.to_vec())
        .expect("embedding rows have the head's width (checked when the model was opened)");
    if head.normalize {
        for mut row in e.rows_mut() {
            let norm = row.dot(&row).sqrt();
            if norm > 0.0 {
                row.mapv_inplace(|v| v / norm);
            }
        }
    }
    let mut logits = e.dot(&head.weights.t());
    if head.scale != 1.0 {
        logits *= head.scale;
    }
    if let Some(bias) = &head.bias {
        logits += &**bias;
    }
    logits.into_raw_vec_and_offset().0
}

impl Classifier for OrtClassifier {
    fn classify(&mut self, batch: &[f32], n: usize) -> Result<Vec<f32>> {
        let run_n = self.fixed_batch.unwrap_or(n);
        let side = self.crop;
        let per_image = 3 * side * side;
        let mut data: &[f32] = &batch[..n * per_image];
        // A fixed-batch model gets its last, short batch padded with zeros.
        if run_n > n || self.layout != TensorLayout::Nchw || self.channels != ChannelOrder::Rgb {
            relayout(data, side, self.layout, self.channels, &mut self.scratch);
            self.scratch.resize(run_n * per_image, 0.0);
            data = &self.scratch;
        }
        let dims = match self.layout {
            TensorLayout::Nchw => [run_n, 3, side, side],
            TensorLayout::Nhwc => [run_n, side, side, 3],
        };
        let outputs = if self.input_f16 {
            self.scratch_f16.clear();
            self.scratch_f16
                .extend(data.iter().map(|v| f16::from_f32(*v)));
            let tensor = TensorRef::from_array_view((dims, &self.scratch_f16[..]))?;
            self.session.run_with_options(
                ort::inputs![self.input.as_str() => tensor],
                &self.run_options,
            )?
        } else {
            let tensor = TensorRef::from_array_view((dims, data))?;
            self.session.run_with_options(
                ort::inputs![self.input.as_str() => tensor],
                &self.run_options,
            )?
        };
        let value = &outputs[self.output.as_str()];
        let (shape, mut rows): (Vec<i64>, Vec<f32>) = if self.output_f16 {
            let (shape, v) = value.try_extract_tensor::<f16>()?;
            (shape.to_vec(), v.iter().map(|x| x.to_f32()).collect())
        } else {
            let (shape, v) = value.try_extract_tensor::<f32>()?;
            (shape.to_vec(), v.to_vec())
        };
        if shape.len() != 2 || shape[0] as usize != run_n || shape[1] as usize != self.model_width {
            return Err(Error::Runtime(format!(
                "model output `{}` has shape {shape:?}; expected [{run_n}, {}] ({})",
                self.output,
                self.model_width,
                if self.head.is_some() {
                    "the head's embedding width"
                } else {
                    "card: num_classes + offset"
                }
            )));
        }
        // Padding rows of a fixed-batch model are dropped.
        rows.truncate(n * self.model_width);
        Ok(match &self.head {
            Some(head) => head_logits(&rows, n, head),
            None => rows,
        })
    }

    fn provider(&self) -> &str {
        &self.provider
    }

    fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn zero_shot_logits_normalise_the_embedding_then_scale_cosines() {
        let weights = ndarray::arr2(&[[1.0f32, 0.0], [0.6, 0.8]]);
        let mut head = Head {
            kind: crate::input::card::HeadKind::ZeroShot,
            weights_file: "w.npy".into(),
            scale: 10.0,
            normalize: true,
            bias_file: None,
            weights: std::sync::Arc::new(weights),
            bias: None,
        };
        // [3, 4] has norm 5: its cosines with the two classes are 0.6 and 1.
        let logits = head_logits(&[3.0, 4.0, 0.0, 2.0], 2, &head);
        let want = [6.0, 10.0, 0.0, 8.0];
        for (got, want) in logits.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{logits:?}");
        }
        // A linear head on the raw embedding, with a bias.
        head.normalize = false;
        head.scale = 1.0;
        head.bias = Some(std::sync::Arc::new(ndarray::arr1(&[0.5f32, -1.0])));
        let logits = head_logits(&[3.0, 4.0, 0.0, 2.0], 2, &head);
        let want = [3.5, 4.0, 0.5, 0.6];
        for (got, want) in logits.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{logits:?}");
        }
    }

    #[test]
    fn relayout_reverses_channels_and_interleaves() {
        // One 2x2 image: R plane 1..=4, G 5..=8, B 9..=12.
        let nchw: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let mut out = Vec::new();
        relayout(&nchw, 2, TensorLayout::Nchw, ChannelOrder::Bgr, &mut out);
        assert_eq!(out, [9., 10., 11., 12., 5., 6., 7., 8., 1., 2., 3., 4.]);
        relayout(&nchw, 2, TensorLayout::Nhwc, ChannelOrder::Rgb, &mut out);
        assert_eq!(out, [1., 5., 9., 2., 6., 10., 3., 7., 11., 4., 8., 12.]);
        relayout(&nchw, 2, TensorLayout::Nhwc, ChannelOrder::Bgr, &mut out);
        assert_eq!(out, [9., 5., 1., 10., 6., 2., 11., 7., 3., 12., 8., 4.]);
    }
}

#[cfg(test)]
mod gpu_option_tests {
    use super::*;

    fn get<'a>(options: &'a [(&str, String)], key: &str) -> Option<&'a str> {
        options
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn cuda_is_fp32_with_a_fixed_convolution_algorithm_unless_tf32_is_asked() {
        let fp32 = cuda_options(&GpuOptions::default());
        assert_eq!(get(&fp32, "use_tf32"), Some("0"));
        assert_eq!(get(&fp32, "cudnn_conv_algo_search"), Some("DEFAULT"));
        assert_eq!(get(&fp32, "device_id"), Some("0"));
        let tf32 = cuda_options(&GpuOptions {
            device: 3,
            tf32: true,
            fp16: false,
        });
        assert_eq!(get(&tf32, "use_tf32"), Some("1"));
        assert_eq!(get(&tf32, "device_id"), Some("3"));
        assert_eq!(precision(CUDA::NAME, &GpuOptions::default()), "fp32");
        assert!(precision(
            CUDA::NAME,
            &GpuOptions {
                tf32: true,
                ..Default::default()
            }
        )
        .starts_with("tf32"));
        assert_eq!(
            precision(
                CPU::NAME,
                &GpuOptions {
                    tf32: true,
                    fp16: true,
                    device: 0
                }
            ),
            "fp32"
        );
    }

    #[test]
    fn tensorrt_engines_are_keyed_by_content_and_share_the_timing_cache() {
        let gpu = GpuOptions {
            device: 1,
            tf32: false,
            fp16: true,
        };
        let profile = batch_profile("input", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 64);
        let options = tensorrt_options(&gpu, Path::new("/cache"), "abc123", profile.as_ref());
        assert_eq!(get(&options, "trt_engine_cache_prefix"), Some("abc123"));
        assert_eq!(get(&options, "trt_engine_cache_path"), Some("/cache"));
        assert_eq!(get(&options, "trt_timing_cache_path"), Some("/cache"));
        assert_eq!(get(&options, "trt_timing_cache_enable"), Some("1"));
        assert_eq!(get(&options, "trt_fp16_enable"), Some("1"));
        assert_eq!(get(&options, "device_id"), Some("1"));
        assert_eq!(
            get(&options, "trt_profile_min_shapes"),
            Some("input:1x3x224x224")
        );
        assert_eq!(
            get(&options, "trt_profile_opt_shapes"),
            Some("input:64x3x224x224")
        );
        assert_eq!(
            get(&options, "trt_profile_max_shapes"),
            Some("input:64x3x224x224")
        );
        let fp32 = tensorrt_options(&GpuOptions::default(), Path::new("/c"), "k", None);
        assert_eq!(get(&fp32, "trt_fp16_enable"), Some("0"));
        assert_eq!(get(&fp32, "trt_profile_min_shapes"), None);
    }

    #[test]
    fn content_key_is_the_file_hash_or_covers_external_data() {
        assert_eq!(content_key("aa", &[]), "aa");
        let one = content_key("aa", &[("w.bin".into(), "01".into())]);
        let other = content_key("aa", &[("w.bin".into(), "02".into())]);
        assert_eq!(one.len(), 64);
        assert_ne!(one, other, "new external weights, new engine");
        assert_ne!(one, "aa");
    }

    #[test]
    fn profiles_fill_dynamic_sides_and_skip_fixed_batches_and_unwritable_names() {
        let nhwc = batch_profile("x", &[-1, -1, -1, 3], 160, TensorLayout::Nhwc, 9).unwrap();
        assert_eq!(nhwc.min, "x:1x160x160x3");
        assert_eq!(nhwc.max, "x:9x160x160x3");
        assert_eq!(
            batch_profile("x", &[8, 3, 224, 224], 224, TensorLayout::Nchw, 64),
            None
        );
        assert_eq!(
            batch_profile("a:b", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 64),
            None
        );
        assert_eq!(
            batch_profile("a,b", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 64),
            None
        );
        assert_eq!(
            batch_profile("x", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 0),
            None
        );
    }

    #[test]
    fn gpu_settings_that_cannot_take_effect_are_usage_errors() {
        let gpu_lib = vec![
            TensorRT::NAME.to_string(),
            CUDA::NAME.to_string(),
            CPU::NAME.to_string(),
        ];
        let cuda_lib = vec![CUDA::NAME.to_string(), CPU::NAME.to_string()];
        let cpu_lib = vec![CPU::NAME.to_string()];
        let fp16 = GpuOptions {
            fp16: true,
            ..Default::default()
        };
        let usage = |r: Result<()>| matches!(r, Err(Error::Usage(_)));
        // --fp16 is TensorRT's alone: refused on the CPU, on CUDA, and under auto without TensorRT.
        for (choice, lib) in [
            (ProviderChoice::Cpu, &gpu_lib),
            (ProviderChoice::Auto, &cpu_lib),
            (ProviderChoice::Cuda, &gpu_lib),
            (ProviderChoice::Auto, &cuda_lib),
        ] {
            assert!(
                usage(check_gpu_options(choice, &fp16, lib, None)),
                "{choice:?}"
            );
        }
        assert!(check_gpu_options(ProviderChoice::Tensorrt, &fp16, &gpu_lib, None).is_ok());
        let tf32 = GpuOptions {
            tf32: true,
            ..Default::default()
        };
        assert!(usage(check_gpu_options(
            ProviderChoice::Cpu,
            &tf32,
            &gpu_lib,
            None
        )));
        assert!(check_gpu_options(ProviderChoice::Cuda, &tf32, &cuda_lib, None).is_ok());
        let device2 = GpuOptions {
            device: 2,
            ..Default::default()
        };
        assert!(usage(check_gpu_options(
            ProviderChoice::Cuda,
            &device2,
            &cuda_lib,
            Some(2)
        )));
        assert!(check_gpu_options(ProviderChoice::Cuda, &device2, &cuda_lib, Some(3)).is_ok());
        assert!(
            check_gpu_options(ProviderChoice::Cuda, &device2, &cuda_lib, None).is_ok(),
            "unknown count: the provider says"
        );
        assert!(usage(check_gpu_options(
            ProviderChoice::Cpu,
            &device2,
            &gpu_lib,
            None
        )));
        // The default device with no GPU visible: auto falls back to the CPU, cuda is told now.
        let default = GpuOptions::default();
        assert!(check_gpu_options(ProviderChoice::Auto, &default, &cuda_lib, Some(0)).is_ok());
        assert!(usage(check_gpu_options(
            ProviderChoice::Cuda,
            &default,
            &cuda_lib,
            Some(0)
        )));
    }

    #[test]
    fn placement_is_read_from_the_session_log_and_names_what_ran() {
        let lines = vec![
            "Node placements".to_string(),
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 88".to_string(),
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 5".to_string(),
        ];
        let placement = parse_placement(&lines);
        assert_eq!(
            placement,
            vec![
                ("CUDAExecutionProvider".to_string(), 88),
                ("CPUExecutionProvider".to_string(), 5)
            ]
        );
        assert_eq!(
            ran_on(CUDA::NAME, &placement),
            "CUDAExecutionProvider+CPUExecutionProvider"
        );
        let all_cpu = parse_placement(&[
            "All nodes placed on [CPUExecutionProvider]. Number of nodes: 93".to_string(),
        ]);
        assert_eq!(ran_on(CPU::NAME, &all_cpu), "CPUExecutionProvider");
        assert_eq!(
            ran_on(TensorRT::NAME, &Vec::new()),
            "TensorrtExecutionProvider"
        );
    }

    #[test]
    fn auto_tries_the_providers_in_the_library_then_the_cpu() {
        let lib = vec![CUDA::NAME.to_string(), CPU::NAME.to_string()];
        assert_eq!(
            attempts(ProviderChoice::Auto, &lib),
            vec![ProviderChoice::Cuda, ProviderChoice::Cpu]
        );
        assert_eq!(
            attempts(ProviderChoice::Tensorrt, &lib),
            vec![ProviderChoice::Tensorrt]
        );
    }
}
