//! Models as exported: float16 inputs and outputs, NHWC and BGR inputs, several outputs, a fixed
//! batch, and zero-shot heads, run end to end with real ONNX Runtime; and `robust-eval models`,
//! which checks cards against their ONNX files without running images. Each probe variant
//! (tests/fixtures/make_probe_model.py) computes the same logits as probe.onnx when fed as its card
//! says, so a setting that is ignored shows up as wrong predictions or a shape error.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;

/// Classes the images encode; ten images, so a batch of 4 leaves a short last batch.
const CLASSES: [usize; 10] = [0, 1, 33, 100, 250, 409, 530, 777, 900, 998];

fn fixture(name: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(name)
}

/// Probe images labelled `label(class)`, a one-dataset suite over them, and an empty models folder.
fn setup(dir: &Path, label: impl Fn(usize) -> usize) -> PathBuf {
    let data = dir.join("data");
    let mut rows = Vec::new();
    for (i, c) in CLASSES.iter().enumerate() {
        let file = format!("img{i}.png");
        probe_image(&data.join(&file), *c, 0);
        rows.push((file, label(*c).to_string()));
    }
    let rows: Vec<(&str, &str)> = rows.iter().map(|(f, l)| (f.as_str(), l.as_str())).collect();
    write_manifest(&data.join("manifest.csv"), &rows);
    std::fs::write(
        data.join("suite.toml"),
        "name = \"variants\"\nid = \"imgs\"\n[datasets.imgs]\nmanifest = \"manifest.csv\"\nscoring = \"imagenet-1k\"\n",
    )
    .unwrap();
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    models
}

/// A card for a probe variant: the probe's preprocessing plus `extra` TOML.
fn card(models: &Path, name: &str, onnx: &str, extra: &str) {
    std::fs::write(
        models.join(format!("{name}.toml")),
        format!(
            "name = \"{name}\"\nonnx = \"{}\"\n[preprocess]\nresize = 8\ncrop = 8\ninterpolation = \"bilinear\"\n\
             mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n{extra}",
            fixture(onnx).display()
        ),
    )
    .unwrap();
}

fn run(dir: &Path, models: &Path) -> (Vec<Row>, String) {
    let out = dir.join("out");
    let assert = bin()
        .args(["run", "--suite"])
        .arg(dir.join("data/suite.toml"))
        .arg("--models")
        .arg(models)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--out")
        .arg(&out)
        .args(["--progress", "plain"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    (evals(&out), stderr)
}

#[test]
fn float16_nhwc_bgr_named_output_and_fixed_batch_models_predict_like_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let models = setup(dir.path(), |c| c);
    card(&models, "plain", "probe.onnx", "");
    card(&models, "fp16", "probe_fp16.onnx", "");
    card(
        &models,
        "nhwc-bgr",
        "probe_nhwc_bgr.onnx",
        "[input]\nlayout = \"nhwc\"\nchannels = \"bgr\"\n",
    );
    card(
        &models,
        "two-outputs",
        "probe_two_outputs.onnx",
        "[output]\nname = \"logits\"\n",
    );
    card(&models, "batch4", "probe_batch4.onnx", "");
    // Negative control: the BGR model fed RGB reads blue (0 in every image) as red.
    card(
        &models,
        "bgr-as-rgb",
        "probe_nhwc_bgr.onnx",
        "[input]\nlayout = \"nhwc\"\n",
    );
    let (rows, stderr) = run(dir.path(), &models);
    for model in ["plain", "fp16", "nhwc-bgr", "two-outputs", "batch4"] {
        let r = row(&rows, model, "imgs");
        assert_eq!((r.n, r.correct), (10, 10), "{model}: {r:?}");
    }
    let control = row(&rows, "bgr-as-rgb", "imgs");
    assert_eq!(control.n, 10);
    assert!(
        control.correct <= 2,
        "channel order was ignored: {control:?}"
    );
    assert!(
        stderr.contains("batch4: its batch dimension is fixed at 4, so it runs at batch size 4"),
        "the fixed batch is said aloud: {stderr}"
    );
}

/// Class embeddings for a permuted identity head: class j's row is the unit vector of probe
/// logit π(j), so the zero-shot prediction for an image the probe reads as c is π⁻¹(c).
fn permuted(j: usize) -> usize {
    (7 * j + 3) % 1000
}

fn write_head(path: &Path, rows: usize, norm: f32) {
    let mut w = Array2::<f32>::zeros((rows, 1000));
    for j in 0..rows {
        w[[j, permuted(j)]] = norm;
    }
    w.write_npy(std::fs::File::create(path).unwrap()).unwrap();
}

#[test]
fn zero_shot_head_turns_embeddings_into_logits_and_scoring_applies_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let inverse: Vec<usize> = {
        let mut inv = vec![0; 1000];
        for j in 0..1000 {
            inv[permuted(j)] = j;
        }
        inv
    };
    let models = setup(dir.path(), |c| inverse[c]);
    write_head(&models.join("head.npy"), 1000, 1.0);
    // The probe's 1000-wide output serves as the image embedding.
    card(
        &models,
        "clip-like",
        "probe.onnx",
        "[output]\nname = \"logits\"\n[head]\nkind = \"zero-shot\"\nweights = \"head.npy\"\nscale = 100.0\n",
    );
    // The same model without the head predicts c itself, so it misses these labels.
    card(&models, "no-head", "probe.onnx", "");
    let (rows, _) = run(dir.path(), &models);
    assert_eq!(row(&rows, "clip-like", "imgs").correct, 10);
    assert!(row(&rows, "no-head", "imgs").correct <= 1);
}

