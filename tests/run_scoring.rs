//! End-to-end `robust-eval run` over every scoring rule, with real ONNX Runtime and real image files.
//! The probe model (tests/fixtures/probe.onnx) predicts the class encoded in an image's colour, so
//! each expected count below follows from the images alone.

mod common;

use std::path::Path;

use common::*;

fn build_suite(dir: &Path) {
    scoring_suite(dir);
}

fn run(dir: &Path, out: &Path) -> assert_cmd::assert::Assert {
    run_with(dir, out, &[])
}

fn run_with(dir: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .args(["run", "--suite"])
        .arg(dir.join("suite.toml"))
        .arg("--models")
        .arg(dir.join("models"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--out")
        .arg(out)
        .args([
            "--provider",
            "cpu",
            "--batch-size",
            "2",
            "--progress",
            "plain",
        ])
        .args(extra)
        .assert()
}

#[test]
fn every_scoring_rule_and_class_restricted_id_rows() {
    let dir = tempfile::tempdir().unwrap();
    build_suite(dir.path());
    let out = dir.path().join("results");
    run(dir.path(), &out).success();
    let rows = evals(&out);
    let expect = |dataset: &str, n: u64, correct: u64| {
        let r = row(&rows, "probe", dataset);
        assert_eq!((r.n, r.correct), (n, correct), "{dataset}: {r:?}");
        assert!((r.top1 - 100.0 * correct as f64 / n as f64).abs() < 1e-9);
        assert!(r.top1_ci_low <= r.top1 && r.top1 <= r.top1_ci_high);
        assert_eq!(r.provider, "CPUExecutionProvider");
    };
    expect("imagenet", 7, 4);
    expect("imagenet@imagenet-r", 3, 3);
    expect("imagenet@imagenet-a", 2, 2);
    expect("imagenet@objectnet", 2, 2);
    expect("imagenet-r", 3, 2);
    expect("imagenet-a", 3, 2);
    expect("objectnet", 3, 2);
    let on = row(&rows, "probe", "objectnet");
    assert_eq!(
        (on.skipped, on.failed),
        (1, 0),
        "unmapped folder skipped, never read"
    );
    assert_eq!(rows.len(), 7);

    // Per-image predictions: top-5 ids and correctness, in manifest order.
    let preds = robust_eval::results::store::read_predictions(
        &out.join("predictions/probe/imagenet-r.parquet"),
    )
    .unwrap();
    assert_eq!(preds.height(), 3);
    let correct_col = preds.column("correct").unwrap().bool().unwrap().clone();
    let correct: Vec<bool> = (0..correct_col.len())
        .map(|i| correct_col.get(i).unwrap())
        .collect();
    assert_eq!(correct, [true, true, false]);
    let top5 = preds
        .column("top5")
        .unwrap()
        .list()
        .unwrap()
        .get_as_series(0)
        .unwrap();
    let ids: Vec<u32> = top5.u32().unwrap().into_no_null_iter().collect();
    assert_eq!(
        ids[0], 1,
        "ImageNet-R restricts the argmax to its 200 classes: {ids:?}"
    );

    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let evaluations = run_json["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), 4);
    assert_eq!(evaluations[0]["model_sha256"].as_str().unwrap().len(), 64);
    assert!(run_json["onnxruntime_version"]
        .as_str()
        .unwrap()
        .starts_with("1."));
    let on_eval = evaluations
        .iter()
        .find(|e| e["dataset"] == "objectnet")
        .unwrap();
    assert_eq!(on_eval["border"], 2);
}

#[test]
fn second_run_resumes_and_new_model_is_the_only_work() {
    let dir = tempfile::tempdir().unwrap();
    build_suite(dir.path());
    let out = dir.path().join("results");
    run(dir.path(), &out).success();
    let before = std::fs::read_to_string(out.join("evals.csv")).unwrap();

    // Nothing changed: nothing is evaluated again.
    let again = run(dir.path(), &out).success();
    let stderr = String::from_utf8_lossy(&again.get_output().stderr).to_string();
    assert_eq!(stderr.matches("up to date").count(), 4, "{stderr}");
    assert!(String::from_utf8_lossy(&again.get_output().stdout)
        .contains("0 pairs evaluated, 4 up to date"));
    assert_eq!(
        std::fs::read_to_string(out.join("evals.csv")).unwrap(),
        before
    );

    // A crash after the first pairs: drop the last pair from run.json; only it is redone.
    let run_path = out.join("run.json");
    let mut run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_path).unwrap()).unwrap();
    run_json["evaluations"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["dataset"] != "objectnet");
    std::fs::write(&run_path, serde_json::to_string(&run_json).unwrap()).unwrap();
    let resumed = run(dir.path(), &out).success();
    assert!(String::from_utf8_lossy(&resumed.get_output().stdout)
        .contains("1 pairs evaluated, 3 up to date"));

    // A second model: only its pairs are evaluated.
    probe_card(&dir.path().join("models"), "probe-copy");
    let added = run(dir.path(), &out).success();
    assert!(String::from_utf8_lossy(&added.get_output().stdout)
        .contains("4 pairs evaluated, 4 up to date"));
    assert_eq!(evals(&out).len(), 14);

    // A changed manifest invalidates that dataset's pairs only.
    let m = dir.path().join("data/r/manifest.csv");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("r3.png,n01484850\n", "");
    std::fs::write(&m, text).unwrap();
    let changed = run(dir.path(), &out).success();
    assert!(String::from_utf8_lossy(&changed.get_output().stdout)
        .contains("2 pairs evaluated, 6 up to date"));
    assert_eq!(row(&evals(&out), "probe", "imagenet-r").n, 2);
}

#[test]
fn v2_manifest_from_integer_folders_scores_every_image_right() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("v2");
    // String-sorted, these folders would be 0, 1, 10, 100, 2: their order must not matter.
    for class in [0usize, 1, 2, 10, 100] {
        probe_image(&v2.join(class.to_string()).join("x.jpeg.png"), class, 0);
    }
    let manifest = dir.path().join("v2.csv");
    bin()
        .args(["manifest", "imagenet-v2", "--root"])
        .arg(&v2)
        .arg("--out")
        .arg(&manifest)
        .assert()
        .success();
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text.starts_with("path,label\nv2/0/x.jpeg.png,0\nv2/1/"),
        "{text}"
    );
    std::fs::write(
        dir.path().join("suite.toml"),
        format!("name = \"v2\"\nid = \"v2\"\n[datasets.v2]\nmanifest = \"{}\"\nscoring = \"imagenet-1k\"\n", manifest.display()),
    )
    .unwrap();
    probe_card(&dir.path().join("models"), "probe");
    let out = dir.path().join("out");
    bin()
        .args(["run", "--progress", "none", "--suite"])
        .arg(dir.path().join("suite.toml"))
        .arg("--models")
        .arg(dir.path().join("models"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = evals(&out);
    let r = row(&rows, "probe", "v2");
    assert_eq!((r.n, r.correct), (5, 5));
}

/// Several CPU workers, each decoding and inferring its own batches, finish batches out of order;
/// the results must be those of one session, row for row, and say how the workers spent their
/// time.
#[test]
fn parallel_inference_workers_give_the_same_results_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    build_suite(dir.path());
    let with_workers = |workers: &str, threads: &str| {
        let out = dir.path().join(format!("results-{workers}"));
        let assert = run_with(
            dir.path(),
            &out,
            &["--inference-workers", workers, "--threads", threads],
        )
        .success();
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        (out, stderr)
    };
    let (one, one_log) = with_workers("1", "2");
    let (three, three_log) = with_workers("3", "3");
    assert!(
        one_log.contains("inference waited for decoded images"),
        "{one_log}"
    );
    assert!(
        three_log.contains("the workers spent") && three_log.contains("% of their time decoding"),
        "{three_log}"
    );
    let key = |out: &Path| {
        let mut rows: Vec<_> = evals(out)
            .into_iter()
            .map(|r| (r.model, r.dataset, r.n, r.correct, r.failed))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(key(&one), key(&three));
    for dataset in ["imagenet", "imagenet-r", "imagenet-a", "objectnet"] {
        let file = |out: &Path| {
            std::fs::read(
                out.join("predictions/probe")
                    .join(format!("{dataset}.parquet")),
            )
            .unwrap()
        };
        assert_eq!(file(&one), file(&three), "{dataset} predictions differ");
    }
}

/// A single worker's loader keeps several batches decoding at once, and they finish out of order
/// (one-image batches of sizes from 12 to 332 pixels, six ahead on three loader threads). What it
/// hands on, in order, must give the results of workers decoding their own batches: the same rows
/// in the same order, the same failures, the same predictions byte for byte.
#[test]
fn batches_decoding_at_once_give_the_results_of_workers_decoding_their_own() {
    let dir = tempfile::tempdir().unwrap();
    build_suite(dir.path());
    let id = dir.path().join("data/id");
    let mut rows: Vec<(String, String)> = Vec::new();
    for i in 0..40usize {
        let name = format!("many{i}.png");
        probe_image(&id.join(&name), (i * 37) % 1000, (i % 5) as u32 * 40);
        rows.push((name, ((i * 37) % 1000).to_string()));
    }
    std::fs::write(id.join("broken.png"), b"not an image").unwrap();
    rows.insert(17, ("broken.png".into(), "3".into()));
    let rows: Vec<(&str, &str)> = rows.iter().map(|(p, l)| (p.as_str(), l.as_str())).collect();
    write_manifest(&id.join("manifest.csv"), &rows);
    let run_plan = |tag: &str, plan: &[&str]| {
        let out = dir.path().join(tag);
        let assert = bin()
            .args(["run", "--suite"])
            .arg(dir.path().join("suite.toml"))
            .arg("--models")
            .arg(dir.path().join("models"))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--out")
            .arg(&out)
            .args([
                "--provider",
                "cpu",
                "--progress",
                "plain",
                "--allow-failures",
                "10",
            ])
            .args(plan)
            .assert()
            .success();
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        (out, stderr)
    };
    let (loader, loader_log) = run_plan(
        "loader",
        &[
            "--inference-workers",
            "1",
            "--threads",
            "2",
            "--batch-size",
            "1",
            "--loader-threads",
            "3",
            "--prefetch",
            "5",
        ],
    );
    let (own, _) = run_plan(
        "own",
        &[
            "--inference-workers",
            "2",
            "--threads",
            "2",
            "--batch-size",
            "4",
        ],
    );
    assert!(
        loader_log.contains("inference waited for decoded images"),
        "the single worker was not fed by the loader: {loader_log}"
    );
    let key = |out: &Path| {
        evals(out)
            .into_iter()
            .map(|r| (r.model, r.dataset, r.n, r.correct, r.failed, r.skipped))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&loader), key(&own));
    assert_eq!(row(&evals(&loader), "probe", "imagenet").failed, 1);
    let read = |out: &Path, file: &Path| std::fs::read(out.join(file)).unwrap();
    let failures = Path::new("failures.csv");
    assert!(
        read(&loader, failures) == read(&own, failures),
        "failures.csv differs"
    );
    let predictions = files_under(&loader.join("predictions"));
    assert!(predictions.len() >= 4, "{predictions:?}");
    assert_eq!(predictions, files_under(&own.join("predictions")));
    for file in predictions.iter().map(|f| Path::new("predictions").join(f)) {
        assert!(
            read(&loader, &file) == read(&own, &file),
            "{} differs",
            file.display()
        );
    }
}
