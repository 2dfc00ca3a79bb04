//! Unlabelled datasets end to end through the real binary: the demo's 18 models on a suite whose
//! shift `field` is the demo's V2 images with no `label` column, `blank` the sketch images with
//! every label empty, and `rendition` labelled but marked `labels = false`. Their predictions and
//! confidences are stored, their accuracy fields are empty (never 0), `fit` and the report show
//! them only through estimates, `estimate` gives them the same estimates as the labelled copy of
//! the same images, and a rerun resumes (the `labels` mark is part of a pair's key).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use predicates::prelude::*;

fn demo_data(part: &str) -> PathBuf {
    root().join("demo").join("data").join(part)
}

/// A manifest of the demo dataset `part`'s images (absolute paths, the same order) with the
/// header `header` and each row's label column written by `label`.
fn relabelled_manifest(part: &str, to: &Path, header: &str, label: &dyn Fn(&str) -> String) {
    let text = std::fs::read_to_string(demo_data(part).join("manifest.csv")).unwrap();
    let mut out = format!("{header}\n");
    for line in text.lines().skip(1) {
        let (path, l) = line.split_once(',').unwrap();
        out.push_str(&format!(
            "{}{}\n",
            demo_data(part).join(path).display(),
            label(l)
        ));
    }
    std::fs::write(to, out).unwrap();
}

fn write_suite(dir: &Path, rendition_labels: &str) -> PathBuf {
    relabelled_manifest("v2", &dir.join("field.csv"), "path", &|_| String::new());
    relabelled_manifest("sketch", &dir.join("blank.csv"), "path,label", &|_| {
        ",".into()
    });
    let suite = dir.join("suite.toml");
    let manifest = |p: &str| demo_data(p).join("manifest.csv").display().to_string();
    std::fs::write(
        &suite,
        format!(
            "name = \"unlabelled\"\nid = \"shapes\"\nmodels = \"{models}\"\nbaseline = \"group:standard\"\n\
             [datasets.shapes]\nmanifest = \"{id}\"\nscoring = \"all-classes\"\n\
             [datasets.shapes-v2]\nmanifest = \"{v2}\"\nscoring = \"all-classes\"\n\
             [datasets.field]\nmanifest = \"{field}\"\nscoring = \"all-classes\"\n\
             [datasets.blank]\nmanifest = \"{blank}\"\nscoring = \"all-classes\"\n\
             [datasets.rendition]\nmanifest = \"{rendition}\"\nscoring = \"all-classes\"\n{rendition_labels}",
            models = root().join("demo").join("models").display(),
            id = manifest("id"),
            v2 = manifest("v2"),
            field = dir.join("field.csv").display(),
            blank = dir.join("blank.csv").display(),
            rendition = manifest("rendition"),
        ),
    )
    .unwrap();
    suite
}

/// The suite run once; tests that change the folder work on a copy.
fn results() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target").join("test-unlabelled");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let suite = write_suite(&dir, "labels = false\n");
        bin()
            .args(["run", "--progress", "none", "--suite"])
            .arg(&suite)
            .arg("--out")
            .arg(dir.join("out"))
            .assert()
            .success();
        dir
    })
}

type Table = Vec<BTreeMap<String, String>>;

fn read_csv(path: &Path) -> Table {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.deserialize().map(|r| r.unwrap()).collect()
}

const UNLABELLED: [&str; 3] = ["field", "blank", "rendition"];

#[test]
fn unlabelled_rows_have_empty_accuracy_fields_and_stored_predictions() {
    let out = results().join("out");
    let evals = read_csv(&out.join("evals.csv"));
    assert_eq!(evals.len(), 18 * 5, "18 models × 5 datasets");
    for r in &evals {
        let unlabelled = UNLABELLED.contains(&r["dataset"].as_str());
        for field in ["correct", "top1", "top5", "top1_ci_low", "top1_ci_high"] {
            assert_eq!(
                r[field].is_empty(),
                unlabelled,
                "{field} of {} on {}: `{}`",
                r["model"],
                r["dataset"],
                r[field]
            );
        }
        let images = if r["dataset"] == "shapes" {
            "500"
        } else {
            "300"
        };
        assert_eq!(r["n"], images, "every image predicted: {r:?}");
    }
    // The same images, labelled or not, get the same predictions and confidences.
    for model in ["std-s", "robust-l", "finetuned"] {
        let read = |view: &str| {
            robust_eval::results::store::read_predictions(
                &out.join("predictions")
                    .join(model)
                    .join(format!("{view}.parquet")),
            )
            .unwrap()
        };
        let (field, v2) = (read("field"), read("shapes-v2"));
        assert_eq!(field.height(), 300);
        for column in ["top5", "confidence", "entropy", "index"] {
            assert!(
                field
                    .column(column)
                    .unwrap()
                    .equals(v2.column(column).unwrap()),
                "{model}: `{column}` of field differs from shapes-v2's"
            );
        }
        for column in ["correct", "correct_top5", "target"] {
            assert_eq!(
                field.column(column).unwrap().null_count(),
                300,
                "{model}: `{column}` of an unlabelled dataset is null"
            );
            assert_eq!(v2.column(column).unwrap().null_count(), 0);
        }
    }
}

