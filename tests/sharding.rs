//! `run --shard I/N` and `merge` through the real binary: the merged folder is the folder one run
//! writes, bit for bit but for the timings, for N = 1, 2, 3 and 7 (more shards than pairs on the
//! probe suite), on the demo, on a suite with every scoring rule, a broken image and skipped rows,
//! and on real ImageNet JPEGs where the reference material is present.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use predicates::prelude::*;

/// evals.csv's timing columns: the only ones that differ between any two runs.
const TIMINGS: [&str; 2] = ["seconds", "images_per_s"];

fn evals_without_timings(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("evals.csv")).expect("evals.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !TIMINGS.contains(&header[i]))
        .collect();
    assert_eq!(
        keep.len(),
        header.len() - 2,
        "timing columns present: {header:?}"
    );
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let mut kept = vec![keep
        .iter()
        .map(|&i| header[i])
        .collect::<Vec<_>>()
        .join(",")];
    for record in reader.records() {
        let record = record.unwrap();
        kept.push(
            keep.iter()
                .map(|&i| &record[i])
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    kept.join("\n")
}

/// run.json's evaluations with the fields that record when and how fast left out.
fn evaluations(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("run.json")).unwrap();
    let run: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut evaluations = run["evaluations"].as_array().unwrap().clone();
    for e in &mut evaluations {
        let e = e.as_object_mut().unwrap();
        for timing in ["started", "finished", "seconds", "waiting_for_images"] {
            assert!(e.remove(timing).is_some(), "{timing} missing");
        }
    }
    evaluations
}

/// The merged folder holds what the single run's does: evals.csv (timings aside), failures,
/// every predictions file byte for byte, the fit, the robustness table and run.json's pairs.
fn assert_same_results(single: &Path, merged: &Path, what: &str) {
    assert_eq!(
        evals_without_timings(single),
        evals_without_timings(merged),
        "{what}: evals.csv"
    );
    for file in ["failures.csv", "fit.json", "robustness.csv"] {
        let (a, b) = (single.join(file), merged.join(file));
        if a.exists() || b.exists() {
            assert_eq!(
                std::fs::read(&a).ok(),
                std::fs::read(&b).ok(),
                "{what}: {file}"
            );
        }
    }
    let predictions = files_under(&single.join("predictions"));
    assert!(
        !predictions.is_empty(),
        "{what}: the single run stored no predictions"
    );
    assert_eq!(
        predictions,
        files_under(&merged.join("predictions")),
        "{what}: predictions files"
    );
    for file in &predictions {
        let (a, b) = (
            std::fs::read(single.join("predictions").join(file)).unwrap(),
            std::fs::read(merged.join("predictions").join(file)).unwrap(),
        );
        assert!(a == b, "{what}: predictions/{} differs", file.display());
    }
    assert_eq!(
        evaluations(single),
        evaluations(merged),
        "{what}: run.json evaluations"
    );
}

/// Every shard of N run one after the other, then merged.
fn run_sharded(run: &dyn Fn() -> assert_cmd::Command, out: &Path, count: usize) {
    for i in 0..count {
        run()
            .arg("--out")
            .arg(out)
            .args(["--shard", &format!("{i}/{count}")])
            .assert()
            .success();
        assert!(out
            .join(format!("shards/{i}-of-{count}/run.json"))
            .is_file());
    }
    // No analysis in a shard: its results are a part.
    assert!(!out.join(format!("shards/0-of-{count}/fit.json")).exists());
    merge(out)
        .args(["--allow-failures", "9"])
        .assert()
        .success();
}

fn merge(out: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.arg("merge").arg(out);
    cmd
}

fn demo_run() -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args([
        "run",
        "--suite",
        "demo",
        "--provider",
        "cpu",
        "--progress",
        "plain",
    ]);
    cmd
}

#[test]
fn demo_merged_from_1_2_3_and_7_shards_is_one_run() {
    let work = tempfile::tempdir().unwrap();
    let single = work.path().join("single");
    demo_run().arg("--out").arg(&single).assert().success();
    for count in [1, 2, 3, 7] {
        let out = work.path().join(format!("sharded-{count}"));
        run_sharded(&demo_run, &out, count);
        assert_same_results(&single, &out, &format!("demo in {count} shards"));
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(
            run["shards"].as_array().unwrap().len(),
            count,
            "per-shard provenance"
        );
        assert!(out.join("report.md").is_file() && out.join("plots").is_dir());
    }
}

