//! Confidence under shift: `estimate` on the demo suite's stored predictions (18 real ONNX models,
//! an ID set and three shifts) equals an independent computation in Python (numpy, scipy and
//! pyarrow over the same Parquet files); ALine refused with its reason where it cannot run; old
//! folders without confidences named and run again; datasets whose models read different images
//! refused.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use predicates::prelude::*;

/// The demo suite run once for every test here; each test works on its own copy.
fn demo_results() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target").join("test-estimate-demo");
        let _ = std::fs::remove_dir_all(&dir);
        bin()
            .args(["run", "--suite", "demo", "--progress", "none", "--out"])
            .arg(&dir)
            .assert()
            .success();
        dir
    })
}

fn copy_of_demo() -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    copy_dir(demo_results(), to.path());
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

type Table = Vec<BTreeMap<String, String>>;

fn read_csv(path: &Path) -> Table {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.deserialize().map(|r| r.unwrap()).collect()
}

fn python_reference(dir: &Path) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join("tests/reference/estimate_reference.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python reference failed (scripts/setup.sh --test installs pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(ours: &str, theirs: &serde_json::Value, what: &str) {
    let ours: f64 = ours
        .parse()
        .unwrap_or_else(|_| panic!("{what}: `{ours}` is no number"));
    let theirs = theirs.as_f64().unwrap();
    assert!(
        (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0),
        "{what}: ours {ours}, Python's {theirs}"
    );
}

#[test]
fn estimates_and_calibration_equal_an_independent_python_computation() {
    let dir = copy_of_demo();
    bin()
        .args(["estimate", "--results"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("agreement line over"));
    let reference = python_reference(dir.path());

    let estimates = read_csv(&dir.path().join("estimates.csv"));
    let expected = reference["estimates"].as_array().unwrap();
    assert_eq!(
        estimates.len(),
        expected.len(),
        "as many estimates as Python's"
    );
    let methods: std::collections::BTreeSet<&str> =
        estimates.iter().map(|r| r["method"].as_str()).collect();
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["AC", "ALine-D", "ALine-S", "ATC-MC", "ATC-NE", "DoC"]
    );
    for e in expected {
        let key = |r: &BTreeMap<String, String>| {
            r["model"] == e["model"].as_str().unwrap()
                && r["dataset"] == e["dataset"].as_str().unwrap()
                && r["method"] == e["method"].as_str().unwrap()
        };
        let ours = estimates
            .iter()
            .find(|r| key(r))
            .unwrap_or_else(|| panic!("no row {e}"));
        close(&ours["estimate"], &e["estimate"], &format!("estimate {e}"));
        close(&ours["top1"], &e["top1"], &format!("top1 {e}"));
    }

    let calibration = read_csv(&dir.path().join("calibration.csv"));
    let expected = reference["calibration"].as_array().unwrap();
    assert_eq!(calibration.len(), expected.len());
    for e in expected {
        let ours = calibration
            .iter()
            .find(|r| {
                r["model"] == e["model"].as_str().unwrap()
                    && r["dataset"] == e["dataset"].as_str().unwrap()
            })
            .unwrap();
        close(&ours["ece"], &e["ece"], &format!("ECE {e}"));
        close(&ours["brier"], &e["brier"], &format!("Brier {e}"));
        close(
            &ours["confidence"],
            &e["confidence"],
            &format!("confidence {e}"),
        );
    }
    // Calibration is not trivially 0: the demo's models are over- or under-confident somewhere.
    assert!(calibration
        .iter()
        .any(|r| r["ece"].parse::<f64>().unwrap() > 1.0));

    let lines = read_csv(&dir.path().join("agreement.csv"));
    for e in reference["agreement"].as_array().unwrap() {
        let ours = lines
            .iter()
            .find(|r| r["dataset"] == e["dataset"].as_str().unwrap())
            .unwrap();
        assert_eq!(ours["refused"].is_empty(), !e["refused"].as_bool().unwrap());
        if !ours["refused"].is_empty() {
            continue;
        }
        for field in ["slope", "intercept", "r2"] {
            close(&ours[field], &e[field], &format!("{field} of {e}"));
        }
        assert_eq!(ours["pairs"], e["pairs"].to_string());
    }
}

#[test]
fn aline_with_two_models_is_refused_and_the_other_methods_still_run() {
    let dir = copy_of_demo();
    bin()
        .args(["estimate", "--models", "^std-(s|m)$", "--results"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "shapes-v2: ALine needs at least 3 models; there are 2",
        ));
    let estimates = read_csv(&dir.path().join("estimates.csv"));
    assert!(estimates.iter().all(|r| !r["method"].starts_with("ALine")));
    assert_eq!(
        estimates.len(),
        2 * 3 * 4,
        "2 models × 3 shifts × AC, DoC, ATC-MC, ATC-NE"
    );
    let lines = read_csv(&dir.path().join("agreement.csv"));
    assert!(lines
        .iter()
        .all(|r| r["refused"].contains("at least 3 models")));
}

