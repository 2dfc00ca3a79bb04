//! Fuzzing of every parser a user's files go through: suite TOML, model card TOML, manifest CSV,
//! evals.csv, run.json, gate configuration, and images through the decoders. A stable-Rust
//! harness: inputs are mutations of the checked-in seed corpus (`tests/fuzz/corpus/<target>/`),
//! drawn from a fixed seed, each run in-process under `catch_unwind` and a watchdog, so a panic or
//! a hang fails the test and leaves the input in `target/fuzz-failures/`. Then a sample of the
//! inputs each parser refused goes through the real binary, which must exit 2 naming the file.
//!
//! `ROBUST_EVAL_FUZZ_SECONDS` (default 2) sets the time per target; `ROBUST_EVAL_FUZZ_SEED` the seed.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use robust_eval::analysis::gate::Rules;
use robust_eval::engine::preprocess::{preprocess_bytes, PreprocessSpec};
use robust_eval::input::card::ModelCard;
use robust_eval::input::manifest::Manifest;
use robust_eval::input::suite::Suite;
use robust_eval::results::evals;
use robust_eval::results::store::ResultsStore;

/// Longest one input may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);

/// splitmix64, as the fit's bootstrap uses: the same inputs for the same seed, everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that mean something to one of the formats: quotes, separators, brackets, huge numbers.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b",",
    b"\n",
    b"\r\n",
    b"[",
    b"]",
    b"=",
    b"{",
    b"}",
    b":",
    b"#",
    b"..",
    b"/",
    b"@",
    b"-1",
    b"0",
    b"1e308",
    b"NaN",
    b"inf",
    b"99999999999999999999",
    b"\xff\xd8\xff",
    b"\xff\xd9",
    b"\x00",
    b"\xff",
    b"[[datasets]]",
    b"[preprocess]",
    b"\"\"\"",
];

fn mutate(seed: &[u8], corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                data.drain(at..end);
            }
            4 if at < data.len() => {
                let end = (at + 1 + rng.below(256)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(512)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            6 => data.truncate(at),
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let end = (at + token.len()).min(data.len());
                data.splice(at..end, token.iter().copied());
            }
        }
    }
    data
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("tests/fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// One parser: write the input where it reads it, call it; `Err` is a refusal (fine), a panic or
/// a hang is a failure.
struct Target {
    name: &'static str,
    /// File name the input is written to inside the work folder.
    file: &'static str,
    parse: fn(&Path) -> Result<(), String>,
    /// The command line that reads the same file through the binary, if any: exit 2 expected on
    /// a refused input.
    cli: Option<fn(&Path) -> assert_cmd::Command>,
}

fn parse_suite(p: &Path) -> Result<(), String> {
    Suite::load(p).map(drop).map_err(|e| e.to_string())
}
fn parse_card(p: &Path) -> Result<(), String> {
    ModelCard::load(p).map(drop).map_err(|e| e.to_string())
}
fn parse_manifest(p: &Path) -> Result<(), String> {
    Manifest::load(p).map(drop).map_err(|e| e.to_string())
}
fn parse_evals(p: &Path) -> Result<(), String> {
    evals::read(p).map(drop).map_err(|e| e.to_string())
}
fn parse_run_json(p: &Path) -> Result<(), String> {
    ResultsStore::open(p.parent().unwrap())
        .map(drop)
        .map_err(|e| e.to_string())
}
fn parse_gate(p: &Path) -> Result<(), String> {
    Rules::load(p).map(drop).map_err(|e| e.to_string())
}
fn parse_image(p: &Path) -> Result<(), String> {
    let bytes = std::fs::read(p).unwrap();
    let spec = PreprocessSpec {
        resize: 20,
        crop: 16,
        ..PreprocessSpec::imagenet_default()
    };
    let mut out = vec![0f32; spec.tensor_len()];
    for border in [0, 2] {
        preprocess_bytes(&bytes, &spec, border, &mut out)?;
    }
    Ok(())
}

fn cli_suite(p: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["run", "--provider", "cpu", "--progress", "none", "--suite"])
        .arg(p)
        .arg("--models")
        .arg(root().join("demo/models/std-s.toml"))
        .arg("--out")
        .arg(p.parent().unwrap().join("out"));
    cmd
}
fn cli_card(p: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args([
        "run",
        "--suite",
        "demo",
        "--provider",
        "cpu",
        "--progress",
        "none",
        "--models",
    ])
    .arg(p)
    .arg("--out")
    .arg(p.parent().unwrap().join("out"));
    cmd
}
fn cli_evals(p: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["fit", "--results"]).arg(p.parent().unwrap());
    cmd
}
fn cli_gate(p: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    let demo = p.parent().unwrap().join("demo-results");
    cmd.args(["gate", "--baseline"])
        .arg(&demo)
        .arg("--candidate")
        .arg(&demo)
        .arg("--config")
        .arg(p);
    cmd
}

