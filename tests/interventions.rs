//! `interpolate` (WiSE-FT) and `soup` through the real binary: the written initializers against an
//! independent numpy reference (tests/fixtures/interventions.py, using the `onnx` package), the
//! endpoints' predictions on real images against the endpoints', the greedy soup's record, and
//! the refusals.

mod common;

use std::path::{Path, PathBuf};

use common::{bin, python, root};
use predicates::prelude::PredicateBooleanExt;

fn reference(args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(python())
        .arg(root().join("tests/fixtures/interventions.py"))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "reference {:?} failed:\n{}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The reference's models (see interventions.py `make`) in a fresh folder.
fn models() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference(&["make".as_ref(), m.as_os_str()]);
    (dir, m)
}

fn interpolate(a: &Path, b: &Path, alphas: &str, out: &Path, family: &str) {
    bin()
        .args(["interpolate".as_ref(), a.as_os_str(), b.as_os_str()])
        .args(["--alphas", alphas, "--family", family, "--out"])
        .arg(out)
        .assert()
        .success();
}

#[test]
fn interpolated_initializers_match_an_independent_reference() {
    let (dir, m) = models();
    let out = dir.path().join("wise");
    interpolate(
        &m.join("a.toml"),
        &m.join("b.toml"),
        "0,0.3,0.5,0.7,1",
        &out,
        "ab",
    );
    for alpha in ["0.00", "0.30", "0.50", "0.70", "1.00"] {
        let model = out.join(format!("ab-a{alpha}.onnx"));
        let (a, b) = (m.join("a.onnx"), m.join("b.onnx"));
        reference(&[
            "interp".as_ref(),
            a.as_os_str(),
            b.as_os_str(),
            model.as_os_str(),
            alpha.as_ref(),
        ]);
    }
    // α = 0 is A, byte for byte: A's file with A's payloads.
    assert_eq!(
        std::fs::read(out.join("ab-a0.00.onnx")).unwrap(),
        std::fs::read(m.join("a.onnx")).unwrap()
    );
    let card = std::fs::read_to_string(out.join("ab-a0.30.toml")).unwrap();
    for line in [
        "name = \"ab-a0.30\"",
        "onnx = \"ab-a0.30.onnx\"",
        "group = \"wise-ft\"",
        "crop = 32",
        "num_classes = 4",
        "[intervention]\nkind = \"wise-ft\"\nfamily = \"ab\"\nalpha = 0.3\nendpoints = [\"a\", \"b\"]",
    ] {
        assert!(card.contains(line), "{line:?} not in\n{card}");
    }
    // The written cards are valid cards, [intervention] table included.
    let loaded = robust_eval::input::card::ModelCard::load(&out.join("ab-a0.30.toml")).unwrap();
    assert_eq!(
        (loaded.name.as_str(), loaded.group.as_str()),
        ("ab-a0.30", "wise-ft")
    );
}

#[test]
fn external_data_models_get_their_own_data_file() {
    let (dir, m) = models();
    let out = dir.path().join("wise");
    interpolate(
        &m.join("a_ext.toml"),
        &m.join("b_ext.toml"),
        "0:1:0.25",
        &out,
        "ext",
    );
    for alpha in ["0.00", "0.25", "0.50", "0.75", "1.00"] {
        let name = format!("ext-a{alpha}");
        assert!(out.join(format!("{name}.data")).is_file(), "{name}.data");
        let onnx = std::fs::read(out.join(format!("{name}.onnx"))).unwrap();
        let text = String::from_utf8_lossy(&onnx);
        assert!(!text.contains("a_ext.weights") && text.contains(&format!("{name}.data")));
        let (a, b, model) = (
            m.join("a_ext.onnx"),
            m.join("b_ext.onnx"),
            out.join(format!("{name}.onnx")),
        );
        reference(&[
            "interp".as_ref(),
            a.as_os_str(),
            b.as_os_str(),
            model.as_os_str(),
            alpha.as_ref(),
        ]);
    }
    // Inline and external models mix too (the same graph, the weights stored differently).
    interpolate(
        &m.join("a.toml"),
        &m.join("b_ext.toml"),
        "0.6",
        &out,
        "mixed",
    );
    let (a, b, model) = (
        m.join("a.onnx"),
        m.join("b_ext.onnx"),
        out.join("mixed-a0.60.onnx"),
    );
    reference(&[
        "interp".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
        model.as_os_str(),
        "0.6".as_ref(),
    ]);
}

