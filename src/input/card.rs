//! Model cards: everything needed to evaluate a model faithfully (docs/design.md, section 3). A raw card
//! from TOML becomes a checked `ModelCard` before any run, so bad settings fail with the file, line
//! and field named instead of producing quietly wrong numbers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::engine::preprocess::{Interpolation, PreprocessSpec};
use crate::error::{Error, Location, Result};
use crate::input::check_name;
use crate::input::onnx::external_data;
use crate::input::suite::{line_of_key, toml_error};

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

static ASSUME_IMAGENET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--assume-imagenet-preprocessing`: a bare `.onnx`, or a card's `[preprocess]` lacking keys,
/// takes the ImageNet defaults for this process instead of being refused.
pub fn set_assume_imagenet_preprocessing(yes: bool) {
    ASSUME_IMAGENET.store(yes, std::sync::atomic::Ordering::Relaxed);
}

fn assume_imagenet() -> bool {
    ASSUME_IMAGENET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The defaults a model gets with `--assume-imagenet-preprocessing` or `defaults = "imagenet"`.
pub const IMAGENET_DEFAULTS: &str = "resize 256, crop 224, interpolation \"bilinear\", \
mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]";

/// The `[preprocess]` keys a card leaves out. A model's preprocessing decides its accuracy
/// (EfficientNet-Lite with ImageNet's mean and std instead of its own loses ~14 points), so a
/// default is taken only when the card or the command line says so.
fn missing_preprocess_keys(p: &RawPreprocess) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (key, given) in [
        ("resize", p.resize.is_some()),
        ("crop", p.crop.is_some()),
        ("interpolation", p.interpolation.is_some()),
        ("mean", p.mean.is_some()),
        ("std", p.std.is_some()),
    ] {
        if !given {
            missing.push(key);
        }
    }
    missing
}

fn check_complete(p: &RawPreprocess, at: &KeyLocator) -> Result<()> {
    match p.defaults.as_deref() {
        Some("imagenet") => return Ok(()),
        Some(other) => {
            return Err(Error::input(
                at(Some("preprocess"), "defaults"),
                format!(
                    "unknown defaults `{other}`; the one set is \"imagenet\" ({IMAGENET_DEFAULTS})"
                ),
            ))
        }
        None => {}
    }
    let missing = missing_preprocess_keys(p);
    if missing.is_empty() || assume_imagenet() {
        return Ok(());
    }
    Err(Error::input(
        at(None, "preprocess"),
        format!(
            "[preprocess] does not give {}: a model's preprocessing decides its accuracy, so none \
             is assumed. Give every key, or add `defaults = \"imagenet\"` to [preprocess] (or pass \
             --assume-imagenet-preprocessing) to take ImageNet's for the missing ones: {IMAGENET_DEFAULTS}",
            missing.join(", ")
        ),
    ))
}

/// The card's `[preprocess]`, each missing key taken from the standard ImageNet preprocessing
/// (where the card or the command line says so: `check_complete`), every value checked.
fn preprocess_of(p: RawPreprocess, at: &KeyLocator) -> Result<PreprocessSpec> {
    // Checked first, reported after the values: a wrong value is the more specific error.
    let complete = check_complete(&p, at);
    let std_spec = PreprocessSpec::imagenet_default();
    let interpolation = match p.interpolation {
        Some(s) => s
            .parse::<Interpolation>()
            .map_err(|m| Error::input(at(Some("preprocess"), "interpolation"), m))?,
        None => std_spec.interpolation,
    };
    let triple = |v: Option<Vec<f32>>, default: [f32; 3], key: &str| -> Result<[f32; 3]> {
        match v {
            None => Ok(default),
            Some(v) => <[f32; 3]>::try_from(v.as_slice()).map_err(|_| {
                Error::input(
                    at(Some("preprocess"), key),
                    format!("expected 3 numbers (one per RGB channel), got {}", v.len()),
                )
            }),
        }
    };
    let preprocess = PreprocessSpec {
        resize: p.resize.unwrap_or(std_spec.resize),
        crop: p.crop.unwrap_or(std_spec.crop),
        interpolation,
        mean: triple(p.mean, std_spec.mean, "mean")?,
        std: triple(p.std, std_spec.std, "std")?,
    };
    if preprocess.crop == 0 || preprocess.crop > 4096 {
        return Err(Error::input(
            at(Some("preprocess"), "crop"),
            "crop must be between 1 and 4096 pixels",
        ));
    }
    if preprocess.resize < preprocess.crop || preprocess.resize > 8192 {
        return Err(Error::input(
            at(Some("preprocess"), "resize"),
            format!(
                "resize ({}) must be at least crop ({}) and at most 8192",
                preprocess.resize, preprocess.crop
            ),
        ));
    }
    if preprocess.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::input(
            at(Some("preprocess"), "std"),
            "every std must be a positive number",
        ));
    }
    if preprocess.mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::input(
            at(Some("preprocess"), "mean"),
            "every mean must be a finite number",
        ));
    }
    complete?;
    Ok(preprocess)
}

