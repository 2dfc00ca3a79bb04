//! Preprocessing parity with Pillow: robust-eval's decode → resize → crop against PIL's, pixel by
//! pixel, on the 1000 real ImageNet JPEGs in ../shared/reference/imagenet-sample and on images in
//! PIL's odd modes (greyscale, LA, palette with and without transparency, RGBA, CMYK JPEG, 16-bit).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use robust_eval::engine::jpeg::{self, Region};
use robust_eval::engine::preprocess::{
    load_resized_crop, load_rgb, resize_crop, Interpolation, PixelLayout, PreprocessSpec,
};

fn sample_jpegs() -> Vec<PathBuf> {
    let dir = reference().join("imagenet-sample");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 1000);
    files
}

/// PIL's crops for `images`, one `crop*crop*3` block each.
fn pil_crops(images: &[PathBuf], spec: &PreprocessSpec, border: u32, work: &Path) -> Vec<u8> {
    let list = work.join("list.txt");
    let out = work.join("crops.bin");
    std::fs::write(
        &list,
        images
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect::<String>(),
    )
    .unwrap();
    let status = Command::new(python())
        .arg(root().join("tests/reference/pil_pipeline.py"))
        .args(["crops"])
        .arg(&list)
        .arg(&out)
        .args([
            "--resize",
            &spec.resize.to_string(),
            "--crop",
            &spec.crop.to_string(),
        ])
        .args([
            "--interpolation",
            &spec.interpolation.to_string(),
            "--border",
            &border.to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

struct Diff {
    max: u8,
    mean: f64,
}

fn compare(images: &[PathBuf], spec: &PreprocessSpec, border: u32) -> Vec<(PathBuf, Diff)> {
    let work = tempfile::tempdir().unwrap();
    let reference = pil_crops(images, spec, border, work.path());
    let block = (spec.crop * spec.crop * 3) as usize;
    assert_eq!(reference.len(), block * images.len());
    images
        .iter()
        .zip(reference.chunks_exact(block))
        .map(|(path, pil)| {
            let ours = load_resized_crop(path, spec, border)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Decoding only the region the resize reads gives the same pixels as decoding all.
            let img = load_rgb(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                ours,
                resize_crop(&img, spec, border).unwrap(),
                "{}",
                path.display()
            );
            let diffs: Vec<u8> = ours.iter().zip(pil).map(|(a, b)| a.abs_diff(*b)).collect();
            let max = *diffs.iter().max().unwrap();
            let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
            (path.clone(), Diff { max, mean })
        })
        .collect()
}

fn spec(resize: u32, crop: u32, interpolation: Interpolation) -> PreprocessSpec {
    PreprocessSpec {
        resize,
        crop,
        interpolation,
        mean: [0.0; 3],
        std: [1.0; 3],
    }
}

#[test]
fn real_jpegs_match_pil_bicubic_and_bilinear() {
    let images = sample_jpegs();
    for (spec, subset) in [
        (spec(256, 224, Interpolation::Bicubic), images.clone()),
        (
            spec(256, 224, Interpolation::Bilinear),
            images.iter().step_by(5).cloned().collect(),
        ),
        (
            spec(292, 260, Interpolation::Bicubic),
            images.iter().step_by(10).cloned().collect(),
        ),
    ] {
        let diffs = compare(&subset, &spec, 0);
        let worst = diffs.iter().max_by_key(|d| d.1.max).unwrap();
        let mean = diffs.iter().map(|d| d.1.mean).sum::<f64>() / diffs.len() as f64;
        eprintln!(
            "{} on {} JPEGs: mean |diff| {mean:.4}, worst max |diff| {} ({})",
            spec.key(),
            diffs.len(),
            worst.1.max,
            worst.0.display()
        );
        // Decoding is PIL's bit for bit (see above); the resampling matches PIL's to a level
        // nearly everywhere (same filters, same pass order, fixed-point rounding aside).
        assert!(mean < 0.01, "mean difference {mean}");
        assert!(
            worst.1.max <= 8,
            "max difference {} on {}",
            worst.1.max,
            worst.0.display()
        );
        let rough = diffs.iter().filter(|d| d.1.mean > 0.5).count();
        assert_eq!(rough, 0, "images with mean |diff| > 0.5 level");
    }
}

#[test]
fn jpeg_decoding_is_pils_bit_for_bit() {
    use sha2::{Digest, Sha256};
    let images = sample_jpegs();
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("list.txt");
    let out = work.path().join("decoded.txt");
    let lines: String = images
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    std::fs::write(&list, lines).unwrap();
    let status = Command::new(python())
        .arg(root().join("tests/reference/pil_pipeline.py"))
        .arg("decoded")
        .arg(&list)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let pil = std::fs::read_to_string(&out).unwrap();
    let pil: Vec<&str> = pil.lines().collect();
    assert_eq!(pil.len(), images.len());
    let differing: Vec<String> = images
        .iter()
        .zip(&pil)
        .filter_map(|(path, expected)| {
            let img = load_rgb(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let digest = Sha256::digest(&img.pixels);
            let ours = format!("{} {} {digest:x}", img.width, img.height);
            (ours != *expected).then(|| path.display().to_string())
        })
        .collect();
    // libjpeg-turbo decodes for both: same IDCT, same upsampling, greyscale replicated.
    assert!(
        differing.is_empty(),
        "{} differ: {differing:?}",
        differing.len()
    );
}

#[test]
fn odd_modes_match_pil_convert_rgb() {
    let work = tempfile::tempdir().unwrap();
    let odd = work.path().join("odd");
    let sources: Vec<PathBuf> = sample_jpegs().into_iter().step_by(250).collect();
    let status = Command::new(python())
        .arg(root().join("tests/reference/pil_pipeline.py"))
        .arg("odd")
        .arg(&odd)
        .args(&sources)
        .status()
        .unwrap();
    assert!(status.success());
    // 16-bit RGB, which PIL reads but does not write: made here.
    let rgb16 = odd.join("rgb16.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(300, 200, |x, y| {
        image::Rgb([(x * 200) as u16, (y * 300) as u16, 40000])
    })
    .save(&rgb16)
    .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&odd)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 41, "{files:?}");
    let spec = spec(256, 224, Interpolation::Bilinear);
    for (path, diff) in compare(&files, &spec, 0) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        eprintln!("{name}: max {} mean {:.4}", diff.max, diff.mean);
        if name.ends_with(".jpg") {
            assert!(
                diff.max <= 12 && diff.mean < 0.5,
                "{name}: max {} mean {}",
                diff.max,
                diff.mean
            );
        } else {
            // Lossless formats decode identically; only resampling rounding may differ.
            assert!(
                diff.max <= 2 && diff.mean < 0.02,
                "{name}: max {} mean {}",
                diff.max,
                diff.mean
            );
        }
    }
}

