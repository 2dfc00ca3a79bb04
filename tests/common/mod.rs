//! Helpers shared by the integration tests: the real binary, real ONNX Runtime (found the way
//! users' runs find it), real image files, and the reference Python pipeline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the reference material is looked for: `ROBUST_EVAL_REFERENCE`, else `../shared/reference`.
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("ROBUST_EVAL_REFERENCE") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("..").join("shared").join("reference"),
    }
}

/// The project's shared reference material (real ImageNet JPEGs, EfficientNet-Lite models):
/// `ROBUST_EVAL_REFERENCE`, else `../shared/reference` beside the checkout. Where it is absent,
/// `test` is skipped with one line on stderr saying why, unless the run requires it (`CI=true`
/// or `ROBUST_EVAL_REQUIRE_REFERENCE=1`): there a missing reference fails the test.
pub fn reference(test: &str) -> Option<PathBuf> {
    let dir = reference_dir();
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("ROBUST_EVAL_REQUIRE_REFERENCE").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs the reference material, missing at {} (CI=true or \
         ROBUST_EVAL_REQUIRE_REFERENCE=1 forbid skipping)",
        dir.display()
    );
    // Written straight to stderr, not through eprintln!, which the test harness captures.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: needs the reference material (set ROBUST_EVAL_REFERENCE or put it at \
         ../shared/reference)"
    );
    None
}

pub fn bin() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("robust-eval").expect("binary builds");
    cmd.env(
        "ROBUST_EVAL_CACHE",
        root().join("target").join("test-cache"),
    );
    cmd.env_remove("CI");
    cmd
}

/// Python with Pillow, numpy and onnxruntime (scripts/setup.sh --test puts them in .venv).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ROBUST_EVAL_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv").join("bin").join("python");
    assert!(
        venv.exists(),
        "run scripts/setup.sh --test first (needs {})",
        venv.display()
    );
    venv
}

