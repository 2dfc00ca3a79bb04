//! Reliability through the real binary: inputs that used to hang, lose results or escape their
//! folder. Every command runs under a timeout, so a hang fails the test instead of stalling it.

mod common;

use std::time::Duration;

use common::*;
use predicates::prelude::*;

const LIMIT: Duration = Duration::from_secs(120);

fn folder_with(evals: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("evals.csv"), evals).unwrap();
    dir
}

/// Every baseline model at the same ID accuracy (all clipped to 100 %): no line exists. The
/// bootstrap used to draw resamples for ever; now each analysis step says why and exits 2.
#[test]
fn a_fit_with_one_id_accuracy_ends_with_a_reason() {
    let dir = folder_with(
        "model,group,dataset,top1\n\
         a,standard,imagenet,100\nb,standard,imagenet,100\nc,standard,imagenet,100\n\
         a,standard,shift,40\nb,standard,shift,50\nc,standard,shift,60\n",
    );
    for step in ["fit", "plot", "report"] {
        bin()
            .args([step, "--results"])
            .arg(dir.path())
            .timeout(LIMIT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("shift `shift`").and(predicate::str::contains(
                "same ID accuracy",
            )));
    }
}

/// Two distinct ID accuracies among many models: most resamples are degenerate, yet the fit ends
/// and gives a band.
#[test]
fn a_fit_with_mostly_equal_id_accuracies_ends() {
    let mut evals = String::from("model,group,dataset,top1\n");
    for i in 0..12 {
        let id = if i == 0 { 50.0 } else { 100.0 };
        evals += &format!("m{i},standard,imagenet,{id}\nm{i},standard,shift,{}\n", 30 + i);
    }
    let dir = folder_with(&evals);
    bin()
        .args(["fit", "--json", "--bootstrap", "200", "--results"])
        .arg(dir.path())
        .timeout(LIMIT)
        .assert()
        .success();
}

#[test]
fn an_absurd_bootstrap_count_is_refused() {
    let dir = folder_with(
        "model,dataset,top1\na,imagenet,50\nb,imagenet,60\nc,imagenet,70\na,s,40\nb,s,45\nc,s,52\n",
    );
    bin()
        .args(["fit", "--bootstrap", "1000000000000", "--results"])
        .arg(dir.path())
        .timeout(LIMIT)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--bootstrap"));
}

/// A side whose trend cannot be fitted (two models) used to lose every ER check silently; now the
/// gate says so and exits 2, and `--accuracy-only` gates on top-1 alone, saying so.
#[test]
fn a_gate_that_cannot_fit_says_so() {
    let evals = "model,dataset,top1,n,correct\n\
                 a,imagenet,70,1000,700\nb,imagenet,75,1000,750\na,v2,60,1000,600\nb,v2,66,1000,660\n";
    let (base, cand) = (folder_with(evals), folder_with(evals));
    bin()
        .args(["gate", "--baseline"])
        .arg(base.path())
        .arg("--candidate")
        .arg(cand.path())
        .timeout(LIMIT)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("effective robustness cannot be fitted")
                .and(predicate::str::contains("--accuracy-only")),
        );
    let out = bin()
        .args(["gate", "--json", "--accuracy-only", "--baseline"])
        .arg(base.path())
        .arg("--candidate")
        .arg(cand.path())
        .timeout(LIMIT)
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "top-1 on two datasets for two models");
    assert!(checks.iter().all(|c| c["rule"] == "top1"));
    assert_eq!(report["rules"]["accuracy_only"], true);
}
