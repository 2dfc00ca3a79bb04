//! `robust-eval bench`: throughput of each stage on real images, so speed is measured by a
//! benchmark that prints figures, never by a timed test. `scripts/bench.py` runs it interleaved
//! with the reference Python pipeline and prints the ratios.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::engine::gpu_busy::{smi_id, Sampler};
use crate::engine::jpeg;
use crate::engine::preprocess::{decode_rgb, preprocess_bytes, recycle, PixelLayout};
use crate::engine::progress::{self, ProgressMode};
use crate::engine::runtime::{
    Classifier, GpuOptions, OrtClassifier, ProviderChoice, SessionSettings,
};
use crate::error::{Error, Result};
use crate::input::card::ModelCard;
use crate::input::suite::Suite;
use crate::pipeline::evaluate::{self, RunSettings};

#[derive(Debug, Serialize)]
pub struct Figures {
    pub images: usize,
    pub batch_size: usize,
    pub threads: usize,
    /// Batches inferred at once on the CPU, each by its own session (see `run --inference-workers`).
    pub inference_workers: usize,
    /// Threads decoding ahead of a single inference worker (a GPU, or one CPU worker).
    pub loader_threads: usize,
    pub cores: usize,
    pub onnxruntime: String,
    pub provider: String,
    /// JPEG (or other) decode alone, one core, images/s (files already in memory).
    pub decode_per_core: f64,
    /// Decode, resize, crop and normalise, one core, images/s.
    pub preprocess_per_core: f64,
    /// Inference alone on a pre-built batch, images/s.
    pub inference: f64,
    /// The real pipeline (`run`), images/s.
    pub end_to_end: f64,
    /// What end to end can reach when preprocessing and inference share the cores:
    /// cores / (1/preprocess_per_core + cores/inference).
    pub limit: f64,
    /// Share of the end-to-end pass inference spent waiting for decoded images (with workers
    /// decoding their own batches: the share of their time spent decoding).
    pub waiting_for_images: f64,
    /// "decode-bound" or "inference-bound".
    pub bound: String,
    /// The same in a sentence, with the figures behind it.
    pub bound_detail: String,
    /// Copies of the model run together in one pass, sharing decoded batches (0: not measured).
    pub shared_models: usize,
    /// Wall time of that pass, seconds.
    pub shared_seconds: f64,
    /// Wall time of the one-model pass, seconds.
    pub one_model_seconds: f64,
    /// Share of the one-model pass the GPU was busy (a kernel running), from `nvidia-smi`; None
    /// on the CPU or without nvidia-smi.
    pub gpu_busy: Option<f64>,
    /// How `gpu_busy` was measured, or why it was not.
    pub gpu_busy_note: String,
    /// What the shared pass may take: one_model_seconds + (N − 1) × images / inference × 1.1.
    pub shared_budget_seconds: f64,
}

/// Decode every pixel of an image, as fast as it goes: a JPEG straight into `buffer`, which is
/// kept from image to image and never shrinks (nothing zeroed twice), as preprocessing keeps its
/// own; anything else as `decode_rgb` decodes it.
fn decode_alone(bytes: &[u8], buffer: &mut Vec<u8>) -> Result<()> {
    let decoded = bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        && jpeg::decode(bytes, |_, _| None, PixelLayout::Rgb, buffer)
            .map_err(Error::Other)?
            .is_some();
    if !decoded {
        recycle(decode_rgb(bytes).map_err(Error::Other)?);
    }
    Ok(())
}

/// The name ONNX Runtime gives its CPU provider.
const CPU_PROVIDER: &str = "CPUExecutionProvider";

/// Images per turn when decode alone and preprocessing take turns.
const STAGE_CHUNK: usize = 5;

fn rate(n: usize, since: Instant) -> f64 {
    n as f64 / since.elapsed().as_secs_f64().max(1e-9)
}

/// The provider the bench runs on, and the GPU providers' device and precision.
#[derive(Debug, Clone, Default)]
pub struct BenchProvider {
    pub provider: ProviderChoice,
    pub gpu: GpuOptions,
}

