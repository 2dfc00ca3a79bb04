//! Weight-space interventions on exported ONNX models: WiSE-FT (Wortsman et al., CVPR 2022),
//! θ(α) = (1 − α)·θ_zero-shot + α·θ_fine-tuned, and model soups (Wortsman et al., ICML 2022),
//! uniform θ = (1/k)·Σθ_i or greedy (`soup`). Models of one architecture hold their weights as
//! named initializers, so the mixing is done on the ONNX files themselves (`weights`), and each
//! output gets a model card carrying the first model's settings and an `[intervention]` table.

pub mod proto;
pub mod soup;
pub mod weights;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::input::card::{self, Head, HeadKind, ModelCard};
use crate::input::check_name;
use weights::{Model, Recipe, Source};

/// Most α values one `interpolate` writes.
pub const MAX_ALPHAS: usize = 1001;

/// A model given to `interpolate` or `soup`: its card (or the standard one of a bare .onnx), the
/// card's TOML (whose sections the outputs copy) and the parsed ONNX file.
pub struct Ingredient {
    pub card: ModelCard,
    table: Option<toml::Table>,
    pub model: Model,
}

/// One warning for models whose graphs look like BatchNorm was folded (`Model::looks_folded`),
/// naming the first and counting the rest.
pub fn folded_warning(parts: &[&Ingredient]) -> Option<String> {
    let folded: Vec<String> = parts
        .iter()
        .filter_map(|p| p.model.looks_folded())
        .collect();
    let first = folded.first()?;
    Some(match folded.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more of the models given)", n - 1),
    })
}

impl Ingredient {
    /// One model card or .onnx (its card beside it if there is one).
    pub fn load(path: &Path, warn: &mut dyn FnMut(String)) -> Result<Ingredient> {
        let found = card::find(&[path.to_path_buf()])?;
        if found.len() != 1 {
            return Err(Error::Usage(format!(
                "{}: expected one model card (.toml) or model (.onnx), found {} models",
                path.display(),
                found.len()
            )));
        }
        let card = card::load_found(&found[0], warn)?;
        let table =
            match &card.card_file {
                Some(file) => {
                    let text = crate::input::read_text(file, crate::input::MAX_SETTINGS_BYTES)?;
                    Some(text.parse::<toml::Table>().map_err(|e| {
                        Error::input(crate::error::Location::file(file), e.to_string())
                    })?)
                }
                None => None,
            };
        let model = Model::read(&card.onnx)?;
        Ok(Ingredient { card, table, model })
    }

    /// The card file, or the bare model, for messages.
    fn label(&self) -> String {
        match &self.card.card_file {
            Some(f) => f.display().to_string(),
            None => format!("{} (no card: standard settings)", self.card.onnx.display()),
        }
    }
}

/// Refuse models that are not the same network evaluated the same way: the graphs, and the
/// cards' preprocessing, input and output settings, and heads (all or none, of one shape).
pub fn check_compatible(first: &Ingredient, other: &Ingredient) -> Result<()> {
    weights::check_same_graph(&first.model, &other.model)?;
    // Heads first: a head's rows set the card's classes, so theirs is the difference to name.
    check_heads(first, other)?;
    let (a, b) = (&first.card, &other.card);
    let (pa, pb) = (&a.preprocess, &b.preprocess);
    let differs = if pa != pb {
        let fields = [
            ("resize", pa.resize.to_string(), pb.resize.to_string()),
            ("crop", pa.crop.to_string(), pb.crop.to_string()),
            (
                "interpolation",
                format!("{:?}", pa.interpolation),
                format!("{:?}", pb.interpolation),
            ),
            ("mean", format!("{:?}", pa.mean), format!("{:?}", pb.mean)),
            ("std", format!("{:?}", pa.std), format!("{:?}", pb.std)),
        ];
        fields
            .into_iter()
            .find(|(_, x, y)| x != y)
            .map(|(key, x, y)| format!("preprocess.{key}` ({x} vs {y})"))
            .or(Some("preprocess`".into()))
    } else if a.input != b.input {
        Some("input`".to_string())
    } else if (&a.output_name, a.num_classes, a.offset) != (&b.output_name, b.num_classes, b.offset)
    {
        Some("output`".to_string())
    } else {
        None
    };
    if let Some(field) = differs {
        return Err(Error::Usage(format!(
            "{} and {} differ in `{field}: mixed weights are evaluated with one card's settings, \
             so both models must be preprocessed and read the same way",
            first.label(),
            other.label()
        )));
    }
    Ok(())
}

