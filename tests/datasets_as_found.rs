//! Datasets and model folders as people have them: ImageNet val in the devkit's flat form, and
//! model folders that hold provenance sidecars beside the cards. Through the real binary.

mod common;

use std::path::Path;

use common::bin;

/// ILSVRC2012_ID → wnid for the IDs the synthetic layout uses (devkit order, from meta.mat).
const IDS: [(u32, &str); 4] = [
    (490, "n01751748"),
    (1, "n02119789"),
    (3, "n02110185"),
    (1000, "n03255030"),
];

/// Flat val files ILSVRC2012_val_00000001.JPEG.. (contents unread by `manifest`).
fn flat_val(dir: &Path) -> std::path::PathBuf {
    let val = dir.join("val");
    std::fs::create_dir_all(&val).unwrap();
    for i in 1..=IDS.len() {
        std::fs::write(val.join(format!("ILSVRC2012_val_{i:08}.JPEG")), b"").unwrap();
    }
    val
}

#[test]
fn devkit_ground_truth_builds_the_same_manifest_as_loc_val_solution() {
    let dir = tempfile::tempdir().unwrap();
    let val = flat_val(dir.path());
    // The devkit has one line per val image, so more lines than images on disk is normal.
    let mut devkit: String = IDS.iter().map(|(id, _)| format!("{id}\n")).collect();
    devkit.push_str("7\n");
    let devkit_gt = dir.path().join("ILSVRC2012_validation_ground_truth.txt");
    std::fs::write(&devkit_gt, devkit).unwrap();
    // Same labels as LOC_val_solution.csv (wnid first in PredictionString), rows out of order.
    let mut loc = String::from("ImageId,PredictionString\n");
    for (i, (_, wnid)) in IDS.iter().enumerate().rev() {
        loc.push_str(&format!("ILSVRC2012_val_{:08},{wnid} 10 20 30 40\n", i + 1));
    }
    let loc_gt = dir.path().join("LOC_val_solution.csv");
    std::fs::write(&loc_gt, loc).unwrap();

    let build = |gt: &Path, out: &str| {
        let out = dir.path().join(out);
        let assert = bin()
            .args(["manifest", "imagenet", "--root"])
            .arg(&val)
            .arg("--ground-truth")
            .arg(gt)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        (std::fs::read_to_string(out).unwrap(), stderr)
    };
    let (from_devkit, said_devkit) = build(&devkit_gt, "devkit.csv");
    let (from_loc, said_loc) = build(&loc_gt, "loc.csv");
    assert_eq!(from_devkit, from_loc);
    assert!(
        said_devkit.contains("read as devkit ground truth"),
        "{said_devkit}"
    );
    assert!(said_loc.contains("read as CSV"), "{said_loc}");
    let labels: Vec<&str> = from_devkit
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    assert_eq!(labels, IDS.map(|(_, w)| w));

    // Told by content, whatever the file is called.
    let renamed = dir.path().join("gt.txt");
    std::fs::copy(&devkit_gt, &renamed).unwrap();
    let (from_renamed, _) = build(&renamed, "renamed.csv");
    assert_eq!(from_renamed, from_loc);
}

#[test]
fn bad_devkit_lines_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let val = flat_val(dir.path());
    for (text, line) in [
        ("490\n1\n1001\n5\n", 3),
        ("490\nkit fox\n", 2),
        ("490\n1\n3\n\n2\n", 4),
    ] {
        let gt = dir.path().join("ILSVRC2012_validation_ground_truth.txt");
        std::fs::write(&gt, text).unwrap();
        let out = bin()
            .args(["manifest", "imagenet", "--root"])
            .arg(&val)
            .arg("--ground-truth")
            .arg(&gt)
            .arg("--out")
            .arg(dir.path().join("m.csv"))
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let err = String::from_utf8_lossy(&out);
        assert!(
            err.contains(&format!(
                "ILSVRC2012_validation_ground_truth.txt:{line}: field `ILSVRC2012_ID`"
            )),
            "{text:?}: {err}"
        );
    }
    // Fewer lines than images: the missing image is named.
    let gt = dir.path().join("short.txt");
    std::fs::write(&gt, "490\n1\n").unwrap();
    let out = bin()
        .args(["manifest", "imagenet", "--root"])
        .arg(&val)
        .arg("--ground-truth")
        .arg(&gt)
        .arg("--out")
        .arg(dir.path().join("m.csv"))
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("ILSVRC2012_val_00000003"), "{err}");
}

