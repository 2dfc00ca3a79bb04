//! WiSE-FT curves and soups out of the box: the demo suite's zero-shot / fine-tuned pair, its
//! WiSE-FT family and uniform soup, through the real binary: run.json keeps each card's
//! `[intervention]`, the fit leaves them out of the baseline, the charts draw the curve and the
//! soup, and the reports name each family's α of highest ID top-1 and effective robustness (read
//! off the test sets), and, given a held-out dataset, the α chosen on it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// Average effective robustness per model, from robustness.csv.
fn average_er(dir: &Path) -> BTreeMap<String, f64> {
    let mut reader = csv::Reader::from_path(dir.join("robustness.csv")).unwrap();
    reader
        .deserialize::<BTreeMap<String, String>>()
        .map(|r| r.unwrap())
        .filter(|r| r["shift"] == "average")
        .map(|r| {
            (
                r["model"].clone(),
                r["effective_robustness"].parse().unwrap(),
            )
        })
        .collect()
}

/// Baseline model names per shift, from a fit's JSON.
fn baselines(fit: &serde_json::Value) -> Vec<Vec<String>> {
    fit["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["baseline_models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_demo_draws_a_wise_ft_curve_above_the_line_and_a_soup() {
    let out = tempfile::tempdir().unwrap();
    bin()
        .args(["run", "--suite", "demo", "--progress", "none", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let dir = out.path();

    // run.json carries the cards' tables; the baseline is the standard models alone.
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let models = run["models"].as_object().unwrap();
    assert_eq!(models["wiseft-a0.50"]["intervention"]["alpha"], 0.5);
    assert_eq!(models["soup-uniform"]["intervention"]["kind"], "soup");
    assert!(!models.contains_key("std-l") && !models.contains_key("zeroshot"));
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fit.json")).unwrap()).unwrap();
    for s in fit["shifts"].as_array().unwrap() {
        let names = s["baseline_models"].as_array().unwrap();
        assert!(
            names
                .iter()
                .all(|n| n.as_str().unwrap().starts_with("std-")),
            "{names:?}"
        );
    }

    // `fit` on the evals.csv alone (no run.json, so no cards' [intervention]): an `all` baseline
    // still leaves the wise-ft and soup groups out, with the same note.
    let (alone, with) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (folder, files) in [
        (&alone, &["evals.csv"][..]),
        (&with, &["evals.csv", "run.json"]),
    ] {
        for f in files {
            std::fs::copy(dir.join(f), folder.path().join(f)).unwrap();
        }
    }
    let fitted = |d: &Path| {
        let out = bin()
            .args([
                "fit",
                "--json",
                "--id",
                "shapes",
                "--baseline",
                "all",
                "--results",
            ])
            .arg(d)
            .assert()
            .success();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        (baselines(&json), stderr)
    };
    let (with_run, note_with) = fitted(with.path());
    let (without_run, note_without) = fitted(alone.path());
    assert_eq!(with_run, without_run);
    for names in &without_run {
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with("wiseft") && !n.starts_with("soup")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "zeroshot"), "{names:?}");
    }
    assert!(
        note_without.contains("left out of the baseline: 6 model(s)"),
        "{note_without}"
    );
    assert_eq!(note_with, note_without);

    // The curve bulges: its middle is more effectively robust than the endpoints' mean, and
    // above the line.
    let er = average_er(dir);
    let ends = (er["zeroshot"] + er["finetuned"]) / 2.0;
    assert!(
        er["wiseft-a0.50"] > ends,
        "α 0.5: {} vs endpoints' mean {ends}",
        er["wiseft-a0.50"]
    );
    assert!(
        er["wiseft-a0.50"] > 0.0 && er["soup-uniform"] > 0.0,
        "{er:?}"
    );

    // Reports: the family with its α readings, and the soup.
    let report: serde_json::Value = serde_json::from_slice(
        &bin()
            .args(["report", "--format", "json", "--results"])
            .arg(dir)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let family = &report["wise_ft"][0];
    assert_eq!(family["family"], "wiseft");
    assert_eq!(
        family["endpoints"],
        serde_json::json!(["zeroshot", "finetuned"])
    );
    let alphas: Vec<f64> = family["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alpha"].as_f64().unwrap())
        .collect();
    assert_eq!(alphas, [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0]);
    let best = &family["highest_effective_robustness"];
    let top = er
        .iter()
        .filter(|(m, _)| m.starts_with("wiseft") || *m == "zeroshot" || *m == "finetuned")
        .map(|(_, v)| *v)
        .fold(f64::MIN, f64::max);
    assert_eq!(best["average_effective_robustness"].as_f64().unwrap(), top);
    assert_eq!(report["soups"][0]["members"].as_array().unwrap().len(), 3);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## WiSE-FT: wiseft")
            && md.contains("highest average effective robustness α = ")
            && md.contains("| α | model | shapes top-1 | average OOD top-1 | average ER |")
            && !md.contains("Best "),
        "{md}"
    );
    assert!(
        md.contains("| uniform | soup-uniform | finetuned, finetuned-2, finetuned-3 |"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<h2>WiSE-FT: wiseft</h2>") && html.contains("<h2>Model soups</h2>"));

    // Each point's average OOD top-1 is the mean of its shifts' top-1, as the paper plots it.
    let mid = family["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["alpha"] == 0.5)
        .unwrap();
    let rows = evals(dir);
    let shifts = ["shapes-v2", "shapes-sketch", "shapes-rendition"];
    let mean = shifts
        .iter()
        .map(|s| row(&rows, "wiseft-a0.50", s).top1)
        .sum::<f64>()
        / shifts.len() as f64;
    assert!((mid["average_ood_top1"].as_f64().unwrap() - mean).abs() < 1e-9);

    // Every shift's chart and the grid: the curve's legend entry, ringed ends, the soup.
    for chart in [
        "shapes-v2",
        "shapes-sketch",
        "shapes-rendition",
        "all-shifts",
    ] {
        let svg = std::fs::read_to_string(dir.join("plots").join(format!("{chart}.svg"))).unwrap();
        for text in [
            "WiSE-FT wiseft",
            "zero-shot (α = 0)",
            "fine-tuned (α = 1)",
            "soup: soup-uniform (uniform)",
        ] {
            assert!(svg.contains(text), "{chart}: no `{text}`");
        }
    }

    // Given a held-out dataset (shapes-v2 stands in for a split of the training set), the
    // report marks the α of highest top-1 there as chosen on held-out data, and that dataset is
    // no longer a shift: the average OOD top-1 is over the other two.
    let held: serde_json::Value = serde_json::from_slice(
        &bin()
            .args(["report", "--format", "json", "--held-out", "shapes-v2"])
            .arg("--results")
            .arg(dir)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let family = &held["wise_ft"][0];
    assert_eq!(family["held_out"], "shapes-v2");
    assert!(!held["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "shapes-v2"));
    let points = family["points"].as_array().unwrap();
    let top1 = |p: &serde_json::Value| row(&rows, p["model"].as_str().unwrap(), "shapes-v2").top1;
    let highest = points.iter().map(top1).fold(f64::MIN, f64::max);
    // Of equals, the smallest α (points are in α order).
    let first = points.iter().find(|p| top1(p) == highest).unwrap();
    assert_eq!(family["chosen_on_held_out"]["alpha"], first["alpha"]);
    assert_eq!(
        family["chosen_on_held_out"]["held_out_top1"]
            .as_f64()
            .unwrap(),
        highest
    );
    let mid = points.iter().find(|p| p["alpha"] == 0.5).unwrap();
    let mean = ["shapes-sketch", "shapes-rendition"]
        .iter()
        .map(|s| row(&rows, "wiseft-a0.50", s).top1)
        .sum::<f64>()
        / 2.0;
    assert!((mid["average_ood_top1"].as_f64().unwrap() - mean).abs() < 1e-9);
    bin()
        .args(["report", "--held-out", "shapes-v2", "--results"])
        .arg(dir)
        .assert()
        .success();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let chosen = format!(
        "Chosen on the held-out dataset shapes-v2: α = {:.2} ({}, ",
        first["alpha"].as_f64().unwrap(),
        first["model"].as_str().unwrap()
    );
    assert!(md.contains(&chosen) && md.contains(" ✓ | "), "{md}");
    // The ID test set is no held-out data; a dataset the results lack is named with the file.
    for (name, says) in [("shapes", "in-distribution"), ("nope", "evals.csv")] {
        let refused = bin()
            .args(["report", "--held-out", name, "--results"])
            .arg(dir)
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}
