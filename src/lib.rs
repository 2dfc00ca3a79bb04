//! robust-eval: evaluate ONNX image classifiers under natural distribution shift.
//!
//! One module per stage of the data flow (DESIGN.md section 2):
//! `suite` → `manifest` → `card` → `preprocess` → `runtime` → `scoring` → `store`, driven by
//! `evaluate`; then `fit` → `plot` → `report`, driven by `analysis`. `labels` holds the shipped
//! label spaces and `demo` the embedded demo suite.

pub mod analysis;
pub mod bench;
pub mod card;
pub mod cli;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod evaluate;
pub mod fit;
pub mod gate;
pub mod jpeg;
pub mod labels;
pub mod manifest;
pub mod models;
pub mod plot;
pub mod preprocess;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod scoring;
pub mod stats;
pub mod store;
pub mod suite;

pub use error::{Error, Result};
