//! Crash consistency, proven by killing: the demo suite (18 real ONNX models, 4 datasets of real
//! JPEG files, 72 pairs) is run into one folder again and again, each run killed with SIGKILL at
//! a different moment spread over the whole run (start-up, evaluation, the writes after each
//! pair, the analysis), until one run finishes. Every stored result must then be what one
//! uninterrupted run stores, and no temporary file may be left behind.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn run_command(out: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("robust-eval"));
    cmd.args([
        "run",
        "--suite",
        "demo",
        "--provider",
        "cpu",
        "--progress",
        "none",
        "--out",
    ])
    .arg(out)
    .env(
        "ROBUST_EVAL_CACHE",
        root().join("target").join("test-cache"),
    )
    .env_remove("CI")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

/// evals.csv without the columns that time the run (seconds, images per second).
fn evals_without_timing(out: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(out.join("evals.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let keep: Vec<usize> = (0..headers.len())
        .filter(|&i| !matches!(&headers[i], "seconds" | "images_per_s"))
        .collect();
    let mut rows: Vec<Vec<String>> = vec![keep.iter().map(|&i| headers[i].to_string()).collect()];
    for record in reader.records() {
        let record = record.unwrap();
        rows.push(keep.iter().map(|&i| record[i].to_string()).collect());
    }
    rows
}

/// What each stored pair was computed from (run.json without its times and host).
fn provenance(out: &Path) -> Vec<(String, String, String, String)> {
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let mut keys: Vec<_> = run["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].to_string();
            (
                s("model"),
                s("dataset"),
                s("model_sha256"),
                s("manifest_sha256"),
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn killed_anywhere_a_run_resumes_to_what_an_uninterrupted_run_stores() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let start = Instant::now();
    assert!(run_command(&whole).status().unwrap().success());
    let span = start.elapsed().as_secs_f64();

    // Trials at moments spread evenly over the length of one whole run: each starts a fresh
    // folder, is killed at its moment, resumed and killed again half as far in, then resumed to
    // the end; its results must equal the uninterrupted run's.
    let trials = 12;
    let mut killed_runs = 0;
    for trial in 0..trials {
        let moment = span * (trial as f64 + 0.5) / trials as f64;
        let killed = dir.path().join(format!("killed-{trial}"));
        for at in [moment, moment / 2.0] {
            killed_runs += kill_at(&killed, at) as usize;
        }
        assert!(
            run_command(&killed).status().unwrap().success(),
            "trial {trial} finishes"
        );
        same_results(&whole, &killed);
    }
    assert!(
        killed_runs >= trials,
        "only {killed_runs} runs were killed before finishing"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "crash: {killed_runs} runs killed with SIGKILL in {trials} trials over a {span:.1} s run; \
         every resumed folder identical"
    );
}

/// Start a run into `out` and kill it (SIGKILL) after `seconds`; whether it was still running.
fn kill_at(out: &Path, seconds: f64) -> bool {
    let mut child = run_command(out).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().unwrap().is_none();
    if running {
        child.kill().unwrap(); // SIGKILL
    }
    child.wait().unwrap();
    running
}

fn same_results(whole: &Path, killed: &Path) {
    assert_eq!(evals_without_timing(killed), evals_without_timing(whole));
    assert_eq!(
        std::fs::read(killed.join("failures.csv")).unwrap(),
        std::fs::read(whole.join("failures.csv")).unwrap()
    );
    assert_eq!(provenance(killed), provenance(whole));
    let predictions = files_under(&whole.join("predictions"));
    assert_eq!(predictions.len(), 72); // 18 models × 4 datasets
    assert_eq!(files_under(&killed.join("predictions")), predictions);
    for p in &predictions {
        let (a, b) = (
            whole.join("predictions").join(p),
            killed.join("predictions").join(p),
        );
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{}",
            p.display()
        );
    }
    let leftovers: Vec<_> = files_under(killed)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".robust-eval-tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