#[test]
fn models_lists_cards_not_the_sidecars_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let demo = common::root().join("demo").join("models");
    let onnx = std::fs::read_dir(&demo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "onnx"))
        .expect("a demo model");
    std::fs::copy(&onnx, dir.path().join("a.onnx")).unwrap();
    std::fs::copy(&onnx, dir.path().join("b.onnx")).unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "name = \"alpha\"\nonnx = \"a.onnx\"\n[preprocess]\ndefaults = \"imagenet\"\n",
    )
    .unwrap();
    // A provenance sidecar (the reference models' form) beside b.onnx, and an unrelated config.
    std::fs::write(
        dir.path().join("b.toml"),
        "model = \"b\"\nonnx_file = \"b.onnx\"\nmean = [0.5, 0.5, 0.5]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tool.toml"), "[settings]\nverbose = true\n").unwrap();
    std::fs::write(dir.path().join("SOURCES.md"), "# where these came from\n").unwrap();
    let out = bin()
        .args(["models", "--json", "--models"])
        .arg(dir.path())
        .assert()
        .get_output()
        .stdout
        .clone();
    let listing: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let cards: Vec<String> = listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let card = m["card"].as_str().unwrap();
            Path::new(card)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    // The card, then b.onnx as a model without a card; neither sidecar is listed as a card.
    assert_eq!(cards, ["a.toml", "b.onnx"], "{listing}");

    // Named directly, b.onnx does not take the sidecar beside it for its card either: with no
    // card it is refused, the sidecar is called one, and the advice never overwrites b.toml.
    let out = bin()
        .args(["models", "--json", "--models"])
        .arg(dir.path().join("b.onnx"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let listing: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let b = &listing["models"][0];
    assert!(b["card"].as_str().unwrap().ends_with("b.onnx"), "{listing}");
    let problem = b["problems"][0].as_str().unwrap();
    assert!(problem.contains("no model card"), "{listing}");
    assert!(
        problem.contains("b.toml beside it is not a model card"),
        "{problem}"
    );
    assert!(problem.contains("b.card.toml"), "{problem}");
    assert!(
        problem.contains("--assume-imagenet-preprocessing"),
        "{problem}"
    );
    // With the flag it is taken with ImageNet's preprocessing, said in a warning.
    // (The demo model takes 32×32 images, so without its card it does not fit the defaults.)
    let out = bin()
        .args([
            "models",
            "--assume-imagenet-preprocessing",
            "--json",
            "--models",
        ])
        .arg(dir.path().join("b.onnx"))
        .assert()
        .get_output()
        .stdout
        .clone();
    let listing: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let warning = listing["models"][0]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("has no model card"), "{listing}");
    assert!(
        warning.contains("Write") && warning.contains("b.card.toml"),
        "{warning}"
    );
    let overwrite = format!("Write {} ", dir.path().join("b.toml").display());
    assert!(!warning.contains(&overwrite), "{warning}");

    // A card with a syntax error is still a card, reported as invalid (exit 1).
    std::fs::write(dir.path().join("c.toml"), "onnx = \"a.onnx\n").unwrap();
    bin()
        .args(["models", "--models"])
        .arg(dir.path())
        .assert()
        .code(1);
}

#[test]
fn models_on_the_reference_folder_lists_no_sidecar() {
    let Some(reference) = common::reference("models_on_the_reference_folder_lists_no_sidecar")
    else {
        return;
    };
    let models = reference.join("models");
    let out = bin()
        .args(["models", "--json", "--models"])
        .arg(&models)
        .assert()
        .get_output()
        .stdout
        .clone();
    let listing: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for m in listing["models"].as_array().unwrap() {
        let card = m["card"].as_str().unwrap();
        assert!(
            card.ends_with(".onnx"),
            "a sidecar listed as a card: {card}"
        );
    }
}