#[test]
fn estimates_of_an_unlabelled_copy_equal_those_of_the_labelled_one() {
    let out = results().join("out");
    let estimates = read_csv(&out.join("estimates.csv"));
    let of = |dataset: &str| -> BTreeMap<(String, String), (String, String, String)> {
        estimates
            .iter()
            .filter(|r| r["dataset"] == dataset)
            .map(|r| {
                (
                    (r["model"].clone(), r["method"].clone()),
                    (
                        r["estimate"].clone(),
                        r["top1"].clone(),
                        r["trusted"].clone(),
                    ),
                )
            })
            .collect()
    };
    let (field, v2) = (of("field"), of("shapes-v2"));
    assert_eq!(field.len(), 18 * 6, "18 models × 6 methods");
    assert_eq!(
        field.keys().collect::<Vec<_>>(),
        v2.keys().collect::<Vec<_>>()
    );
    for (key, (estimate, top1, trusted)) in &field {
        let (v2_estimate, v2_top1, v2_trusted) = &v2[key];
        assert_eq!((estimate, trusted), (v2_estimate, v2_trusted), "{key:?}");
        assert!(top1.is_empty(), "{key:?}: no true top-1 without labels");
        assert!(!v2_top1.is_empty());
    }
    for dataset in UNLABELLED {
        assert!(estimates
            .iter()
            .filter(|r| r["dataset"] == dataset)
            .all(|r| r["top1"].is_empty() && r["error"].is_empty()));
    }
    // Calibration needs labels: none for the unlabelled datasets.
    let calibration = read_csv(&out.join("calibration.csv"));
    assert!(!calibration.is_empty());
    assert!(calibration
        .iter()
        .all(|r| !UNLABELLED.contains(&r["dataset"].as_str())));
}

#[test]
fn fit_and_report_show_unlabelled_datasets_only_through_estimates() {
    let out = results().join("out");
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fit.json")).unwrap()).unwrap();
    let shifts: Vec<&str> = fit["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shift"].as_str().unwrap())
        .collect();
    assert_eq!(shifts, ["shapes-v2"], "fitted on the labelled shift only");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let mut heading = "";
    let mut seen_in_estimates = false;
    for line in report.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h;
            continue;
        }
        if UNLABELLED
            .iter()
            .any(|d| line.contains(&format!("| {d} |")))
        {
            assert!(
                heading.starts_with("Estimated") || heading.starts_with("Agreement"),
                "an unlabelled dataset in section `{heading}`: {line}"
            );
            seen_in_estimates |= heading.starts_with("Estimated accuracy");
        }
    }
    assert!(
        seen_in_estimates,
        "the estimates of unlabelled datasets are in the report"
    );
}