/// Measure every stage once on `images` with `model`.
pub fn measure(
    images: &[PathBuf],
    model: &ModelCard,
    batch_size: usize,
    shared_models: usize,
    inference_workers: usize,
    on: &BenchProvider,
    work: &Path,
) -> Result<Figures> {
    if images.is_empty() {
        return Err(Error::Usage("bench: no images".into()));
    }
    let cores = crate::engine::cores();
    let bytes: Vec<Vec<u8>> = images
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| Error::io(p, e)))
        .collect::<Result<_>>()?;
    let (decode_per_core, preprocess_per_core, batch) = stage_rates(&bytes, model, batch_size)?;
    let runtime = crate::engine::runtime::runtime()?;
    crate::engine::runtime::check_provider(on.provider)?;
    let available = crate::engine::runtime::available_providers()?;
    crate::engine::runtime::check_gpu_options(
        on.provider,
        &on.gpu,
        &available,
        crate::engine::runtime::visible_gpus(),
    )?;
    let settings = SessionSettings {
        provider: on.provider,
        trt_cache: work.join("trt"),
        gpu: on.gpu.clone(),
        batch_size,
        ..Default::default()
    };
    // One session on a GPU, as `run` plans it.
    let workers = match crate::engine::runtime::runs_on_cpu(on.provider)? {
        true => evaluate::cpu_workers(inference_workers),
        false => 1,
    };
    let (inference, provider) =
        inference_alone(model, &batch, batch_size, workers, images.len(), &settings)?;

    let pipeline = Pipeline::new(images, batch_size, workers, work, &settings)?;
    let sampler = gpu_sampler(&provider, on.gpu.device);
    let passed = pipeline.pass(std::slice::from_ref(model), "one");
    let (gpu_busy, gpu_busy_note) = match sampler {
        Ok((sampler, id)) => match sampler.stop() {
            Some(busy) => (
                Some(busy),
                format!("nvidia-smi utilization.gpu of GPU {id}, sampled every 100 ms"),
            ),
            None => (
                None,
                format!("not measured: nvidia-smi gave no samples for GPU {id}"),
            ),
        },
        Err(why) => (None, why),
    };
    let (one_model_seconds, waiting_for_images) = passed?;
    let end_to_end = images.len() as f64 / one_model_seconds;
    let bound = evaluate::Boundedness {
        waiting_fraction: waiting_for_images,
        decode_in_workers: workers > 1,
    };
    // N copies of the model under different names: one decode, N inferences per batch.
    let (shared_seconds, shared_budget_seconds) = if shared_models > 1 {
        let copies: Vec<ModelCard> = (1..=shared_models)
            .map(|i| ModelCard {
                name: format!("{}-{i}", model.name),
                ..model.clone()
            })
            .collect();
        let (seconds, _) = pipeline.pass(&copies, "shared")?;
        let budget =
            one_model_seconds + (shared_models - 1) as f64 * images.len() as f64 / inference * 1.1;
        (seconds, budget)
    } else {
        (0.0, 0.0)
    };
    let limit = cores as f64 / (1.0 / preprocess_per_core + cores as f64 / inference);
    Ok(Figures {
        images: images.len(),
        batch_size,
        threads: crate::engine::runtime::inference_threads(),
        cores,
        onnxruntime: runtime.library.version.clone(),
        provider,
        inference_workers: workers,
        loader_threads: pipeline.run.loader_threads,
        decode_per_core,
        preprocess_per_core,
        inference,
        end_to_end,
        limit,
        waiting_for_images,
        bound_detail: bound.describe(),
        bound: if bound.decode_bound() {
            "decode-bound"
        } else {
            "inference-bound"
        }
        .into(),
        shared_models: if shared_models > 1 { shared_models } else { 0 },
        shared_seconds,
        one_model_seconds,
        shared_budget_seconds,
        gpu_busy,
        gpu_busy_note,
    })
}

/// `nvidia-smi` sampling the GPU the bench's sessions run on, and its id; or why not.
fn gpu_sampler(provider: &str, device: u32) -> std::result::Result<(Sampler, String), String> {
    if provider == CPU_PROVIDER {
        return Err("not measured: the sessions ran on the CPU".into());
    }
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let id = smi_id(visible.as_deref(), device)
        .ok_or_else(|| format!("not measured: CUDA_VISIBLE_DEVICES lists no device {device}"))?;
    let sampler = Sampler::start(&id)
        .map_err(|e| format!("not measured: nvidia-smi could not be started ({e})"))?;
    Ok((sampler, id))
}

/// Decode alone and full preprocessing, per core, in images/s; and a batch of preprocessed
/// images for the inference measurement.
///
/// The two alternate over the same small chunks of images, so a noisy machine slows both alike
/// and their ratio holds; which of the two goes first swaps from chunk to chunk, so neither always
/// finds the chunk's files warm in the cache. Two passes over the images.
fn stage_rates(
    bytes: &[Vec<u8>],
    model: &ModelCard,
    batch_size: usize,
) -> Result<(f64, f64, Vec<f32>)> {
    let spec = model.preprocess;
    let per_image = spec.tensor_len();
    let mut batch = vec![0f32; per_image * batch_size];
    let (mut decode_seconds, mut preprocess_seconds) = (0.0, 0.0);
    let (mut slot, mut whole) = (0, Vec::new());
    let chunks = bytes.chunks(STAGE_CHUNK).chain(bytes.chunks(STAGE_CHUNK));
    for (c, chunk) in chunks.enumerate() {
        for stage in [c % 2, 1 - c % 2] {
            let t = Instant::now();
            if stage == 0 {
                for b in chunk {
                    decode_alone(b, &mut whole)?;
                }
                decode_seconds += t.elapsed().as_secs_f64();
            } else {
                for b in chunk {
                    slot = (slot + 1) % batch_size;
                    let out = &mut batch[slot * per_image..(slot + 1) * per_image];
                    preprocess_bytes(b, &spec, 0, out).map_err(Error::Other)?;
                }
                preprocess_seconds += t.elapsed().as_secs_f64();
            }
        }
    }
    let decode_per_core = 2.0 * bytes.len() as f64 / decode_seconds.max(1e-9);
    let preprocess_per_core = 2.0 * bytes.len() as f64 / preprocess_seconds.max(1e-9);
    Ok((decode_per_core, preprocess_per_core, batch))
}

