//! `run --memory-budget` through the real binary: a preprocessing group of many models with real
//! weights, under a budget that holds only some of them at once, runs in waves, its peak resident
//! memory (the kernel's count for the child, from wait4) stays within the budget plus the
//! documented slack, and its results are those of one pass with every model.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Copies of the heavy probe (tests/fixtures/make_heavy_model.py): 192 x HIDDEN + HIDDEN x 1000
/// float32 weights, ~9.8 MB a file.
const HIDDEN: &str = "2048";
const COPIES: usize = 24;

/// The budget of the waved run, and the slack docs/performance.md allows over it: the estimate is
/// one of the live footprint, and the allocator's and page cache's share of RSS is not exact.
const BUDGET_MB: u64 = 400;
const SLACK_MB: u64 = 64;

/// A folder of `COPIES` cards, each with a hard link (or copy) of one heavy model.
fn heavy_models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let heavy = dir.join("heavy.onnx");
    let made = Command::new(python())
        .arg(root().join("tests/fixtures/make_heavy_model.py"))
        .arg(&heavy)
        .args(["--hidden", HIDDEN])
        .status()
        .unwrap();
    assert!(made.success(), "make_heavy_model.py failed");
    for i in 0..COPIES {
        let name = format!("heavy-{i:02}");
        let onnx = models.join(format!("{name}.onnx"));
        if std::fs::hard_link(&heavy, &onnx).is_err() {
            std::fs::copy(&heavy, &onnx).unwrap();
        }
        std::fs::write(
            models.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nonnx = \"{name}.onnx\"\ngroup = \"standard\"\n[preprocess]\n\
                 resize = 8\ncrop = 8\ninterpolation = \"bilinear\"\nmean = [0.0, 0.0, 0.0]\n\
                 std = [1.0, 1.0, 1.0]\n[output]\nnum_classes = 1000\n"
            ),
        )
        .unwrap();
    }
    models
}

/// What a run of the binary left: its exit status, stderr and peak resident set in MB.
struct Finished {
    success: bool,
    stderr: String,
    peak_mb: u64,
}

/// Linux's struct rusage: two timevals, then ru_maxrss (kilobytes) and 13 more longs.
#[repr(C)]
struct Rusage {
    times: [i64; 4],
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, usage: *mut Rusage) -> i32;
}

/// Reap child `pid`: its raw wait status and the kernel's peak resident set of it, in kB.
fn wait4_child(pid: i32) -> (i32, u64) {
    let mut status = 0;
    let mut usage = Rusage {
        times: [0; 4],
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: our own child, and pointers to live, correctly laid out values.
    let reaped = unsafe { wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 failed");
    (status, usage.maxrss as u64)
}

/// Run the binary with `args`, reaping it with wait4 for the kernel's peak RSS of that process.
fn run_measured(args: &[&std::ffi::OsStr], logs: &Path) -> Finished {
    let cmd = bin();
    let program = cmd.get_program().to_owned();
    let stderr_file = logs.with_extension("stderr");
    let mut command = Command::new(program);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => command.env(key, v),
            None => command.env_remove(key),
        };
    }
    // Reaped by wait4 below, not Child::wait: wait4 also reports the child's peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = command
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .unwrap();
    let (status, peak_kb) = wait4_child(child.id() as i32);
    Finished {
        // Exited (low 7 bits 0) with status 0.
        success: status == 0,
        stderr: std::fs::read_to_string(&stderr_file).unwrap(),
        peak_mb: peak_kb / 1024,
    }
}

fn run_args<'a>(dir: &'a Path, out: &'a Path, budget: &'a str) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "run",
        "--provider",
        "cpu",
        "--progress",
        "plain",
        "--threads",
        "2",
        "--inference-workers",
        "2",
        "--batch-size",
        "4",
        "--allow-failures",
        "9",
        "--memory-budget",
        budget,
    ]
    .iter()
    .map(Into::into)
    .collect();
    for (flag, value) in [
        ("--suite", dir.join("suite.toml")),
        ("--data-root", dir.join("data")),
        ("--models", dir.join("models")),
        ("--out", out.to_path_buf()),
    ] {
        args.push(flag.into());
        args.push(value.into_os_string());
    }
    args
}

fn evals_without_timings(out: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(out.join("evals.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !["seconds", "images_per_s"].contains(&&header[i]))
        .collect();
    assert_eq!(keep.len(), header.len() - 2, "timing columns: {header:?}");
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            keep.iter().map(|&i| r[i].to_string()).collect()
        })
        .collect()
}

