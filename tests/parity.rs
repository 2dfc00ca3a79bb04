//! Preprocessing parity with Pillow: robust-eval's decode → resize → crop against PIL's, pixel by
//! pixel, on the 1000 real ImageNet JPEGs in the reference material's imagenet-sample and on images
//! in PIL's odd modes (greyscale, LA, palette with and without transparency, RGBA, CMYK JPEG,
//! 16-bit). The `made_*` tests need no reference: they run the same checks on photo-like images
//! the tests draw themselves and encode with PIL's libjpeg (every JPEG kind, odd sizes, EXIF).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use robust_eval::engine::jpeg::{self, Region};
use robust_eval::engine::preprocess::{
    load_resized_crop, load_rgb, resize_crop, Interpolation, PixelLayout, PreprocessSpec,
};

/// The reference's 1000 sample JPEGs, or `None` (the test is skipped) where it is absent.
fn sample_jpegs(test: &str) -> Option<Vec<PathBuf>> {
    let dir = reference(test)?.join("imagenet-sample");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 1000);
    Some(files)
}

/// Run tests/reference/pil_pipeline.py with `args`; it must succeed.
fn pil_pipeline(args: &[&std::ffi::OsStr]) {
    let status = Command::new(python())
        .arg(root().join("tests/reference/pil_pipeline.py"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "pil_pipeline.py {args:?}");
}

/// The files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Photo-like PNG sources drawn by PIL at odd sizes (333x251, 97x513, 17x9, 1x1), in `work`.
fn synthetic_sources(work: &Path) -> Vec<PathBuf> {
    let dir = work.join("sources");
    pil_pipeline(&["synthetic".as_ref(), dir.as_os_str()]);
    let files = files_in(&dir);
    assert_eq!(files.len(), 4, "{files:?}");
    files
}

/// Every kind of JPEG PIL's libjpeg writes, made from the synthetic sources, in `work`:
/// baseline and progressive at 4:4:4, 4:2:2 and 4:2:0, greyscale, CMYK, and with EXIF.
fn made_jpegs(work: &Path) -> Vec<PathBuf> {
    let sources = synthetic_sources(work);
    let dir = work.join("made");
    let mut args = vec!["made".as_ref(), dir.as_os_str()];
    args.extend(sources.iter().map(|p| p.as_os_str()));
    pil_pipeline(&args);
    let files = files_in(&dir);
    assert_eq!(files.len(), sources.len() * 12, "{files:?}");
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
    let Some(images) = sample_jpegs("real_jpegs_match_pil_bicubic_and_bilinear") else {
        return;
    };
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
fn made_jpegs_match_pil_bicubic_and_bilinear() {
    let work = tempfile::tempdir().unwrap();
    let images = made_jpegs(work.path());
    for spec in [
        spec(256, 224, Interpolation::Bicubic),
        spec(256, 224, Interpolation::Bilinear),
        spec(292, 260, Interpolation::Lanczos),
    ] {
        for (path, diff) in compare(&images, &spec, 0) {
            // The same bounds as for each real JPEG: decoding is exact, resampling within rounding.
            assert!(
                diff.max <= 8 && diff.mean < 0.5,
                "{} with {}: max {} mean {}",
                path.display(),
                spec.key(),
                diff.max,
                diff.mean
            );
        }
    }
}

/// Every image in `images` decodes to PIL's `convert("RGB")` pixels, bit for bit.
fn assert_decoded_like_pil(images: &[PathBuf]) {
    use sha2::{Digest, Sha256};
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("list.txt");
    let out = work.path().join("decoded.txt");
    let lines: String = images
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    std::fs::write(&list, lines).unwrap();
    pil_pipeline(&["decoded".as_ref(), list.as_os_str(), out.as_os_str()]);
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
            (ours != *expected).then(|| format!("{}: ours {ours}, PIL {expected}", path.display()))
        })
        .collect();
    // libjpeg-turbo decodes for both: same IDCT, same upsampling, greyscale replicated.
    assert!(
        differing.is_empty(),
        "{} differ: {differing:#?}",
        differing.len()
    );
}

#[test]
fn jpeg_decoding_is_pils_bit_for_bit() {
    if let Some(images) = sample_jpegs("jpeg_decoding_is_pils_bit_for_bit") {
        assert_decoded_like_pil(&images);
    }
}

#[test]
fn made_jpegs_decode_as_pils_bit_for_bit() {
    let work = tempfile::tempdir().unwrap();
    // CMYK JPEGs are decoded by zune-jpeg (its own IDCT), not libjpeg-turbo: within a few levels
    // of PIL, not bit for bit; made_jpegs_match_pil_bicubic_and_bilinear holds them to that.
    let turbo: Vec<PathBuf> = made_jpegs(work.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("_CMYK_"))
        .collect();
    assert_eq!(turbo.len(), 40);
    assert_decoded_like_pil(&turbo);
}

