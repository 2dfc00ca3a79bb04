//! Trend fit, effective robustness, plots and reports: `fit` checked against scipy on timm's
//! published table, placement against a baseline cloud, charts and reports rendered and read back,
//! and bad evals.csv input rejected with file, line and column.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use predicates::prelude::*;

fn folder_with(evals: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("evals.csv"), evals).unwrap();
    dir
}

fn timm_folder() -> tempfile::TempDir {
    folder_with(&std::fs::read_to_string(root().join("assets/baselines/timm.csv")).unwrap())
}

fn scipy_fit(evals: &Path, transform: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join("tests/reference/fit_reference.py"))
        .arg(evals)
        .arg(transform)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn our_fit(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = bin()
        .args(["fit", "--json", "--results"])
        .arg(dir)
        .args(args)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

#[test]
fn fit_matches_scipy_on_timms_table() {
    let dir = timm_folder();
    for transform in ["probit", "logit"] {
        let ours = our_fit(dir.path(), &["--transform", transform, "--bootstrap", "50"]);
        let theirs = scipy_fit(&dir.path().join("evals.csv"), transform, &[]);
        let shifts = ours["shifts"].as_array().unwrap();
        assert_eq!(shifts.len(), 4, "V2, Sketch, R and A");
        for s in shifts {
            let name = s["shift"].as_str().unwrap();
            let t = &theirs[name];
            for key in ["slope", "intercept", "r2"] {
                let (a, b) = (s[key].as_f64().unwrap(), t[key].as_f64().unwrap());
                assert!(
                    (a - b).abs() < 1e-9,
                    "{transform} {name} {key}: ours {a}, scipy {b}"
                );
            }
            assert_eq!(s["n"], t["n"], "{name}");
            assert!(s["n"].as_u64().unwrap() > 1500);
        }
        let r = shifts.iter().find(|s| s["shift"] == "imagenet-r").unwrap();
        assert_eq!(
            r["id_dataset"], "imagenet@imagenet-r",
            "R is fitted against the 200-class ID point"
        );
        let a = shifts.iter().find(|s| s["shift"] == "imagenet-a").unwrap();
        assert_eq!(a["linear"], false);
    }
    // A baseline group restricts the fit to it.
    let ours = our_fit(
        dir.path(),
        &["--baseline", "group:standard", "--bootstrap", "20"],
    );
    let theirs = scipy_fit(
        &dir.path().join("evals.csv"),
        "probit",
        &["--group", "standard"],
    );
    let v2 = ours["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shift"] == "imagenetv2-matched-frequency")
        .unwrap();
    assert!(
        (v2["slope"].as_f64().unwrap()
            - theirs["imagenetv2-matched-frequency"]["slope"]
                .as_f64()
                .unwrap())
        .abs()
            < 1e-9
    );
    assert!(dir.path().join("robustness.csv").is_file());
}