/// Inference alone in images/s, and the provider it ran on, the way `run` infers on the CPU: each
/// worker its own session and batches.
fn inference_alone(
    model: &ModelCard,
    batch: &[f32],
    batch_size: usize,
    workers: usize,
    images: usize,
    settings: &SessionSettings,
) -> Result<(f64, String)> {
    let threads = crate::engine::runtime::inference_threads();
    let mut sessions = if workers > 1 {
        OrtClassifier::open_copies(
            model,
            settings,
            workers,
            (threads / workers).max(1),
            &mut |_| {},
        )?
    } else {
        vec![OrtClassifier::open(model, settings, &mut |line| {
            eprintln!("bench: {line}")
        })?]
    };
    for session in &mut sessions {
        session.classify(batch, batch_size)?; // warm-up
    }
    let runs_each = ((images / batch_size).max(2)).div_ceil(workers);
    // Each worker reads a batch of its own, as in `run`: workers sharing one input would find
    // it in the shared cache and look faster than they are.
    let own_batches: Vec<Vec<f32>> = sessions.iter().map(|_| batch.to_vec()).collect();
    let t = Instant::now();
    std::thread::scope(|scope| {
        let running: Vec<_> = sessions
            .iter_mut()
            .zip(&own_batches)
            .map(|(session, batch)| {
                scope.spawn(move || -> Result<()> {
                    for _ in 0..runs_each {
                        session.classify(batch, batch_size)?;
                    }
                    Ok(())
                })
            })
            .collect();
        running.into_iter().try_for_each(|r| {
            r.join()
                .unwrap_or_else(|_| Err(Error::Other("inference thread panicked".into())))
        })
    })?;
    Ok((
        rate(runs_each * workers * batch_size, t),
        sessions[0].provider().to_string(),
    ))
}

/// The real pipeline (`evaluate::run`) on a one-dataset suite over the bench's images.
struct Pipeline {
    suite: Suite,
    run: RunSettings,
}

impl Pipeline {
    fn new(
        images: &[PathBuf],
        batch_size: usize,
        workers: usize,
        work: &Path,
        session: &SessionSettings,
    ) -> Result<Pipeline> {
        let manifest = work.join("bench.csv");
        let mut text = String::from("path,label\n");
        for p in images {
            let abs = std::fs::canonicalize(p).map_err(|e| Error::io(p, e))?;
            text.push_str(&format!(
                "\"{}\",0\n",
                abs.display().to_string().replace('"', "\"\"")
            ));
        }
        std::fs::write(&manifest, text).map_err(|e| Error::io(&manifest, e))?;
        let suite_file = work.join("bench.toml");
        let suite_text = "name = \"bench\"\nid = \"bench\"\n[datasets.bench]\nmanifest = \"bench.csv\"\nscoring = \"all-classes\"\n";
        std::fs::write(&suite_file, suite_text).map_err(|e| Error::io(&suite_file, e))?;
        let run = RunSettings {
            out: work.join("results"),
            data_root: Some(work.to_path_buf()),
            datasets: Vec::new(),
            batch_size,
            loader_threads: crate::engine::cores(),
            prefetch: 2,
            inference_workers: workers,
            session: session.clone(),
            force: true,
            shard: None,
            memory_budget: None,
        };
        Ok(Pipeline {
            suite: Suite::load(&suite_file)?,
            run,
        })
    }

    /// One pass of `models` into results folder `tag`: its wall time in seconds and the share of
    /// it inference waited for images.
    fn pass(&self, models: &[ModelCard], tag: &str) -> Result<(f64, f64)> {
        let run = RunSettings {
            out: self.run.out.join(tag),
            ..self.run.clone()
        };
        let t = Instant::now();
        evaluate::run(
            &self.suite,
            models,
            &run,
            progress::make(ProgressMode::None).as_ref(),
        )?;
        let seconds = t.elapsed().as_secs_f64();
        let store = crate::results::store::ResultsStore::open(&run.out)?;
        let waiting = store
            .run
            .evaluations
            .first()
            .map(|e| e.waiting_for_images)
            .unwrap_or(0.0);
        Ok((seconds, waiting))
    }
}
