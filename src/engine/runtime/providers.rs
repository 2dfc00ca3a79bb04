//! Choosing execution providers and their options: CUDA and TensorRT settings (precision,
//! profiles, the content-keyed engine cache), the GPU to use, and the order they are tried in.

use super::*;

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
pub(super) fn model_content_key(card: &ModelCard, settings: &SessionSettings) -> Result<String> {
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

/// The providers to try, in order: `auto` tries TensorRT, then CUDA (those in the library), then
/// the CPU; a named provider is tried alone.
pub(super) fn attempts(choice: ProviderChoice, available: &[String]) -> Vec<ProviderChoice> {
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

pub(super) fn provider_name(choice: ProviderChoice) -> &'static str {
    match choice {
        ProviderChoice::Tensorrt => TensorRT::NAME,
        ProviderChoice::Cuda => CUDA::NAME,
        _ => CPU::NAME,
    }
}

pub(super) fn configured<E: ArbitrarilyConfigurableExecutionProvider>(
    ep: E,
    options: &[(&str, String)],
) -> E {
    options
        .iter()
        .fold(ep, |ep, (k, v)| ep.with_arbitrary_config(k, v))
}

/// The options a session's providers were given, as `provider.key` = value, for run.json.
pub type ProviderOptions = Vec<(String, String)>;

/// The execution providers of one attempt, configured (see `cuda_options`, `tensorrt_options`).
pub(super) fn execution_providers(
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
