//! What a run stores: how predictions are scored, and the results folder they are written to.

pub mod confidence;
pub mod evals;
pub mod hash_cache;
pub mod interval;
pub mod lock;
pub mod merge;
pub mod scoring;
pub mod store;