/// The card's `[input]`: which input, its layout and channel order.
fn input_of(raw: RawInput, at: &KeyLocator) -> Result<InputSpec> {
    Ok(InputSpec {
        name: raw.name,
        layout: match raw.layout.as_deref() {
            None | Some("nchw") => TensorLayout::Nchw,
            Some("nhwc") => TensorLayout::Nhwc,
            Some(other) => {
                return Err(Error::input(
                    at(Some("input"), "layout"),
                    format!("unknown layout `{other}`; expected nchw or nhwc"),
                ))
            }
        },
        channels: match raw.channels.as_deref() {
            None | Some("rgb") => ChannelOrder::Rgb,
            Some("bgr") => ChannelOrder::Bgr,
            Some(other) => {
                return Err(Error::input(
                    at(Some("input"), "channels"),
                    format!("unknown channel order `{other}`; expected rgb or bgr"),
                ))
            }
        },
    })
}

/// The classes a model scores (its outputs less the offset) and the offset, checked against a
/// zero-shot head's rows when there is one.
fn classes_of(
    raw: &RawOutput,
    head_rows: Option<usize>,
    at: &KeyLocator,
) -> Result<(usize, usize)> {
    let num_classes = raw.num_classes.or(head_rows).unwrap_or(1000);
    let offset = raw.offset.unwrap_or(0);
    if let Some(rows) = head_rows {
        if num_classes != rows || offset != 0 {
            return Err(Error::input(
                at(Some("output"), "num_classes"),
                format!(
                    "the head has {rows} classes (rows of its weights), so output.num_classes must be {rows} \
                     and output.offset 0"
                ),
            ));
        }
    }
    if num_classes == 0 {
        return Err(Error::input(
            at(Some("output"), "num_classes"),
            "num_classes must be at least 1",
        ));
    }
    if offset >= num_classes {
        return Err(Error::input(
            at(Some("output"), "offset"),
            format!("offset {offset} leaves no classes of {num_classes}"),
        ));
    }
    Ok((num_classes - offset, offset))
}

fn load_head(raw: RawHead, base: &Path, at: &KeyLocator) -> Result<Head> {
    let field = |key: &str| at(Some("head"), key);
    let kind = match raw.kind.as_str() {
        "zero-shot" => HeadKind::ZeroShot,
        "linear" => HeadKind::Linear,
        other => {
            return Err(Error::input(
                field("kind"),
                format!("unknown head kind `{other}`; expected \"zero-shot\" or \"linear\""),
            ))
        }
    };
    let normalize = match (kind, raw.normalize) {
        (HeadKind::ZeroShot, None | Some(true)) => true,
        (HeadKind::ZeroShot, Some(false)) => {
            return Err(Error::input(
                field("normalize"),
                "a zero-shot head compares normalised embeddings (cosine similarity); \
                 use kind = \"linear\" for a head on the raw embedding",
            ))
        }
        (HeadKind::Linear, Some(n)) => n,
        (HeadKind::Linear, None) => {
            return Err(Error::input(
                field("normalize"),
                "a linear head must say whether the embedding is L2-normalised first: \
                 `normalize = true` as wise-ft's ClassificationHead on CLIP, `false` for a \
                 plain linear layer",
            ))
        }
    };
    if kind == HeadKind::ZeroShot && raw.bias.is_some() {
        return Err(Error::input(
            field("bias"),
            "a zero-shot head has no bias; use kind = \"linear\" for a head with one",
        ));
    }
    let default_scale = if kind == HeadKind::ZeroShot {
        100.0
    } else {
        1.0
    };
    let scale = raw.scale.unwrap_or(default_scale);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::input(
            field("scale"),
            "scale must be a positive number (CLIP's exp(logit_scale), 100 when trained)",
        ));
    }
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let file = resolve(raw.weights);
    let weights = read_head_weights(&file, kind == HeadKind::ZeroShot)
        .map_err(|m| Error::input(field("weights"), format!("{}: {m}", file.display())))?;
    let (bias_file, bias) = match raw.bias {
        None => (None, None),
        Some(b) => {
            let b = resolve(b);
            let bias = read_head_bias(&b, weights.nrows())
                .map_err(|m| Error::input(field("bias"), format!("{}: {m}", b.display())))?;
            (Some(b), Some(Arc::new(bias)))
        }
    };
    Ok(Head {
        kind,
        weights_file: file,
        scale,
        normalize,
        bias_file,
        weights: Arc::new(weights),
        bias,
    })
}