/// The scoring suite (ImageNet with R, A and ObjectNet restricted views, unmapped ObjectNet rows),
/// a second model sharing the preprocessing, and a broken image: 2 models × 4 datasets, several
/// shards getting parts of one pair.
fn scoring_suite_with_failure(dir: &Path) {
    scoring_suite(dir);
    probe_card(&dir.join("models"), "probe-twin");
    std::fs::write(dir.join("data/id/broken.png"), b"\x89PNG not really").unwrap();
    let manifest = dir.join("data/id/manifest.csv");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("broken.png,5\n");
    std::fs::write(&manifest, text).unwrap();
}

fn scoring_run(dir: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["run", "--suite"])
        .arg(dir.join("suite.toml"))
        .arg("--models")
        .arg(dir.join("models"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .args([
            "--provider",
            "cpu",
            "--batch-size",
            "2",
            "--progress",
            "plain",
        ])
        .args(["--allow-failures", "9"]);
    cmd
}

/// The scoring suite in `dir` run once, then in each of `counts` shards merged: the same results.
/// Returns the single run's folder.
fn sharded_equals_single(dir: &Path, counts: &[usize], what: &str) -> PathBuf {
    let single = dir.join("single");
    scoring_run(dir)
        .arg("--out")
        .arg(&single)
        .assert()
        .success();
    for &count in counts {
        let out = dir.join(format!("sharded-{count}"));
        run_sharded(&|| scoring_run(dir), &out, count);
        assert_same_results(&single, &out, &format!("{what} in {count} shards"));
    }
    single
}

#[test]
fn every_scoring_rule_merged_from_shards_is_one_run() {
    let work = tempfile::tempdir().unwrap();
    scoring_suite_with_failure(work.path());
    let single = sharded_equals_single(work.path(), &[1, 2, 3, 7], "scoring suite");
    let failures = std::fs::read_to_string(single.join("failures.csv")).unwrap();
    assert_eq!(failures.matches("broken.png").count(), 2, "{failures}");
}

/// More shards than pairs: one model on the four datasets of the scoring suite in 7 shards, so
/// every pair is cut and each shard holds parts of at most a few.
#[test]
fn more_shards_than_pairs_merge_to_one_run() {
    let work = tempfile::tempdir().unwrap();
    scoring_suite(work.path());
    let single = sharded_equals_single(work.path(), &[7], "4 pairs");
    assert_eq!(evaluations(&single).len(), 4, "one model, four datasets");
}

/// A missing shard, an unfinished one and one run on other datasets are each refused with exit 2
/// naming it; the unfinished one, run again, resumes its own part only, and the merge then holds.
#[test]
fn incomplete_or_mismatched_shards_are_named_and_a_rerun_shard_completes_the_merge() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    scoring_suite_with_failure(dir);
    let out = dir.join("sharded");
    let shard = |i: usize, extra: &[&str]| {
        scoring_run(dir)
            .arg("--out")
            .arg(&out)
            .args(["--shard", &format!("{i}/3")])
            .args(extra)
            .assert()
    };
    shard(0, &[]).success();
    shard(2, &[]).success();
    merge(&out).assert().code(2).stderr(
        predicate::str::contains("shard 1 of 3 is missing")
            .and(predicate::str::contains("--shard 1/3")),
    );

    shard(1, &["--datasets", "imagenet-r"]).success();
    merge(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "differ in their models or datasets",
        ));

    // Shard 1 run right, then its last pair taken back out of run.json, as a shard killed before
    // recording it leaves it.
    shard(1, &[]).success();
    let run_json = out.join("shards/1-of-3/run.json");
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
    let lost = run["evaluations"].as_array_mut().unwrap().pop().unwrap();
    std::fs::write(&run_json, serde_json::to_string_pretty(&run).unwrap()).unwrap();
    merge(&out).assert().code(2).stderr(
        predicate::str::contains("shard 1-of-3 has not finished")
            .and(predicate::str::contains(lost["model"].as_str().unwrap())),
    );
    shard(1, &[])
        .success()
        .stdout(predicate::str::contains("1 pairs evaluated"));
    // All merged; the one broken image is over merge's default --allow-failures 0: exit 1, as run.
    merge(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("1 images could not be read"));
    let single = dir.join("single");
    scoring_run(dir)
        .arg("--out")
        .arg(&single)
        .assert()
        .success();
    assert_same_results(&single, &out, "after the resumed shard");
}