#[test]
fn exif_orientation_is_ignored_like_pils_convert_rgb() {
    // PIL's convert("RGB") keeps the stored pixels whatever the orientation tag says (the
    // reference pipeline does no exif_transpose), so robust-eval must not rotate either.
    let work = tempfile::tempdir().unwrap();
    let made = made_jpegs(work.path());
    let tagged: Vec<PathBuf> = made
        .iter()
        .filter(|p| p.to_string_lossy().contains("exif_orientation6"))
        .cloned()
        .collect();
    assert_eq!(tagged.len(), 8, "{made:?}");
    for path in &tagged {
        let name = path.file_name().unwrap().to_string_lossy();
        let (w, h) = match &name[..2] {
            "00" => (333, 251),
            "01" => (97, 513),
            "02" => (17, 9),
            _ => (1, 1),
        };
        let img = load_rgb(path).unwrap();
        assert_eq!(
            (img.width, img.height),
            (w, h),
            "{name}: not the stored size"
        );
    }
    assert_decoded_like_pil(&tagged);
}

/// PIL's odd modes made from `sources`, plus a 16-bit RGB PNG, preprocess as PIL's do.
fn assert_odd_modes_match_pil(sources: &[PathBuf]) {
    let work = tempfile::tempdir().unwrap();
    let odd = work.path().join("odd");
    let mut args = vec!["odd".as_ref(), odd.as_os_str()];
    args.extend(sources.iter().map(|p| p.as_os_str()));
    pil_pipeline(&args);
    // 16-bit RGB, which PIL reads but does not write: made here.
    let rgb16 = odd.join("rgb16.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(300, 200, |x, y| {
        image::Rgb([(x * 200) as u16, (y * 300) as u16, 40000])
    })
    .save(&rgb16)
    .unwrap();
    let files = files_in(&odd);
    assert_eq!(files.len(), sources.len() * 10 + 1, "{files:?}");
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
fn odd_modes_match_pil_convert_rgb() {
    if let Some(images) = sample_jpegs("odd_modes_match_pil_convert_rgb") {
        let sources: Vec<PathBuf> = images.into_iter().step_by(250).collect();
        assert_odd_modes_match_pil(&sources);
    }
}

#[test]
fn made_odd_modes_match_pil_convert_rgb() {
    let work = tempfile::tempdir().unwrap();
    assert_odd_modes_match_pil(&synthetic_sources(work.path()));
}