#[derive(Debug, serde::Deserialize)]
struct Listing {
    models: Vec<Entry>,
    valid: usize,
    invalid: usize,
}

#[derive(Debug, serde::Deserialize)]
struct Entry {
    name: String,
    valid: bool,
    problems: Vec<String>,
    io: Option<serde_json::Value>,
    fixed_batch: Option<usize>,
}

fn listing(models: &Path, code: i32) -> Listing {
    let assert = bin()
        .args(["models", "--json", "--models"])
        .arg(models)
        .assert()
        .code(code);
    serde_json::from_slice(&assert.get_output().stdout).expect("models --json prints JSON")
}

#[test]
fn models_command_lists_valid_cards_and_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    write_head(&models.join("head.npy"), 1000, 1.0);
    card(&models, "fp16", "probe_fp16.onnx", "");
    card(&models, "batch4", "probe_batch4.onnx", "");
    card(
        &models,
        "clip-like",
        "probe.onnx",
        "[head]\nkind = \"zero-shot\"\nweights = \"head.npy\"\n",
    );
    let ok = listing(&models, 0);
    assert_eq!((ok.valid, ok.invalid), (3, 0), "{ok:?}");
    let batch4 = ok.models.iter().find(|e| e.name == "batch4").unwrap();
    assert_eq!(batch4.fixed_batch, Some(4));
    let fp16 = ok.models.iter().find(|e| e.name == "fp16").unwrap();
    assert_eq!(fp16.io.as_ref().unwrap()["input_type"], "float16");

    // Each broken card is listed with what is wrong, and the valid ones still are.
    write_head(&models.join("unnormalised.npy"), 1000, 2.0);
    card(&models, "nchw-for-nhwc", "probe_nhwc_bgr.onnx", "");
    card(&models, "first-output", "probe_two_outputs.onnx", "");
    card(
        &models,
        "no-such-output",
        "probe_two_outputs.onnx",
        "[output]\nname = \"probs\"\n",
    );
    card(
        &models,
        "bad-head",
        "probe.onnx",
        "[head]\nkind = \"zero-shot\"\nweights = \"unnormalised.npy\"\n",
    );
    card(
        &models,
        "head-missing",
        "probe.onnx",
        "[head]\nkind = \"zero-shot\"\nweights = \"nope.npy\"\n",
    );
    card(
        &models,
        "bad-layout",
        "probe.onnx",
        "[input]\nlayout = \"chw\"\n",
    );
    let bad = listing(&models, 1);
    assert_eq!((bad.valid, bad.invalid), (3, 6), "{bad:?}");
    let problem = |name: &str| {
        let e = bad.models.iter().find(|e| {
            e.name == name
                || e.problems
                    .iter()
                    .any(|p| p.contains(&format!("{name}.toml")))
        });
        let e = e.unwrap_or_else(|| panic!("{name} listed: {bad:?}"));
        assert!(!e.valid);
        e.problems.join("; ")
    };
    assert!(
        problem("nchw-for-nhwc").contains("[-1, 8, 8, 3]"),
        "{bad:?}"
    );
    assert!(
        problem("first-output").contains("output `features`"),
        "{bad:?}"
    );
    let p = problem("no-such-output");
    assert!(p.contains("output.name") && p.contains("`logits`"), "{p}");
    let p = problem("bad-head");
    assert!(
        p.contains("bad-head.toml:11: field `head.weights`") && p.contains("L2 norm 2.0"),
        "{p}"
    );
    assert!(problem("head-missing").contains("nope.npy: no such file"));
    assert!(problem("bad-layout").contains("field `input.layout`"));
}