/// The card's `[intervention]`, checked: a known kind, a finite α, names that are
/// safe (they become model names on charts and in reports, and may be looked up as models).
fn intervention_of(raw: RawIntervention, model: &str, at: &KeyLocator) -> Result<Intervention> {
    let field = |key: &str| at(Some("intervention"), key);
    let family = raw.family.unwrap_or_else(|| model.to_string());
    check_name("family", &family).map_err(|m| Error::input(field("family"), m))?;
    let names = |key: &str, list: Option<Vec<String>>| -> Result<Vec<String>> {
        let list = list.ok_or_else(|| Error::input(field(key), format!("missing `{key}`")))?;
        for n in &list {
            check_name("model", n).map_err(|m| Error::input(field(key), m))?;
        }
        Ok(list)
    };
    match raw.kind.as_str() {
        "wise-ft" => {
            let alpha = raw.alpha.ok_or_else(|| {
                Error::input(
                    field("alpha"),
                    "missing `alpha` (the weight of the fine-tuned side)",
                )
            })?;
            if !(0.0..=1.0).contains(&alpha) {
                return Err(Error::input(
                    field("alpha"),
                    format!(
                        "alpha must lie in [0, 1] (0: zero-shot, 1: fine-tuned), not {alpha}: \
                         WiSE-FT interpolates, it does not extrapolate"
                    ),
                ));
            }
            let endpoints: [String; 2] =
                names("endpoints", raw.endpoints)?
                    .try_into()
                    .map_err(|v: Vec<String>| {
                        Error::input(
                            field("endpoints"),
                            format!("expected 2 names (zero-shot, fine-tuned), got {}", v.len()),
                        )
                    })?;
            Ok(Intervention::WiseFt {
                family,
                alpha,
                endpoints,
            })
        }
        "soup" => {
            let members = names("members", raw.members)?;
            if members.is_empty() {
                return Err(Error::input(
                    field("members"),
                    "a soup needs at least one member",
                ));
            }
            let recipe = raw.recipe.unwrap_or_else(|| "uniform".into());
            if !matches!(recipe.as_str(), "uniform" | "greedy") {
                return Err(Error::input(
                    field("recipe"),
                    format!("unknown recipe `{recipe}`; expected uniform or greedy"),
                ));
            }
            Ok(Intervention::Soup {
                family,
                members,
                recipe,
            })
        }
        other => Err(Error::input(
            field("kind"),
            format!("unknown intervention kind `{other}`; expected wise-ft or soup"),
        )),
    }
}

/// Largest head file read (.npy weights or bias): 64 Mi float32 values.
const MAX_HEAD_BYTES: u64 = 256 << 20;

fn open_npy(file: &Path) -> std::result::Result<std::io::Take<std::fs::File>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(file).map_err(|_| "no such file".to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_HEAD_BYTES {
        return Err(format!(
            "{} bytes; a head file may hold at most {MAX_HEAD_BYTES}",
            meta.len()
        ));
    }
    let reader = std::fs::File::open(file).map_err(|e| e.to_string())?;
    Ok(reader.take(MAX_HEAD_BYTES))
}

