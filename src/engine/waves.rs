//! The memory budget of a run: sizes as users write them, the default taken from the machine,
//! and the split of a preprocessing group's models into waves whose estimated footprint fits.
//!
//! A wave is an order of work only: each wave makes its own pass over a dataset with the sessions
//! of its models, and the results are what one pass with every model gives.

use std::ops::Range;
use std::path::Path;

/// The process before any session: the executable, ONNX Runtime's library and its thread pools,
/// manifests and cards (measured: ~45 MB resident after opening a 45 kB model; rounded up).
pub const PROCESS_BASE: u64 = 96 << 20;

/// Resident bytes per byte of model file, per model: the weights as loaded, optimised and
/// prepacked (measured 2.2x for EfficientNet-Lite0 on the CPU; rounded up). A model's extra
/// worker sessions share its prepacked weights and add `WORKER_SESSION_FACTOR` more each.
pub const SESSION_FACTOR: f64 = 2.5;

/// Resident bytes per byte of model file for each worker session after a model's first.
pub const WORKER_SESSION_FACTOR: f64 = 0.5;

/// Fixed bytes per session beyond its weights: graph, kernels, plans.
pub const SESSION_OVERHEAD: u64 = 2 << 20;

/// The batch arena, per inference worker: bytes per byte of the batch's input tensor. Inference
/// workers run at once, so each needs its own activations; the models of a wave run in turn and
/// share them (one CPU arena for all sessions).
pub const ARENA_FACTOR: f64 = 16.0;

/// Share of MemAvailable a run takes by default (and of free GPU memory on a GPU provider).
pub const DEFAULT_SHARE: f64 = 0.8;

/// Parse a size as users write it: `8GB`, `500MB`, `1.5GiB`, `2048` (bytes). Units are
/// powers of 1024 whichever way they are spelled (B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB),
/// as memory is counted; case does not matter.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let bad =
        || format!("`{text}` is not a size; write a number and a unit, e.g. 8GB, 500MB or 1.5GiB");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > (1u64 << 60) as f64 {
        return Err(format!("`{text}` is out of range (1 byte to 1 EiB)"));
    }
    Ok(bytes as u64)
}

/// A byte count as the run reports it: `1.48 GB`, `41.0 MB` (powers of 1024, as parsed).
pub fn show(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} kB", b / 1024.0)
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes (None where there is no such file: not Linux).
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_available(&text)
}

fn meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Free memory of the GPU ONNX Runtime's CUDA provider uses (device 0 of CUDA_VISIBLE_DEVICES),
/// as `nvidia-smi` reports it; None where it cannot say.
pub fn gpu_free() -> Option<u64> {
    let device = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|v| v.split(',').next().map(str::trim).map(str::to_string))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "0".into());
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.free",
            "--format=csv,noheader,nounits",
            "-i",
            &device,
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let mib: u64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some(mib << 20)
}

/// The budget when none is given, and where it came from: `DEFAULT_SHARE` of MemAvailable, and on
/// a GPU provider the smaller of that and the same share of the GPU's free memory (a model's
/// weights sit in both). None where the machine does not say (then waves are not used).
pub fn default_budget(on_gpu: bool) -> Option<(u64, String)> {
    let ram = mem_available()?;
    let mut budget = (ram as f64 * DEFAULT_SHARE) as u64;
    let mut why = format!(
        "{:.0} % of the {} of memory available",
        DEFAULT_SHARE * 100.0,
        show(ram)
    );
    if on_gpu {
        if let Some(free) = gpu_free() {
            let gpu = (free as f64 * DEFAULT_SHARE) as u64;
            if gpu < budget {
                budget = gpu;
                why = format!(
                    "{:.0} % of the {} free on the GPU",
                    DEFAULT_SHARE * 100.0,
                    show(free)
                );
            }
        }
    }
    Some((budget, why))
}

/// A model's bytes on disk: its ONNX file and the external-data files beside it.
pub fn model_bytes(onnx: &Path, external: &[std::path::PathBuf]) -> u64 {
    std::iter::once(onnx)
        .chain(external.iter().map(|p| p.as_path()))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// What the estimate of a pass's footprint needs to know.
#[derive(Debug, Clone, Copy)]
pub struct PassShape {
    /// Images per batch.
    pub batch_size: usize,
    /// f32 values per preprocessed image.
    pub per_image: usize,
    /// Inference workers, each with a session of every model and a batch in flight.
    pub workers: usize,
    /// Batches prepared ahead of inference.
    pub prefetch: usize,
}

impl PassShape {
    /// Bytes of one batch's input tensor.
    fn batch_bytes(&self) -> u64 {
        (self.batch_size * self.per_image * 4) as u64
    }

    /// What a pass needs whatever its models: the process, the batch buffers in flight (at most
    /// prefetch + workers + 1) and each worker's arena for the batch's activations.
    pub fn fixed(&self) -> u64 {
        let buffers = (self.prefetch + self.workers + 1) as u64 * self.batch_bytes();
        let arena = self.workers as f64 * self.batch_bytes() as f64 * ARENA_FACTOR;
        PROCESS_BASE + buffers + arena as u64
    }

    /// One model's sessions: its first with the weights, the other workers' sharing them.
    pub fn model(&self, file_bytes: u64) -> u64 {
        let first = file_bytes as f64 * SESSION_FACTOR;
        let others = (self.workers.max(1) - 1) as f64 * file_bytes as f64 * WORKER_SESSION_FACTOR;
        (first + others) as u64 + self.workers.max(1) as u64 * SESSION_OVERHEAD
    }
}

/// A group's models cut into waves, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waves {
    /// Consecutive ranges of the group's models.
    pub waves: Vec<Range<usize>>,
    /// Models that alone exceed the budget (each runs in a wave of its own).
    pub oversized: Vec<usize>,
}

