//! GPU busy time for `bench`: `nvidia-smi`'s `utilization.gpu` (the share of each sample period in
//! which a kernel ran on the GPU) sampled every 100 ms while the pipeline runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

/// Milliseconds between samples.
const SAMPLE_MS: u32 = 100;

/// The id `nvidia-smi -i` knows CUDA device `device` by: entry `device` of `CUDA_VISIBLE_DEVICES`
/// where that is set (CUDA counts only the GPUs it lists), else the ordinal itself. None when the
/// list does not reach that far.
pub fn smi_id(visible_devices: Option<&str>, device: u32) -> Option<String> {
    match visible_devices {
        None => Some(device.to_string()),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .take_while(|e| !e.is_empty() && !e.starts_with('-'))
            .nth(device as usize)
            .map(str::to_string),
    }
}

/// The mean of `nvidia-smi --format=csv,noheader,nounits` percentages, as a share (0 to 1); lines
/// that are no number (`[N/A]`, `[Not Supported]`) are left out. None without any sample.
pub fn mean_utilization(text: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .filter(|p| (0.0..=100.0).contains(p))
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64 / 100.0)
}

/// `nvidia-smi` sampling one GPU's utilisation until stopped.
pub struct Sampler {
    child: Child,
    reader: JoinHandle<String>,
}

impl Sampler {
    /// Start sampling GPU `smi_id`; an error when `nvidia-smi` cannot be started.
    pub fn start(smi_id: &str) -> std::io::Result<Sampler> {
        let mut child = Command::new("nvidia-smi")
            .args([
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-i",
                smi_id,
                &format!("--loop-ms={SAMPLE_MS}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        // Read as it comes, so a long pass never fills the pipe and stalls nvidia-smi.
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        });
        Ok(Sampler { child, reader })
    }

    /// Stop sampling: the mean share of the time the GPU was busy, None without samples.
    pub fn stop(mut self) -> Option<f64> {
        let _ = self.child.kill(); // this sampler's own child, by its handle
        let _ = self.child.wait();
        mean_utilization(&self.reader.join().ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_follow_cuda_visible_devices() {
        assert_eq!(smi_id(None, 2).as_deref(), Some("2"));
        assert_eq!(smi_id(Some("3,1"), 0).as_deref(), Some("3"));
        assert_eq!(smi_id(Some(" 3, 1 "), 1).as_deref(), Some("1"));
        assert_eq!(
            smi_id(Some("GPU-8f2c,GPU-11aa"), 1).as_deref(),
            Some("GPU-11aa")
        );
        assert_eq!(smi_id(Some("3,1"), 2), None);
        // CUDA stops at the first invalid entry; "-1" and "" hide every GPU.
        assert_eq!(smi_id(Some("0,-1,2"), 1), None);
        assert_eq!(smi_id(Some(""), 0), None);
    }

    #[test]
    fn utilisation_is_the_mean_of_the_samples_that_are_numbers() {
        assert_eq!(mean_utilization("100\n50\n0\n"), Some(0.5));
        assert_eq!(mean_utilization("[N/A]\n80\n"), Some(0.8));
        assert_eq!(mean_utilization("[Not Supported]\n"), None);
        assert_eq!(mean_utilization(""), None);
        assert_eq!(mean_utilization("120\n"), None);
    }
}