/// A `.npy` float32 matrix [classes, embedding width], finite; rows L2-normalised for a
/// zero-shot head.
fn read_head_weights(file: &Path, unit_rows: bool) -> std::result::Result<Array2<f32>, String> {
    use ndarray_npy::ReadNpyExt;
    let weights = Array2::<f32>::read_npy(open_npy(file)?).map_err(|e| {
        format!("expected a 2-D float32 .npy array [classes, embedding width] ({e})")
    })?;
    if weights.nrows() == 0 || weights.ncols() == 0 {
        return Err(format!("the array is empty ({:?})", weights.shape()));
    }
    if weights.iter().any(|v| !v.is_finite()) {
        return Err("the array holds NaN or infinite values".into());
    }
    if !unit_rows {
        return Ok(weights);
    }
    for (class, row) in weights.rows().into_iter().enumerate() {
        let norm = row.dot(&row).sqrt();
        if (norm - 1.0).abs() > 1e-2 {
            return Err(format!(
                "row {class} has L2 norm {norm:.4}; a zero-shot head's class embeddings must be \
                 L2-normalised (a head with rows of any norm is kind = \"linear\")"
            ));
        }
    }
    Ok(weights)
}

/// A `.npy` float32 vector of one finite value per class.
fn read_head_bias(file: &Path, classes: usize) -> std::result::Result<Array1<f32>, String> {
    use ndarray_npy::ReadNpyExt;
    let bias = Array1::<f32>::read_npy(open_npy(file)?)
        .map_err(|e| format!("expected a 1-D float32 .npy array [classes] ({e})"))?;
    if bias.len() != classes {
        return Err(format!(
            "{} values; the head's weights have {classes} classes (rows)",
            bias.len()
        ));
    }
    if bias.iter().any(|v| !v.is_finite()) {
        return Err("the array holds NaN or infinite values".into());
    }
    Ok(bias)
}

/// Model names become file names under `predictions/`, so keep them to a safe alphabet.
/// A model found at a `--models` path, before its card is read.
#[derive(Debug, Clone)]
pub enum Found {
    /// A model card (`.toml`).
    Card(PathBuf),
    /// An `.onnx` with no card beside it.
    Bare(PathBuf),
}

impl Found {
    pub fn path(&self) -> &Path {
        match self {
            Found::Card(p) | Found::Bare(p) => p,
        }
    }
}

/// What each `--models` path holds: a folder (every `*.toml` model card, plus any `*.onnx` that no
/// card in it names), one card, or one `.onnx` (its card beside it if present). Other `.toml` files
/// in a folder, such as provenance sidecars, are not cards (see `card_onnx`) and are passed over.
pub fn find(paths: &[PathBuf]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            found.extend(find_in_folder(path)?);
        } else if has_ext(path, "toml") {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--models {}: no such file",
                    path.display()
                )));
            }
            found.push(Found::Card(path.clone()));
        } else if has_ext(path, "onnx") {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--models {}: no such file",
                    path.display()
                )));
            }
            let beside = path.with_extension("toml");
            if beside.is_file() && card_onnx(&beside).is_some() {
                found.push(Found::Card(beside));
            } else {
                found.push(Found::Bare(path.clone()));
            }
        } else {
            return Err(Error::Usage(format!(
                "--models {}: expected a folder of model cards, a card (.toml) or a model (.onnx)",
                path.display()
            )));
        }
    }
    if found.is_empty() {
        return Err(Error::Usage(
            "no models found: --models names no model cards or .onnx files".into(),
        ));
    }
    Ok(found)
}

/// The cards in a folder, then the `.onnx` files no card names.
fn find_in_folder(dir: &Path) -> Result<Vec<Found>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut found = Vec::new();
    let mut covered = Vec::new();
    for file in entries.iter().filter(|p| has_ext(p, "toml")) {
        let Some(onnx) = card_onnx(file) else {
            continue;
        };
        if let Some(onnx) = onnx {
            let onnx = if onnx.is_absolute() {
                onnx
            } else {
                dir.join(onnx)
            };
            covered.push(std::fs::canonicalize(&onnx).unwrap_or(onnx));
        }
        found.push(Found::Card(file.clone()));
    }
    for onnx in entries.iter().filter(|p| has_ext(p, "onnx")) {
        let canon = std::fs::canonicalize(onnx).unwrap_or(onnx.clone());
        if !covered.contains(&canon) {
            found.push(Found::Bare(onnx.clone()));
        }
    }
    Ok(found)
}