#[test]
fn a_rerun_resumes_and_the_labels_mark_is_part_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for entry in walk(&results().join("out")) {
        let to = out.join(entry.strip_prefix(results().join("out")).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let before = std::fs::read(out.join("evals.csv")).unwrap();
    let suite = write_suite(dir.path(), "labels = false\n");
    let run = |suite: &Path| {
        let a = bin()
            .args(["run", "--progress", "none", "--suite"])
            .arg(suite)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(out.join("run.json")).unwrap())
            .unwrap();
        String::from_utf8_lossy(&a.get_output().stderr).to_string()
    };
    run(&suite);
    assert_eq!(
        std::fs::read(out.join("evals.csv")).unwrap(),
        before,
        "nothing evaluated again, evals.csv as it was"
    );
    // The same rendition manifest now read as labelled: only its 18 pairs are evaluated again.
    let suite = write_suite(dir.path(), "");
    run(&suite);
    let evals = read_csv(&out.join("evals.csv"));
    let before = {
        let mut reader = csv::Reader::from_reader(before.as_slice());
        reader.deserialize().map(|r| r.unwrap()).collect::<Table>()
    };
    for (now, was) in evals.iter().zip(&before) {
        assert_eq!(
            (&now["model"], &now["dataset"]),
            (&was["model"], &was["dataset"])
        );
        if now["dataset"] == "rendition" {
            assert!(!now["top1"].is_empty(), "rendition now has labels: {now:?}");
        } else {
            assert_eq!(now, was, "a pair whose key did not change was kept");
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

#[test]
fn bad_label_setups_are_refused_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), "");
    let run = |suite: &Path| {
        bin()
            .args(["run", "--progress", "none", "--suite"])
            .arg(suite)
            .arg("--out")
            .arg(dir.path().join("out"))
            .assert()
    };
    // Some rows labelled, one not.
    let blank = dir.path().join("blank.csv");
    let text = std::fs::read_to_string(&blank).unwrap();
    let mixed: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || i == 3 {
                format!("{l}\n")
            } else {
                format!("{l}1\n")
            }
        })
        .collect();
    std::fs::write(&blank, mixed).unwrap();
    run(&suite).code(2).stderr(
        predicate::str::contains(format!("{}:4: field `label`", blank.display()))
            .and(predicate::str::contains("empty label")),
    );
    // `labels = true` on a manifest without labels.
    let suite = write_suite(dir.path(), "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("[datasets.blank]\n", "[datasets.blank]\nlabels = true\n");
    std::fs::write(&suite, text).unwrap();
    run(&suite).code(2).stderr(
        predicate::str::contains(format!("{}:1: field `label`", blank.display()))
            .and(predicate::str::contains("marked `labels = true`")),
    );
    // The ID set without labels.
    let suite = write_suite(dir.path(), "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("[datasets.shapes]\n", "[datasets.shapes]\nlabels = false\n");
    std::fs::write(&suite, text).unwrap();
    run(&suite).code(2).stderr(
        predicate::str::contains("field `datasets.shapes.labels`").and(predicate::str::contains(
            "in-distribution dataset `shapes` has no labels",
        )),
    );
    assert!(!dir.path().join("out").join("evals.csv").exists());
}

/// `<circle>` elements drawn without fill (hollow) in an SVG.
fn hollow_circles(svg: &str) -> usize {
    svg.split("<circle")
        .skip(1)
        .filter(|c| {
            let tag = &c[..c.find('>').unwrap()];
            tag.contains("fill=\"none\"")
        })
        .count()
}

#[test]
fn estimates_are_hollow_points_on_the_charts_with_a_legend_and_tooltips() {
    let out = results().join("out");
    // The unlabelled shift's own chart: 18 hollow estimates (ALine-D), no measured point.
    let field = std::fs::read_to_string(out.join("plots").join("field.svg")).unwrap();
    assert!(
        hollow_circles(&field) >= 18,
        "{} hollow",
        hollow_circles(&field)
    );
    assert!(
        field.contains("estimated (ALine-D), hollow"),
        "legend entry"
    );
    assert!(
        field.contains("no labels: ALine-D estimates"),
        "title says so"
    );
    let tips = field.matches("estimated without labels (ALine-D)").count();
    assert_eq!(tips, 18, "one tooltip per estimate");
    assert!(field.contains("estimated effective robustness: "));
    // The labelled shift: measured (filled) points and the estimates beside them, hollow.
    let v2 = std::fs::read_to_string(out.join("plots").join("shapes-v2.svg")).unwrap();
    assert!(hollow_circles(&v2) >= 18);
    assert!(
        v2.contains("measured OOD top-1: "),
        "an estimate's tooltip names the truth"
    );
    // The HTML report inlines both, the unlabelled one captioned as estimated.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("field (no labels: estimated)"));
    assert!(html.contains("estimated (ALine-D), hollow"));
}

#[test]
fn gate_on_an_estimate_says_it_is_one() {
    let base = results().join("out");
    let dir = tempfile::tempdir().unwrap();
    let cand = dir.path().join("cand");
    for entry in walk(&base) {
        let to = cand.join(entry.strip_prefix(&base).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let gate = |extra: &[&str]| {
        bin()
            .args(["gate", "--accuracy-only", "--baseline"])
            .arg(&base)
            .arg("--candidate")
            .arg(&cand)
            .args(extra)
            .assert()
    };
    // Without --estimate the unlabelled datasets are named as not gated.
    gate(&[]).success().stdout(predicate::str::contains(
        "not gated, no labels: blank, field, rendition",
    ));
    // The candidate's ATC-MC estimate of std-s on `field` 5 pp lower: an estimated drop.
    let path = cand.join("estimates.csv");
    let mut rows = read_csv(&path);
    let mut before = 0.0;
    for r in rows.iter_mut() {
        if r["model"] == "std-s" && r["dataset"] == "field" && r["method"] == "ATC-MC" {
            before = r["estimate"].parse::<f64>().unwrap();
            *r.get_mut("estimate").unwrap() = format!("{}", before - 5.0);
        }
    }
    assert!(before > 0.0);
    let header = robust_eval::analysis::estimate::ESTIMATES_HEADER;
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(header).unwrap();
    for r in &rows {
        writer
            .write_record(header.iter().map(|h| r[*h].as_str()))
            .unwrap();
    }
    writer.flush().unwrap();
    let json = gate(&["--estimate", "ATC-MC", "--json"]).code(1);
    let report: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let estimated: Vec<&serde_json::Value> = checks
        .iter()
        .filter(|c| c["rule"] == "top1 estimated (ATC-MC)")
        .collect();
    assert_eq!(estimated.len(), 18 * 3, "18 models × 3 unlabelled datasets");
    let failed: Vec<&&serde_json::Value> = estimated
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0]["candidate_model"].as_str(),
            failed[0]["dataset"].as_str()
        ),
        (Some("std-s"), Some("field"))
    );
    assert!((failed[0]["change"].as_f64().unwrap() + 5.0).abs() < 1e-9);
    assert!(failed[0]["note"].as_str().unwrap().contains("an estimate"));
    // No measured check on an unlabelled dataset.
    assert!(checks
        .iter()
        .filter(|c| c["rule"] == "top1")
        .all(|c| !UNLABELLED.contains(&c["dataset"].as_str().unwrap())));
    // The table says it too.
    gate(&["--estimate", "ATC-MC"]).code(1).stdout(
        predicate::str::contains("top1 estimated (ATC-MC)").and(predicate::str::contains(
            "an estimate: top-1 estimated by ATC-MC without labels",
        )),
    );
    gate(&["--estimate", "guess"])
        .code(2)
        .stderr(predicate::str::contains("--estimate guess: not a method"));
}

