//! Model cards: everything needed to evaluate a model faithfully (docs/design.md, section 3). A raw card
//! from TOML becomes a checked `ModelCard` before any run, so bad settings fail with the file, line
//! and field named instead of producing quietly wrong numbers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
use crate::input::check_name;
use crate::input::onnx::external_data;
use crate::input::preprocessing::{Interpolation, PreprocessSpec};
use crate::input::suite::{line_of_key, toml_error};

mod discover;
mod head;
mod sections;

pub use discover::*;
use head::*;
pub use sections::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    name: Option<String>,
    onnx: PathBuf,
    group: Option<String>,
    #[serde(default)]
    preprocess: RawPreprocess,
    #[serde(default)]
    input: RawInput,
    #[serde(default)]
    output: RawOutput,
    head: Option<RawHead>,
    intervention: Option<RawIntervention>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntervention {
    kind: String,
    family: Option<String>,
    alpha: Option<f64>,
    endpoints: Option<Vec<String>>,
    members: Option<Vec<String>>,
    recipe: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: Option<String>,
    layout: Option<String>,
    channels: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    kind: String,
    weights: PathBuf,
    scale: Option<f32>,
    bias: Option<PathBuf>,
    normalize: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPreprocess {
    /// `"imagenet"`: the keys not given take the ImageNet defaults, on purpose.
    defaults: Option<String>,
    resize: Option<u32>,
    crop: Option<u32>,
    interpolation: Option<String>,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: Option<String>,
    num_classes: Option<usize>,
    offset: Option<usize>,
}

/// A checked model card.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub name: String,
    pub group: String,
    pub onnx: PathBuf,
    /// The card file, or `None` for a bare `.onnx` given the standard preprocessing.
    pub card_file: Option<PathBuf>,
    pub preprocess: PreprocessSpec,
    /// Logit columns the model emits that are classes (after `offset`).
    pub num_classes: usize,
    /// Leading logit columns to drop (1 for models with a background class).
    pub offset: usize,
    /// How the model takes its input: which input, the tensor layout and channel order.
    pub input: InputSpec,
    /// The output holding the logits (or the embedding, with a head); `None` for the first one.
    pub output_name: Option<String>,
    /// A head (zero-shot or linear) turning the model's image embedding into logits.
    pub head: Option<Head>,
    /// The external-data files the ONNX file refers to, each inside its folder (`input::onnx`).
    pub external_data: Vec<PathBuf>,
    /// How the weights were made from other models (WiSE-FT, soup), if they were: analysis draws
    /// such models as curves and keeps them out of the baseline. No input to predictions.
    pub intervention: Option<Intervention>,
}

/// A card's `[intervention]`: the model's weights are made from other models' weights.
/// `run` copies it into run.json's `models`, so analysis needs no cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Intervention {
    /// WiSE-FT (Wortsman et al., CVPR 2022): θ = (1 − α)·θ_A + α·θ_B, A the zero-shot model and
    /// B its fine-tuned version; one family is one (A, B) pair over several α.
    WiseFt {
        family: String,
        alpha: f64,
        /// The zero-shot side (α = 0), then the fine-tuned side (α = 1).
        endpoints: [String; 2],
    },
    /// A model soup (Wortsman et al., ICML 2022): the members' weights averaged.
    Soup {
        family: String,
        members: Vec<String>,
        /// `uniform` or `greedy`.
        recipe: String,
    },
}

impl Intervention {
    pub fn family(&self) -> &str {
        match self {
            Intervention::WiseFt { family, .. } | Intervention::Soup { family, .. } => family,
        }
    }

    /// What a card's table is checked for, checked again where one is read back (run.json):
    /// names safe for files and markup, α in [0, 1], a known recipe.
    pub fn check(&self) -> std::result::Result<(), String> {
        let names: Vec<&String> = match self {
            Intervention::WiseFt {
                family,
                alpha,
                endpoints,
            } => {
                if !(0.0..=1.0).contains(alpha) {
                    return Err(format!("alpha {alpha} is not in [0, 1]"));
                }
                std::iter::once(family).chain(endpoints.iter()).collect()
            }
            Intervention::Soup {
                family,
                members,
                recipe,
            } => {
                if !matches!(recipe.as_str(), "uniform" | "greedy") {
                    return Err(format!("recipe `{recipe}` is neither uniform nor greedy"));
                }
                std::iter::once(family).chain(members.iter()).collect()
            }
        };
        names
            .into_iter()
            .try_for_each(|n| crate::input::check_name("model", n))
    }
}

/// Memory layout of the image tensor a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TensorLayout {
    #[default]
    Nchw,
    Nhwc,
}

/// Channel order of the image tensor (BGR for models from Caffe and OpenCV pipelines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct InputSpec {
    /// The input to feed; `None` for the model's first input.
    pub name: Option<String>,
    pub layout: TensorLayout,
    pub channels: ChannelOrder,
}

/// Which kind of `[head]` a card gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// CLIP's zero-shot classifier: unit rows (normalised class text embeddings), scale = exp of
    /// the logit scale, no bias, the embedding normalised.
    ZeroShot,
    /// A learned linear layer (wise-ft's `ClassificationHead`): rows of any norm, an optional
    /// bias, scale 1 unless given.
    Linear,
}