/// Cards are small; a `.toml` larger than this is read as a card and reported when loaded.
const CARD_SNIFF_BYTES: u64 = 1 << 20;

/// Whether a `.toml` is a model card, and if so the `onnx` it names. A card has an `onnx` key or a
/// table only cards have (`[preprocess]`, `[input]`, `[output]`, `[head]`); other TOML (a
/// provenance sidecar, a tool's config) is not a card: `None`. A file that is not valid TOML counts
/// as a (broken) card, `Some(None)`, so a typo in a card is reported rather than passed over.
fn card_onnx(file: &Path) -> Option<Option<PathBuf>> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(file)
        .and_then(|f| f.take(CARD_SNIFF_BYTES).read_to_string(&mut text))
        .is_ok();
    let Some(table) = read.then(|| text.parse::<toml::Table>().ok()).flatten() else {
        return Some(None);
    };
    let onnx = table
        .get("onnx")
        .and_then(|v| v.as_str())
        .map(PathBuf::from);
    let card_table = ["preprocess", "input", "output", "head"]
        .iter()
        .any(|key| table.get(*key).is_some_and(|v| v.is_table()));
    (table.contains_key("onnx") || card_table).then_some(onnx)
}

/// Load what `find` found. Warnings say what was assumed for bare models.
pub fn load_found(found: &Found, warn: &mut dyn FnMut(String)) -> Result<ModelCard> {
    match found {
        Found::Card(file) => ModelCard::load(file),
        Found::Bare(onnx) => bare_with_warning(onnx, warn),
    }
}

/// Cards found at each `--models` path (see `find`), all loaded and checked; names must be unique.
pub fn discover(paths: &[PathBuf], warn: &mut dyn FnMut(String)) -> Result<Vec<ModelCard>> {
    let cards = find(paths)?
        .iter()
        .map(|f| load_found(f, warn))
        .collect::<Result<Vec<_>>>()?;
    if let Some(dup) = duplicate_name(&cards) {
        return Err(Error::Usage(format!(
            "two models are named `{dup}`; model names must be unique"
        )));
    }
    Ok(cards)
}

pub fn duplicate_name(cards: &[ModelCard]) -> Option<String> {
    let mut names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names
        .windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| w[0].to_string())
}

