//! `robust-eval gate` through the binary, on results folders written with the library's own store
//! and known per-image flips.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use predicates::prelude::*;
use robust_eval::engine::preprocess::PreprocessSpec;
use robust_eval::results::store::{EvalRow, Evaluation, Predictions, ResultsStore};

/// A results folder with one model scored on `dataset`: `outcomes[i]` says whether image i was right.
fn folder(dir: &Path, model: &str, dataset: &str, manifest_sha256: &str, outcomes: &[bool]) {
    let mut store = ResultsStore::open(dir).unwrap();
    store.run.tool_version = "test".into();
    let n = outcomes.len() as u64;
    let correct = outcomes.iter().filter(|&&c| c).count() as u64;
    let row = EvalRow {
        model: model.into(),
        labelled: true,
        group: "standard".into(),
        dataset: dataset.into(),
        n,
        correct,
        top1: 100.0 * correct as f64 / n as f64,
        top5: None,
        top1_ci_low: 0.0,
        top1_ci_high: 100.0,
        failed: 0,
        skipped: 0,
        provider: "CPUExecutionProvider".into(),
        seconds: 1.0,
        images_per_s: n as f64,
    };
    let predictions = Predictions {
        index: (0..n as u32).collect(),
        path: (0..n).map(|i| format!("img{i}.jpg")).collect(),
        label: vec!["0".into(); n as usize],
        target: vec![0; n as usize],
        top5: vec![vec![0]; n as usize],
        correct: outcomes.to_vec(),
        correct_top5: outcomes.to_vec(),
        ..Default::default()
    };
    let evaluation = Evaluation {
        model: model.into(),
        dataset: dataset.into(),
        views: vec![dataset.into()],
        scoring: "imagenet-1k".into(),
        model_file: "m.onnx".into(),
        model_sha256: "0".repeat(64),
        model_setup: String::new(),
        manifest: "manifest.csv".into(),
        manifest_sha256: manifest_sha256.into(),
        preprocess: PreprocessSpec::imagenet_default(),
        resize: Default::default(),
        border: 0,
        provider: "CPUExecutionProvider".into(),
        batch_size: 64,
        started: String::new(),
        finished: String::new(),
        seconds: 1.0,
        waiting_for_images: 0.0,
        rows: None,
        execution: Default::default(),
        labelled: true,
    };
    store
        .record(
            evaluation,
            vec![row],
            vec![],
            vec![(dataset.into(), predictions)],
        )
        .unwrap();
}

const N: usize = 1000;
const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Baseline: the first 900 images right. Candidate: `to_wrong` of those wrong, `to_right` of the rest right.
fn pair_of_folders(to_wrong: usize, to_right: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<bool> = (0..N).map(|i| i < 900).collect();
    let mut cand = base.clone();
    for c in cand.iter_mut().take(to_wrong) {
        *c = false;
    }
    for c in cand.iter_mut().skip(900).take(to_right) {
        *c = true;
    }
    folder(&dir.path().join("base"), "resnet", "imagenet", SHA, &base);
    folder(&dir.path().join("cand"), "resnet", "imagenet", SHA, &cand);
    dir
}

fn gate(dir: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["gate", "--baseline"])
        .arg(dir.join("base"))
        .arg("--candidate")
        .arg(dir.join("cand"));
    cmd
}

#[test]
fn large_significant_drop_fails_with_a_readable_summary() {
    let dir = pair_of_folders(60, 5);
    let md = dir.path().join("summary.md");
    let junit = dir.path().join("junit.xml");
    gate(dir.path())
        .arg("--markdown")
        .arg(&md)
        .arg("--junit")
        .arg(&junit)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL").and(predicate::str::contains("60 / 5")));
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(summary.contains("regression found"), "{summary}");
    assert!(
        summary.contains("**resnet** on **imagenet**: top1 dropped 5.50 pp (90.00 → 84.50)"),
        "{summary}"
    );
    assert!(
        summary.contains("60 images turned wrong, 5 turned right"),
        "{summary}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(
        cases.len(),
        1,
        "one case per rule and row (no shifts here, so no ER rules)"
    );
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.children().any(|k| k.has_tag_name("failure")))
            .count(),
        1
    );
}