#[test]
fn a_new_model_is_placed_against_a_published_cloud() {
    // Only model, dataset and top1: a user's own numbers.
    let dir = folder_with(
        "model,dataset,top1\nmine,imagenet,80.0\nmine,imagenetv2-matched-frequency,75.0\nmine,imagenet-r,60.0\nmine,imagenet@imagenet-r,85.0\n",
    );
    let fit = our_fit(
        dir.path(),
        &[
            "--baseline-cloud",
            "testbed",
            "--baseline",
            "group:standard",
            "--bootstrap",
            "200",
        ],
    );
    let shifts = fit["shifts"].as_array().unwrap();
    assert_eq!(shifts.len(), 2);
    let mut reader = csv::Reader::from_path(dir.path().join("robustness.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    for s in shifts {
        let shift = s["shift"].as_str().unwrap();
        let row = rows.iter().find(|r| &r[col("shift")] == shift).unwrap();
        assert_eq!(&row[col("model")], "mine");
        // expected = Φ(a·Φ⁻¹(id) + b), computed here from fit.json's line.
        let id: f64 = row[col("id_top1")].parse().unwrap();
        let z = statrs::distribution::ContinuousCDF::inverse_cdf(
            &statrs::distribution::Normal::new(0.0, 1.0).unwrap(),
            id / 100.0,
        );
        let expected = 100.0
            * statrs::distribution::ContinuousCDF::cdf(
                &statrs::distribution::Normal::new(0.0, 1.0).unwrap(),
                s["slope"].as_f64().unwrap() * z + s["intercept"].as_f64().unwrap(),
            );
        let er: f64 = row[col("effective_robustness")].parse().unwrap();
        let ood: f64 = row[col("ood_top1")].parse().unwrap();
        assert!((ood - expected - er).abs() < 1e-9, "{shift}");
        let (lo, hi): (f64, f64) = (
            row[col("er_low")].parse().unwrap(),
            row[col("er_high")].parse().unwrap(),
        );
        assert!(lo <= er && er <= hi, "{shift}: {lo} {er} {hi}");
        assert!(
            s["n"].as_u64().unwrap() > 50,
            "fitted on the cloud's standard models"
        );
    }
    let r = rows
        .iter()
        .find(|r| &r[col("shift")] == "imagenet-r")
        .unwrap();
    assert_eq!(&r[col("id_dataset")], "imagenet@imagenet-r");
    assert!(rows.iter().any(|r| &r[col("shift")] == "average"));
}

#[test]
fn plots_render_with_embedded_text_and_reports_read_back() {
    let out = tempfile::tempdir().unwrap();
    bin()
        .args(["run", "--suite", "demo", "--progress", "none", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let plots = out.path().join("plots");
    for name in [
        "shapes-sketch",
        "shapes-rendition",
        "shapes-v2",
        "all-shifts",
        "effective-robustness",
    ] {
        let png = image::open(plots.join(format!("{name}.png")))
            .unwrap_or_else(|e| panic!("{name}.png: {e}"))
            .to_rgb8();
        assert!(
            png.width() >= 600 && png.height() >= 300,
            "{name}: {}x{}",
            png.width(),
            png.height()
        );
        // The title is drawn with the embedded font: its band holds dark text pixels.
        let dark = (0..png.width())
            .flat_map(|x| (0..32).map(move |y| (x, y)))
            .filter(|&(x, y)| png.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(
            dark > 50,
            "{name}: no title text rendered ({dark} dark pixels)"
        );
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text"),
            "{name}.svg"
        );
    }
    let single = image::open(plots.join("shapes-sketch.png")).unwrap();
    assert_eq!((single.width(), single.height()), (900, 760));
    let svg = std::fs::read_to_string(plots.join("shapes-sketch.svg")).unwrap();
    assert!(
        svg.contains("shapes-sketch: slope")
            && svg.contains("robust-augmented")
            && svg.contains("y = x")
    );

    // Reports: Markdown, self-contained HTML with the charts inline, JSON for scripts.
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        md.contains("| shapes-sketch | shapes | 6 |"),
        "fit on the suite's baseline (the 6 standard models): {md}"
    );
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("class=\"sortable\"") && html.contains("robust-l")
    );
    assert!(!html.contains("src=\"http"), "self-contained");
    let json = bin()
        .args(["report", "--format", "json", "--results"])
        .arg(out.path())
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    let robust = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "robust-l")
        .unwrap();
    assert!(
        robust["shifts"]["shapes-sketch"]["effective_robustness"]
            .as_f64()
            .unwrap()
            > 5.0,
        "the robust model sits above the line"
    );
    assert_eq!(
        report["provenance"]["onnxruntime_version"]
            .as_str()
            .unwrap()
            .chars()
            .next(),
        Some('1')
    );
}

#[test]
fn bad_evals_are_rejected_with_file_line_and_column() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("model,top1\nm,50\n", &[], "evals.csv:1: field `dataset`"),
        (
            "model,dataset,top1\na,imagenet,50\na,v2,fifty\n",
            &[],
            "evals.csv:3: field `top1`",
        ),
        (
            "model,dataset,top1\na,imagenet,50\na,v2,101\n",
            &[],
            "evals.csv:3: field `top1`",
        ),
        (
            "model,dataset,top1\na,imagenet,50\na,v2,40\nb,imagenet,60\nb,v2,50\n",
            &[],
            "fit needs at least 3",
        ),
        (
            "model,group,dataset,top1\na,standard,imagenet,50\na,standard,v2,40\n",
            &["--baseline", "group:robust"],
            "no model is in group `robust`",
        ),
    ];
    for (evals, args, message) in cases {
        let dir = folder_with(evals);
        bin()
            .args(["fit", "--results"])
            .arg(dir.path())
            .args(args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(message).and(predicate::str::contains("panicked").not()),
            );
    }
    let missing: PathBuf = tempfile::tempdir().unwrap().path().join("nothing");
    bin()
        .args(["plot", "--results"])
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no evals.csv"));
}
