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
    analysis_steps_fail(
        dir.path(),
        &["fit", "plot"],
        &["shift `shift`", "same ID accuracy"],
    );
    // The report still shows the accuracy table, and says why there is no fit (issue 26).
    let out = bin()
        .args(["report", "--results"])
        .arg(dir.path())
        .timeout(LIMIT)
        .assert()
        .success();
    let report = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        report.contains("same ID accuracy") && report.contains("no trend fit"),
        "{report}"
    );
}

/// Each of `steps` on `dir` exits 2 with every one of `messages` on stderr.
fn analysis_steps_fail(dir: &std::path::Path, steps: &[&str], messages: &[&str]) {
    for &step in steps {
        let out = bin()
            .args([step, "--results"])
            .arg(dir)
            .timeout(LIMIT)
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        for m in messages {
            assert!(stderr.contains(m), "{step}: {stderr}");
        }
    }
}

/// Two distinct ID accuracies among many models: most resamples are degenerate, yet the fit ends
/// and gives a band.
#[test]
fn a_fit_with_mostly_equal_id_accuracies_ends() {
    let mut evals = String::from("model,group,dataset,top1\n");
    for i in 0..12 {
        let id = if i == 0 { 50.0 } else { 100.0 };
        evals += &format!(
            "m{i},standard,imagenet,{id}\nm{i},standard,shift,{}\n",
            30 + i
        );
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

fn probe_suite(dir: &std::path::Path, name: &str, manifest: &str) -> std::path::PathBuf {
    let file = dir.join("suite.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\nid = \"imagenet\"\n[datasets.imagenet]\nmanifest = \"{manifest}\"\nscoring = \"imagenet-1k\"\n"
        ),
    )
    .unwrap();
    file
}

/// `run` of `suite` with the models at `models`, into `dir/out`, under the timeout.
fn run_in(
    dir: &std::path::Path,
    suite: &std::path::Path,
    models: &std::path::Path,
) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["run", "--progress", "plain", "--provider", "cpu", "--suite"])
        .arg(suite)
        .arg("--models")
        .arg(models)
        .arg("--data-root")
        .arg(dir)
        .arg("--out")
        .arg(dir.join("out"))
        .timeout(LIMIT);
    cmd
}

fn probe_run(dir: &std::path::Path, suite: &std::path::Path) -> assert_cmd::Command {
    run_in(dir, suite, &probe_card(&dir.join("models"), "probe"))
}

/// A suite's name becomes the default results folder (`results/<name>`): one that could leave it
/// is refused, naming the file and field.
#[test]
fn a_suite_name_cannot_leave_the_results_folder() {
    let dir = tempfile::tempdir().unwrap();
    let suite = probe_suite(dir.path(), "../../x", "m.csv");
    bin()
        .args(["run", "--suite"])
        .arg(&suite)
        .current_dir(dir.path())
        .timeout(LIMIT)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("suite.toml:1: field `name`"));
    assert!(!dir.path().join("../x").exists() && !dir.path().join("results").exists());
}

/// A pair whose every image failed used to be stored as 0 % with n = 0 and count as done: the
/// next run skipped it and exited 0, and the fit used a 0 % point. Now nothing is stored for it
/// but its failures, and every run tries it again.
#[test]
fn a_pair_with_no_image_scored_is_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("img")).unwrap();
    std::fs::write(d.join("img/bad.jpg"), b"\xFF\xD8\xFFnot a jpeg").unwrap();
    write_manifest(&d.join("img/m.csv"), &[("bad.jpg", "1"), ("gone.png", "2")]);
    let suite = probe_suite(d, "t", "img/m.csv");
    for _ in 0..2 {
        probe_run(d, &suite)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("2 images could not be read"));
        let evals = std::fs::read_to_string(d.join("out/evals.csv")).unwrap_or_default();
        assert!(
            !evals.contains("probe,"),
            "no row for an empty pair: {evals}"
        );
        let failures = std::fs::read_to_string(d.join("out/failures.csv")).unwrap();
        assert_eq!(failures.lines().count(), 3, "{failures}");
    }
}

