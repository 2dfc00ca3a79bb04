//! The steps that drive several stages at once, above them in the flow: `evaluate` (a run: the
//! suite and cards from `input`, the `engine`'s decode and inference, the `results` store) and
//! `bench` (the same pipeline, timed stage by stage), and `engines` (a study's TensorRT engines:
//! the engine job, and the cache shards share).

pub mod bench;
pub mod engines;
pub mod evaluate;