/// A head as a linear layer on the model's embedding:
/// logits = scale · normalize?(embedding) · weightsᵀ + bias.
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    pub kind: HeadKind,
    pub weights_file: PathBuf,
    pub scale: f32,
    /// Whether each embedding row is L2-normalised first (always for zero-shot heads).
    pub normalize: bool,
    pub bias_file: Option<PathBuf>,
    /// One row per class: `num_classes × embedding width`.
    #[serde(skip)]
    pub weights: Arc<Array2<f32>>,
    /// One value per class.
    #[serde(skip)]
    pub bias: Option<Arc<Array1<f32>>>,
}

impl Head {
    pub fn embedding_width(&self) -> usize {
        self.weights.ncols()
    }

    /// What predictions depend on beyond the weights file: part of the resume key (the bias
    /// by its values, so editing the .npy re-evaluates).
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let bias = match &self.bias {
            Some(b) => {
                let bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
                format!("{:x}", Sha256::digest(&bytes))
            }
            None => "-".into(),
        };
        format!(
            "kind={:?} scale={} normalize={} bias={bias}",
            self.kind, self.scale, self.normalize
        )
    }
}

pub const DEFAULT_GROUP: &str = "standard";

/// Where a key of a card is: file, line and `table.key`, for error messages.
type KeyLocator<'a> = dyn Fn(Option<&str>, &str) -> Location + 'a;

impl ModelCard {
    pub fn load(file: &Path) -> Result<ModelCard> {
        let text = crate::input::read_text(file, crate::input::MAX_SETTINGS_BYTES)?;
        let raw: RawCard = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
        let at = |table: Option<&str>, key: &str| {
            let mut loc = Location::file(file).field(match table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_string(),
            });
            if let Some(line) = line_of_key(&text, table, key) {
                loc = loc.line(line);
            }
            loc
        };
        let name = match raw.name {
            Some(n) => n,
            None => file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("model")
                .to_string(),
        };
        check_name("model", &name).map_err(|m| Error::input(at(None, "name"), m))?;
        let base = file.parent().unwrap_or(Path::new(""));
        let onnx = if raw.onnx.is_absolute() {
            raw.onnx.clone()
        } else {
            base.join(&raw.onnx)
        };
        if !onnx.is_file() {
            return Err(Error::input(
                at(None, "onnx"),
                format!("model file {} does not exist", onnx.display()),
            ));
        }
        let preprocess = preprocess_of(raw.preprocess, &at)?;
        let input = input_of(raw.input, &at)?;
        let head = match raw.head {
            None => None,
            Some(h) => Some(load_head(h, base, &at)?),
        };
        let head_rows = head.as_ref().map(|h| h.weights.nrows());
        let (num_classes, offset) = classes_of(&raw.output, head_rows, &at)?;
        let external_data = external_data(&onnx)?;
        let intervention = match raw.intervention {
            None => None,
            Some(i) => Some(intervention_of(i, &name, &at)?),
        };
        Ok(ModelCard {
            intervention,
            name,
            group: raw.group.unwrap_or_else(|| DEFAULT_GROUP.to_string()),
            onnx,
            card_file: Some(file.to_path_buf()),
            preprocess,
            num_classes,
            offset,
            input,
            output_name: raw.output.name,
            head,
            external_data,
        })
    }

    /// A bare `.onnx` with no card: the standard ImageNet preprocessing and 1000 classes.
    pub fn bare(onnx: &Path) -> Result<ModelCard> {
        let name = onnx
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string();
        check_name("model", &name).map_err(|m| Error::input(Location::file(onnx), m))?;
        Ok(ModelCard {
            name,
            group: DEFAULT_GROUP.to_string(),
            onnx: onnx.to_path_buf(),
            card_file: None,
            preprocess: PreprocessSpec::imagenet_default(),
            num_classes: 1000,
            offset: 0,
            input: InputSpec::default(),
            output_name: None,
            head: None,
            external_data: external_data(onnx)?,
            intervention: None,
        })
    }

    /// Width of the logit row `classify` returns (the head's classes for a zero-shot model).
    pub fn output_width(&self) -> usize {
        self.num_classes + self.offset
    }

    /// Width of the model's own output row: the embedding for a zero-shot model, else the logits.
    pub fn model_output_width(&self) -> usize {
        match &self.head {
            Some(head) => head.embedding_width(),
            None => self.output_width(),
        }
    }

    /// What, beyond the ONNX file and preprocessing, changes this model's predictions: part of
    /// the resume key, so editing the card's input, output or head re-evaluates.
    pub fn setup_key(&self, head_sha256: Option<&str>) -> String {
        let mut key = format!(
            "input={} layout={:?} channels={:?} output={} offset={} classes={}",
            self.input.name.as_deref().unwrap_or("-"),
            self.input.layout,
            self.input.channels,
            self.output_name.as_deref().unwrap_or("-"),
            self.offset,
            self.num_classes
        );
        if let (Some(head), Some(sha)) = (&self.head, head_sha256) {
            key.push_str(&format!(" head={sha} {}", head.key()));
        }
        key
    }
}

#[cfg(test)]
mod tests;
