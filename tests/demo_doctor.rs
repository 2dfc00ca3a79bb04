//! The newcomer's path: the embedded demo suite, `doctor`, and `--help`.

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn demo_suite_runs_with_no_datasets_and_tells_the_story() {
    let out = tempfile::tempdir().unwrap();
    let assert = bin()
        .args(["run", "--suite", "demo", "--progress", "plain", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(stdout.contains("pairs evaluated"), "{stdout}");
    let rows = evals(out.path());
    let datasets = ["shapes", "shapes-v2", "shapes-sketch", "shapes-rendition"];
    let models: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    assert!(models.len() >= 6, "{models:?}");
    assert_eq!(rows.len(), models.len() * datasets.len());
    for r in &rows {
        assert!(
            datasets.contains(&r.dataset.as_str()) && r.n > 0 && r.failed == 0,
            "{r:?}"
        );
    }
    // Graded capacity: the standard models' ID accuracies spread widely.
    let id: Vec<f64> = rows
        .iter()
        .filter(|r| r.dataset == "shapes")
        .map(|r| r.top1)
        .collect();
    let (lo, hi) = id
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(hi - lo > 20.0, "ID accuracies {id:?}");
    // Second run: everything is up to date, and no result changes by a byte (run.json and the
    // reports record this run's start and end: they are the provenance, rewritten every run; .lock
    // names the run holding the folder).
    let before = snapshot(out.path());
    assert!(before.len() >= 40, "{:?}", before.keys());
    bin()
        .args(["run", "--suite", "demo", "--progress", "plain", "--out"])
        .arg(out.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("0 pairs evaluated"));
    let after = snapshot(out.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &before {
        assert!(
            after[path] == *bytes,
            "{} changed on resume",
            path.display()
        );
    }
}

/// Every result file under `dir` with its bytes (not run.json or report.*, see above).
fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if !["run.json", "report.html", "report.md", ".lock"]
                .iter()
                .any(|name| path.file_name().is_some_and(|f| f == *name))
            {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn doctor_tells_the_truth_about_the_runtime() {
    let assert = bin().args(["doctor", "--json"]).assert().success();
    let report: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    let lib = &report["library"];
    assert!(std::path::Path::new(lib["path"].as_str().unwrap()).is_file());
    assert!(lib["version"].as_str().unwrap().starts_with("1."), "{lib}");
    let providers = report["providers"].as_array().unwrap();
    let cpu = providers
        .iter()
        .find(|p| p["provider"] == "CPUExecutionProvider")
        .unwrap();
    assert_eq!(cpu["ok"], true, "{cpu}");
    // This machine's wheel has no CUDA: doctor must say so rather than claim it works.
    let built_in: Vec<&str> = report["providers_built_in"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let cuda = providers
        .iter()
        .find(|p| p["provider"] == "CUDAExecutionProvider")
        .unwrap();
    assert_eq!(
        cuda["ok"].as_bool().unwrap(),
        built_in.contains(&"CUDAExecutionProvider") && cuda["status"] == "ok"
    );

    // A library that cannot be loaded is reported, with exit status 2.
    bin()
        .arg("doctor")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .assert()
        .code(2)
        .stdout(predicate::str::contains("/nonexistent/libonnxruntime.so"));
}

#[test]
fn explicit_unavailable_provider_is_an_error_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let providers: serde_json::Value = serde_json::from_slice(
        &bin()
            .args(["doctor", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    if providers["providers_built_in"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "CUDAExecutionProvider")
    {
        return; // a GPU build: nothing to refuse here
    }
    bin()
        .args(["run", "--suite", "demo", "--provider", "cuda", "--out"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "does not include CUDAExecutionProvider",
        ));
}

#[test]
fn help_reads_like_a_man_page() {
    bin().args(["run", "--help"]).assert().success().stdout(
        predicate::str::contains("EXIT STATUS").and(predicate::str::contains("--allow-failures")),
    );
}
