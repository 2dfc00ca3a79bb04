//! `robust-eval doctor`: which ONNX Runtime library is used, and which execution providers really
//! initialise (each is tried on a small embedded model, since a provider that is compiled in can
//! still fail to load its CUDA or TensorRT libraries).

use serde::Serialize;

use crate::engine::runtime::{self, OrtClassifier, ProviderChoice, SessionSettings};
use crate::input::card::ModelCard;

#[derive(Debug, Serialize)]
pub struct ProviderCheck {
    pub provider: String,
    /// "ok", or why it does not work.
    pub status: String,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool_version: String,
    pub library: Option<runtime::Library>,
    /// Candidates searched, in order, with how each was found.
    pub searched: Vec<String>,
    pub error: Option<String>,
    pub build_info: Option<String>,
    pub providers_built_in: Vec<String>,
    /// The CUDA / cuDNN / TensorRT libraries of the NVIDIA wheels, found and loaded.
    pub gpu_libraries: Option<crate::engine::gpu_libs::Preload>,
    pub providers: Vec<ProviderCheck>,
}

pub fn diagnose() -> Report {
    let searched = runtime::candidates()
        .into_iter()
        .map(|(p, how)| format!("{} ({how})", p.display()))
        .collect();
    let mut report = Report {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        library: None,
        searched,
        error: None,
        build_info: None,
        providers_built_in: Vec::new(),
        gpu_libraries: None,
        providers: Vec::new(),
    };
    let rt = match runtime::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.library = Some(rt.library.clone());
    report.gpu_libraries = Some(rt.gpu_libraries.clone());
    report.build_info = Some(ort::info().to_string());
    report.providers_built_in = runtime::available_providers().unwrap_or_default();
    let probe = crate::input::demo::extract().and_then(|root| {
        let dir = root.join("demo").join("models");
        let mut cards: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| crate::Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        cards.sort();
        ModelCard::load(
            cards
                .first()
                .ok_or_else(|| crate::Error::Other("the embedded demo has no models".into()))?,
        )
    });
    let tmp = std::env::temp_dir().join("robust-eval-doctor-trt");
    for (choice, name) in [
        (ProviderChoice::Tensorrt, "TensorrtExecutionProvider"),
        (ProviderChoice::Cuda, "CUDAExecutionProvider"),
        (ProviderChoice::Cpu, "CPUExecutionProvider"),
    ] {
        let status = if !report.providers_built_in.iter().any(|p| p == name) {
            "not in this ONNX Runtime build".to_string()
        } else {
            match &probe {
                Err(e) => format!("not checked: {e}"),
                Ok(card) => {
                    let settings = SessionSettings {
                        provider: choice,
                        trt_cache: tmp.clone(),
                        batch_size: PROBE_BATCH,
                        ..Default::default()
                    };
                    probe_provider(card, &settings)
                }
            }
        };
        report.providers.push(ProviderCheck {
            provider: name.to_string(),
            ok: status == "ok",
            status,
        });
    }
    report
}

/// Images in the batch each provider must run before doctor calls it ok.
const PROBE_BATCH: usize = 2;

/// "ok" once a session opened on the provider and ran a batch (a GPU session runs its warm-up
/// batch as it opens; the CPU's runs here); otherwise why not.
fn probe_provider(card: &ModelCard, settings: &SessionSettings) -> String {
    use crate::engine::runtime::Classifier;
    let mut session = match OrtClassifier::open(card, settings, &mut |_| {}) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let side = card.preprocess.crop as usize;
    match session.classify(&vec![0.5; PROBE_BATCH * 3 * side * side], PROBE_BATCH) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("opened, but a batch of {PROBE_BATCH} failed: {e}"),
    }
}

fn render_gpu_libraries(preload: &crate::engine::gpu_libs::Preload) -> String {
    let mut s = String::from("CUDA / cuDNN / TensorRT libraries from the NVIDIA wheels:\n");
    if let Some(why) = &preload.skipped {
        return s + &format!("  not loaded: {why}\n");
    }
    for dir in &preload.searched {
        s += &format!("  searched {}\n", dir.display());
    }
    if preload.searched.is_empty() {
        s += "  searched: no nvidia/*/lib or tensorrt_libs folder beside the library\n";
    }
    for path in &preload.loaded {
        s += &format!("  loaded   {}\n", path.display());
    }
    for (path, why) in &preload.failed {
        s += &format!("  FAILED   {}: {why}\n", path.display());
    }
    if !preload.missing.is_empty() {
        s += &format!("  not found: {}\n", preload.missing.join(" "));
    }
    s
}

pub fn render(report: &Report) -> String {
    let mut s = format!("robust-eval {}\n", report.tool_version);
    match &report.library {
        Some(lib) => {
            s += &format!(
                "ONNX Runtime {}\n  library: {}\n  found by: {}\n",
                lib.version,
                lib.path.display(),
                lib.found_by
            );
        }
        None => s += "ONNX Runtime: not loaded\n",
    }
    if let Some(e) = &report.error {
        s += &format!("  error: {e}\n");
    }
    if !report.searched.is_empty() {
        s += "search order (first match is used):\n";
        for c in &report.searched {
            s += &format!("  {c}\n");
        }
    }
    if report.library.is_some() {
        s += &format!(
            "providers in this build: {}\n",
            report.providers_built_in.join(", ")
        );
        if let Some(preload) = &report.gpu_libraries {
            s += &render_gpu_libraries(preload);
        }
        s += "providers that initialise and run a batch (checked on a small model):\n";
        for p in &report.providers {
            s += &format!("  {:<28} {}\n", p.provider, p.status);
        }
    }
    s
}