/// A stored pair whose predictions file was deleted or cut short is evaluated again.
#[test]
fn a_pair_whose_predictions_are_gone_is_evaluated_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probe_image(&d.join("img/a.png"), 3, 0);
    probe_image(&d.join("img/b.png"), 4, 0);
    write_manifest(&d.join("img/m.csv"), &[("a.png", "3"), ("b.png", "5")]);
    let suite = probe_suite(d, "t", "img/m.csv");
    probe_run(d, &suite).assert().success();
    let preds = d.join("out/predictions/probe/imagenet.parquet");
    let whole = std::fs::read(&preds).unwrap();
    let up_to_date =
        |out: &[u8]| String::from_utf8_lossy(out).contains("0 pairs evaluated, 1 up to date");
    let again = probe_run(d, &suite).assert().success();
    assert!(up_to_date(&again.get_output().stdout));
    for damage in [Some(&whole[..whole.len() / 2]), None] {
        match damage {
            Some(bytes) => std::fs::write(&preds, bytes).unwrap(),
            None => std::fs::remove_file(&preds).unwrap(),
        }
        let out = probe_run(d, &suite).assert().success();
        assert!(!up_to_date(&out.get_output().stdout), "{damage:?}");
        assert_eq!(std::fs::read(&preds).unwrap(), whole);
    }
}

/// A 20000 x 20000 PNG of one bit per pixel: about 60 KB on disk, 1.2 GB as RGB pixels.
fn png_bomb(path: &std::path::Path) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, 20_000, 20_000);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder
        .write_header()
        .unwrap()
        .into_stream_writer()
        .unwrap();
    let row = vec![0u8; 20_000 / 8];
    for _ in 0..20_000 {
        std::io::Write::write_all(&mut writer, &row).unwrap();
    }
    writer.finish().unwrap();
}

/// A real JPEG whose frame header declares 60000 x 60000 pixels (3.6 billion; 14 GB as RGBX).
fn jpeg_bomb(path: &std::path::Path) {
    let small = path.with_extension("small.jpg");
    image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 90]))
        .save(&small)
        .unwrap();
    let mut bytes = std::fs::read(&small).unwrap();
    let sof = bytes
        .windows(2)
        .position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
        .expect("a frame header");
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    std::fs::write(path, bytes).unwrap();
}

/// Images that could exhaust memory or never end are listed as failed with the reason, and the
/// rest is scored: a decompression bomb (PNG and JPEG) over the pixel limit, a file over the size
/// limit, a device and a FIFO (which must not be read, nor waited on).
#[test]
fn hostile_image_files_are_refused_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probe_image(&d.join("img/ok.png"), 3, 0);
    png_bomb(&d.join("img/bomb.png"));
    assert!(std::fs::metadata(d.join("img/bomb.png")).unwrap().len() < 1 << 20);
    jpeg_bomb(&d.join("img/bomb.jpg"));
    std::fs::write(d.join("img/big.png"), vec![0u8; 3 << 20]).unwrap();
    let fifo = d.join("img/fifo.png");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    write_manifest(
        &d.join("img/m.csv"),
        &[
            ("ok.png", "3"),
            ("bomb.png", "1"),
            ("bomb.jpg", "1"),
            ("big.png", "1"),
            ("/dev/zero", "1"),
            ("fifo.png", "1"),
        ],
    );
    let suite = probe_suite(d, "t", "img/m.csv");
    probe_run(d, &suite)
        .args(["--max-image-mb", "2"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("5 images could not be read"));
    let failures = std::fs::read_to_string(d.join("out/failures.csv")).unwrap();
    for (path, reason) in [
        (
            "bomb.png",
            "20000 x 20000 = 400000000 pixels is over the limit of 178956970",
        ),
        (
            "bomb.jpg",
            "60000 x 60000 = 3600000000 pixels is over the limit",
        ),
        ("big.png", "file of 3 MB is over the limit of 2 MB"),
        ("/dev/zero", "not a regular file"),
        ("fifo.png", "not a regular file"),
    ] {
        let line = failures.lines().find(|l| l.contains(path));
        assert!(
            line.is_some_and(|l| l.contains(reason)),
            "{path}: {failures}"
        );
    }
    let rows = evals(&d.join("out"));
    assert_eq!(row(&rows, "probe", "imagenet").n, 1);
}