/// Heads are mixed element by element, so both models need one, of one shape, applied to the
/// embedding the same way (normalised or not).
fn check_heads(first: &Ingredient, other: &Ingredient) -> Result<()> {
    match (&first.card.head, &other.card.head) {
        (None, None) => Ok(()),
        (Some(ha), Some(hb)) if ha.weights.dim() != hb.weights.dim() => Err(Error::Usage(format!(
            "{} and {}: the [head] weights {} and {} have shapes {:?} and {:?}; heads are \
                 mixed element by element, so they must have the same classes and embedding width",
            first.label(),
            other.label(),
            ha.weights_file.display(),
            hb.weights_file.display(),
            ha.weights.dim(),
            hb.weights.dim()
        ))),
        (Some(ha), Some(hb)) if ha.normalize != hb.normalize => Err(Error::Usage(format!(
            "{} and {}: one [head] normalises the embedding and the other not (`normalize` = {} \
             and {}); mixing their weights would mix two different functions of the embedding",
            first.label(),
            other.label(),
            ha.normalize,
            hb.normalize
        ))),
        (Some(_), Some(_)) => Ok(()),
        _ => Err(Error::Usage(format!(
            "{} and {}: one has a [head] and the other not. In WiSE-FT the zero-shot model's \
             classifier is its text-embedding head and the fine-tuned model's is that head after \
             fine-tuning (a linear head with a bias), so both sides need one: give both cards a \
             [head] of the same shape, or export both models with the classifier as the graph's \
             last layer (no [head])",
            first.label(),
            other.label()
        ))),
    }
}

/// One model written: its name, files and α (WiSE-FT).
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub name: String,
    pub onnx: PathBuf,
    pub card: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
}