#[test]
fn shard_auto_reads_the_schedulers_variables() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    demo_run()
        .arg("--out")
        .arg(&out)
        .args(["--shard", "auto"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .assert()
        .success();
    assert!(out.join("shards/1-of-2/run.json").is_file());
    demo_run()
        .arg("--out")
        .arg(&out)
        .args(["--shard", "auto", "--shard-count", "2"])
        .env("JOB_COMPLETION_INDEX", "0")
        .assert()
        .success();
    assert!(out.join("shards/0-of-2/run.json").is_file());
    merge(&out).assert().success();
    demo_run()
        .arg("--out")
        .arg(&out)
        .args(["--shard", "auto"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("SLURM_ARRAY_TASK_ID")
                .and(predicate::str::contains("--shard I/N")),
        );
}

/// One model on real ImageNet JPEGs: one pair, cut into row ranges, still one run's results.
#[test]
fn real_images_one_model_cut_into_row_ranges() {
    let Some(reference) = reference("real_images_one_model_cut_into_row_ranges") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    sample_manifest(&reference, &w.join("sample.csv"), 300);
    std::fs::write(
        w.join("suite.toml"),
        "name = \"sample\"\nid = \"sample\"\n[datasets.sample]\nmanifest = \"sample.csv\"\nscoring = \"imagenet-1k\"\n",
    )
    .unwrap();
    std::fs::write(
        w.join("lite0.toml"),
        format!(
            "name = \"efficientnet_lite0\"\nonnx = \"{}\"\n[preprocess]\nresize = 224\ncrop = 224\n\
             interpolation = \"bicubic\"\nmean = [0.498, 0.498, 0.498]\nstd = [0.502, 0.502, 0.502]\n",
            reference.join("models/efficientnet_lite0.onnx").display()
        ),
    )
    .unwrap();
    let run = || {
        let mut cmd = bin();
        // The sample holds a few files no decoder reads: they are failures in every shard.
        cmd.args([
            "run",
            "--provider",
            "cpu",
            "--progress",
            "plain",
            "--allow-failures",
            "10",
        ])
        .arg("--suite")
        .arg(w.join("suite.toml"))
        .arg("--models")
        .arg(w.join("lite0.toml"))
        .arg("--data-root")
        .arg(w);
        cmd
    };
    let single = w.join("single");
    run().arg("--out").arg(&single).assert().success();
    let out = w.join("sharded");
    run_sharded(&run, &out, 3);
    assert_same_results(&single, &out, "real images in 3 shards");
    for i in 0..3 {
        let rows = evals(&out.join(format!("shards/{i}-of-3")));
        assert_eq!(
            rows[0].n + rows[0].failed,
            100,
            "shard {i} reads a third of the 300 images"
        );
    }
}

/// A shard folder edited by hand cannot make merge write outside the results folder or panic:
/// a model name that is a path, and a shard number beyond the count, are each refused naming
/// the file.
#[test]
fn a_hand_edited_shard_is_refused_not_followed() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    demo_run()
        .arg("--out")
        .arg(&out)
        .args(["--shard", "0/1", "--datasets", "shapes"])
        .assert()
        .success();
    let run_json = out.join("shards/0-of-1/run.json");
    let original = std::fs::read_to_string(&run_json).unwrap();
    let escaping = original.replace("\"std-s\"", "\"../../escaped\"");
    assert_ne!(escaping, original);
    std::fs::write(&run_json, escaping).unwrap();
    merge(&out).assert().code(2).stderr(
        predicate::str::contains("0-of-1/run.json").and(predicate::str::contains("../../escaped")),
    );
    assert!(!work.path().join("escaped").exists() && !out.join("evals.csv").exists());

    let mut run: serde_json::Value = serde_json::from_str(&original).unwrap();
    run["shard"]["index"] = serde_json::json!(5);
    std::fs::write(&run_json, run.to_string()).unwrap();
    merge(&out).assert().code(2).stderr(
        predicate::str::contains("0-of-1/run.json").and(predicate::str::contains("shard 5 of 1")),
    );
}

/// The scoring suite's ImageNet set alone (7 images, one model): one cell of 7 rows.
fn one_cell_run(dir: &Path) -> assert_cmd::Command {
    let mut cmd = scoring_run(dir);
    cmd.args(["--datasets", "imagenet"]);
    cmd
}

/// 2,000 shards, merged under `ulimit -n 256`: merge holds no shard's file open beyond the one it
/// reads, so its file descriptors do not grow with the shards. The 7 shards with a row of work
/// are run; the 1,993 empty ones are one empty shard's folder, as `run` wrote it, under each
/// index (only the index differs between them).
#[test]
fn thousands_of_shards_merge_under_a_low_file_limit() {
    use robust_eval::engine::shard::{assign, Shard};
    const COUNT: usize = 2000;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    scoring_suite(dir);
    let out = dir.join("sharded");
    let busy: Vec<usize> = (0..COUNT)
        .filter(|&i| assign(&[(1, 7)], Shard::new(i, COUNT).unwrap())[0].is_some())
        .collect();
    assert_eq!(busy.len(), 7, "one shard per row: {busy:?}");
    let empty = (0..COUNT).find(|i| !busy.contains(i)).unwrap();
    for &i in busy.iter().chain([&empty]) {
        one_cell_run(dir)
            .arg("--out")
            .arg(&out)
            .args(["--shard", &format!("{i}/{COUNT}")])
            .assert()
            .success();
    }
    let template = out.join(format!("shards/{empty}-of-{COUNT}"));
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(template.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["shard"]["assigned"],
        serde_json::json!([]),
        "shard {empty} is empty"
    );
    for i in (0..COUNT).filter(|i| !busy.contains(i) && *i != empty) {
        let folder = out.join(format!("shards/{i}-of-{COUNT}"));
        std::fs::create_dir_all(&folder).unwrap();
        for entry in std::fs::read_dir(&template).unwrap().flatten() {
            if entry.file_type().unwrap().is_file() && entry.file_name() != "run.json" {
                std::fs::copy(entry.path(), folder.join(entry.file_name())).unwrap();
            }
        }
        run["shard"]["index"] = serde_json::json!(i);
        std::fs::write(folder.join("run.json"), run.to_string()).unwrap();
    }
    let status = std::process::Command::new("bash")
        .args([
            "-c",
            "ulimit -n 256 && exec \"$0\" merge \"$1\" --json >/dev/null",
        ])
        .arg(assert_cmd::cargo::cargo_bin("robust-eval"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "merge of {COUNT} shards under ulimit -n 256"
    );
    let single = dir.join("single");
    one_cell_run(dir)
        .arg("--out")
        .arg(&single)
        .assert()
        .success();
    assert_same_results(&single, &out, &format!("{COUNT} shards"));
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(merged["shards"].as_array().unwrap().len(), COUNT);
}

/// Every probe image of the suite moved away (`hide`) or back: a node missing the data's mount.
fn move_images(data: &Path, hide: bool) {
    for file in files_under(data) {
        let name = file.to_string_lossy().into_owned();
        let (from, to) = if hide {
            (name.clone(), format!("{name}.away"))
        } else {
            match name.strip_suffix(".away") {
                Some(back) => (name.clone(), back.to_string()),
                None => continue,
            }
        };
        if hide && !name.ends_with(".png") {
            continue;
        }
        std::fs::rename(data.join(from), data.join(to)).unwrap();
    }
}

/// A shard whose images all failed (the data's mount missing on its node) stored parts that
/// scored nothing; run again with the images back, it evaluates those parts again, as a single
/// run retries a pair that scored nothing, and the merge equals one run.
#[test]
fn a_shard_part_that_scored_nothing_is_retried() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    scoring_suite(dir);
    let out = dir.join("sharded");
    let shard = |i: usize| {
        scoring_run(dir)
            .arg("--out")
            .arg(&out)
            .args(["--shard", &format!("{i}/2")])
            .assert()
    };
    shard(0).success();
    move_images(&dir.join("data"), true);
    // Exit 1 or 0, as its failures pass --allow-failures or not: its parts are stored either way.
    let code = shard(1).get_output().status.code();
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    let failures = std::fs::read_to_string(out.join("shards/1-of-2/failures.csv")).unwrap();
    assert!(
        failures.lines().count() > 1,
        "shard 1 failed its images: {failures}"
    );
    move_images(&dir.join("data"), false);
    let parts = evaluations(&out.join("shards/1-of-2")).len();
    shard(1).success().stdout(predicate::str::contains(format!(
        "{parts} pairs evaluated, 0 up to date"
    )));
    // Run again, it is up to date: the retry is for parts that scored nothing only.
    shard(1).success().stdout(predicate::str::contains(format!(
        "0 pairs evaluated, {parts} up to date"
    )));
    merge(&out).assert().success();
    let single = dir.join("single");
    scoring_run(dir)
        .arg("--out")
        .arg(&single)
        .assert()
        .success();
    assert_same_results(&single, &out, "after the retried shard");
}

/// Shards of different builds or result-changing settings are refused, naming both values, and
/// the merged folder is left as it was.
#[test]
fn shards_of_different_builds_or_settings_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    scoring_suite(dir);
    let out = dir.join("sharded");
    let shard = |i: usize, batch: &str, extra: &[&str]| {
        bin()
            .args(["run", "--suite"])
            .arg(dir.join("suite.toml"))
            .arg("--models")
            .arg(dir.join("models"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .args([
                "--provider",
                "cpu",
                "--progress",
                "plain",
                "--datasets",
                "imagenet",
            ])
            .args(["--batch-size", batch])
            .arg("--out")
            .arg(&out)
            .args(["--shard", &format!("{i}/2")])
            .args(extra)
            .assert()
            .success()
    };
    shard(0, "2", &[]);
    shard(1, "3", &[]);
    merge(&out).assert().code(2).stderr(
        predicate::str::contains("batch size `2` and shard 1-of-2 `3`")
            .and(predicate::str::contains("1-of-2/run.json")),
    );
    assert!(!out.join("evals.csv").exists(), "nothing merged");

    shard(1, "2", &["--force"]);
    let run_json = out.join("shards/1-of-2/run.json");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
    let build = run["build"].as_str().unwrap().to_string();
    assert!(
        build.starts_with("robust-eval ") && build.contains("binary sha256 "),
        "{build}"
    );
    assert!(!run["onnxruntime_version"].as_str().unwrap().is_empty());
    let other = build.replace("binary sha256 ", "binary sha256 0");
    std::fs::write(
        &run_json,
        std::fs::read_to_string(&run_json)
            .unwrap()
            .replace(&build, &other),
    )
    .unwrap();
    merge(&out).assert().code(2).stderr(
        predicate::str::contains(format!(
            "robust-eval build `{build}` and shard 1-of-2 with `{other}`"
        ))
        .and(predicate::str::contains("1-of-2/run.json")),
    );
    assert!(!out.join("evals.csv").exists(), "nothing merged");
}

/// Shards share TensorRT engines through `<out>/tensorrt-cache`: a shard whose provider may be
/// TensorRT copies in the engines published there before its sessions open, and publishes those
/// its own cache holds after its run; a CPU shard touches neither. No GPU here: the files stand
/// in for engines, and what is checked is that they travel, whole. `run --engines-only` with no
/// TensorRT in ONNX Runtime builds nothing and writes nothing; with the CPU provider it is bad
/// input.
#[test]
fn shards_load_and_publish_engines_through_the_study_cache() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    scoring_suite(dir);
    let shard_run = |out: &Path, shard: &str, provider: &str| {
        let mut cmd = bin();
        cmd.args(["run", "--suite"])
            .arg(dir.join("suite.toml"))
            .arg("--models")
            .arg(dir.join("models"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .args([
                "--provider",
                provider,
                "--batch-size",
                "2",
                "--progress",
                "none",
            ])
            .arg("--out")
            .arg(out)
            .args(["--shard", shard]);
        cmd
    };
    for (out, provider) in [("auto", "auto"), ("cpu", "cpu")] {
        let out = dir.join(out);
        let study = out.join("tensorrt-cache");
        std::fs::create_dir_all(&study).unwrap();
        std::fs::write(study.join("a_sm90.engine"), b"built by the engine job").unwrap();
        let own1 = out.join("shards/1-of-2/tensorrt-cache");
        std::fs::create_dir_all(&own1).unwrap();
        std::fs::write(own1.join("b_sm90.engine"), b"built by shard 1").unwrap();
        shard_run(&out, "0/2", provider).assert().success();
        shard_run(&out, "1/2", provider).assert().success();
        let own0 = out.join("shards/0-of-2/tensorrt-cache/a_sm90.engine");
        let published = study.join("b_sm90.engine");
        if provider == "cpu" {
            assert!(!own0.exists(), "a CPU shard loads no engines");
            assert!(!published.exists(), "a CPU shard publishes no engines");
            continue;
        }
        assert_eq!(std::fs::read(&own0).unwrap(), b"built by the engine job");
        assert_eq!(std::fs::read(&published).unwrap(), b"built by shard 1");
        assert_eq!(
            std::fs::read(study.join("a_sm90.engine")).unwrap(),
            b"built by the engine job",
            "an engine already published is not replaced"
        );
    }
    let engines_only = |out: &Path, provider: &str| {
        let mut cmd = bin();
        cmd.args(["run", "--suite"])
            .arg(dir.join("suite.toml"))
            .arg("--models")
            .arg(dir.join("models"))
            .args(["--provider", provider, "--engines-only", "--out"])
            .arg(out);
        cmd
    };
    let fresh = dir.join("engine-job");
    engines_only(&fresh, "auto")
        .assert()
        .success()
        .stdout(predicate::str::contains("no TensorRT engines built"));
    assert!(!fresh.exists(), "the engine job wrote {}", fresh.display());
    engines_only(&fresh, "cpu")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--engines-only"));
}
