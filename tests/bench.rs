//! `robust-eval bench` reports every stage's throughput (figures, not a timed test).

mod common;

use common::*;

#[test]
fn bench_reports_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let card = probe_card(dir.path(), "probe");
    let out = bin()
        .args([
            "bench",
            "--json",
            "--limit",
            "40",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--images",
        ])
        .arg(reference().join("imagenet-sample"))
        .arg("--model")
        .arg(&card)
        .assert()
        .success();
    let f: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(f["images"], 40);
    for key in [
        "decode_per_core",
        "preprocess_per_core",
        "inference",
        "end_to_end",
        "limit",
    ] {
        assert!(f[key].as_f64().unwrap() > 0.0, "{key}: {f}");
    }
    // Preprocessing includes decoding, so it cannot be faster than decoding alone by much.
    assert!(
        f["preprocess_per_core"].as_f64().unwrap() < 1.5 * f["decode_per_core"].as_f64().unwrap()
    );
    assert_eq!(f["provider"], "CPUExecutionProvider");
}
