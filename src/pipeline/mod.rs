//! The steps that drive several stages at once, above them in the flow: `evaluate` (a run: the
//! suite and cards from `input`, the `engine`'s decode and inference, the `results` store) and
//! `bench` (the same pipeline, timed stage by stage).

pub mod bench;
pub mod evaluate;
