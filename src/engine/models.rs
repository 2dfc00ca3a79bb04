//! `robust-eval models`: list the model cards at the `--models` paths and check each one against
//! its ONNX file (present, input shape and type, output width) without reading any image.

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::runtime::{ModelIo, OrtClassifier, ProviderChoice, SessionSettings};
use crate::error::Result;
use crate::input::card::{self, ChannelOrder, Found, ModelCard, TensorLayout};

#[derive(Debug, Serialize)]
pub struct Listing {
    pub models: Vec<Entry>,
    pub valid: usize,
    pub invalid: usize,
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub name: String,
    /// The card file, or the `.onnx` for a model without a card.
    pub card: PathBuf,
    pub onnx: Option<PathBuf>,
    pub group: Option<String>,
    /// Preprocessing, classes and head in one line, as the card gives them.
    pub summary: Option<String>,
    /// What ONNX Runtime reports of the model's input and output, when it could open it.
    pub io: Option<ModelIo>,
    pub fixed_batch: Option<usize>,
    pub valid: bool,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Check every model found at `paths`. Errors only when nothing can be listed (no models, or no
/// ONNX Runtime to open them with); a broken card is an invalid entry, not an error.
pub fn check(paths: &[PathBuf]) -> Result<Listing> {
    let found = card::find(paths)?;
    crate::engine::runtime::runtime()?;
    let settings = SessionSettings {
        provider: ProviderChoice::Cpu,
        trt_cache: std::env::temp_dir(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut cards: Vec<ModelCard> = Vec::new();
    for f in &found {
        let mut warnings = Vec::new();
        let loaded = card::load_found(f, &mut |w| warnings.push(w));
        let mut entry = Entry {
            name: f
                .path()
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("?")
                .to_string(),
            card: f.path().to_path_buf(),
            onnx: matches!(f, Found::Bare(_)).then(|| f.path().to_path_buf()),
            group: None,
            summary: None,
            io: None,
            fixed_batch: None,
            valid: false,
            problems: Vec::new(),
            warnings,
        };
        match loaded {
            Err(e) => entry.problems.push(e.to_string()),
            Ok(card) => {
                entry.name = card.name.clone();
                entry.onnx = Some(card.onnx.clone());
                entry.group = Some(card.group.clone());
                entry.summary = Some(summary(&card));
                match OrtClassifier::open(&card, &settings, &mut |_| {}) {
                    Ok(classifier) => {
                        entry.io = Some(classifier.io().clone());
                        entry.fixed_batch =
                            crate::engine::runtime::Classifier::fixed_batch(&classifier);
                    }
                    Err(e) => entry.problems.push(e.to_string()),
                }
                cards.push(card);
            }
        }
        entry.valid = entry.problems.is_empty();
        entries.push(entry);
    }
    if let Some(dup) = card::duplicate_name(&cards) {
        for entry in entries.iter_mut().filter(|e| e.name == dup) {
            entry.problems.push(format!(
                "another model is also named `{dup}`; model names must be unique in a run"
            ));
            entry.valid = false;
        }
    }
    let valid = entries.iter().filter(|e| e.valid).count();
    Ok(Listing {
        invalid: entries.len() - valid,
        valid,
        models: entries,
    })
}

fn summary(card: &ModelCard) -> String {
    let p = &card.preprocess;
    let mut s = format!(
        "resize {} crop {} {} mean {:?} std {:?}",
        p.resize, p.crop, p.interpolation, p.mean, p.std
    );
    if card.input.layout == TensorLayout::Nhwc {
        s.push_str(", NHWC");
    }
    if card.input.channels == ChannelOrder::Bgr {
        s.push_str(", BGR");
    }
    match &card.head {
        Some(head) => s.push_str(&format!(
            "; {} head: {} classes × {} (scale {}{}{})",
            match head.kind {
                crate::input::card::HeadKind::ZeroShot => "zero-shot",
                crate::input::card::HeadKind::Linear => "linear",
            },
            head.weights.nrows(),
            head.embedding_width(),
            head.scale,
            if head.normalize {
                ", embedding normalised"
            } else {
                ""
            },
            if head.bias.is_some() { ", bias" } else { "" }
        )),
        None if card.offset > 0 => s.push_str(&format!(
            "; {} classes after dropping {} leading logit(s)",
            card.num_classes, card.offset
        )),
        None => s.push_str(&format!("; {} classes", card.num_classes)),
    }
    s
}

/// The listing as a table: one line per model, then its problems and warnings indented.
pub fn render(listing: &Listing) -> String {
    let width = listing
        .models
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<7}  {:<10}  {}\n",
        "name", "status", "group", "card"
    );
    for e in &listing.models {
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:<10}  {}\n",
            e.name,
            if e.valid { "ok" } else { "INVALID" },
            e.group.as_deref().unwrap_or("-"),
            e.card.display()
        ));
        if let Some(summary) = &e.summary {
            out.push_str(&format!("{:width$}  {summary}\n", ""));
        }
        if let Some(io) = &e.io {
            out.push_str(&format!(
                "{:width$}  input `{}` {} {:?} -> output `{}` {} {:?}{}\n",
                "",
                io.input,
                io.input_type,
                io.input_shape,
                io.output,
                io.output_type,
                io.output_shape,
                match e.fixed_batch {
                    Some(b) => format!(" (fixed batch {b})"),
                    None => String::new(),
                }
            ));
        }
        for p in &e.problems {
            out.push_str(&format!("{:width$}  problem: {p}\n", ""));
        }
        for w in &e.warnings {
            out.push_str(&format!("{:width$}  warning: {w}\n", ""));
        }
    }
    out.push_str(&format!(
        "{} model(s): {} valid, {} invalid\n",
        listing.models.len(),
        listing.valid,
        listing.invalid
    ));
    out
}