#[test]
fn objectnet_border_crop_matches_pil() {
    let images: Vec<PathBuf> = sample_jpegs().into_iter().step_by(50).collect();
    let spec = spec(256, 224, Interpolation::Bilinear);
    for (path, diff) in compare(&images, &spec, 2) {
        assert!(
            diff.max <= 8 && diff.mean < 0.5,
            "{}: max {} mean {}",
            path.display(),
            diff.max,
            diff.mean
        );
    }
}

#[test]
fn decoding_only_the_region_the_resize_reads_changes_no_pixel() {
    // Every filter (Lanczos reaches furthest), odd sizes, with and without ObjectNet's border.
    let images: Vec<PathBuf> = sample_jpegs().into_iter().step_by(7).collect();
    let filters = [
        Interpolation::Nearest,
        Interpolation::Box,
        Interpolation::Bilinear,
        Interpolation::Hamming,
        Interpolation::Bicubic,
        Interpolation::Lanczos,
    ];
    for (n, path) in images.iter().enumerate() {
        let full = load_rgb(path).unwrap();
        let spec = spec(
            [256, 236, 320][n % 3],
            [224, 199, 288][n % 3],
            filters[n % 6],
        );
        for border in [0, 2] {
            let whole = resize_crop(&full, &spec, border).unwrap();
            let region = load_resized_crop(path, &spec, border).unwrap();
            assert!(whole == region, "{} with {}", path.display(), spec.key());
        }
    }
}

#[test]
fn a_decoded_region_has_the_pixels_of_a_full_decode() {
    // libjpeg-turbo crops at iMCU boundaries and treats a region's edges as the image's when it
    // upsamples chroma; the margin `jpeg::decode` adds must hide that for every kind of JPEG.
    let work = tempfile::tempdir().unwrap();
    let sources: Vec<PathBuf> = sample_jpegs().into_iter().step_by(40).collect();
    let status = Command::new(python())
        .arg(root().join("tests/reference/pil_pipeline.py"))
        .arg("recoded")
        .arg(work.path())
        .args(&sources)
        .status()
        .unwrap();
    assert!(status.success());
    let mut files: Vec<PathBuf> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), sources.len() * 6);
    // The sample's own kinds: 4:4:4, 4:2:0, 4:2:2 and greyscale.
    files.extend(sample_jpegs().into_iter().step_by(9));
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut below = |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as u32
    };
    let mut regions = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for layout in [PixelLayout::Rgb, PixelLayout::Rgbx] {
            let mut full = Vec::new();
            let (width, height) = jpeg::decode(&bytes, |_, _| None, layout, &mut full)
                .unwrap()
                .unwrap();
            let bpp = layout.bytes_per_pixel();
            for _ in 0..4 {
                let (x, y) = (below(width / 2), below(height / 2));
                let region = Region {
                    x,
                    y,
                    width: 1 + below(width - x - 1),
                    height: 1 + below(height - y - 1),
                };
                let mut part = vec![0u8; full.len()];
                jpeg::decode(&bytes, |_, _| Some(region), layout, &mut part).unwrap();
                let stride = width as usize * bpp;
                for row in region.y..region.y + region.height {
                    let start = row as usize * stride + region.x as usize * bpp;
                    let span = start..start + region.width as usize * bpp;
                    assert!(
                        full[span.clone()] == part[span],
                        "{}: {region:?} ({layout:?}) differs from a full decode in row {row}",
                        path.display()
                    );
                }
                regions += 1;
            }
        }
    }
    assert!(regions >= 1500, "{regions}");
}