const TARGETS: &[Target] = &[
    Target {
        name: "suite",
        file: "suite.toml",
        parse: parse_suite,
        cli: Some(cli_suite),
    },
    Target {
        name: "card",
        file: "card.toml",
        parse: parse_card,
        cli: Some(cli_card),
    },
    Target {
        name: "manifest",
        file: "manifest.csv",
        parse: parse_manifest,
        cli: None,
    },
    Target {
        name: "evals",
        file: "evals.csv",
        parse: parse_evals,
        cli: Some(cli_evals),
    },
    Target {
        name: "run_json",
        file: "run.json",
        parse: parse_run_json,
        cli: None,
    },
    Target {
        name: "gate",
        file: "gate.toml",
        parse: parse_gate,
        cli: Some(cli_gate),
    },
    Target {
        name: "image",
        file: "image",
        parse: parse_image,
        cli: None,
    },
];

fn seconds_per_target() -> f64 {
    std::env::var("ROBUST_EVAL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

/// A work folder with what the seeds refer to: the ONNX files cards name, and a demo results
/// folder for the gate.
fn work_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for onnx in ["std-s.onnx", "robust-l.onnx", "model.onnx"] {
        std::fs::copy(root().join("demo/models/std-s.onnx"), dir.path().join(onnx)).unwrap();
    }
    let demo = dir.path().join("demo-results");
    std::fs::create_dir_all(&demo).unwrap();
    std::fs::copy(
        root().join("tests/fuzz/corpus/evals/demo.csv"),
        demo.join("evals.csv"),
    )
    .unwrap();
    dir
}

/// Run one input on a thread of its own: Ok(refused?) or the failure (panic or hang).
fn try_input(target: &Target, path: &Path) -> Result<bool, String> {
    let (tx, rx) = mpsc::channel();
    let (parse, path_owned) = (target.parse, path.to_path_buf());
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| parse(&path_owned));
        let _ = tx.send(outcome);
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(result)) => Ok(result.is_err()),
        Ok(Err(_)) => Err("panicked".into()),
        Err(_) => Err(format!("did not finish in {} s", HANG.as_secs())),
    }
}

fn keep_failure(target: &Target, input: &[u8], why: &str) -> String {
    let dir = root().join("target/fuzz-failures").join(target.name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{:016x}", {
        let mut h = Rng(input.len() as u64);
        input
            .iter()
            .fold(0u64, |a, &b| a.rotate_left(5) ^ b as u64 ^ h.next())
    }));
    std::fs::write(&file, input).unwrap();
    format!("{}: {why}: input kept in {}", target.name, file.display())
}

#[test]
fn every_parser_survives_mutated_inputs() {
    let seed: u64 = std::env::var("ROBUST_EVAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_204);
    let budget = Duration::from_secs_f64(seconds_per_target());
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for target in TARGETS {
        let work = work_folder();
        let path = work.path().join(target.file);
        let seeds = corpus(target.name);
        let mut rng = Rng(seed ^ target.name.len() as u64);
        let (mut tried, mut refused, mut sample) = (0usize, 0usize, Vec::new());
        let start = Instant::now();
        // Every seed as it is first, then mutations until the budget is spent.
        while tried < seeds.len() || start.elapsed() < budget {
            let input = match seeds.get(tried) {
                Some(s) => s.clone(),
                None => mutate(&seeds[rng.below(seeds.len())], &seeds, &mut rng),
            };
            std::fs::write(&path, &input).unwrap();
            tried += 1;
            match try_input(target, &path) {
                Ok(true) => {
                    refused += 1;
                    if sample.len() < 6 && rng.below(4) == 0 {
                        sample.push(input);
                    }
                }
                Ok(false) => {}
                Err(why) => {
                    failures.push(keep_failure(target, &input, &why));
                    break;
                }
            }
        }
        if let Some(cli) = target.cli {
            for input in &sample {
                std::fs::write(&path, input).unwrap();
                let out = cli(&path)
                    .timeout(Duration::from_secs(60))
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.code() != Some(2)
                    || !stderr.contains("error:")
                    || stderr.contains("panicked")
                    || stderr.contains("internal error")
                {
                    failures.push(keep_failure(
                        target,
                        input,
                        &format!("the binary gave {:?}: {stderr}", out.status.code()),
                    ));
                }
            }
        }
        summary.push(format!(
            "fuzz: {}: {tried} inputs in {:.1} s, {refused} refused, {} checked through the binary",
            target.name,
            start.elapsed().as_secs_f64(),
            if target.cli.is_some() {
                sample.len()
            } else {
                0
            }
        ));
    }
    let mut stderr = std::io::stderr().lock();
    for line in &summary {
        let _ = writeln!(stderr, "{line}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
