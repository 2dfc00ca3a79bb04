//! `robust-eval bench` reports every stage's throughput (figures, not a timed test), on the
//! reference's real ImageNet JPEGs where present, else on photo-like JPEGs made here.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// 40 photo-like 500x375 JPEGs (gradient, stripes, a hard-edged block, noise) in `dir`/made.
fn made_jpegs(dir: &Path) -> PathBuf {
    let dir = dir.join("made");
    std::fs::create_dir_all(&dir).unwrap();
    let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..40u32 {
        let img = image::RgbImage::from_fn(500, 375, |x, y| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let grain = (noise % 24) as u32;
            let block = (100..250).contains(&x) && (80..200).contains(&y);
            let stripes = ((x + y + 7 * n) / 9) % 2 * 60;
            let r = if block {
                30
            } else {
                (x * 255 / 500 + grain).min(255) as u8
            };
            let g = (y * 200 / 375 + stripes + grain).min(255) as u8;
            let b = if block {
                220
            } else {
                (n * 6 + grain).min(255) as u8
            };
            image::Rgb([r, g, b])
        });
        img.save(dir.join(format!("{n:02}.jpg"))).unwrap();
    }
    dir
}

#[test]
fn bench_reports_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let card = probe_card(dir.path(), "probe");
    // Where the reference is absent, the bench still runs, on images of its own (no skip line).
    let reference = reference_dir();
    let images = if reference.is_dir() {
        reference.join("imagenet-sample")
    } else {
        made_jpegs(dir.path())
    };
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
        .arg(&images)
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
    // No GPU ran, so no busy time, and the figures say why.
    assert!(f["gpu_busy"].is_null(), "{f}");
    assert_eq!(
        f["gpu_busy_note"],
        "not measured: the sessions ran on the CPU"
    );
}

/// The GPU-like plan (one inference worker fed by the loader) prints the loader's throughput
/// against decode alone on its threads, and the GPU line says it measured nothing on the CPU.
#[test]
fn bench_in_the_gpu_like_plan_reports_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let card = probe_card(dir.path(), "probe");
    let images = made_jpegs(dir.path());
    let out = bin()
        .args([
            "bench",
            "--limit",
            "16",
            "--batch-size",
            "4",
            "--shared-models",
            "0",
        ])
        .args(["--inference-workers", "1", "--images"])
        .arg(&images)
        .arg("--model")
        .arg(&card)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("in 1 worker(s)"), "{text}");
    let loader = text
        .lines()
        .find(|l| l.trim_start().starts_with("loader "))
        .unwrap_or_else(|| panic!("no loader line: {text}"));
    assert!(
        loader.contains("% of decode alone on") && loader.contains("loader threads"),
        "{loader}"
    );
    assert!(
        text.contains("GPU busy time       not measured: the sessions ran on the CPU"),
        "{text}"
    );
}

/// `--resize none` gives the model the transform `run` gives it on a crop-only dataset (the
/// 224-pixel ImageNet-C mode): the shorter side to the crop, no larger resize. Said in the header.
#[test]
fn bench_resize_none_is_the_crop_only_transform() {
    let dir = tempfile::tempdir().unwrap();
    let card = probe_card(dir.path(), "probe");
    // A card that resizes to 10 and crops 8, so the two modes differ.
    let text = std::fs::read_to_string(&card).unwrap();
    std::fs::write(&card, text.replace("resize = 8\n", "resize = 10\n")).unwrap();
    let images = made_jpegs(dir.path());
    let header = |mode: &str| {
        let out = bin()
            .args([
                "bench",
                "--limit",
                "8",
                "--batch-size",
                "8",
                "--threads",
                "1",
            ])
            .args(["--shared-models", "0", "--resize", mode, "--images"])
            .arg(&images)
            .arg("--model")
            .arg(&card)
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert!(header("model").contains("(resize model: 10 → 8)"));
    assert!(header("none").contains("(resize none: 8 → 8)"));
    bin()
        .args(["bench", "--resize", "crop", "--images"])
        .arg(&images)
        .arg("--model")
        .arg(&card)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("`crop` is not a resize mode"));
}
