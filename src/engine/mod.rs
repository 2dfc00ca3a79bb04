//! From image files to predictions: decoding, preprocessing and ONNX Runtime, the parts a run's
//! loop (`pipeline::evaluate`) drives; plus the environment check built on the same parts.

pub mod doctor;
pub mod engine_share;
pub mod gpu_busy;
pub mod gpu_libs;
pub mod jpeg;
pub mod loader;
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
