//! What the user hands in: suites, manifests, model cards, label spaces and the demo suite.

pub mod card;
pub mod demo;
pub mod labels;
pub mod manifest;
pub mod suite;