#[test]
fn reliability_diagrams_one_per_model_and_labelled_view_with_a_tooltip_per_bin() {
    let out = results().join("out");
    let calibration = read_csv(&out.join("calibration.csv"));
    let bins = read_csv(&out.join("reliability.csv"));
    // The bins add up to calibration.csv: every image in one bin, and ECE their weighted gap.
    for c in &calibration {
        let mine: Vec<&BTreeMap<String, String>> = bins
            .iter()
            .filter(|b| b["model"] == c["model"] && b["dataset"] == c["dataset"])
            .collect();
        let f = |r: &BTreeMap<String, String>, k: &str| r[k].parse::<f64>().unwrap();
        let n: f64 = mine.iter().map(|b| f(b, "n")).sum();
        assert_eq!(n, f(c, "n"), "{c:?}");
        let ece: f64 = mine
            .iter()
            .map(|b| f(b, "n") / n * (f(b, "accuracy") - f(b, "confidence")).abs())
            .sum();
        assert!(
            (ece - f(c, "ece")).abs() < 1e-9,
            "{c:?}: ECE {ece} from the bins"
        );
    }
    assert!(bins
        .iter()
        .all(|b| !UNLABELLED.contains(&b["dataset"].as_str())));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h2>Reliability diagrams</h2>"));
    let diagrams = html
        .matches("<figure class=\"reliability-diagram\">")
        .count();
    assert_eq!(
        diagrams,
        calibration.len(),
        "one per model and labelled view"
    );
    // Two shapes per bin carry its tooltip (accuracy bar, share bar), with its image count.
    let tips = html.matches("<rect class=\"bin\"").count();
    assert_eq!(tips, bins.len());
    let b = &bins[0];
    assert!(html.contains(&format!("{} on {}\nconfidence (", b["model"], b["dataset"])));
    assert!(html.contains(&format!(": {} images (", b["n"])));
}