#[test]
fn drop_over_threshold_but_not_significant_passes_with_a_warning() {
    let dir = pair_of_folders(8, 2);
    gate(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("WARN").and(predicate::str::contains("PASSED")));
    // Without the significance requirement the same drop fails.
    gate(dir.path())
        .arg("--ignore-significance")
        .assert()
        .code(1);
}

#[test]
fn improvement_passes_and_is_reported() {
    let dir = pair_of_folders(2, 30);
    gate(dir.path())
        .arg("--json")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"verdict\": \"improved\""));
}

#[test]
fn comparisons_that_cannot_be_made_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
    folder(
        &dir.path().join("base"),
        "resnet",
        "imagenet",
        SHA,
        &outcomes,
    );
    folder(
        &dir.path().join("cand"),
        "resnet",
        "imagenet",
        &"b".repeat(64),
        &outcomes,
    );
    gate(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("different manifests"));
    gate(dir.path())
        .args(["--pair", "resnet=vit"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no model `vit`"));
    bin()
        .args(["gate", "--baseline", "/nonexistent", "--candidate"])
        .arg(dir.path().join("cand"))
        .assert()
        .code(2);
}

#[test]
fn without_paired_predictions_the_counts_are_compared() {
    let dir = pair_of_folders(60, 5);
    std::fs::remove_file(dir.path().join("cand/predictions/resnet/imagenet.parquet")).unwrap();
    gate(dir.path())
        .arg("--json")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("two-proportion"));
}