/// Cut models (footprints in order) into consecutive waves of at most `room` bytes each. A model
/// larger than `room` makes a wave of its own. Keeping the order keeps results in the order one
/// pass stores them.
pub fn plan(footprints: &[u64], room: u64) -> Waves {
    let mut waves = Vec::new();
    let mut oversized = Vec::new();
    let mut start = 0;
    let mut used = 0u64;
    for (i, &bytes) in footprints.iter().enumerate() {
        if bytes > room {
            oversized.push(i);
        }
        if i > start && used + bytes > room {
            waves.push(start..i);
            start = i;
            used = 0;
        }
        used += bytes;
    }
    if start < footprints.len() {
        waves.push(start..footprints.len());
    }
    Waves { waves, oversized }
}

/// The budget a run holds its estimated footprint to, and where it came from.
#[derive(Debug, Clone)]
pub struct Budget {
    pub bytes: u64,
    /// `--memory-budget`, or how the default was derived.
    pub why: String,
    /// Given on the command line (then one that cannot hold a batch is an error).
    pub given: bool,
}

impl Budget {
    /// `--memory-budget` if given, else the machine's default; None where the machine does not
    /// say how much memory it has (then every group runs in one wave).
    pub fn resolve(given: Option<u64>, on_gpu: bool) -> Option<Budget> {
        match given {
            Some(bytes) => Some(Budget {
                bytes,
                why: format!("--memory-budget {}", show(bytes)),
                given: true,
            }),
            None => default_budget(on_gpu).map(|(bytes, why)| Budget {
                bytes,
                why: format!("the default, {why}"),
                given: false,
            }),
        }
    }

    /// The room left for models in a pass of this shape (zero if the pass alone overflows).
    pub fn room(&self, shape: &PassShape) -> u64 {
        self.bytes.saturating_sub(shape.fixed())
    }

    /// A given budget must hold one batch of the smallest model: else the figure that would.
    pub fn check_fits(&self, shape: &PassShape, smallest_model: u64) -> Result<(), String> {
        let needed = shape.fixed() + shape.model(smallest_model);
        if !self.given || self.bytes >= needed {
            return Ok(());
        }
        Err(format!(
            "--memory-budget {} is smaller than one batch needs: a pass at --batch-size {} with {} \
             inference worker(s) and its smallest model is estimated at {}; give at least \
             --memory-budget {}MB, or a smaller --batch-size",
            show(self.bytes),
            shape.batch_size,
            shape.workers,
            show(needed),
            needed.div_ceil(1 << 20)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("8GB"), Ok(8 << 30));
        assert_eq!(parse_size("500MB"), Ok(500 << 20));
        assert_eq!(parse_size("500 mib"), Ok(500 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        for bad in [
            "",
            "GB",
            "8XB",
            "-1GB",
            "1.2.3GB",
            "0",
            "0.1B",
            "99999999999TB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn meminfo_gives_available_bytes() {
        let text = "MemTotal:       24730112 kB\nMemFree:        19096104 kB\nMemAvailable:   23541000 kB\n";
        assert_eq!(meminfo_available(text), Some(23_541_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn waves_are_consecutive_and_fill_the_room() {
        let w = plan(&[4, 4, 4, 4, 4], 10);
        assert_eq!(w.waves, vec![0..2, 2..4, 4..5]);
        assert!(w.oversized.is_empty());
        assert_eq!(plan(&[3, 3, 3], 10).waves, vec![0..3]);
        assert_eq!(plan(&[], 10).waves, Vec::<Range<usize>>::new());
    }

    #[test]
    fn a_model_over_the_room_runs_alone() {
        let w = plan(&[2, 30, 2, 2], 10);
        assert_eq!(w.waves, vec![0..1, 1..2, 2..4]);
        assert_eq!(w.oversized, vec![1]);
    }

    #[test]
    fn the_footprint_grows_with_batch_and_workers() {
        let shape = PassShape {
            batch_size: 64,
            per_image: 3 * 224 * 224,
            workers: 2,
            prefetch: 2,
        };
        let bigger = PassShape {
            batch_size: 128,
            ..shape
        };
        assert!(bigger.fixed() > shape.fixed());
        assert!(shape.model(18 << 20) > (18 << 20) * 2);
        let one = PassShape {
            workers: 1,
            ..shape
        };
        assert!(one.model(18 << 20) < shape.model(18 << 20));
    }
}
