//! The GPU path's settings as far as a machine without a GPU can check them: settings that cannot
//! take effect are refused with exit 2, and every pair records its precision, provider settings
//! and node placement. (scripts/test_gpu_ready.sh checks the CUDA libraries with onnxruntime-gpu.)

mod common;

use common::*;

/// Exit 2 with one line on stderr that contains `why`.
fn refused(args: &[&str], why: &str) {
    let out = tempfile::tempdir().unwrap();
    let assert = bin()
        .args(["run", "--suite", "demo", "--progress", "none", "--out"])
        .arg(out.path())
        .args(args)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains(why), "{args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line: {stderr}"
    );
    assert!(
        !out.path().join("evals.csv").exists(),
        "{args:?}: refused before any image"
    );
}

#[test]
fn gpu_settings_that_cannot_take_effect_are_refused() {
    refused(&["--provider", "cpu", "--fp16"], "--fp16");
    refused(&["--provider", "cpu", "--tf32"], "--tf32");
    refused(&["--provider", "cpu", "--device", "1"], "--device 1");
    // Visible GPUs are known from CUDA_VISIBLE_DEVICES: device 2 of 2 does not exist. (The CPU
    // build refuses --provider cuda first; with any build the line names the problem.)
    let out = tempfile::tempdir().unwrap();
    let assert = bin()
        .args([
            "run",
            "--suite",
            "demo",
            "--progress",
            "none",
            "--provider",
            "cuda",
        ])
        .args(["--device", "2", "--out"])
        .arg(out.path())
        .env("CUDA_VISIBLE_DEVICES", "0,1")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("--device 2: 2 GPU(s) are visible")
            || stderr.contains("does not include CUDAExecutionProvider"),
        "{stderr}"
    );
}

#[test]
fn every_pair_records_precision_and_node_placement() {
    let out = tempfile::tempdir().unwrap();
    bin()
        .args([
            "run",
            "--suite",
            "demo",
            "--datasets",
            "shapes",
            "--provider",
            "cpu",
        ])
        .args(["--progress", "none", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("run.json")).unwrap()).unwrap();
    let evaluations = run["evaluations"].as_array().unwrap();
    assert!(!evaluations.is_empty());
    for e in evaluations {
        let execution = &e["execution"];
        assert_eq!(execution["precision"], "fp32", "{e}");
        // The CPU takes no provider options; ONNX Runtime's placement log gives the node count.
        assert!(execution.get("provider_options").is_none(), "{e}");
        let nodes = execution["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1, "{e}");
        assert_eq!(nodes[0][0], "CPUExecutionProvider", "{e}");
        assert!(nodes[0][1].as_u64().unwrap() > 0, "{e}");
        assert_eq!(e["provider"], "CPUExecutionProvider");
    }
    for row in evals(out.path()) {
        assert_eq!(row.provider, "CPUExecutionProvider", "{row:?}");
    }
}