#[test]
fn mcnemar_p_values_match_scipy() {
    let cases = [(60u64, 5u64), (8, 2), (0, 7), (13, 13), (250, 190), (1, 0)];
    let script = format!(
        "from scipy.stats import binomtest\nfor b, c in {cases:?}:\n    print(binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0)\n"
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    for ((b, c), want) in cases.iter().zip(expected) {
        let got = robust_eval::analysis::gate::mcnemar_exact(*b, *c);
        assert!(
            (got - want).abs() < 1e-9 * want.max(1e-300) + 1e-15,
            "b={b} c={c}: {got} vs scipy {want}"
        );
    }
}

/// `correct` of `n` images right (the first ones).
fn first_right(n: usize, correct: usize) -> Vec<bool> {
    (0..n).map(|i| i < correct).collect()
}

#[test]
fn a_model_missing_from_the_candidate_fails_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (base, cand) = (dir.path().join("base"), dir.path().join("cand"));
    let right = first_right(N, 900);
    for m in ["lite0", "lite1", "lite2"] {
        folder(&base, m, "imagenet", SHA, &right);
    }
    folder(&base, "lite0", "imagenet-v2", SHA, &right);
    // lite2's export failed: lite2-int8 came instead; and lite0 lost its V2 row.
    for m in ["lite0", "lite1", "lite2-int8"] {
        folder(&cand, m, "imagenet", SHA, &right);
    }
    let md = dir.path().join("summary.md");
    let junit = dir.path().join("junit.xml");
    gate(dir.path())
        .arg("--accuracy-only")
        .arg("--markdown")
        .arg(&md)
        .arg("--junit")
        .arg(&junit)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "FAIL      missing: lite2 is in the baseline but not in the candidate",
            )
            .and(predicate::str::contains("missing: lite0 on imagenet-v2"))
            .and(predicate::str::contains("new: lite2-int8 is in the candidate only"))
            .and(predicate::str::contains(
                "FAILED: 2 checks, 0 failed, 0 warnings, 0 improved; 2 missing from the candidate (2 failing), 1 new",
            )),
        );
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(summary.contains("regression found"), "{summary}");
    assert!(
        summary.contains("❌ fail **lite2**: in the baseline, missing from the candidate"),
        "{summary}"
    );
    assert!(
        summary.contains("**lite2-int8**: new in the candidate"),
        "{summary}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let failed: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|c| c.children().any(|k| k.has_tag_name("failure")))
        .filter_map(|c| c.attribute("name"))
        .collect();
    assert_eq!(
        failed,
        [
            "present lite0 on imagenet-v2 in the candidate",
            "present lite2 in the candidate"
        ],
        "{xml}"
    );
    assert!(
        xml.contains("name=\"new lite2-int8 in the candidate\""),
        "{xml}"
    );
    let json = gate(dir.path())
        .args(["--accuracy-only", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(report["missing"][1]["model"], "lite2", "{report}");
    assert_eq!(report["missing"][1]["verdict"], "fail", "{report}");
    assert_eq!(report["new"][0]["model"], "lite2-int8", "{report}");
    assert_eq!(report["passed"], false);

    // Retired on purpose: a warning, from the flag or the gate's config file.
    gate(dir.path())
        .args(["--accuracy-only", "--allow-missing"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("WARN      missing: lite2")
                .and(predicate::str::contains("PASSED")),
        );
    let config = dir.path().join("gate.toml");
    std::fs::write(&config, "accuracy_only = true\nallow_missing = true\n").unwrap();
    gate(dir.path())
        .arg("--config")
        .arg(&config)
        .assert()
        .success();
    // A --pair names the replacement: lite2 is compared with lite2-int8, nothing is missing
    // but lite0's V2 row.
    gate(dir.path())
        .args(["--accuracy-only", "--pair", "lite2=lite2-int8", "--json"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("\"candidate_model\": \"lite2-int8\"")
                .and(predicate::str::contains("\"new\": []")),
        );
}

#[test]
fn gate_help_documents_a_missing_model_as_exit_1() {
    let help = bin().args(["gate", "--help"]).assert().success();
    let text = String::from_utf8_lossy(&help.get_output().stdout).to_string();
    let one = &text[text.find("    1   ").expect("exit status 1 documented")..];
    let one = &one[..one.find("    2   ").unwrap()];
    assert!(one.contains("missing from the candidate"), "{one}");
    assert!(one.contains("--allow-missing"), "{one}");
}

/// Five models on `imagenet` and `imagenet-v2`, model i at (60 + 5i) % ID and `ood[i]` % OOD.
fn five_models(dir: &Path, ood: [usize; 5]) {
    for (i, o) in ood.iter().enumerate() {
        let name = format!("m{i}");
        folder(dir, &name, "imagenet", SHA, &first_right(N, 600 + 50 * i));
        folder(dir, &name, "imagenet-v2", SHA, &first_right(N, o * 10));
    }
}

#[test]
fn an_er_change_from_the_line_alone_is_said_and_does_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    five_models(&dir.path().join("base"), [48, 52, 58, 62, 68]);
    // Only m0 changed (much better OOD): the line rises, so every other model's ER falls
    // though not one of its images flipped.
    five_models(&dir.path().join("cand"), [60, 52, 58, 62, 68]);
    let out = gate(dir.path())
        .args(["--ignore-significance", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let m2 = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "effective_robustness" && c["baseline_model"] == "m2")
        .expect("an ER check of m2");
    assert!(
        m2["change"].as_f64().unwrap() < -1.0,
        "the line moved m2's ER by more than the threshold: {m2}"
    );
    assert_eq!(m2["line_moved_only"], true, "{m2}");
    assert_eq!(m2["verdict"], "pass", "{m2}");
    assert!(
        m2["note"]
            .as_str()
            .unwrap()
            .contains("only because the fitted line moved"),
        "{m2}"
    );
    // m0's own accuracy changed: no such note on it.
    let m0 = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "effective_robustness" && c["baseline_model"] == "m0")
        .unwrap();
    assert_eq!(m0["line_moved_only"], false, "{m0}");
    gate(dir.path())
        .arg("--ignore-significance")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "note: effective_robustness on imagenet-v2: m2's own top-1 did not change",
        ));
}

/// One model on ImageNet val and the 75 ImageNet-C corruption-severities, `n` images each, the
/// first `right` of them right; `turned_wrong` of those wrong on every corruption set; no row for
/// the dataset named `skip`.
fn corruption_folder(dir: &Path, n: usize, right: usize, turned_wrong: usize, skip: &str) {
    folder(dir, "m", "imagenet", SHA, &first_right(n, right));
    for c in IMAGENET_C_BENCHMARK {
        for s in 1..=5 {
            if format!("imagenet-c-{c}-{s}") == skip {
                continue;
            }
            let mut outcomes = first_right(n, right);
            for o in outcomes.iter_mut().take(turned_wrong) {
                *o = false;
            }
            folder(dir, "m", &format!("imagenet-c-{c}-{s}"), SHA, &outcomes);
        }
    }
}

/// Per-set standard error (pp) of the error change with `k` of `n` images turned wrong and
/// nothing turned right: the paired per-image differences' (Python).
fn paired_se(n: usize, k: usize) -> String {
    format!("100 * math.sqrt(({k} - {k} ** 2 / {n}) / ({n} - 1) / {n})")
}

/// The same from the counts alone (two proportions, right `r1` and `r2` of `n`).
fn counts_se(n: usize, r1: usize, r2: usize) -> String {
    format!("100 * math.sqrt({r1} / {n} * (1 - {r1} / {n}) / {n} + {r2} / {n} * (1 - {r2} / {n}) / {n})")
}

/// The reference's mCE of each side (tests/reference/imagenet_c_metrics.py on evals.csv), and the
/// gate's p-value recomputed with scipy: every corruption set's error change has standard error
/// `se` (a Python expression, pp), weighted by 1 / (75 · AlexNet's error) and added.
fn reference_mce_and_p(dir: &Path, se: &str) -> (f64, f64, f64) {
    let script = format!(
        "import json, math, subprocess, sys\n\
         sys.path.insert(0, 'tests/reference')\n\
         import imagenet_c_metrics as r\n\
         from scipy.stats import norm\n\
         def mce(side):\n\
         \x20   out = subprocess.run([sys.executable, 'tests/reference/imagenet_c_metrics.py', side + '/evals.csv', 'imagenet'], capture_output=True, check=True)\n\
         \x20   return json.loads(out.stdout)['m']['mce']\n\
         b, c = mce('{base}'), mce('{cand}')\n\
         se = {se}\n\
         bound = sum(5 * se / (75 * a) for a in r.ALEXNET_ERR)\n\
         print(json.dumps([b, c, 2 * norm.sf(abs(c - b) / bound)]))\n",
        base = dir.join("base").display(),
        cand = dir.join("cand").display(),
    );
    let out = Command::new(python())
        .current_dir(root())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    (v[0], v[1], v[2])
}

fn mce_check(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = gate(dir)
        .args(["--accuracy-only", "--max-drop", "100", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "mce")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap(), check)
}

#[test]
fn an_mce_rise_over_the_threshold_fails_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    // 400 images a set, 200 right; the candidate loses 20 of them on every corruption set (5 pp).
    corruption_folder(&dir.path().join("base"), 400, 200, 0, "");
    corruption_folder(&dir.path().join("cand"), 400, 200, 20, "");
    let (b, c, p) = reference_mce_and_p(dir.path(), &paired_se(400, 20));
    // Top-1 checks are out of the way (--max-drop 100): the mCE rule alone fails the gate.
    let (code, check) = mce_check(dir.path(), &[]);
    assert_eq!(code, 1, "{check}");
    assert_eq!(check["verdict"], "fail", "{check}");
    assert_eq!(check["dataset"], "imagenet-c");
    assert_eq!(check["test"], "mce-z-bound");
    for (key, want) in [("baseline", b), ("candidate", c), ("change", c - b)] {
        let got = check[key].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{key}: {got} vs reference {want}"
        );
    }
    let got_p = check["p_value"].as_f64().unwrap();
    assert!(
        (got_p - p).abs() <= 1e-9 * p + 1e-15,
        "p {got_p} vs scipy {p}"
    );
    assert!(
        p < 0.05 && c - b > 1.0,
        "the case is a significant rise: {b} → {c}, p {p}"
    );
    assert_eq!(check["flipped_to_wrong"], 75 * 20);
    assert_eq!(check["flipped_to_right"], 0);

    // The same rise under a looser threshold passes, from the flag or the config file.
    let (code, check) = mce_check(dir.path(), &["--max-mce-rise", "20"]);
    assert_eq!((code, check["verdict"].as_str()), (0, Some("pass")));
    let config = dir.path().join("gate.toml");
    std::fs::write(&config, "max_mce_rise = 20\n").unwrap();
    let config_arg = config.display().to_string();
    let (code, _) = mce_check(dir.path(), &["--config", &config_arg]);
    assert_eq!(code, 0);

    // Table, Markdown and JUnit name it.
    let (md, junit) = (dir.path().join("gate.md"), dir.path().join("gate.xml"));
    gate(dir.path())
        .args(["--accuracy-only", "--max-drop", "100", "--markdown"])
        .arg(&md)
        .arg("--junit")
        .arg(&junit)
        .assert()
        .code(1)
        .stdout(
            predicate::str::is_match(r"FAIL\s+mce\s+m\s+imagenet-c")
                .unwrap()
                .and(predicate::str::contains("mCE rise 1")),
        );
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(
        summary.contains(&format!(
            "**m** on **imagenet-c**: mce rose {:.2} pp ({b:.2} → {c:.2})",
            c - b
        )),
        "{summary}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("mce m on imagenet-c"))
        .expect("a JUnit case for the mCE rule");
    assert!(case.children().any(|k| k.has_tag_name("failure")), "{xml}");

    // Without the candidate's per-image predictions each set is compared on its counts, a far
    // weaker test: the same rise is no longer significant (p ≈ 0.16), a warning.
    std::fs::remove_dir_all(dir.path().join("cand/predictions")).unwrap();
    let (_, _, p) = reference_mce_and_p(dir.path(), &counts_se(400, 200, 180));
    let (code, check) = mce_check(dir.path(), &[]);
    assert_eq!(
        (code, check["verdict"].as_str()),
        (0, Some("warn")),
        "{check}"
    );
    let got_p = check["p_value"].as_f64().unwrap();
    assert!((got_p - p).abs() <= 1e-9 * p, "p {got_p} vs scipy {p}");
    assert!(check["flipped_to_wrong"].is_null(), "{check}");
    assert!(
        check["note"].as_str().unwrap().contains("0 of the 75"),
        "{check}"
    );
}

