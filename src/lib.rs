//! robust-eval: evaluate ONNX image classifiers under natural distribution shift.
//!
//! The folders follow the data flow (docs/design.md, "Data flow"):
//!
//! - [`input`]: what the user hands in: the suite, its manifests, the model cards, label spaces,
//!   and the embedded demo suite;
//! - [`engine`]: turning images into predictions: JPEG decoding, preprocessing, ONNX Runtime,
//!   progress and the environment check;
//! - [`results`]: what a run stores: scoring of predictions and the results folder;
//! - [`pipeline`]: the steps that drive several stages: a run (`evaluate`) and the benchmark;
//! - [`analysis`]: what is computed from stored results: the trend fit, effective robustness,
//!   plots, reports and the release gate;
//! - [`scale`]: running a suite as shards on a scheduler: Slurm array scripts and Kubernetes
//!   Indexed Jobs, each followed by a merge;
//! - [`interventions`]: new models made from exported ones: WiSE-FT weight interpolation and
//!   model soups.
//!
//! Beside them, [`files`]: the atomic write every stage stores its outputs with.
//!
//! The command line is the binary's own (`src/cli/`); nothing here depends on it.

pub mod analysis;
pub mod engine;
pub mod error;
pub mod files;
pub mod input;
pub mod interventions;
pub mod pipeline;
pub mod results;
pub mod scale;

pub use error::{Error, Result};