#[test]
fn uniform_soup_is_the_mean() {
    let (dir, m) = models();
    let out = dir.path().join("soup");
    bin()
        .arg("soup")
        .args([m.join("a.toml"), m.join("b_ext.toml"), m.join("b.toml")])
        .args(["--name", "s3", "--out"])
        .arg(&out)
        .assert()
        .success();
    let model = out.join("s3.onnx");
    let members = [m.join("a.onnx"), m.join("b_ext.onnx"), m.join("b.onnx")];
    let mut args: Vec<&std::ffi::OsStr> = vec!["soup".as_ref(), model.as_os_str()];
    args.extend(members.iter().map(|p| p.as_os_str()));
    reference(&args);
    let card = std::fs::read_to_string(out.join("s3.toml")).unwrap();
    assert!(card.contains("group = \"soup\""), "{card}");
    assert!(
        card.contains("kind = \"soup\"\nmembers = [\"a\", \"b_ext\", \"b\"]\nrecipe = \"uniform\""),
        "{card}"
    );
}

/// Runs `robust-eval interpolate a <other>` and returns stderr, asserting exit status 2.
fn refused(m: &Path, other: &str) -> String {
    // The bare .onnx files here have no card: the defaults are meant.
    let out = bin()
        .arg("--assume-imagenet-preprocessing")
        .args([
            "interpolate".as_ref(),
            m.join("a.toml").as_os_str(),
            m.join(other).as_os_str(),
        ])
        .args(["--alphas", "0.5", "--out"])
        .arg(m.join("out"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(!m.join("out").exists(), "nothing written when refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn mismatches_are_refused_naming_the_files() {
    let (_dir, m) = models();
    let a = m.join("a.onnx").display().to_string();
    let cases = [
        ("other_graph.onnx", "node 1: Relu in A, Sigmoid in B"),
        ("int_differs.onnx", "initializer `shape`"),
        ("b_crop.toml", "`preprocess.crop` (32 vs 28)"),
        ("b_head.toml", "one has a [head] and the other not"),
    ];
    for (other, why) in cases {
        let err = refused(&m, other);
        let other_file = m.join(other).display().to_string();
        assert!(err.contains(why), "{other}: {err}");
        assert!(err.contains(&other_file), "{other}: {err}");
        assert!(
            err.contains(&a) || err.contains(&m.join("a.toml").display().to_string()),
            "{other}: {err}"
        );
    }
    let err = refused(&m, "int_differs.onnx");
    assert!(
        err.contains("integer weights cannot be interpolated"),
        "{err}"
    );
}

fn demo_model(name: &str) -> PathBuf {
    root().join("demo/models").join(format!("{name}.toml"))
}

/// Top-5 predictions of each model on `dataset` of a results folder.
fn predictions(results: &Path, model: &str, dataset: &str) -> polars::prelude::DataFrame {
    let file = results
        .join("predictions")
        .join(model)
        .join(format!("{dataset}.parquet"));
    robust_eval::results::store::read_predictions(&file).unwrap()
}

#[test]
fn endpoints_predict_what_the_endpoint_models_predict_on_real_images() {
    // std-xl and robust-l: one architecture, trained differently (the demo's "fine-tuned" model).
    let dir = tempfile::tempdir().unwrap();
    let wise = dir.path().join("wise");
    interpolate(
        &demo_model("std-xl"),
        &demo_model("robust-l"),
        "0,0.5,1",
        &wise,
        "w",
    );
    let results = dir.path().join("results");
    bin()
        .args([
            "run",
            "--suite",
            "demo",
            "--datasets",
            "shapes-v2",
            "--progress",
            "none",
        ])
        .args(["--models".as_ref(), wise.as_os_str()])
        .args(["--models".as_ref(), demo_model("std-xl").as_os_str()])
        .args(["--models".as_ref(), demo_model("robust-l").as_os_str()])
        .arg("--out")
        .arg(&results)
        .assert()
        .success();
    for dataset in ["shapes", "shapes-v2"] {
        let (a, b) = (
            predictions(&results, "std-xl", dataset),
            predictions(&results, "robust-l", dataset),
        );
        assert!(
            !a.equals(&b),
            "the endpoints must differ for this test to mean anything"
        );
        assert!(
            predictions(&results, "w-a0.00", dataset).equals(&a),
            "{dataset}: α = 0 is A"
        );
        assert!(
            predictions(&results, "w-a1.00", dataset).equals(&b),
            "{dataset}: α = 1 is B"
        );
        let half = predictions(&results, "w-a0.50", dataset);
        assert!(
            !half.equals(&a) && !half.equals(&b),
            "{dataset}: α = 0.5 is neither"
        );
    }
}

#[test]
fn greedy_soup_records_its_choices_and_warns_when_chosen_on_id() {
    let dir = tempfile::tempdir().unwrap();
    let wise = dir.path().join("wise");
    interpolate(
        &demo_model("std-xl"),
        &demo_model("robust-l"),
        "0.5",
        &wise,
        "w",
    );
    let out = dir.path().join("soup");
    let greedy = || {
        let mut cmd = bin();
        cmd.arg("soup")
            .args([
                demo_model("std-xl"),
                demo_model("robust-l"),
                wise.join("w-a0.50.toml"),
            ])
            .args(["--greedy", "--suite", "demo", "--held-out", "shapes"])
            .args(["--progress", "none", "--out"])
            .arg(&out);
        cmd
    };
    let assert = greedy().assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr);
    assert!(
        stderr.contains("in-distribution dataset") && stderr.contains("biased upward"),
        "{stderr}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("greedy-soup.soup.json")).unwrap()).unwrap();
    assert_eq!(record["held_out"], "shapes");
    assert!(record["warning"]
        .as_str()
        .unwrap()
        .contains("biased upward"));
    let candidates = record["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3);
    let top1: Vec<f64> = candidates
        .iter()
        .map(|c| c["held_out_top1"].as_f64().unwrap())
        .collect();
    assert!(
        top1.windows(2).all(|w| w[0] >= w[1]),
        "best first: {top1:?}"
    );
    let steps = record["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    // Kept: the best candidate, then each step whose soup did not drop below the best so far.
    let mut best = top1[0];
    let mut kept = vec![candidates[0]["model"].as_str().unwrap()];
    for step in steps {
        let acc = step["soup_top1"].as_f64().unwrap();
        assert_eq!(step["kept"].as_bool().unwrap(), acc >= best, "{step}");
        if acc >= best {
            best = acc;
            kept.push(step["candidate"].as_str().unwrap());
        }
    }
    let recorded: Vec<&str> = record["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(recorded, kept);
    let card = std::fs::read_to_string(out.join("greedy-soup.toml")).unwrap();
    assert!(card.contains("recipe = \"greedy\""), "{card}");
    let members = format!("members = {kept:?}");
    assert!(card.contains(&members), "{members} not in {card}");
    // Each tried soup is deleted once evaluated (its result stays): no model left under soups/.
    let left: Vec<_> = std::fs::read_dir(out.join("greedy-results/soups"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "tried soups left on disk: {left:?}");
    // The held-out evaluations are stored and reused: a second run evaluates nothing again.
    let again = greedy().arg("--json").assert().success();
    let second: serde_json::Value = serde_json::from_slice(&again.get_output().stdout).unwrap();
    assert_eq!(second["kept"], record["kept"]);
}

/// The demo's WiSE-FT curve (made by scripts/make_demo.py in numpy) is what `interpolate` writes
/// from the demo's zero-shot and fine-tuned models: both checked against the reference formula,
/// and the tool's models against the demo's, initializer by initializer.
#[test]
fn the_demos_curve_is_what_interpolate_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wise");
    let alphas = ["0.20", "0.40", "0.50", "0.60", "0.80"];
    interpolate(
        &demo_model("zeroshot"),
        &demo_model("finetuned"),
        &alphas.join(","),
        &out,
        "wiseft",
    );
    let models = root().join("demo/models");
    let (zs, ft) = (models.join("zeroshot.onnx"), models.join("finetuned.onnx"));
    for alpha in alphas {
        let shipped = models.join(format!("wiseft-a{alpha}.onnx"));
        let ours = out.join(format!("wiseft-a{alpha}.onnx"));
        for model in [&shipped, &ours] {
            reference(&[
                "interp".as_ref(),
                zs.as_os_str(),
                ft.as_os_str(),
                model.as_os_str(),
                alpha.as_ref(),
            ]);
        }
        let card = std::fs::read_to_string(out.join(format!("wiseft-a{alpha}.toml"))).unwrap();
        let demo_card =
            std::fs::read_to_string(models.join(format!("wiseft-a{alpha}.toml"))).unwrap();
        let intervention = |c: &str| c[c.find("[intervention]").unwrap()..].trim().to_string();
        assert_eq!(intervention(&card), intervention(&demo_card), "α = {alpha}");
    }
}

/// Protobuf by hand, for models no exporter writes.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}
fn field(number: u64, payload: &[u8]) -> Vec<u8> {
    [
        varint(number << 3 | 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}
fn number(number: u64, v: u64) -> Vec<u8> {
    [varint(number << 3), varint(v)].concat()
}
/// y = x + w, with `tensor` as the initializer w.
fn crafted_model(tensor: &[u8]) -> Vec<u8> {
    let node = [
        field(1, b"x"),
        field(1, b"w"),
        field(2, b"y"),
        field(4, b"Add"),
    ]
    .concat();
    let graph = [
        field(1, &node),
        field(2, b"g"),
        field(5, tensor),
        field(11, &field(1, b"x")),
        field(12, &field(1, b"y")),
    ]
    .concat();
    let opset = [field(1, b""), number(2, 13)].concat();
    [number(1, 8), field(8, &opset), field(7, &graph)].concat()
}
/// A float tensor `w` of one element in external file `location`.
fn external_tensor(location: &[u8]) -> Vec<u8> {
    let entry = |k: &[u8], v: &[u8]| field(13, &[field(1, k), field(2, v)].concat());
    [
        number(1, 1),
        number(2, 1),
        field(8, b"w"),
        entry(b"location", location),
        entry(b"length", b"4"),
        number(14, 1),
    ]
    .concat()
}

/// Crafted models are refused, not followed: an external `location` key stored as a number (so
/// the reference check saw no location) naming a file outside the folder, a shape whose size
/// overflows, and a soup whose output would overwrite an input's external data.
#[test]
fn crafted_models_are_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let entry_as_number = [
        [varint(1 << 3 | 1), b"location".to_vec()].concat(),
        field(2, b"/etc/passwd"),
    ]
    .concat();
    let escaping = [
        number(1, 4),
        number(2, 1),
        field(8, b"w"),
        field(13, &entry_as_number),
        number(14, 1),
    ]
    .concat();
    let overflowing = [
        number(1, 1 << 62),
        number(2, 1),
        field(8, b"w"),
        field(9, b""),
    ]
    .concat();
    for (name, tensor) in [("escape", escaping), ("overflow", overflowing)] {
        let model = d.join(format!("{name}.onnx"));
        std::fs::write(&model, crafted_model(&tensor)).unwrap();
        let out = d.join(format!("out-{name}"));
        let assert = bin()
            .arg("--assume-imagenet-preprocessing")
            .args([
                "interpolate".as_ref(),
                model.as_os_str(),
                model.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ])
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        assert!(stderr.contains(&format!("{name}.onnx")), "{name}: {stderr}");
        let written: Vec<_> = std::fs::read_dir(&out)
            .map(|r| r.flatten().collect())
            .unwrap_or_default();
        assert!(written.is_empty(), "{name}: wrote {written:?}");
    }
    let ow = d.join("ow");
    std::fs::create_dir_all(&ow).unwrap();
    for (model, data, value) in [("m1", "soup.data", 1.0f32), ("m2", "w2.data", 3.0)] {
        std::fs::write(
            ow.join(format!("{model}.onnx")),
            crafted_model(&external_tensor(data.as_bytes())),
        )
        .unwrap();
        std::fs::write(ow.join(data), value.to_le_bytes()).unwrap();
    }
    bin()
        .arg("--assume-imagenet-preprocessing")
        .args([
            "soup".as_ref(),
            ow.join("m1.onnx").as_os_str(),
            ow.join("m2.onnx").as_os_str(),
        ])
        .args(["--name", "soup", "--out"])
        .arg(&ow)
        .assert()
        .code(2)
        .stderr(
            predicates::prelude::predicate::str::contains("soup.data")
                .and(predicates::prelude::predicate::str::contains("input")),
        );
    assert_eq!(
        std::fs::read(ow.join("soup.data")).unwrap(),
        1.0f32.to_le_bytes()
    );
}

/// Heads are linear layers mixed as wise-ft's `_merge` mixes a state dict: a zero-shot head
/// (logit scale × unit rows, no bias) with a fine-tuned linear head (any-norm rows, a bias),
/// two zero-shot heads, and two linear heads each give exactly the numpy mix of scale·W and
/// bias; and the zero-shot/linear mix predicts, on the demo's images, exactly as a hand-written
/// linear head holding the paper's mix. Heads of another shape are refused, naming both files.
#[test]
fn heads_mix_as_the_papers_linear_layers() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("heads");
    let demo = root().join("demo/models");
    reference(&["heads".as_ref(), h.as_os_str(), demo.as_os_str()]);
    for (a, b, family) in [("zs", "ft", "zf"), ("zs", "zs2", "zz"), ("ft", "ft2", "ff")] {
        let out = dir.path().join(family);
        let (ca, cb) = (h.join(format!("{a}.toml")), h.join(format!("{b}.toml")));
        interpolate(&ca, &cb, "0,0.3,1", &out, family);
        let name = format!("{family}-a0.30");
        reference(&[
            "headmix".as_ref(),
            ca.as_os_str(),
            cb.as_os_str(),
            out.as_os_str(),
            name.as_ref(),
            "0.3".as_ref(),
        ]);
    }
    let results = dir.path().join("results");
    bin()
        .args(["run", "--suite", "demo", "--datasets", "shapes-v2"])
        .args(["--progress", "none", "--models"])
        .arg(dir.path().join("zf"))
        .args(["--models".as_ref(), h.join("zs.toml").as_os_str()])
        .args(["--models".as_ref(), h.join("ft.toml").as_os_str()])
        .arg("--out")
        .arg(&results)
        .assert()
        .success();
    for dataset in ["shapes", "shapes-v2"] {
        let p = |m: &str| predictions(&results, m, dataset);
        let (zs, ft, paper) = (p("zs"), p("ft"), p("paper"));
        assert!(!zs.equals(&ft), "the endpoints must differ");
        assert!(
            p("zf-a0.30").equals(&paper),
            "{dataset}: α = 0.3 is the paper's mix"
        );
        assert!(
            !paper.equals(&zs) && !paper.equals(&ft),
            "{dataset}: the mix is neither end"
        );
        assert!(
            p("zf-a0.00").equals(&zs),
            "{dataset}: α = 0 is the zero-shot model"
        );
        assert!(
            p("zf-a1.00").equals(&ft),
            "{dataset}: α = 1 is the fine-tuned model"
        );
    }
    let out = dir.path().join("narrow");
    let assert = bin()
        .args(["interpolate".as_ref(), h.join("zs.toml").as_os_str()])
        .arg(h.join("ft_narrow.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    for text in ["zs_w.npy", "narrow_w.npy", "(10, 10)", "(5, 10)"] {
        assert!(stderr.contains(text), "no `{text}` in {stderr}");
    }
    assert!(!out.exists(), "nothing is written when a check fails");
}

/// A tensor holding its values in two fields (raw_data and float_data: ONNX Runtime reads one,
/// a mixer could read the other) is refused, as onnx.checker refuses it; so is external data
/// that is not a regular file.
#[test]
fn tensors_with_two_value_fields_or_odd_external_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let two_fields = [
        number(1, 1),
        number(2, 1),
        field(8, b"w"),
        field(4, &1.0f32.to_le_bytes()),
        field(9, &2.0f32.to_le_bytes()),
    ]
    .concat();
    let model = d.join("two.onnx");
    std::fs::write(&model, crafted_model(&two_fields)).unwrap();
    bin()
        .args(["interpolate".as_ref(), model.as_os_str(), model.as_os_str()])
        .arg("--assume-imagenet-preprocessing")
        .arg("--out")
        .arg(d.join("out"))
        .assert()
        .code(2)
        .stderr(
            predicates::prelude::predicate::str::contains("two.onnx").and(
                predicates::prelude::predicate::str::contains("float_data, raw_data"),
            ),
        );
    assert!(!d.join("out").exists());
    // External data that is a folder, not a file.
    let ext = d.join("ext");
    std::fs::create_dir_all(ext.join("w.data")).unwrap();
    std::fs::write(
        ext.join("m.onnx"),
        crafted_model(&external_tensor(b"w.data")),
    )
    .unwrap();
    bin()
        .args(["interpolate".as_ref(), ext.join("m.onnx").as_os_str()])
        .arg(ext.join("m.onnx"))
        .arg("--assume-imagenet-preprocessing")
        .arg("--out")
        .arg(d.join("out2"))
        .assert()
        .code(2)
        .stderr(predicates::prelude::predicate::str::contains("w.data"));
    assert!(!d.join("out2").exists());
}
