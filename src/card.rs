//! Model cards: everything needed to evaluate a model faithfully (DESIGN.md section 3). A raw card
//! from TOML becomes a checked `ModelCard` before any run, so bad settings fail with the file, line
//! and field named instead of producing quietly wrong numbers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
use crate::preprocess::{Interpolation, PreprocessSpec};
use crate::suite::{line_of_key, toml_error};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    name: Option<String>,
    onnx: PathBuf,
    group: Option<String>,
    #[serde(default)]
    preprocess: RawPreprocess,
    #[serde(default)]
    output: RawOutput,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPreprocess {
    resize: Option<u32>,
    crop: Option<u32>,
    interpolation: Option<String>,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
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
}

pub const DEFAULT_GROUP: &str = "standard";

impl ModelCard {
    pub fn load(file: &Path) -> Result<ModelCard> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
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
        check_name(&name).map_err(|m| Error::input(at(None, "name"), m))?;
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
        let std_spec = PreprocessSpec::imagenet_default();
        let p = raw.preprocess;
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
        let num_classes = raw.output.num_classes.unwrap_or(1000);
        let offset = raw.output.offset.unwrap_or(0);
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
        Ok(ModelCard {
            name,
            group: raw.group.unwrap_or_else(|| DEFAULT_GROUP.to_string()),
            onnx,
            card_file: Some(file.to_path_buf()),
            preprocess,
            num_classes: num_classes - offset,
            offset,
        })
    }

    /// A bare `.onnx` with no card: the standard ImageNet preprocessing and 1000 classes.
    pub fn bare(onnx: &Path) -> Result<ModelCard> {
        let name = onnx
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string();
        check_name(&name).map_err(|m| Error::input(Location::file(onnx), m))?;
        Ok(ModelCard {
            name,
            group: DEFAULT_GROUP.to_string(),
            onnx: onnx.to_path_buf(),
            card_file: None,
            preprocess: PreprocessSpec::imagenet_default(),
            num_classes: 1000,
            offset: 0,
        })
    }

    /// Width of the logit row the model must emit.
    pub fn output_width(&self) -> usize {
        self.num_classes + self.offset
    }
}

/// Model names become file names under `predictions/`, so keep them to a safe alphabet.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+=".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("model name `{name}` may contain only letters, digits and . _ - + = (and may not start with '.')"))
    }
}

/// Cards found at each `--models` path: a folder (every `*.toml` card, plus any `*.onnx` without a
/// card beside it), one card, or one `.onnx` (its card beside it if present). Warnings say what was
/// assumed for bare models.
pub fn discover(paths: &[PathBuf], warn: &mut dyn FnMut(String)) -> Result<Vec<ModelCard>> {
    let mut cards: Vec<ModelCard> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let cards_here: Vec<&PathBuf> = entries.iter().filter(|p| has_ext(p, "toml")).collect();
            let mut covered = Vec::new();
            for file in cards_here {
                let card = ModelCard::load(file)?;
                covered.push(std::fs::canonicalize(&card.onnx).unwrap_or(card.onnx.clone()));
                cards.push(card);
            }
            for onnx in entries.iter().filter(|p| has_ext(p, "onnx")) {
                let canon = std::fs::canonicalize(onnx).unwrap_or(onnx.clone());
                if !covered.contains(&canon) {
                    cards.push(bare_with_warning(onnx, warn)?);
                }
            }
        } else if has_ext(path, "toml") {
            cards.push(ModelCard::load(path)?);
        } else if has_ext(path, "onnx") {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--models {}: no such file",
                    path.display()
                )));
            }
            let beside = path.with_extension("toml");
            if beside.is_file() {
                cards.push(ModelCard::load(&beside)?);
            } else {
                cards.push(bare_with_warning(path, warn)?);
            }
        } else {
            return Err(Error::Usage(format!(
                "--models {}: expected a folder of model cards, a card (.toml) or a model (.onnx)",
                path.display()
            )));
        }
    }
    if cards.is_empty() {
        return Err(Error::Usage(
            "no models found: --models names no model cards or .onnx files".into(),
        ));
    }
    let mut names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Usage(format!(
            "two models are named `{}`; model names must be unique",
            dup[0]
        )));
    }
    Ok(cards)
}

fn bare_with_warning(onnx: &Path, warn: &mut dyn FnMut(String)) -> Result<ModelCard> {
    let card = ModelCard::bare(onnx)?;
    warn(format!(
        "{} has no model card; assuming the standard ImageNet preprocessing (resize 256, crop 224, bilinear, \
         mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]) and 1000 classes. Write {} to say otherwise.",
        onnx.display(),
        onnx.with_extension("toml").display()
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), b"x").unwrap();
        let file = dir.path().join("m.toml");
        std::fs::write(&file, text).unwrap();
        ModelCard::load(&file)
    }

    #[test]
    fn full_card_and_defaults() {
        let c = card("name = \"r50\"\nonnx = \"m.onnx\"\n[preprocess]\ninterpolation = \"bicubic\"\n[output]\nnum_classes = 1001\noffset = 1\n").unwrap();
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
}
