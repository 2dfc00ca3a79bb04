//! Bad input gets a clear error and loses nothing: broken images are counted and listed while the
//! rest is scored; malformed suites, manifests and cards are rejected before any work, naming the
//! file, line and field; nothing panics.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use predicates::prelude::*;

fn suite(dir: &Path, manifest: &str) -> PathBuf {
    let file = dir.join("suite.toml");
    std::fs::write(&file, format!("name = \"t\"\nid = \"imagenet\"\n[datasets.imagenet]\nmanifest = \"{manifest}\"\nscoring = \"imagenet-1k\"\n")).unwrap();
    file
}

fn run(dir: &Path, suite: &Path, models: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["run", "--progress", "plain", "--provider", "cpu", "--suite"])
        .arg(suite)
        .arg("--models")
        .arg(models)
        .arg("--data-root")
        .arg(dir)
        .arg("--out")
        .arg(dir.join("out"));
    cmd
}

#[test]
fn broken_images_are_counted_listed_and_the_rest_scored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (f, c) in [("ok1.png", 3), ("ok2.png", 4), ("ok3.png", 5)] {
        probe_image(&d.join("img").join(f), c, 0);
    }
    std::fs::write(
        d.join("img/corrupt.jpg"),
        b"\xFF\xD8\xFFthis is not a jpeg at all",
    )
    .unwrap();
    // A real JPEG cut in half.
    let jpeg = d.join("img/whole.jpg");
    image::RgbImage::from_fn(256, 256, |x, y| {
        image::Rgb([
            (x * 7 % 251) as u8,
            (y * 13 % 241) as u8,
            ((x * y) % 239) as u8,
        ])
    })
    .save(&jpeg)
    .unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(d.join("img/truncated.jpg"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    write_manifest(
        &d.join("img/manifest.csv"),
        &[
            ("ok1.png", "3"),
            ("corrupt.jpg", "1"),
            ("ok2.png", "4"),
            ("truncated.jpg", "1"),
            ("missing.png", "2"),
            ("ok3.png", "6"),
        ],
    );
    let suite = suite(d, "img/manifest.csv");
    let models = probe_card(&d.join("models"), "probe");

    run(d, &suite, &models)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("3 images could not be read"))
        .stderr(predicate::str::contains("panicked").not());
    let rows = evals(&d.join("out"));
    let r = row(&rows, "probe", "imagenet");
    assert_eq!((r.n, r.correct, r.failed), (3, 2, 3), "{r:?}");

    let failures = std::fs::read_to_string(d.join("out/failures.csv")).unwrap();
    assert!(
        failures.starts_with("model,dataset,index,path,reason\n"),
        "{failures}"
    );
    for (index, path, reason) in [
        (1, "corrupt.jpg", "corrupt JPEG"),
        (3, "truncated.jpg", "truncated JPEG"),
        (4, "missing.png", "file not found"),
    ] {
        let line = failures
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("{path} not listed: {failures}"));
        assert!(
            line.starts_with(&format!("probe,imagenet,{index},{path},")) && line.contains(reason),
            "{line}"
        );
    }

    // Allowing the failures turns the exit status to success; stored results are reused.
    run(d, &suite, &models)
        .arg("--allow-failures")
        .arg("3")
        .assert()
        .success();
}

#[test]
fn malformed_suite_manifest_and_cards_are_rejected_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probe_image(&d.join("img/a.png"), 1, 0);
    let models = probe_card(&d.join("models"), "probe");

    // Suite: broken TOML, with the line named.
    let bad_suite = d.join("bad.toml");
    std::fs::write(
        &bad_suite,
        "name = \"t\"\nid = \"imagenet\"\n[datasets.imagenet]\nmanifest = img.csv\n",
    )
    .unwrap();
    run(d, &bad_suite, &models)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml:4"));

    // Unknown suite name: the built-in names are listed.
    bin()
        .args(["run", "--suite", "imagenet-shiftz"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("imagenet-shifts").and(predicate::str::contains("demo")));

    // Manifest: an unknown label, with file, line and field.
    write_manifest(
        &d.join("img/manifest.csv"),
        &[("a.png", "1"), ("a.png", "n0000000x")],
    );
    let suite = suite(d, "img/manifest.csv");
    run(d, &suite, &models).assert().code(2).stderr(
        predicate::str::contains("manifest.csv:3: field `label`")
            .and(predicate::str::contains("n0000000x")),
    );
    assert!(
        !d.join("out/evals.csv").exists(),
        "rejected before any work"
    );

    // Missing manifest names the suite field.
    let missing = self::suite(d, "nope/manifest.csv");
    run(d, &missing, &models)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "field `datasets.imagenet.manifest`",
        ));
    let suite = self::suite(d, "img/manifest.csv");

    write_manifest(&d.join("img/manifest.csv"), &[("a.png", "1")]);
    // Card: a bad field.
    let bad_card = d.join("cards/bad.toml");
    std::fs::create_dir_all(d.join("cards")).unwrap();
    let onnx = root().join("tests/fixtures/probe.onnx");
    std::fs::write(
        &bad_card,
        format!(
            "onnx = \"{}\"\n[preprocess]\ncrop = 8\nresize = 4\n",
            onnx.display()
        ),
    )
    .unwrap();
    run(d, &suite, &bad_card)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bad.toml:4: field `preprocess.resize`",
        ));

    // Card whose crop does not match the model's input.
    std::fs::write(
        &bad_card,
        format!(
            "onnx = \"{}\"\n[preprocess]\ndefaults = \"imagenet\"\ncrop = 16\nresize = 16\n",
            onnx.display()
        ),
    )
    .unwrap();
    run(d, &suite, &bad_card)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "which does not fit the card (expected [N, 3, 16, 16]",
        ));

    // Card whose class count does not match the model's output.
    std::fs::write(&bad_card, format!("onnx = \"{}\"\n[preprocess]\ndefaults = \"imagenet\"\ncrop = 8\nresize = 8\n[output]\nnum_classes = 1001\noffset = 1\n", onnx.display())).unwrap();
    run(d, &suite, &bad_card)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "which does not fit the card (expected [N, 1001] from output.num_classes = 1001",
        ));
    assert!(
        !d.join("out/evals.csv").exists(),
        "rejected before any work"
    );
}
