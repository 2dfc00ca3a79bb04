//! `robust-eval gate` through the binary, on results folders written with the library's own store
//! and known per-image flips.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use predicates::prelude::*;
use robust_eval::engine::preprocess::PreprocessSpec;
use robust_eval::results::store::{EvalRow, Evaluation, Predictions, ResultsStore};

/// A results folder with one model scored on `dataset`: `outcomes[i]` says whether image i was right.
fn folder(dir: &Path, model: &str, dataset: &str, manifest_sha256: &str, outcomes: &[bool]) {
    let mut store = ResultsStore::open(dir).unwrap();
    store.run.tool_version = "test".into();
    let n = outcomes.len() as u64;
    let correct = outcomes.iter().filter(|&&c| c).count() as u64;
    let row = EvalRow {
        model: model.into(),
        group: "standard".into(),
        dataset: dataset.into(),
        n,
        correct,
        top1: 100.0 * correct as f64 / n as f64,
        top5: None,
        top1_ci_low: 0.0,
        top1_ci_high: 100.0,
        failed: 0,
        skipped: 0,
        provider: "CPUExecutionProvider".into(),
        seconds: 1.0,
        images_per_s: n as f64,
    };
    let predictions = Predictions {
        index: (0..n as u32).collect(),
        path: (0..n).map(|i| format!("img{i}.jpg")).collect(),
        label: vec!["0".into(); n as usize],
        target: vec![0; n as usize],
        top5: vec![vec![0]; n as usize],
        correct: outcomes.to_vec(),
        correct_top5: outcomes.to_vec(),
    };
    let evaluation = Evaluation {
        model: model.into(),
        dataset: dataset.into(),
        views: vec![dataset.into()],
        scoring: "imagenet-1k".into(),
        model_file: "m.onnx".into(),
        model_sha256: "0".repeat(64),
        model_setup: String::new(),
        manifest: "manifest.csv".into(),
        manifest_sha256: manifest_sha256.into(),
        preprocess: PreprocessSpec::imagenet_default(),
        border: 0,
        provider: "CPUExecutionProvider".into(),
        batch_size: 64,
        started: String::new(),
        finished: String::new(),
        seconds: 1.0,
        waiting_for_images: 0.0,
        rows: None,
        execution: Default::default(),
    };
    store
        .record(
            evaluation,
            vec![row],
            vec![],
            vec![(dataset.into(), predictions)],
        )
        .unwrap();
}

const N: usize = 1000;
const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Baseline: the first 900 images right. Candidate: `to_wrong` of those wrong, `to_right` of the rest right.
fn pair_of_folders(to_wrong: usize, to_right: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<bool> = (0..N).map(|i| i < 900).collect();
    let mut cand = base.clone();
    for c in cand.iter_mut().take(to_wrong) {
        *c = false;
    }
    for c in cand.iter_mut().skip(900).take(to_right) {
        *c = true;
    }
    folder(&dir.path().join("base"), "resnet", "imagenet", SHA, &base);
    folder(&dir.path().join("cand"), "resnet", "imagenet", SHA, &cand);
    dir
}

fn gate(dir: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["gate", "--baseline"])
        .arg(dir.join("base"))
        .arg("--candidate")
        .arg(dir.join("cand"));
    cmd
}

#[test]
fn large_significant_drop_fails_with_a_readable_summary() {
    let dir = pair_of_folders(60, 5);
    let md = dir.path().join("summary.md");
    let junit = dir.path().join("junit.xml");
    gate(dir.path())
        .arg("--markdown")
        .arg(&md)
        .arg("--junit")
        .arg(&junit)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL").and(predicate::str::contains("60 / 5")));
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(summary.contains("regression found"), "{summary}");
    assert!(
        summary.contains("**resnet** on **imagenet**: top1 dropped 5.50 pp (90.00 → 84.50)"),
        "{summary}"
    );
    assert!(
        summary.contains("60 images turned wrong, 5 turned right"),
        "{summary}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(
        cases.len(),
        1,
        "one case per rule and row (no shifts here, so no ER rules)"
    );
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.children().any(|k| k.has_tag_name("failure")))
            .count(),
        1
    );
}

#[test]
fn drop_over_threshold_but_not_significant_passes_with_a_warning() {
    let dir = pair_of_folders(8, 2);
    gate(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("WARN").and(predicate::str::contains("PASSED")));
    // Without the significance requirement the same drop fails.
    gate(dir.path())
        .arg("--ignore-significance")
        .assert()
        .code(1);
}

#[test]
fn improvement_passes_and_is_reported() {
    let dir = pair_of_folders(2, 30);
    gate(dir.path())
        .arg("--json")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"verdict\": \"improved\""));
}

#[test]
fn comparisons_that_cannot_be_made_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
    folder(
        &dir.path().join("base"),
        "resnet",
        "imagenet",
        SHA,
        &outcomes,
    );
    folder(
        &dir.path().join("cand"),
        "resnet",
        "imagenet",
        &"b".repeat(64),
        &outcomes,
    );
    gate(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("different manifests"));
    gate(dir.path())
        .args(["--pair", "resnet=vit"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no model `vit`"));
    bin()
        .args(["gate", "--baseline", "/nonexistent", "--candidate"])
        .arg(dir.path().join("cand"))
        .assert()
        .code(2);
}

#[test]
fn without_paired_predictions_the_counts_are_compared() {
    let dir = pair_of_folders(60, 5);
    std::fs::remove_file(dir.path().join("cand/predictions/resnet/imagenet.parquet")).unwrap();
    gate(dir.path())
        .arg("--json")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("two-proportion"));
}

#[test]
fn mcnemar_p_values_match_scipy() {
    let cases = [(60u64, 5u64), (8, 2), (0, 7), (13, 13), (250, 190), (1, 0)];
    let script = format!(
        "from scipy.stats import binomtest\nfor b, c in {cases:?}:\n    print(binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0)\n"
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    for ((b, c), want) in cases.iter().zip(expected) {
        let got = robust_eval::analysis::gate::mcnemar_exact(*b, *c);
        assert!(
            (got - want).abs() < 1e-9 * want.max(1e-300) + 1e-15,
            "b={b} c={c}: {got} vs scipy {want}"
        );
    }
}