/// What an output's `[intervention]` table says, in the order it is written.
pub type Intervention = Vec<(&'static str, toml::Value)>;

/// Write `<out>/<name>.onnx` (with external data and head beside it) and `<out>/<name>.toml`,
/// the weights mixed by `source` and the heads by `recipe` over `parts`; the card last, so a
/// card never names a missing file. Every check runs before anything is written.
pub fn write_model(
    out: &Path,
    name: &str,
    group: &str,
    parts: &[&Ingredient],
    recipe: Recipe,
    source: &Source,
    intervention: &Intervention,
) -> Result<Written> {
    check_name("model", name).map_err(Error::Usage)?;
    check_name("group", group).map_err(Error::Usage)?;
    let onnx = out.join(format!("{name}.onnx"));
    let card_file = out.join(format!("{name}.toml"));
    let first = &parts[0].model;
    let head = mix_heads(parts, recipe)?;
    let head_files = head.as_ref().map(|h| h.files(name)).unwrap_or_default();
    let mut outputs: Vec<PathBuf> = vec![onnx.clone(), card_file.clone()];
    outputs.extend(head_files.iter().map(|f| out.join(f)));
    outputs.extend(
        weights::external_names(first, name)
            .iter()
            .map(|(_, file)| out.join(file)),
    );
    refuse_overwriting_inputs(&outputs, parts)?;
    weights::write_mixed(first, source, out, name)?;
    if let Some(h) = &head {
        write_npy(&out.join(&head_files[0]), &h.weights)?;
        if let (Some(bias), Some(file)) = (&h.bias, head_files.get(1)) {
            write_npy(&out.join(file), bias)?;
        }
    }
    let text = card_text(name, group, parts[0], head.as_ref(), intervention);
    write_atomic(&card_file, text.as_bytes())?;
    Ok(Written {
        name: name.to_string(),
        onnx,
        card: card_file,
        alpha: None,
    })
}

/// No output may be an input: its model, card, external data or head file.
fn refuse_overwriting_inputs(outputs: &[PathBuf], parts: &[&Ingredient]) -> Result<()> {
    for out in outputs {
        let Ok(real) = out.canonicalize() else {
            continue;
        };
        for p in parts {
            let mut inputs: Vec<&PathBuf> = vec![&p.card.onnx];
            inputs.extend(p.card.card_file.as_ref());
            inputs.extend(p.card.external_data.iter());
            inputs.extend(p.card.head.as_ref().map(|h| &h.weights_file));
            inputs.extend(p.card.head.as_ref().and_then(|h| h.bias_file.as_ref()));
            if inputs
                .iter()
                .any(|i| i.canonicalize().ok() == Some(real.clone()))
            {
                return Err(Error::Usage(format!(
                    "{} is one of the input models; choose another --out or name",
                    out.display()
                )));
            }
        }
    }
    Ok(())
}

/// An output's head, as its card will say it.
pub struct MixedHead {
    pub kind: HeadKind,
    pub weights: Array2<f32>,
    pub bias: Option<Array1<f32>>,
    pub scale: f32,
    pub normalize: bool,
}

impl MixedHead {
    fn of(head: &Head) -> MixedHead {
        MixedHead {
            kind: head.kind,
            weights: (*head.weights).clone(),
            bias: head.bias.as_deref().cloned(),
            scale: head.scale,
            normalize: head.normalize,
        }
    }

    /// The head's files beside the output: weights, then bias if any.
    fn files(&self, name: &str) -> Vec<String> {
        let mut files = vec![format!("{name}.head.npy")];
        if self.bias.is_some() {
            files.push(format!("{name}.bias.npy"));
        }
        files
    }
}

fn f32_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The parts' heads mixed as wise-ft's `_merge` mixes a state dict: each head is the linear
/// layer `scale·W`, `bias` (zero when absent; a zero-shot head is logit_scale × the text
/// embeddings with a zero bias), and both are mixed element by element by `recipe`, giving a
/// linear head with scale 1. A copy of one side (α = 0 or 1, a soup of one) keeps that side's
/// head unchanged. `None` when the models have no head (`check_heads` saw all or none).
fn mix_heads(parts: &[&Ingredient], recipe: Recipe) -> Result<Option<MixedHead>> {
    let heads: Vec<&Head> = parts.iter().filter_map(|p| p.card.head.as_ref()).collect();
    if heads.is_empty() {
        return Ok(None);
    }
    let copy = match recipe {
        Recipe::Interpolate { alpha } if alpha == 0.0 || alpha == 1.0 => {
            Some((alpha == 1.0) as usize)
        }
        Recipe::Mean if heads.len() == 1 => Some(0),
        _ => None,
    };
    if let Some(side) = copy {
        return Ok(Some(MixedHead::of(heads[side])));
    }
    let weights: Vec<Vec<u8>> = heads
        .iter()
        .map(|h| f32_bytes(h.weights.iter().map(|w| h.scale * w)))
        .collect();
    let inputs: Vec<&[u8]> = weights.iter().map(Vec::as_slice).collect();
    let dim = heads[0].weights.dim();
    let w = Array2::from_shape_vec(dim, f32_values(&weights::mix(1, &inputs, recipe)))
        .map_err(|e| Error::Other(format!("mixed head: {e}")))?;
    let bias = if heads.iter().any(|h| h.bias.is_some()) {
        let biases: Vec<Vec<u8>> = heads
            .iter()
            .map(|h| match &h.bias {
                Some(b) => f32_bytes(b.iter().copied()),
                None => f32_bytes(std::iter::repeat_n(0.0, dim.0)),
            })
            .collect();
        let inputs: Vec<&[u8]> = biases.iter().map(Vec::as_slice).collect();
        Some(Array1::from(f32_values(&weights::mix(1, &inputs, recipe))))
    } else {
        None
    };
    Ok(Some(MixedHead {
        kind: HeadKind::Linear,
        weights: w,
        bias,
        scale: 1.0,
        normalize: heads[0].normalize,
    }))
}

fn write_npy<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: &Path,
    values: &ndarray::Array<A, D>,
) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let mut bytes = Vec::new();
    values
        .write_npy(&mut bytes)
        .map_err(|e| Error::Other(format!("cannot encode {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// The output's card: name, onnx and group, the first part's [preprocess], [input] and
/// [output], the mixed [head], then [intervention].
fn card_text(
    name: &str,
    group: &str,
    base: &Ingredient,
    head: Option<&MixedHead>,
    intervention: &Intervention,
) -> String {
    let s = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut text = format!(
        "name = {}\nonnx = {}\ngroup = {}\n",
        s(name),
        s(&format!("{name}.onnx")),
        s(group)
    );
    for section in ["preprocess", "input", "output"] {
        let Some(table) = base
            .table
            .as_ref()
            .and_then(|t| t.get(section))
            .and_then(|v| v.as_table())
            .cloned()
        else {
            continue;
        };
        let mut wrapper = toml::Table::new();
        wrapper.insert(section.into(), toml::Value::Table(table));
        text.push('\n');
        text.push_str(&toml::to_string(&wrapper).unwrap_or_default());
    }
    if let Some(h) = head {
        let files = h.files(name);
        let kind = match h.kind {
            HeadKind::ZeroShot => "zero-shot",
            HeadKind::Linear => "linear",
        };
        text.push_str(&format!(
            "\n[head]\nkind = {}\nweights = {}\nscale = {}\nnormalize = {}\n",
            s(kind),
            s(&files[0]),
            toml::Value::Float(f64::from(h.scale)),
            h.normalize
        ));
        if let Some(bias) = files.get(1) {
            text.push_str(&format!("bias = {}\n", s(bias)));
        }
    }
    text.push_str("\n[intervention]\n");
    for (key, value) in intervention {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// α values from `0,0.25,0.5` or the range `start:end:step` (end included; each value
/// start + k·step rounded to 1e-9, so 0.1 steps give 0.3, not 0.30000000000000004). WiSE-FT
/// interpolates, so each α must lie in [0, 1].
pub fn parse_alphas(spec: &str) -> std::result::Result<Vec<f64>, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or(format!("--alphas: `{s}` is not a number"))
    };
    let round = |v: f64| (v * 1e9).round() / 1e9;
    let alphas: Vec<f64> = if let Some((start, rest)) = spec.split_once(':') {
        let (end, step) = rest
            .split_once(':')
            .ok_or("--alphas: a range is START:END:STEP, e.g. 0:1:0.1")?;
        let (start, end, step) = (number(start)?, number(end)?, number(step)?);
        if step <= 0.0 || end < start {
            return Err("--alphas: a range needs STEP > 0 and END >= START".into());
        }
        let count = ((end - start) / step + 1e-9).floor() + 1.0;
        if count > MAX_ALPHAS as f64 {
            return Err(format!("--alphas: {count} values; at most {MAX_ALPHAS}"));
        }
        (0..count as usize)
            .map(|k| round(start + k as f64 * step))
            .collect()
    } else {
        spec.split(',')
            .map(number)
            .collect::<std::result::Result<_, _>>()?
    };
    if alphas.is_empty() || alphas.len() > MAX_ALPHAS {
        return Err(format!("--alphas: give 1 to {MAX_ALPHAS} values"));
    }
    if let Some(a) = alphas.iter().find(|a| !(0.0..=1.0).contains(*a)) {
        return Err(format!(
            "--alphas: {a} lies outside [0, 1]; WiSE-FT interpolates between the zero-shot (0) and \
             fine-tuned (1) weights and does not extrapolate"
        ));
    }
    Ok(alphas)
}

/// α for a model name: two decimals, more (up to 6) where two would not tell it apart.
pub fn alpha_label(alpha: f64) -> String {
    for decimals in 2..=6 {
        let s = format!("{alpha:.decimals$}");
        if (s.parse::<f64>().unwrap_or(f64::NAN) - alpha).abs() < 1e-12 {
            return s;
        }
    }
    format!("{alpha:.6}")
}

/// Settings of `interpolate`.
pub struct InterpolateSettings {
    pub alphas: Vec<f64>,
    pub out: PathBuf,
    /// Prefix of the outputs' names; default `<A name>+<B name>`.
    pub family: Option<String>,
    pub group: String,
}

/// WiSE-FT: one model per α between `zero_shot` (α = 0) and `fine_tuned` (α = 1).
pub fn interpolate(
    zero_shot: &Ingredient,
    fine_tuned: &Ingredient,
    settings: &InterpolateSettings,
) -> Result<Vec<Written>> {
    check_compatible(zero_shot, fine_tuned)?;
    let (na, nb) = (&zero_shot.card.name, &fine_tuned.card.name);
    let family = settings
        .family
        .clone()
        .unwrap_or_else(|| format!("{na}+{nb}"));
    check_name("family", &family).map_err(|m| Error::Usage(format!("--family: {m}")))?;
    let mut names: Vec<String> = Vec::new();
    for &alpha in &settings.alphas {
        let name = format!("{family}-a{}", alpha_label(alpha));
        if names.contains(&name) {
            return Err(Error::Usage(format!("--alphas: {alpha} is given twice")));
        }
        names.push(name);
    }
    let mut written = Vec::new();
    for (&alpha, name) in settings.alphas.iter().zip(&names) {
        let intervention: Intervention = vec![
            ("kind", "wise-ft".into()),
            ("family", family.as_str().into()),
            ("alpha", alpha.into()),
            ("endpoints", vec![na.as_str(), nb.as_str()].into()),
        ];
        let recipe = Recipe::Interpolate { alpha };
        let models = [&zero_shot.model, &fine_tuned.model];
        let mut w = write_model(
            &settings.out,
            name,
            &settings.group,
            &[zero_shot, fine_tuned],
            recipe,
            &Source::Models(&models, recipe),
            &intervention,
        )?;
        w.alpha = Some(alpha);
        written.push(w);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphas_from_lists_and_ranges() {
        assert_eq!(parse_alphas("0,0.25,1").unwrap(), vec![0.0, 0.25, 1.0]);
        let r = parse_alphas("0:1:0.1").unwrap();
        assert_eq!(r.len(), 11);
        assert_eq!(r[3], 0.3);
        assert_eq!(r[10], 1.0);
        assert!(parse_alphas("0:1:0").is_err());
        assert!(parse_alphas("1.5").unwrap_err().contains("outside [0, 1]"));
        assert!(parse_alphas("0:1:0.0001").unwrap_err().contains("at most"));
        assert!(parse_alphas("a").is_err());
        assert_eq!(alpha_label(0.3), "0.30");
        assert_eq!(alpha_label(0.125), "0.125");
        assert_eq!(alpha_label(1.0), "1.00");
    }

    #[test]
    fn interpolation_is_exact_at_the_endpoints_and_float32_between() {
        let a: Vec<u8> = [1.0f32, -0.0, 3.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = [2.0f32, 5.0, f32::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let at = |alpha| weights::mix(1, &[&a, &b], Recipe::Interpolate { alpha });
        assert_eq!(at(0.0), a);
        assert_eq!(at(1.0), b);
        let half = at(0.5);
        assert_eq!(&half[..4], &1.5f32.to_le_bytes());
        let mean = weights::mix(1, &[&a, &b], Recipe::Mean);
        assert_eq!(&mean[4..8], &2.5f32.to_le_bytes());
    }
}
