//! How a model wants its input prepared, as its card says (`[preprocess]`) and a suite adjusts it
//! (`resize = "none"`): the resize, crop, filter and normalisation. `engine::preprocess` carries
//! them out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// PIL resampling filters, as torchvision names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
    Box,
    Hamming,
}

impl fmt::Display for Interpolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
            Interpolation::Lanczos => "lanczos",
            Interpolation::Box => "box",
            Interpolation::Hamming => "hamming",
        };
        f.write_str(s)
    }
}

impl FromStr for Interpolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "nearest" => Interpolation::Nearest,
            "bilinear" => Interpolation::Bilinear,
            "bicubic" => Interpolation::Bicubic,
            "lanczos" => Interpolation::Lanczos,
            "box" => Interpolation::Box,
            "hamming" => Interpolation::Hamming,
            other => {
                return Err(format!(
                    "unknown interpolation `{other}`; expected bilinear, bicubic, nearest, lanczos, box or hamming"
                ))
            }
        })
    }
}

/// How a model wants its input prepared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Shorter side after resizing, before the crop.
    pub resize: u32,
    /// Side of the square center crop: the model's input size.
    pub crop: u32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl PreprocessSpec {
    /// torchvision's standard ImageNet evaluation transform.
    pub fn imagenet_default() -> Self {
        PreprocessSpec {
            resize: 256,
            crop: 224,
            interpolation: Interpolation::Bilinear,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// A stable text form: equal specs (and only those) share decoded batches and resume keys.
    pub fn key(&self) -> String {
        format!(
            "resize={} crop={} interpolation={} mean={:?} std={:?}",
            self.resize, self.crop, self.interpolation, self.mean, self.std
        )
    }

    /// Floats in one preprocessed image (3 × crop × crop).
    pub fn tensor_len(&self) -> usize {
        3 * self.crop as usize * self.crop as usize
    }
}

/// How a dataset's images are brought to a model's input, as its suite says (`resize = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// The model's own transform: resize the shorter side to `resize`, centre-crop `crop`.
    #[default]
    Model,
    /// Hendrycks' ImageNet-C evaluation: centre crop only. The shorter side is brought to the
    /// model's `crop` (a no-op for 224-pixel ImageNet-C images and a 224 model, so exactly
    /// `CenterCrop(224)`); a model whose input is larger or smaller (240, 288, 384) gets the
    /// image resized to its input with its own interpolation, since a crop alone cannot serve it.
    None,
}

impl ResizeMode {
    /// The spec a model is evaluated with on a dataset in this mode.
    pub fn apply(self, spec: PreprocessSpec) -> PreprocessSpec {
        match self {
            ResizeMode::Model => spec,
            ResizeMode::None => PreprocessSpec {
                resize: spec.crop,
                ..spec
            },
        }
    }
}

impl std::str::FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "model" => Ok(ResizeMode::Model),
            "none" => Ok(ResizeMode::None),
            other => Err(format!(
                "`{other}` is not a resize mode: `model` (the model's own transform) or `none` (centre crop only)"
            )),
        }
    }
}

impl std::fmt::Display for ResizeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResizeMode::Model => "model",
            ResizeMode::None => "none",
        })
    }
}