#[test]
fn objectnet_border_crop_matches_pil() {
    let Some(images) = sample_jpegs("objectnet_border_crop_matches_pil") else {
        return;
    };
    let images: Vec<PathBuf> = images.into_iter().step_by(50).collect();
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
fn made_jpegs_border_crop_matches_pil() {
    let work = tempfile::tempdir().unwrap();
    // A 2-pixel border needs more than 4 pixels a side: 17x9 and 1x1 are too small for it.
    let images: Vec<PathBuf> = made_jpegs(work.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/02_") && !p.to_string_lossy().contains("/03_"))
        .collect();
    assert_eq!(images.len(), 24);
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

/// Decoding only the region the resize reads gives the crop of a full decode, for every filter,
/// odd sizes, with and without ObjectNet's border.
fn assert_region_decode_changes_no_pixel(images: &[PathBuf]) {
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
            if full.width <= 2 * border || full.height <= 2 * border {
                continue; // too small for the border: an error, not a crop (bad_input.rs)
            }
            let whole = resize_crop(&full, &spec, border).unwrap();
            let region = load_resized_crop(path, &spec, border).unwrap();
            assert!(whole == region, "{} with {}", path.display(), spec.key());
        }
    }
}

#[test]
fn decoding_only_the_region_the_resize_reads_changes_no_pixel() {
    if let Some(images) = sample_jpegs("decoding_only_the_region_the_resize_reads_changes_no_pixel")
    {
        let images: Vec<PathBuf> = images.into_iter().step_by(7).collect();
        assert_region_decode_changes_no_pixel(&images);
    }
}

#[test]
fn made_jpegs_decoding_only_the_region_the_resize_reads_changes_no_pixel() {
    let work = tempfile::tempdir().unwrap();
    let made = made_jpegs(work.path());
    // Each file under every filter: the list three times over, shifted by one each time.
    let images: Vec<PathBuf> = (0..3)
        .flat_map(|shift| made.iter().skip(shift).chain(made.iter().take(shift)))
        .cloned()
        .collect();
    assert_region_decode_changes_no_pixel(&images);
}

/// Random regions of each JPEG in `files`, decoded alone, have the pixels of a full decode;
/// returns how many regions were checked (CMYK files and images under 2 pixels a side have none).
fn check_regions_against_full_decode(files: &[PathBuf]) -> usize {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut below = |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as u32
    };
    let mut regions = 0;
    for path in files {
        let bytes = std::fs::read(path).unwrap();
        for layout in [PixelLayout::Rgb, PixelLayout::Rgbx] {
            let mut full = Vec::new();
            // CMYK is declined (None): preprocess decodes it another way, whole.
            let Some((width, height)) =
                jpeg::decode(&bytes, |_, _| None, layout, &mut full).unwrap()
            else {
                continue;
            };
            if width < 2 || height < 2 {
                continue;
            }
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
    regions
}

#[test]
fn a_decoded_region_has_the_pixels_of_a_full_decode() {
    // libjpeg-turbo crops at iMCU boundaries and treats a region's edges as the image's when it
    // upsamples chroma; the margin `jpeg::decode` adds must hide that for every kind of JPEG.
    let Some(images) = sample_jpegs("a_decoded_region_has_the_pixels_of_a_full_decode") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let sources: Vec<PathBuf> = images.iter().step_by(40).cloned().collect();
    let mut args = vec!["recoded".as_ref(), work.path().as_os_str()];
    args.extend(sources.iter().map(|p| p.as_os_str()));
    pil_pipeline(&args);
    let mut files = files_in(work.path());
    assert_eq!(files.len(), sources.len() * 6);
    // The sample's own kinds: 4:4:4, 4:2:0, 4:2:2 and greyscale.
    files.extend(images.into_iter().step_by(9));
    let regions = check_regions_against_full_decode(&files);
    assert!(regions >= 1500, "{regions}");
}

#[test]
fn made_jpegs_decoded_regions_have_the_pixels_of_a_full_decode() {
    let work = tempfile::tempdir().unwrap();
    let made = made_jpegs(work.path());
    let (cmyk, others): (Vec<PathBuf>, Vec<PathBuf>) = made
        .into_iter()
        .partition(|p| p.to_string_lossy().contains("_CMYK_"));
    for path in &cmyk {
        let bytes = std::fs::read(path).unwrap();
        let mut pixels = Vec::new();
        let decoded = jpeg::decode(&bytes, |_, _| None, PixelLayout::Rgb, &mut pixels);
        assert_eq!(
            decoded,
            Ok(None),
            "{}: CMYK is not libjpeg-turbo's",
            path.display()
        );
    }
    let regions = check_regions_against_full_decode(&others);
    // Three of the four sizes have regions: 30 files, two layouts, four regions each.
    assert_eq!(regions, 30 * 2 * 4);
}

/// ImageNet-C-shaped JPEGs (224 × 224, made as make_imagenet_c.py makes them) from the synthetic
/// sources, in `work`.
fn c_like_jpegs(work: &Path) -> Vec<PathBuf> {
    let sources = synthetic_sources(work);
    // Sources smaller than 256 on a side would be upsampled; all are used, as the tool would be.
    let dir = work.join("c_like");
    let mut args = vec!["c_like".as_ref(), dir.as_os_str()];
    args.extend(sources.iter().map(|p| p.as_os_str()));
    pil_pipeline(&args);
    files_in(&dir)
}

/// `resize = "none"` on ImageNet-C's 224-pixel files is Hendrycks' `CenterCrop(224)` alone, bit for
/// bit; for a 240-pixel model it is PIL's `Resize(240)` + `CenterCrop(240)`, within the resize
/// tolerances of the other parity tests.
#[test]
fn crop_only_mode_is_hendrycks_center_crop_and_resizes_for_other_inputs() {
    use robust_eval::engine::preprocess::ResizeMode;
    let work = tempfile::tempdir().unwrap();
    let images = c_like_jpegs(work.path());
    assert!(!images.is_empty());
    let crop_only = ResizeMode::None.apply(spec(256, 224, Interpolation::Bicubic));
    assert_eq!(crop_only.resize, 224);
    let list = work.path().join("c_list.txt");
    let out = work.path().join("center.bin");
    std::fs::write(
        &list,
        images
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect::<String>(),
    )
    .unwrap();
    pil_pipeline(&[
        "center".as_ref(),
        list.as_os_str(),
        out.as_os_str(),
        "--crop".as_ref(),
        "224".as_ref(),
    ]);
    let reference = std::fs::read(&out).unwrap();
    let block = 224 * 224 * 3;
    assert_eq!(reference.len(), block * images.len());
    for (path, pil) in images.iter().zip(reference.chunks_exact(block)) {
        let ours = load_resized_crop(path, &crop_only, 0).unwrap();
        assert!(
            ours == pil,
            "{}: crop-only pixels differ from PIL's CenterCrop",
            path.display()
        );
    }
    let larger = ResizeMode::None.apply(spec(274, 240, Interpolation::Bicubic));
    assert_eq!((larger.resize, larger.crop), (240, 240));
    for (path, diff) in compare(&images, &larger, 0) {
        assert!(
            diff.max <= 8 && diff.mean < 0.5,
            "{}: max {} mean {}",
            path.display(),
            diff.max,
            diff.mean
        );
    }
}