#[test]
fn an_mce_rise_that_is_not_significant_warns_and_a_partial_mce_is_not_compared() {
    let dir = tempfile::tempdir().unwrap();
    // 20 images a set: one turned wrong on every set is a 5 pp rise everywhere, but not significant.
    corruption_folder(&dir.path().join("base"), 20, 10, 0, "");
    corruption_folder(&dir.path().join("cand"), 20, 10, 1, "");
    let (b, c, p) = reference_mce_and_p(dir.path(), &paired_se(20, 1));
    assert!(p > 0.05 && c - b > 1.0, "{b} → {c}, p {p}");
    let (code, check) = mce_check(dir.path(), &[]);
    assert_eq!(
        (code, check["verdict"].as_str()),
        (0, Some("warn")),
        "{check}"
    );
    let got_p = check["p_value"].as_f64().unwrap();
    assert!((got_p - p).abs() <= 1e-9 * p, "p {got_p} vs scipy {p}");
    let (code, _) = mce_check(dir.path(), &["--ignore-significance"]);
    assert_eq!(code, 1);

    // The candidate loses one corruption-severity: its mCE is withheld, so there is no mCE check
    // (never an mCE over 74 sets); the lost set itself is missing.
    let cand = dir.path().join("cand");
    std::fs::remove_dir_all(&cand).unwrap();
    corruption_folder(&cand, 20, 10, 1, "imagenet-c-fog-4");
    let (code, check) = mce_check(dir.path(), &["--ignore-significance"]);
    assert_eq!(code, 1, "imagenet-c-fog-4 is missing from the candidate");
    assert!(check.is_null(), "no mCE check on a partial mCE: {check}");
    let (code, check) = mce_check(dir.path(), &["--ignore-significance", "--allow-missing"]);
    assert_eq!(code, 0);
    assert!(check.is_null(), "{check}");
}
