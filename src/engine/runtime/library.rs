//! Finding and loading the ONNX Runtime library (no download), its global thread pool and log,
//! and which execution providers it offers.

use super::*;

/// Where the ONNX Runtime library came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Library {
    pub path: PathBuf,
    /// How it was found, e.g. "ORT_DYLIB_PATH" or "python package onnxruntime".
    pub found_by: String,
    pub version: String,
}

pub(super) fn library_files_in(dir: &Path) -> Vec<PathBuf> {
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
pub(super) fn wheel_dirs_in_venv(venv: &Path) -> Vec<PathBuf> {
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
pub(super) fn python_package_library() -> Option<(PathBuf, String)> {
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

pub(super) fn version_of(path: &Path) -> String {
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

/// The ONNX Runtime environment, loaded once per process.
pub fn runtime() -> Result<&'static Runtime> {
    static CELL: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    CELL.get_or_init(load)
        .as_ref()
        .map_err(|e| Error::Runtime(e.clone()))
}

pub(super) fn load() -> std::result::Result<Runtime, String> {
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
pub(super) fn share_cpu_arena(
    env: &ort::environment::Environment,
) -> std::result::Result<(), String> {
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
pub(super) fn forward_log(
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
pub(super) fn log_level() -> ort::logging::LogLevel {
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