/// Two runs into one folder used to rewrite evals.csv each from its own memory, losing the
/// other's rows. Now a run takes the folder's writer lock: while another process holds it, a run
/// exits 2 naming the holder; once the holder is gone (however it ended), the run proceeds.
#[test]
fn one_writer_per_results_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probe_image(&d.join("img/a.png"), 3, 0);
    write_manifest(&d.join("img/m.csv"), &[("a.png", "3")]);
    let suite = probe_suite(d, "t", "img/m.csv");
    std::fs::create_dir_all(d.join("out")).unwrap();
    let mut holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(d.join("out/.lock"))
        .unwrap();
    holder.lock().unwrap();
    std::io::Write::write_all(
        &mut holder,
        b"pid 4242 on elsewhere since 2026-12-04T00:00:00Z",
    )
    .unwrap();
    probe_run(d, &suite)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is in use by another robust-eval run (pid 4242 on elsewhere",
        ));
    assert!(
        !d.join("out/evals.csv").exists(),
        "nothing written while locked out"
    );
    drop(holder);
    probe_run(d, &suite).assert().success();
    let lock = std::fs::read_to_string(d.join("out/.lock")).unwrap();
    assert!(lock.starts_with("pid ") && !lock.contains("4242"), "{lock}");
}

/// Class restriction and ImageNet-A's flag follow a dataset's declared scoring, not its name:
/// `imagenet-real` contains `imagenet-r` but is a 1000-class set, and used to be treated as R.
#[test]
fn a_dataset_is_not_restricted_because_of_its_name() {
    let dir = folder_with(
        "model,dataset,top1\na,imagenet,60\nb,imagenet,70\nc,imagenet,80\n\
         a,imagenet-real,66\nb,imagenet-real,77\nc,imagenet-real,87\n\
         a,imagenet-a,5\nb,imagenet-a,9\nc,imagenet-a,20\n",
    );
    let out = bin()
        .args(["fit", "--json", "--bootstrap", "20", "--results"])
        .arg(dir.path())
        .timeout(LIMIT)
        .assert()
        .success();
    let fit: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let shift = |name: &str| {
        fit["shifts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["shift"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(shift("imagenet-real")["linear"], true);
    assert_eq!(
        shift("imagenet-a")["linear"],
        false,
        "as imagenet-shifts declares it"
    );
    let notes = fit["notes"].to_string();
    assert!(!notes.contains("imagenet@imagenet-real"), "{notes}");
    assert!(notes.contains("imagenet@imagenet-a"), "{notes}");
}

/// A corrupt run.json is one error for every command, naming the file (the analysis used to
/// ignore it silently and fall back to other settings).
#[test]
fn a_corrupt_run_json_is_an_error_everywhere() {
    let dir = folder_with(
        "model,dataset,top1\na,imagenet,60\nb,imagenet,70\nc,imagenet,80\na,s,50\nb,s,55\nc,s,70\n",
    );
    std::fs::write(dir.path().join("run.json"), "{\"tool_version\": ").unwrap();
    analysis_steps_fail(
        dir.path(),
        &["fit", "plot", "report"],
        &["run.json:1", "not a robust-eval run.json"],
    );
}

/// A model with its weights in an external-data file: copied into `dir` with a card, the
/// location string in the graph replaced by `location` (same length, so the protobuf stays
/// valid).
fn external_model(dir: &std::path::Path, location: &str) -> std::path::PathBuf {
    let fixtures = root().join("tests/fixtures");
    std::fs::create_dir_all(dir).unwrap();
    let original = "probe_external.weights";
    assert_eq!(location.len(), original.len());
    let graph = std::fs::read(fixtures.join("probe_external.onnx")).unwrap();
    let text = unsafe { String::from_utf8_unchecked(graph) }.replace(original, location);
    std::fs::write(dir.join("probe_external.onnx"), text.as_bytes()).unwrap();
    std::fs::copy(fixtures.join(original), dir.join(original)).unwrap();
    let card = dir.join("ext.toml");
    std::fs::write(
        &card,
        "name = \"ext\"\nonnx = \"probe_external.onnx\"\n[preprocess]\nresize = 8\ncrop = 8\n\
         interpolation = \"bilinear\"\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n",
    )
    .unwrap();
    card
}

fn run_model(dir: &std::path::Path, card: &std::path::Path) -> assert_cmd::Command {
    run_in(dir, &dir.join("suite.toml"), card)
}

/// External data is part of the model: new weights there are evaluated again (the resume key
/// used to cover only the .onnx file). And a model is untrusted input: external data outside its
/// folder (`..`, an absolute path, a symlink out) is refused before any weight is read.
#[test]
fn external_data_is_checked_and_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probe_image(&d.join("img/a.png"), 3, 0);
    write_manifest(&d.join("img/m.csv"), &[("a.png", "3")]);
    probe_suite(d, "t", "img/m.csv");
    let card = external_model(&d.join("models"), "probe_external.weights");
    let evaluated = |out: &[u8]| String::from_utf8_lossy(out).contains("1 pairs evaluated");
    let first = run_model(d, &card).assert().success();
    assert!(evaluated(&first.get_output().stdout));
    assert_eq!(row(&evals(&d.join("out")), "ext", "imagenet").correct, 1);
    let again = run_model(d, &card).assert().success();
    assert!(!evaluated(&again.get_output().stdout), "nothing changed");
    // values_top (bytes 8..16) from [0, 2] to [0, 3]: same predictions, new weights.
    let weights = d.join("models/probe_external.weights");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[12..16].copy_from_slice(&3.0f32.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    let changed = run_model(d, &card).assert().success();
    assert!(
        evaluated(&changed.get_output().stdout),
        "new external weights"
    );

    std::fs::create_dir_all(d.join("outside")).unwrap();
    std::fs::write(d.join("outside/weights.bin"), [0u8; 24]).unwrap();
    for (name, location, why) in [
        (
            "dotdot",
            "../outside/weights.bin",
            "leaves the model's folder",
        ),
        ("absolute", "/tmp/xx/weights.binary", "is an absolute path"),
    ] {
        let card = external_model(&d.join(name), location);
        run_model(d, &card).assert().code(2).stderr(
            predicate::str::contains(format!("external data `{location}` {why}"))
                .and(predicate::str::contains("probe_external.onnx")),
        );
    }
    let card = external_model(&d.join("linked"), "probe_external.weights");
    let link = d.join("linked/probe_external.weights");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(d.join("outside/weights.bin"), &link).unwrap();
    run_model(d, &card)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("outside the model's folder"));
}

/// A card's new group reaches evals.csv (and so the baseline) without a re-evaluation; it used
/// to keep the old group for ever.
#[test]
fn a_new_group_reaches_stored_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probe_image(&d.join("img/a.png"), 3, 0);
    write_manifest(&d.join("img/m.csv"), &[("a.png", "3")]);
    let suite = probe_suite(d, "t", "img/m.csv");
    probe_run(d, &suite).assert().success();
    assert!(std::fs::read_to_string(d.join("out/evals.csv"))
        .unwrap()
        .contains("probe,standard,"));
    let card = d.join("models/probe.toml");
    let text = std::fs::read_to_string(&card)
        .unwrap()
        .replace("group = \"standard\"", "group = \"robust\"");
    std::fs::write(&card, text).unwrap();
    let out = run_in(d, &suite, &card).assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout)
        .contains("0 pairs evaluated, 1 up to date"));
    let evals = std::fs::read_to_string(d.join("out/evals.csv")).unwrap();
    assert!(
        evals.contains("probe,robust,") && !evals.contains("probe,standard,"),
        "{evals}"
    );
}