#[test]
fn predictions_without_confidences_are_named_and_run_again() {
    let dir = copy_of_demo();
    // An earlier robust-eval's file: the same predictions without the confidence columns.
    let file = dir.path().join("predictions/std-s/shapes-v2.parquet");
    let mut df = robust_eval::results::store::read_predictions(&file).unwrap();
    df = df.drop_many(["confidence", "entropy"]);
    let mut bytes = Vec::new();
    polars::prelude::ParquetWriter::new(&mut bytes)
        .finish(&mut df)
        .unwrap();
    std::fs::write(&file, bytes).unwrap();
    assert!(!robust_eval::results::store::has_confidences(&file));

    bin()
        .args(["estimate", "--results"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "shapes-v2: `std-s`: its predictions have no confidences",
        ));
    let estimates = read_csv(&dir.path().join("estimates.csv"));
    assert!(!estimates
        .iter()
        .any(|r| r["model"] == "std-s" && r["dataset"] == "shapes-v2"));
    assert!(estimates
        .iter()
        .any(|r| r["model"] == "std-s" && r["dataset"] == "shapes-sketch"));

    // A run over the folder evaluates that pair again, and only it.
    let out = bin()
        .args(["run", "--suite", "demo", "--progress", "plain", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stderr).to_string()
        + &String::from_utf8_lossy(&out.get_output().stdout);
    assert!(
        robust_eval::results::store::has_confidences(&file),
        "{text}"
    );
    assert!(text.contains("std-s · shapes-v2"), "{text}");
    assert!(!text.contains("std-m · shapes-v2"), "{text}");
}

#[test]
fn a_dataset_whose_models_read_different_images_is_refused() {
    let dir = copy_of_demo();
    let path = dir.path().join("run.json");
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for e in run["evaluations"].as_array_mut().unwrap() {
        if e["dataset"] == "shapes-sketch" && e["model"] == "std-s" {
            e["manifest_sha256"] = "0".repeat(64).into();
        }
    }
    std::fs::write(&path, serde_json::to_string(&run).unwrap()).unwrap();
    bin()
        .args(["estimate", "--results"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "shapes-sketch: the models read different images of `shapes-sketch`",
        ));
    let estimates = read_csv(&dir.path().join("estimates.csv"));
    assert!(!estimates.iter().any(|r| r["dataset"] == "shapes-sketch"));
    assert!(estimates.iter().any(|r| r["dataset"] == "shapes-v2"));

    // Nothing at all to estimate: exit 2 with the reason.
    let empty = tempfile::tempdir().unwrap();
    bin()
        .args(["estimate", "--results"])
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no run.json"));
}

/// The speed figure (docs/performance.md): `estimate` over 200 models × 10,000 images of an ID set
/// and one shift, predictions written by the results store itself. A benchmark that prints its
/// figure, not a timed test; heavy (4 million predictions), so run on request:
/// `cargo test --release --test estimate -- --ignored --nocapture speed`.
#[test]
#[ignore = "benchmark: 200 models x 10,000 images; run with --ignored"]
fn speed_at_200_models_and_10000_images() {
    use robust_eval::engine::preprocess::PreprocessSpec;
    use robust_eval::results::store::{EvalRow, Evaluation, Predictions, ResultsStore};
    let dir = tempfile::tempdir().unwrap();
    let (models, images, classes) = (200usize, 10_000usize, 1000u32);
    let mut store = ResultsStore::open_to_write(dir.path()).unwrap();
    store.run.id = "id".into();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let truth: Vec<u32> = (0..images).map(|i| (i as u32 * 7919) % classes).collect();
    for m in 0..models {
        for (dataset, skill) in [
            ("id", 0.5 + 0.45 * m as f64 / models as f64),
            ("shift", 0.2 + 0.5 * m as f64 / models as f64),
        ] {
            let mut p = Predictions::default();
            for (i, &t) in truth.iter().enumerate() {
                let right = (next() % 10_000) as f64 / 10_000.0 < skill;
                let top1 = if right {
                    t
                } else {
                    (next() % classes as u64) as u32
                };
                p.index.push(i as u32);
                p.path.push(format!("{i}.jpg"));
                p.label.push(t.to_string());
                p.target.push(t);
                p.top5.push(vec![top1]);
                p.correct.push(top1 == t);
                p.correct_top5.push(top1 == t);
                let conf = 0.3 + 0.6 * (next() % 1000) as f64 / 1000.0;
                p.confidence.push(conf);
                p.entropy.push(-(conf.ln()));
            }
            let correct = p.correct.iter().filter(|&&c| c).count() as u64;
            let model = format!("m{m:03}");
            let mut row = EvalRow {
                model: model.clone(),
                labelled: true,
                group: "g".into(),
                dataset: dataset.into(),
                n: 0,
                correct: 0,
                top1: 0.0,
                top5: None,
                top1_ci_low: 0.0,
                top1_ci_high: 0.0,
                failed: 0,
                skipped: 0,
                provider: "CPUExecutionProvider".into(),
                seconds: 1.0,
                images_per_s: 1.0,
            };
            row.set_counts(images as u64, correct, None);
            let evaluation = Evaluation {
                model,
                dataset: dataset.into(),
                views: vec![dataset.into()],
                scoring: "all-classes".into(),
                model_file: "m.onnx".into(),
                model_sha256: "0".repeat(64),
                model_setup: String::new(),
                manifest: "manifest.csv".into(),
                manifest_sha256: "1".repeat(64),
                preprocess: PreprocessSpec::imagenet_default(),
                border: 0,
                provider: "CPUExecutionProvider".into(),
                batch_size: 64,
                started: String::new(),
                finished: String::new(),
                seconds: 1.0,
                waiting_for_images: 0.0,
                rows: None,
                resize: Default::default(),
                execution: Default::default(),
                labelled: true,
            };
            store
                .record(evaluation, vec![row], Vec::new(), vec![(dataset.into(), p)])
                .unwrap();
        }
    }
    drop(store);
    let started = std::time::Instant::now();
    bin()
        .args(["estimate", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let seconds = started.elapsed().as_secs_f64();
    let estimates = read_csv(&dir.path().join("estimates.csv"));
    assert_eq!(estimates.len(), models * 6);
    println!(
        "estimate: {models} models x {images} images (ID + 1 shift, {} pairs): {seconds:.1} s on {} cores",
        models * (models - 1) / 2,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
}
