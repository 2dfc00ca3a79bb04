//! Fixed costs of a run: model hashes are cached in the results folder, and a cached hash that no
//! longer matches the file's stamp is not trusted. Through the real binary on the demo suite.

mod common;

use common::bin;

#[test]
fn model_hashes_are_cached_and_resume_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let run = || {
        let assert = bin()
            .args(["run", "--suite", "demo", "--progress", "none", "--out"])
            .arg(&out)
            .assert()
            .success();
        String::from_utf8_lossy(&assert.get_output().stdout).to_string()
    };
    let first = run();
    assert!(first.contains("up to date"), "{first}");
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(".hash-cache.json")).unwrap()).unwrap();
    let entries = cache.as_object().unwrap();
    assert!(
        entries.keys().any(|k| k.ends_with(".onnx")),
        "no model hash cached: {cache}"
    );
    for e in entries.values() {
        assert_eq!(e["sha256"].as_str().unwrap().len(), 64, "{e}");
    }
    // A second run finds every pair up to date, the hashes coming from the cache.
    let second = run();
    assert!(second.contains("0 pairs evaluated"), "{second}");
    // A tampered hash (same stamp) makes the pairs look changed: proof the cache is what is read.
    let mut tampered = cache.clone();
    for e in tampered.as_object_mut().unwrap().values_mut() {
        e["sha256"] = serde_json::json!("0".repeat(64));
    }
    std::fs::write(out.join(".hash-cache.json"), tampered.to_string()).unwrap();
    let third = run();
    assert!(!third.contains("\n0 pairs evaluated"), "{third}");
}
