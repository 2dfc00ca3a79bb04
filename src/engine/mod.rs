//! From image files to predictions: decoding, preprocessing, ONNX Runtime and the evaluation loop
//! that drives them; plus the benchmark and the environment check built on the same parts.

pub mod bench;
pub mod doctor;
pub mod engine_share;
pub mod evaluate;
pub mod gpu_libs;
pub mod jpeg;
pub mod models;
pub mod pixels;
pub mod preprocess;
pub mod progress;
pub mod runtime;
pub mod shard;
pub mod waves;

/// The cores this process may use: the default for every thread count (decoding, inference).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