#[test]
fn a_group_over_the_budget_runs_in_waves_within_it_with_one_passs_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    scoring_suite(dir);
    std::fs::remove_dir_all(dir.join("models")).unwrap();
    heavy_models(dir);
    let (single, waved) = (dir.join("single"), dir.join("waved"));
    let as_os = |a: &Vec<std::ffi::OsString>| a.iter().map(|s| s.to_owned()).collect::<Vec<_>>();

    let one_pass = as_os(&run_args(dir, &single, "64GB"));
    let refs: Vec<&std::ffi::OsStr> = one_pass.iter().map(|s| s.as_os_str()).collect();
    let unbounded = run_measured(&refs, &dir.join("single"));
    assert!(unbounded.success, "{}", unbounded.stderr);
    assert!(
        !unbounded.stderr.contains("waves"),
        "one pass expected under 64GB: {}",
        unbounded.stderr
    );

    let budget = format!("{BUDGET_MB}MB");
    let in_waves = as_os(&run_args(dir, &waved, &budget));
    let refs: Vec<&std::ffi::OsStr> = in_waves.iter().map(|s| s.as_os_str()).collect();
    let bounded = run_measured(&refs, &dir.join("waved"));
    assert!(bounded.success, "{}", bounded.stderr);
    let waves: usize = bounded
        .stderr
        .lines()
        .find_map(|l| {
            let rest = l.split(" models sharing preprocessing run in ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no waves reported: {}", bounded.stderr));
    assert!(waves >= 2, "{}", bounded.stderr);

    // The budget mattered: one pass holds more than it, the waves stay within it.
    eprintln!(
        "peak RSS: one pass {} MB, {waves} waves {} MB (budget {BUDGET_MB} MB + {SLACK_MB} MB slack)",
        unbounded.peak_mb, bounded.peak_mb
    );
    assert!(
        unbounded.peak_mb > BUDGET_MB + SLACK_MB,
        "one pass peaked at {} MB: the test's budget would not bind",
        unbounded.peak_mb
    );
    assert!(
        bounded.peak_mb <= BUDGET_MB + SLACK_MB,
        "{waves} waves peaked at {} MB, over the budget of {BUDGET_MB} MB + {SLACK_MB} MB",
        bounded.peak_mb
    );

    // A wave is an order of work: the results are one pass's, row for row and byte for byte.
    let rows = evals_without_timings(&single);
    assert_eq!(rows.len(), COPIES * 7, "7 views per model");
    assert_eq!(rows, evals_without_timings(&waved), "evals.csv");
    for file in ["failures.csv", "fit.json"] {
        assert_eq!(
            std::fs::read(single.join(file)).ok(),
            std::fs::read(waved.join(file)).ok(),
            "{file}"
        );
    }
    let predictions = files_under(&single.join("predictions"));
    assert_eq!(predictions.len(), COPIES * 7);
    assert_eq!(predictions, files_under(&waved.join("predictions")));
    for file in &predictions {
        let (a, b) = (
            std::fs::read(single.join("predictions").join(file)).unwrap(),
            std::fs::read(waved.join("predictions").join(file)).unwrap(),
        );
        assert!(a == b, "predictions/{} differs", file.display());
    }
}

#[test]
fn a_budget_that_cannot_hold_a_batch_is_refused_with_the_figure_that_would() {
    let tmp = tempfile::tempdir().unwrap();
    scoring_suite(tmp.path());
    let run = |budget: &str| {
        let mut cmd = bin();
        cmd.args(["run", "--provider", "cpu", "--progress", "plain"])
            .arg("--suite")
            .arg(tmp.path().join("suite.toml"))
            .arg("--data-root")
            .arg(tmp.path().join("data"))
            .arg("--models")
            .arg(tmp.path().join("models"))
            .arg("--out")
            .arg(tmp.path().join("out"))
            .arg(format!("--memory-budget={budget}"));
        cmd.assert()
    };
    let refused = run("20MB").code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(
        stderr.contains("--memory-budget 20.0 MB is smaller than one batch needs"),
        "{stderr}"
    );
    // The figure it names is enough.
    let figure = stderr
        .split("give at least --memory-budget ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|f| f.trim_end_matches(','))
        .unwrap_or_else(|| panic!("no figure: {stderr}"))
        .to_string();
    assert!(!tmp.path().join("out/evals.csv").exists());
    run(&figure).success();

    for bad in ["lots", "8XB", "0", "-5GB"] {
        let out = run(bad).code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains("--memory-budget"), "{bad}: {stderr}");
    }
}
