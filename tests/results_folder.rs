//! A results folder as a team uses it, through the real binary: what a run keeps from earlier
//! runs is named and can be pruned; reports work with any number of models and say when a fit
//! is too small to mean much; inputs the tool would otherwise guess at are refused or explained.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use predicates::prelude::*;

fn demo_card(name: &str) -> PathBuf {
    root().join("demo/models").join(format!("{name}.toml"))
}

/// `run --suite demo` with these demo models into `out`; returns (stdout, stderr).
fn run_demo(out: &Path, models: &[&str]) -> (String, String) {
    let mut cmd = bin();
    cmd.args(["run", "--suite", "demo", "--progress", "none", "--out"])
        .arg(out);
    for m in models {
        cmd.arg("--models").arg(demo_card(m));
    }
    let done = cmd.assert().success();
    let output = done.get_output();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_run_names_what_it_kept_and_prune_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let all = ["std-xs", "std-s", "std-m", "std-l", "std-xl", "robust-m"];
    let (_, stderr) = run_demo(&out, &all);
    assert!(!stderr.contains("kept from earlier runs"), "{stderr}");
    // The next run leaves std-xl out: its rows stay, and the run says so.
    let (stdout, stderr) = run_demo(&out, &["std-xs", "std-s", "std-m", "std-l", "robust-m"]);
    assert!(
        stderr.contains("kept from earlier runs: models std-xl (4 rows)"),
        "{stderr}"
    );
    assert!(stderr.contains("robust-eval prune --results"), "{stderr}");
    // The headline and reports say how many models came from earlier runs.
    assert!(
        stdout.contains("Caution: 1 of 6 models come from earlier runs kept in this folder"),
        "{stdout}"
    );
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fit.json")).unwrap()).unwrap();
    assert!(
        fit["cautions"]
            .to_string()
            .contains("1 of 6 models come from earlier runs"),
        "{fit}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("> **Caution:** 1 of 6 models"), "{md}");

    // Prune: rows, predictions and run.json entries go; the rest stays.
    bin()
        .args(["prune", "--results"])
        .arg(&out)
        .args(["--models", "std-xl"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "removed std-xl: 4 rows of evals.csv",
        ));
    let rows = evals(&out);
    assert!(rows.iter().all(|r| r.model != "std-xl"), "{rows:?}");
    assert_eq!(rows.len(), 5 * 4, "the other models' rows are kept");
    assert!(!out.join("predictions/std-xl").exists());
    assert!(out.join("predictions/std-m").is_dir());
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert!(!run["evaluations"].to_string().contains("std-xl"), "{run}");
    // Nothing kept any more: the next run evaluates nothing and names nothing.
    let (stdout, stderr) = run_demo(&out, &["std-xs", "std-s", "std-m", "std-l", "robust-m"]);
    assert!(!stderr.contains("kept from earlier runs"), "{stderr}");
    assert!(
        stdout.contains("0 pairs evaluated, 20 up to date"),
        "{stdout}"
    );
    // A model the folder does not hold is named, and nothing changes.
    bin()
        .args(["prune", "--results"])
        .arg(&out)
        .args(["--models", "std-xl"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no model `std-xl`"));
    assert_eq!(evals(&out).len(), 20);
}

/// A folder of published numbers: evals.csv alone, `models` each on `shapes` and `shapes-v2`.
fn published(dir: &Path, models: &[(&str, f64, f64)]) {
    let mut text = String::from("model,dataset,top1\n");
    for (m, id, ood) in models {
        text += &format!("{m},shapes,{id}\n{m},shapes-v2,{ood}\n");
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("evals.csv"), text).unwrap();
}

#[test]
fn report_with_two_models_writes_the_accuracy_tables() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path(), &[("a", 81.5, 70.25), ("b", 77.0, 66.0)]);
    let done = bin()
        .args(["report", "--id", "shapes", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let md = String::from_utf8_lossy(&done.get_output().stdout).to_string();
    assert!(md.contains("## Top-1 accuracy"), "{md}");
    assert!(md.contains("| a | standard | 81.50 | 70.25 |"), "{md}");
    assert!(md.contains("| b | standard | 77.00 | 66.00 |"), "{md}");
    assert!(
        md.contains("no trend fit and no effective robustness")
            && md.contains("a fit needs at least 3"),
        "the reason is given: {md}"
    );
    assert!(dir.path().join("report.md").is_file());
    // HTML too, with its accuracy table.
    bin()
        .args(["report", "--id", "shapes", "--format", "html", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("<table class=\"sortable\" id=\"accuracy\">"),
        "{html}"
    );
    // A wrong setting is still an error, not a quiet accuracy-only report.
    bin()
        .args([
            "report",
            "--id",
            "shapes",
            "--baseline",
            "group:nope",
            "--results",
        ])
        .arg(dir.path())
        .assert()
        .code(2);
}

#[test]
fn a_three_model_fit_carries_its_note() {
    let dir = tempfile::tempdir().unwrap();
    published(
        dir.path(),
        &[("a", 81.5, 70.25), ("b", 77.0, 66.0), ("c", 72.0, 59.5)],
    );
    bin()
        .args(["fit", "--id", "shapes", "--results"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "caution: shapes-v2: n = 3 baseline models (fewer than 5)",
        ));
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("fit.json")).unwrap())
            .unwrap();
    let caution = fit["shifts"][0]["caution"].as_str().unwrap();
    assert!(caution.contains("the line is not reliable"), "{caution}");
    let done = bin()
        .args(["report", "--id", "shapes", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let md = String::from_utf8_lossy(&done.get_output().stdout).to_string();
    assert!(
        md.contains("> **Caution:** shapes-v2: n = 3 baseline models"),
        "{md}"
    );
}

#[test]
fn the_headline_of_a_small_run_says_the_line_is_not_reliable() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = run_demo(&dir.path().join("r"), &["std-s", "std-m", "std-l"]);
    let headline = &stdout[stdout.find("Trend fit").expect("a headline")..];
    assert!(
        headline.contains("Caution: shapes-v2: n = 3 baseline models (fewer than 5)"),
        "{headline}"
    );
    assert!(headline.contains("the line is not reliable"), "{headline}");
}

#[test]
fn flat_wnid_named_files_get_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("val");
    for (f, c) in [
        ("n01440764_tench.JPEG", 0),
        ("n01440764_10026.JPEG", 0),
        ("n01443537_goldfish.png", 1),
    ] {
        probe_image(&root.join(f), c, 0);
    }
    let manifest = dir.path().join("manifest.csv");
    bin()
        .args(["manifest", "imagenet", "--root"])
        .arg(&root)
        .arg("--out")
        .arg(&manifest)
        .assert()
        .success()
        .stderr(predicate::str::contains("labels taken from the file names"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut rows: Vec<&str> = text.lines().skip(1).collect();
    rows.sort();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows.iter()
            .any(|r| r.contains("n01443537_goldfish.png") && r.ends_with(",n01443537")),
        "{text}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.ends_with(",n01440764")).count(),
        2,
        "{text}"
    );
    // One file not named after a wnid: the files seen are named, and --ground-truth.
    probe_image(&root.join("ILSVRC2012_val_00000001.JPEG"), 0, 0);
    bin()
        .args(["manifest", "imagenet", "--root"])
        .arg(&root)
        .arg("--out")
        .arg(&manifest)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(
                "4 image files at the top level, 1 of them not named after a wnid",
            )
            .and(predicate::str::contains("ILSVRC2012_val_00000001.JPEG"))
            .and(predicate::str::contains("--ground-truth")),
        );
}

#[test]
fn a_bare_onnx_or_partial_preprocess_is_refused_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.onnx");
    std::fs::copy(root().join("demo/models/std-s.onnx"), &bare).unwrap();
    bin()
        .args(["run", "--suite", "demo", "--progress", "none", "--models"])
        .arg(&bare)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("bare.onnx")
                .and(predicate::str::contains("no model card"))
                .and(predicate::str::contains("--assume-imagenet-preprocessing"))
                .and(predicate::str::contains("bare.toml")),
        );
    assert!(
        !dir.path().join("out/evals.csv").exists(),
        "nothing was run"
    );
    // A card whose [preprocess] gives the mean only: refused, naming what it lacks.
    let card = dir.path().join("partial.toml");
    std::fs::write(
        &card,
        "name = \"partial\"\nonnx = \"bare.onnx\"\n[preprocess]\nmean = [0.5, 0.5, 0.5]\n[output]\nnum_classes = 10\n",
    )
    .unwrap();
    bin()
        .args(["run", "--suite", "demo", "--progress", "none", "--models"])
        .arg(&card)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("partial.toml")
                .and(predicate::str::contains("field `preprocess`"))
                .and(predicate::str::contains("resize, crop, interpolation, std"))
                .and(predicate::str::contains("defaults = \"imagenet\"")),
        );
    // With the flag the defaults are taken, and the warning is printed under --progress none.
    // (The demo model takes 32×32 images: ImageNet's crop 224 then fails the input check.)
    bin()
        .args([
            "run",
            "--assume-imagenet-preprocessing",
            "--suite",
            "demo",
            "--progress",
            "none",
            "--models",
        ])
        .arg(&bare)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .stderr(
            predicate::str::contains("warning: ").and(predicate::str::contains(
                "assuming ImageNet's preprocessing",
            )),
        );
}