/// A solid-colour PNG that the probe model reads as ImageNet class `class`
/// (see tests/fixtures/make_probe_model.py), with an optional white frame `frame` pixels wide.
pub fn probe_image(path: &Path, class: usize, frame: u32) {
    let (kr, kg) = ((class % 32) as u8, (class / 32) as u8);
    let colour = image::Rgb([8 * kr + 4, 8 * kg + 4, 0]);
    let side = 12 + 2 * frame;
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let inside = x >= frame && y >= frame && x < side - frame && y < side - frame;
        if inside {
            colour
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// A model card for the probe model, written into `dir`.
pub fn probe_card(dir: &Path, name: &str) -> PathBuf {
    let onnx = root().join("tests").join("fixtures").join("probe.onnx");
    let card = dir.join(format!("{name}.toml"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &card,
        format!(
            "name = \"{name}\"\nonnx = \"{}\"\ngroup = \"standard\"\n[preprocess]\nresize = 8\ncrop = 8\n\
             interpolation = \"bilinear\"\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n[output]\nnum_classes = 1000\n",
            onnx.display()
        ),
    )
    .unwrap();
    card
}

pub fn write_manifest(path: &Path, rows: &[(&str, &str)]) {
    let mut text = String::from("path,label\n");
    for (p, l) in rows {
        text.push_str(&format!("{p},{l}\n"));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[derive(Debug, serde::Deserialize)]
pub struct Row {
    pub model: String,
    pub dataset: String,
    pub n: u64,
    pub correct: u64,
    pub top1: f64,
    pub top5: Option<f64>,
    pub top1_ci_low: f64,
    pub top1_ci_high: f64,
    pub failed: u64,
    pub skipped: u64,
    pub provider: String,
}

pub fn evals(out: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(out.join("evals.csv")).expect("evals.csv exists");
    reader
        .deserialize()
        .map(|r| r.expect("evals.csv row parses"))
        .collect()
}

pub fn row<'a>(rows: &'a [Row], model: &str, dataset: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.model == model && r.dataset == dataset)
        .unwrap_or_else(|| panic!("no evals.csv row for {model} on {dataset}: {rows:?}"))
}

/// A suite with an ImageNet-style ID set and R, A and ObjectNet shifts, all built from probe images.
pub fn scoring_suite(dir: &Path) {
    let data = dir.join("data");
    // (file, encoded class, label)
    let id = [
        ("i1.png", 0, "0"),
        ("i2.png", 1, "1"),
        ("i3.png", 0, "1"),
        ("i4.png", 6, "6"),
        ("i5.png", 409, "409"),
        ("i6.png", 2, "3"),
        ("i7.png", 529, "530"),
    ];
    for (f, c, _) in id {
        probe_image(&data.join("id").join(f), c, 0);
    }
    write_manifest(&data.join("id/manifest.csv"), &id.map(|(f, _, l)| (f, l)));

    let r = [
        ("r1.png", 0, "n01443537"),
        ("r2.png", 1, "n01443537"),
        ("r3.png", 4, "n01484850"),
    ];
    for (f, c, _) in r {
        probe_image(&data.join("r").join(f), c, 0);
    }
    write_manifest(&data.join("r/manifest.csv"), &r.map(|(f, _, l)| (f, l)));

    let a = [
        ("a1.png", 5, "n01498041"),
        ("a2.png", 6, "n01498041"),
        ("a3.png", 11, "6"),
    ];
    for (f, c, _) in a {
        probe_image(&data.join("a").join(f), c, 0);
    }
    write_manifest(&data.join("a/manifest.csv"), &a.map(|(f, _, l)| (f, l)));

    // ObjectNet images carry a 2-pixel white frame: only with the border cropped do they read true.
    let on = [
        ("alarm_clock/o1.png", 409),
        ("alarm_clock/o2.png", 530),
        ("backpack/o3.png", 409),
    ];
    for (f, c) in on {
        probe_image(&data.join("objectnet").join(f), c, 2);
    }
    // An unmapped folder's image is never read: a corrupt file there must not count as failed.
    std::fs::create_dir_all(data.join("objectnet/squeegee")).unwrap();
    std::fs::write(data.join("objectnet/squeegee/o4.png"), b"not an image").unwrap();
    write_manifest(
        &data.join("objectnet/manifest.csv"),
        &[
            ("alarm_clock/o1.png", "alarm_clock"),
            ("alarm_clock/o2.png", "alarm_clock"),
            ("backpack/o3.png", "backpack"),
            ("squeegee/o4.png", "squeegee"),
        ],
    );

    std::fs::write(
        dir.join("suite.toml"),
        "name = \"probe\"\nid = \"imagenet\"\n\
         [datasets.imagenet]\nmanifest = \"id/manifest.csv\"\nscoring = \"imagenet-1k\"\n\
         [datasets.imagenet-r]\nmanifest = \"r/manifest.csv\"\nscoring = \"imagenet-r\"\n\
         [datasets.imagenet-a]\nmanifest = \"a/manifest.csv\"\nscoring = \"imagenet-a\"\n\
         [datasets.objectnet]\nmanifest = \"objectnet/manifest.csv\"\nscoring = \"objectnet\"\n",
    )
    .unwrap();
    probe_card(&dir.join("models"), "probe");
}

/// Every file below `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// A manifest at `path` of the first `take` reference ImageNet sample JPEGs (sorted by name),
/// by absolute path, labelled by their wnid prefix; names with apostrophes exercise CSV quoting.
pub fn sample_manifest(reference: &Path, path: &Path, take: usize) {
    let sample = reference.join("imagenet-sample");
    let mut files: Vec<String> = std::fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".JPEG"))
        .collect();
    files.sort();
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(["path", "label"]).unwrap();
    for f in files.iter().take(take) {
        writer
            .write_record([sample.join(f).display().to_string(), f[..9].to_string()])
            .unwrap();
    }
    writer.flush().unwrap();
}

/// The 15 ImageNet-C corruptions mCE averages over (Hendrycks & Dietterich 2019), written out
/// here rather than read from the product's assets, so the tests check those independently.
pub const IMAGENET_C_BENCHMARK: [&str; 15] = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
];