fn bare_with_warning(onnx: &Path, warn: &mut dyn FnMut(String)) -> Result<ModelCard> {
    let beside = onnx.with_extension("toml");
    // Never advise writing over a file that is there: a .toml beside the model that is no card
    // is a provenance sidecar (or some tool's config), and the card goes under another name.
    let card_path = if beside.exists() {
        onnx.with_extension("card.toml")
    } else {
        beside.clone()
    };
    let sidecar = if beside.exists() {
        format!(
            " ({} beside it is not a model card: it has no `onnx` key and no [preprocess], \
             [input], [output] or [head] table, so it is read as a sidecar and left alone)",
            beside.display()
        )
    } else {
        String::new()
    };
    if !assume_imagenet() {
        return Err(Error::input(
            Location::file(onnx),
            format!(
                "no model card{sidecar}, so its preprocessing is unknown and none is assumed (a \
                 model scored with another's preprocessing loses many points without an error). \
                 Write a card, {}, with onnx = \"{}\" and a full [preprocess]; or pass \
                 --assume-imagenet-preprocessing to use ImageNet's: {IMAGENET_DEFAULTS}, 1000 classes",
                card_path.display(),
                onnx.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ),
        ));
    }
    let card = ModelCard::bare(onnx)?;
    warn(format!(
        "{} has no model card{sidecar}; assuming ImageNet's preprocessing as \
         --assume-imagenet-preprocessing says ({IMAGENET_DEFAULTS}) and 1000 classes. Write {} to \
         give its own.",
        onnx.display(),
        card_path.display()
    ));
    Ok(card)
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(text: &str) -> Result<ModelCard> {
        // These cards test other fields; refusing partial [preprocess] is tested through the binary.
        set_assume_imagenet_preprocessing(true);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), b"").unwrap();
        let file = dir.path().join("m.toml");
        std::fs::write(&file, text).unwrap();
        ModelCard::load(&file)
    }

    #[test]
    fn full_card_and_defaults() {
        let c = card("name = \"r50\"\nonnx = \"m.onnx\"\n[preprocess]\ndefaults = \"imagenet\"\ninterpolation = \"bicubic\"\n[output]\nnum_classes = 1001\noffset = 1\n").unwrap();
        assert_eq!(c.name, "r50");
        assert_eq!(c.group, "standard");
        assert_eq!(c.preprocess.resize, 256);
        assert_eq!(c.preprocess.interpolation, Interpolation::Bicubic);
        assert_eq!((c.num_classes, c.offset, c.output_width()), (1000, 1, 1001));
    }

    #[test]
    fn bad_fields_are_named() {
        let err = card("onnx = \"m.onnx\"\n[preprocess]\nresize = 200\ncrop = 224\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml:3: field `preprocess.resize`"), "{err}");
        let err = card("onnx = \"m.onnx\"\n[preprocess]\nmean = [0.5, 0.5]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml:3: field `preprocess.mean`"), "{err}");
        let err = card("onnx = \"missing.onnx\"\n").unwrap_err().to_string();
        assert!(err.contains("m.toml:1: field `onnx`"), "{err}");
        let err = card("onnx = \"m.onnx\"\n[preprocess]\ninterpolation = \"lanczos7\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `preprocess.interpolation`"), "{err}");
        let err = card("onnx = \"m.onnx\"\nlayers = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml:2") && err.contains("layers"), "{err}");
    }

    const WISE: &str = "onnx = \"m.onnx\"\ngroup = \"wise-ft\"\n[intervention]\nkind = \"wise-ft\"\nfamily = \"clip\"\nalpha = 0.3\nendpoints = [\"zs\", \"ft\"]\n";

    #[test]
    fn intervention_tables_are_read() {
        let c = card(WISE).unwrap();
        assert_eq!(
            c.intervention,
            Some(Intervention::WiseFt {
                family: "clip".into(),
                alpha: 0.3,
                endpoints: ["zs".into(), "ft".into()],
            })
        );
        let soup = card("onnx = \"m.onnx\"\n[intervention]\nkind = \"soup\"\nmembers = [\"a\", \"b\"]\nrecipe = \"greedy\"\n").unwrap();
        let Some(Intervention::Soup {
            family,
            members,
            recipe,
        }) = soup.intervention
        else {
            panic!("{:?}", soup.intervention)
        };
        assert_eq!(
            (family.as_str(), members.len(), recipe.as_str()),
            ("m", 2, "greedy")
        );
        // The table is no input to predictions: the resume key is the same without it.
        let plain = card("onnx = \"m.onnx\"\n").unwrap();
        assert_eq!(c.setup_key(None), plain.setup_key(None));
    }

    #[test]
    fn bad_intervention_fields_are_named() {
        let cases = [
            (WISE.replace("\"wise-ft\"\nfamily", "\"mixup\"\nfamily"), "m.toml:4: field `intervention.kind`"),
            (WISE.replace("0.3", "nan"), "m.toml:6: field `intervention.alpha`"),
            (WISE.replace("alpha = 0.3\n", ""), "field `intervention.alpha`"),
            (WISE.replace("\"clip\"", "\"../x\""), "m.toml:5: field `intervention.family`"),
            (WISE.replace("[\"zs\", \"ft\"]", "[\"zs\"]"), "m.toml:7: field `intervention.endpoints`"),
            (WISE.replace("\"ft\"]", "\"a/b\"]"), "field `intervention.endpoints`"),
            (WISE.replace("alpha = 0.3", "weight = 0.3"), "weight"),
            (
                "onnx = \"m.onnx\"\n[intervention]\nkind = \"soup\"\nmembers = [\"a\"]\nrecipe = \"best\"\n".to_string(),
                "m.toml:5: field `intervention.recipe`",
            ),
            ("onnx = \"m.onnx\"\n[intervention]\nkind = \"soup\"\n".to_string(), "field `intervention.members`"),
        ];
        for (text, want) in cases {
            let err = card(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{want} not in: {err}\n{text}");
        }
    }
}
