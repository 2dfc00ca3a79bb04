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
                    };
                    match OrtClassifier::open(card, &settings, &mut |_| {}) {
                        Ok(_) => "ok".to_string(),
                        Err(e) => e.to_string(),
                    }
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
        s += "providers that initialise (checked on a small model):\n";
        for p in &report.providers {
            s += &format!("  {:<28} {}\n", p.provider, p.status);
        }
    }
    s
}
