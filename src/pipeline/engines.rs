//! TensorRT engines for a sharded study: which shared cache a shard loads engines from and
//! publishes its own to (`study_cache`), and the engine job, `run --engines-only`
//! (`build_for_study`), which builds every model's engine once before any shard starts. The
//! copying, whole and never over an engine already there, is `engine::engine_share`.

use std::path::{Path, PathBuf};

use ort::ep::{ExecutionProvider, TensorRT};

use crate::engine::engine_share::{publish, seed};
use crate::engine::runtime::{self, OrtClassifier, ProviderChoice, SessionSettings};
use crate::error::{Error, Result};
use crate::input::card::ModelCard;
use crate::results::lock::WriterLock;

/// What `run --engines-only` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct EnginesBuilt {
    /// Models whose sessions opened on TensorRT (their engines built, or loaded from the cache).
    pub models: Vec<String>,
    /// Engine files newly published into the study's cache.
    pub published: usize,
    /// The study's cache the shards load them from.
    pub cache: PathBuf,
    /// Why nothing was built, where nothing was (no TensorRT in this ONNX Runtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// `run --engines-only`: the first job of a sharded study. Opens a session of every model as a
/// shard will (provider, device, precision, and the batch size that sets TensorRT's
/// optimisation profile), one at a time, with the warm-up batch that makes ONNX Runtime build
/// the model's engine, in a folder of this job's own (`own`, under its writer lock); each
/// model's engines are then published into `study` whole ([`publish`]). Engines `study`
/// already holds are copied in first and loaded, not built again, so a job run twice builds
/// nothing twice. With `own` equal to `study` (a `--trt-cache` of the user's) it builds there.
/// Nothing is evaluated and no results are written.
pub fn build_for_study(
    models: &[ModelCard],
    session: &SessionSettings,
    own: &Path,
    study: &Path,
    note: &mut dyn FnMut(String),
) -> Result<EnginesBuilt> {
    let mut built = EnginesBuilt {
        cache: study.to_path_buf(),
        ..Default::default()
    };
    match session.provider {
        ProviderChoice::Cpu | ProviderChoice::Cuda => {
            return Err(Error::Usage(format!(
                "--engines-only builds TensorRT engines, and --provider {} builds none: run the \
                 shards without an engine job (the front ends' --engine-job no)",
                format!("{:?}", session.provider).to_lowercase()
            )))
        }
        ProviderChoice::Tensorrt => runtime::check_provider(session.provider)?,
        ProviderChoice::Auto => {
            let available = runtime::available_providers()?;
            if !available.iter().any(|p| p == TensorRT::NAME) {
                built.skipped = Some(
                    "TensorRT is not among this ONNX Runtime's execution providers: there are no \
                     engines to build, and the shards run on CUDA or the CPU"
                        .into(),
                );
                return Ok(built);
            }
        }
    }
    runtime::check_gpu_options(
        session.provider,
        &session.gpu,
        &runtime::available_providers()?,
        runtime::visible_gpus(),
    )?;
    std::fs::create_dir_all(own).map_err(|e| Error::io(own, e))?;
    // Two engine jobs of one study never build into one folder together.
    let _lock = WriterLock::acquire(own)?;
    seed(study, own)?;
    let settings = SessionSettings {
        trt_cache: own.to_path_buf(),
        ..session.clone()
    };
    for card in models {
        let classifier = OrtClassifier::open(card, &settings, &mut *note)?;
        if classifier.engine() != TensorRT::NAME {
            // `auto` fell back: TensorRT does not initialise here, for this model or any.
            built.skipped = Some(format!(
                "TensorRT did not initialise for model `{}` (it opened on {}): no engines built",
                card.name,
                classifier.engine()
            ));
            break;
        }
        drop(classifier);
        built.models.push(card.name.clone());
        if own != study {
            built.published += publish(own, study)?;
        }
    }
    Ok(built)
}
