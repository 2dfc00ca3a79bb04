//! Preprocessing that reproduces the reference Python pipeline: PIL decode and `convert("RGB")`,
//! torchvision `Resize(shorter side)` with PIL's antialiased filters, `CenterCrop`, `ToTensor`,
//! `Normalize`. Decode → resize → crop are fused: only the crop box is resampled, which gives the
//! same pixels as resizing the whole image first because PIL's filter taps depend only on the
//! output pixel's position and the scale.

use std::cell::RefCell;
use std::path::Path;

use crate::engine::jpeg;
pub use crate::engine::pixels::PixelLayout;
use crate::engine::pixels::{check_pixels, image_limits};
use fast_image_resize::{self as fir, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

pub use crate::input::preprocessing::{Interpolation, PreprocessSpec, ResizeMode};

// How the engine carries a filter out: its reach and fast_image_resize's matching algorithm.
impl Interpolation {
    /// How far PIL's filter reaches, in output pixels (source pixels when upsampling).
    fn support(self) -> f64 {
        match self {
            Interpolation::Nearest | Interpolation::Box => 0.5,
            Interpolation::Bilinear | Interpolation::Hamming => 1.0,
            Interpolation::Bicubic => 2.0,
            Interpolation::Lanczos => 3.0,
        }
    }

    fn algorithm(self) -> ResizeAlg {
        match self {
            Interpolation::Nearest => ResizeAlg::Nearest,
            Interpolation::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            // PIL's bicubic is the a = -0.5 cubic, i.e. Catmull-Rom.
            Interpolation::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            Interpolation::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
            Interpolation::Box => ResizeAlg::Convolution(FilterType::Box),
            Interpolation::Hamming => ResizeAlg::Convolution(FilterType::Hamming),
        }
    }
}

fn pixel_type(layout: PixelLayout) -> PixelType {
    match layout {
        PixelLayout::Rgb => PixelType::U8x3,
        PixelLayout::Rgbx => PixelType::U8x4,
    }
}

/// A decoded image, 8-bit RGB (the values PIL's `convert("RGB")` gives) in `layout`, rows top to
/// bottom: `width * height * layout.bytes_per_pixel()` bytes of `pixels` (exactly that many from
/// `decode_rgb` and `load_rgb`).
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub layout: PixelLayout,
    pub pixels: Vec<u8>,
}

/// Read and decode an image file to RGB the way PIL's `Image.open(p).convert("RGB")` does.
pub fn load_rgb(path: &Path) -> Result<RgbImage, String> {
    with_file_bytes(path, decode_rgb)
}

/// Run `f` on a file's bytes, read into a per-thread buffer reused from image to image.
fn with_file_bytes<R>(
    path: &Path,
    f: impl FnOnce(&[u8]) -> Result<R, String>,
) -> Result<R, String> {
    use std::io::Read;
    let read_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_string(),
        _ => format!("cannot read: {e}"),
    };
    // Looked at before opening (opening a FIFO blocks); read no more than the limit allows, so a
    // device or a file growing under us cannot make the read unbounded.
    let max = image_limits().max_file_bytes;
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > max {
        return Err(format!(
            "file of {} MB is over the limit of {} MB; raise it with --max-image-mb",
            meta.len() >> 20,
            max >> 20
        ));
    }
    let mut bytes = SPARE_BYTES.with(|spare| spare.take());
    bytes.clear();
    let read = std::fs::File::open(path).and_then(|f| f.take(max).read_to_end(&mut bytes));
    let result = read.map_err(read_error).and_then(|_| f(&bytes));
    SPARE_BYTES.with(|spare| spare.replace(bytes));
    result
}

/// Decode every pixel of an encoded image, in `PixelLayout::Rgb`.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_for(bytes, None)
}

/// Decode, writing at least the pixels that resizing and cropping for `target` (a spec and a
/// border) will read; without a target, every pixel, in `PixelLayout::Rgb`. With a target a JPEG
/// comes as `PixelLayout::Rgbx`, which resamples faster.
fn decode_for(bytes: &[u8], target: Option<(&PreprocessSpec, u32)>) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes, target)
    } else {
        decode_other(bytes)
    }
}

fn decode_jpeg(bytes: &[u8], target: Option<(&PreprocessSpec, u32)>) -> Result<RgbImage, String> {
    if has_scan(bytes) && !has_end_of_image(bytes) {
        // libjpeg (and so PIL) refuses to load a JPEG cut off mid-scan: "image file is truncated".
        return Err("truncated JPEG: no end-of-image marker after the last scan".into());
    }
    // A recycled buffer (see `recycle`): no fresh pages to fault in for every image. libjpeg
    // writes every pixel of what it decodes, damaged data included; with a region, the pixels
    // outside it keep what the buffer held, and the resampler never reads them (`source_region`
    // covers its filters' reach).
    let (spare, layout) = match target {
        Some(_) => (&REGION_PIXELS, PixelLayout::Rgbx),
        None => (&SPARE_PIXELS, PixelLayout::Rgb),
    };
    let mut pixels = spare.with(|spare| spare.take());
    let region_for = |width, height| {
        target.and_then(|(spec, border)| source_region(width, height, spec, border))
    };
    match jpeg::decode(bytes, region_for, layout, &mut pixels) {
        Ok(Some((width, height))) => {
            if target.is_none() {
                // Handed out (`decode_rgb`): exactly the image.
                pixels.truncate(width as usize * height as usize * layout.bytes_per_pixel());
            }
            Ok(RgbImage {
                width,
                height,
                layout,
                pixels,
            })
        }
        decoded => {
            spare.with(|spare| spare.replace(pixels));
            decoded.and_then(|_| decode_jpeg_cmyk(bytes))
        }
    }
}

/// CMYK and YCCK JPEGs, which libjpeg-turbo does not convert to RGB.
fn decode_jpeg_cmyk(bytes: &[u8]) -> Result<RgbImage, String> {
    use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| {
        let detail = format!("{e:?}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        format!("corrupt JPEG: {detail}")
    };
    decoder.decode_headers().map_err(corrupt)?;
    let info = decoder.info().ok_or("corrupt JPEG: no header")?;
    let (width, height) = (info.width as u32, info.height as u32);
    check_pixels(width, height)?;
    let size = decoder
        .output_buffer_size()
        .ok_or("corrupt JPEG: image too large")?;
    if size != width as usize * height as usize * 3 {
        return Err("corrupt JPEG: decoded size does not match its header".into());
    }
    let mut pixels = vec![0; size];
    decoder.decode_into(&mut pixels).map_err(corrupt)?;
    Ok(RgbImage {
        width,
        height,
        layout: PixelLayout::Rgb,
        pixels,
    })
}

thread_local! {
    /// Whole images' buffers, handed out by `decode_rgb` and back through `recycle`.
    static SPARE_PIXELS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The preprocessing path's decode buffer. It never shrinks (an image's pixels are its first
    /// `width * height * 4` bytes), so a larger image after a smaller one finds it already
    /// zeroed and faulted in, and nothing is written twice.
    static REGION_PIXELS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static SPARE_BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Hand a decoded image's buffer back for the next decode on this thread.
pub fn recycle(img: RgbImage) {
    recycle_into(&SPARE_PIXELS, img.pixels);
}

/// Hand back an image decoded for preprocessing (`decode_for` with a target).
fn recycle_region(img: RgbImage) {
    recycle_into(&REGION_PIXELS, img.pixels);
}

fn recycle_into(spare: &'static std::thread::LocalKey<RefCell<Vec<u8>>>, pixels: Vec<u8>) {
    spare.with(|spare| {
        if pixels.capacity() > spare.borrow().capacity() {
            spare.replace(pixels);
        }
    });
}

fn has_scan(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, &[0xFF, 0xDA]).is_some()
}

/// Whether an EOI marker (FF D9) follows the last start-of-scan (FF DA). Entropy-coded data escapes
/// 0xFF bytes, so these two byte pairs only occur as markers. The last EOI is found from the end
/// (it usually is the end), and only the bytes after it are searched for a later scan, so an
/// intact file is not scanned through.
fn has_end_of_image(bytes: &[u8]) -> bool {
    match memchr::memmem::rfind(bytes, &[0xFF, 0xD9]) {
        Some(eoi) => {
            memchr::memmem::find(&bytes[eoi..], &[0xFF, 0xDA]).is_none()
                && memchr::memmem::find(&bytes[..eoi], &[0xFF, 0xDA]).is_some()
        }
        None => false,
    }
}

fn decode_other(bytes: &[u8]) -> Result<RgbImage, String> {
    use image::DynamicImage as D;
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot decode: {e}"))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| format!("cannot decode: {e}"))?;
    check_pixels(w, h)?;
    let img = reader()?
        .decode()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let (width, height) = (img.width(), img.height());
    // Match PIL's convert("RGB"): alpha is dropped (not composited), greyscale replicated, 16-bit
    // colour keeps the high byte (PIL reads it as "RGB;16B"), 16-bit greyscale is clipped to 255
    // (PIL's "I;16" → "RGB").
    let pixels = match img {
        D::ImageRgb8(b) => b.into_raw(),
        D::ImageRgba8(b) => b.pixels().flat_map(|p| [p[0], p[1], p[2]]).collect(),
        D::ImageLuma8(b) => b.pixels().flat_map(|p| [p[0]; 3]).collect(),
        D::ImageLumaA8(b) => b.pixels().flat_map(|p| [p[0]; 3]).collect(),
        D::ImageRgb16(b) => b
            .pixels()
            .flat_map(|p| p.0.map(|v| (v >> 8) as u8))
            .collect(),
        D::ImageRgba16(b) => b
            .pixels()
            .flat_map(|p| [p[0], p[1], p[2]].map(|v| (v >> 8) as u8))
            .collect(),
        D::ImageLuma16(b) => b.pixels().flat_map(|p| [p[0].min(255) as u8; 3]).collect(),
        D::ImageLumaA16(b) => b.pixels().flat_map(|p| [p[0].min(255) as u8; 3]).collect(),
        other => other.to_rgb8().into_raw(),
    };
    Ok(RgbImage {
        width,
        height,
        layout: PixelLayout::Rgb,
        pixels,
    })
}

/// torchvision's `Resize(size)` output for a (w, h) image: the shorter side becomes `size`, the
/// longer `int(size * long / short)`.
pub fn resized_dims(width: u32, height: u32, size: u32) -> (u32, u32) {
    let long_of =
        |short: u32, long: u32| ((size as u64 * long as u64) as f64 / short as f64) as u32;
    if width <= height {
        (size, long_of(width, height))
    } else {
        (long_of(height, width), size)
    }
}

/// torchvision's `CenterCrop` offset: `int(round((dim - crop) / 2))`, Python's round-half-to-even.
pub fn center_offset(dim: u32, crop: u32) -> u32 {
    let d = dim.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

thread_local! {
    static RESIZER: RefCell<(Resizer, Vec<u8>, Vec<u8>)> = RefCell::new((Resizer::new(), Vec::new(), Vec::new()));
}

/// Resize and center-crop to `spec.crop` square, 8-bit RGB (HWC), after cropping `border` pixels
/// from every edge (ObjectNet's frame). The result equals PIL's resize then crop.
pub fn resize_crop(img: &RgbImage, spec: &PreprocessSpec, border: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(spec.crop as usize * spec.crop as usize * 3);
    with_resized_crop(img, spec, border, |crop| match img.layout {
        PixelLayout::Rgb => out.extend_from_slice(crop),
        PixelLayout::Rgbx => out.extend(crop.chunks_exact(4).flat_map(|px| [px[0], px[1], px[2]])),
    })?;
    Ok(out)
}

/// Load a file and resize and crop it as `preprocess_file` does, 8-bit RGB (HWC): the pipeline's
/// pixels before normalisation, for comparing with PIL's.
pub fn load_resized_crop(
    path: &Path,
    spec: &PreprocessSpec,
    border: u32,
) -> Result<Vec<u8>, String> {
    with_file_bytes(path, |bytes| {
        let img = decode_for(bytes, Some((spec, border)))?;
        let crop = resize_crop(&img, spec, border);
        recycle_region(img);
        crop
    })
}

/// Resize and center-crop `img` and hand `f` the crop, `spec.crop` square in `img.layout`.
fn with_resized_crop(
    img: &RgbImage,
    spec: &PreprocessSpec,
    border: u32,
    f: impl FnOnce(&[u8]),
) -> Result<(), String> {
    if img.width <= 2 * border || img.height <= 2 * border {
        return Err(format!(
            "image is {}x{}, too small to crop a {border}-pixel border",
            img.width, img.height
        ));
    }
    let layout = img.layout;
    let bpp = layout.bytes_per_pixel();
    // The border is cut off for real (PIL crops it before resizing): the resampler sees a view of
    // the interior as the whole image, so near the edge it never reaches into the border. The
    // center crop afterwards is fused into the resize.
    let (w, h) = (img.width - 2 * border, img.height - 2 * border);
    let (nw, nh) = resized_dims(w, h, spec.resize);
    if nw < spec.crop || nh < spec.crop {
        return Err(format!(
            "image is {w}x{h}, too thin to resize to {} and crop {}",
            spec.resize, spec.crop
        ));
    }
    let (x0, y0) = (center_offset(nw, spec.crop), center_offset(nh, spec.crop));
    if (nw, nh) == (w, h) {
        // No resize (PIL returns a copy for a resize to the same size): a plain crop.
        return with_plain_crop(img, border + x0, border + y0, spec.crop, f);
    }
    let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
    let (crop, crop_f) = (spec.crop, spec.crop as f64);
    let algorithm = spec.interpolation.algorithm();
    // The fourth byte of Rgbx is padding, not alpha: nothing to premultiply.
    let options = ResizeOptions::new().resize_alg(algorithm).use_alpha(false);
    let pixel_type = pixel_type(layout);
    let fir_err = |e: &dyn std::fmt::Display| e.to_string();
    RESIZER.with(|cell| {
        let (resizer, tmp, out) = &mut *cell.borrow_mut();
        out.resize(crop as usize * crop as usize * bpp, 0);
        let mut dst = fir::images::Image::from_slice_u8(crop, crop, out, pixel_type)
            .map_err(|e| fir_err(&e))?;
        if algorithm == ResizeAlg::Nearest {
            let whole = fir::images::ImageRef::new(img.width, img.height, &img.pixels, pixel_type)
                .map_err(|e| fir_err(&e))?;
            let src = fir::images::CroppedImage::new(&whole, border, border, w, h)
                .map_err(|e| fir_err(&e))?;
            let options = options.crop(x0 as f64 * sx, y0 as f64 * sy, crop_f * sx, crop_f * sy);
            resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| fir_err(&e))?;
        } else {
            // PIL resamples horizontally first and rounds to 8 bits between the passes; with
            // overshooting filters (bicubic, lanczos) the order matters, and fast_image_resize
            // would go vertical-first. So run the two passes as two one-dimensional resizes.
            // Pass 1 covers only the rows pass 2 can reach (filter support plus a margin).
            let (y_lo, y_hi) = reach(y0, crop, sy, h, spec.interpolation);
            let rows = y_hi - y_lo;
            let stride = img.width as usize * bpp;
            let first_row = (border + y_lo) as usize;
            let band = &img.pixels[first_row * stride..(first_row + rows as usize) * stride];
            let band = fir::images::ImageRef::new(img.width, rows, band, pixel_type)
                .map_err(|e| fir_err(&e))?;
            let src = fir::images::CroppedImage::new(&band, border, 0, w, rows)
                .map_err(|e| fir_err(&e))?;
            // The band's height changes from image to image: grow the buffer, never shrink it,
            // so it is not zeroed again each time.
            let band_len = crop as usize * rows as usize * bpp;
            if tmp.len() < band_len {
                tmp.resize(band_len, 0);
            }
            let mid_pixels = &mut tmp[..band_len];
            let mut mid = fir::images::Image::from_slice_u8(crop, rows, mid_pixels, pixel_type)
                .map_err(|e| fir_err(&e))?;
            let horizontal = options.crop(x0 as f64 * sx, 0.0, crop_f * sx, rows as f64);
            resizer
                .resize(&src, &mut mid, &horizontal)
                .map_err(|e| fir_err(&e))?;
            let vertical = options.crop(0.0, y0 as f64 * sy - y_lo as f64, crop_f, crop_f * sy);
            resizer
                .resize(&mid, &mut dst, &vertical)
                .map_err(|e| fir_err(&e))?;
        }
        f(out);
        Ok(())
    })
}

/// Hand `f` the `crop`-square at (x, y) of `img`, copied row by row, in `img.layout`.
fn with_plain_crop(
    img: &RgbImage,
    x: u32,
    y: u32,
    crop: u32,
    f: impl FnOnce(&[u8]),
) -> Result<(), String> {
    let bpp = img.layout.bytes_per_pixel();
    let stride = img.width as usize * bpp;
    let row_len = crop as usize * bpp;
    RESIZER.with(|cell| {
        let (_, _, out) = &mut *cell.borrow_mut();
        out.clear();
        for row in y as usize..(y + crop) as usize {
            let start = row * stride + x as usize * bpp;
            out.extend_from_slice(&img.pixels[start..start + row_len]);
        }
        f(out);
        Ok(())
    })
}

/// The source pixels `[lo, hi)` along one axis that resampling output pixels `[start, start +
/// len)` at `scale` source pixels per output pixel with `filter` can read: the filter's support
/// (scaled when downsampling) plus a margin for rounding.
fn reach(start: u32, len: u32, scale: f64, size: u32, filter: Interpolation) -> (u32, u32) {
    let support = filter.support() * scale.max(1.0) + 1.0;
    let lo = (start as f64 * scale - support).floor().max(0.0) as u32;
    let hi = (((start + len) as f64 * scale + support).ceil() as u32).min(size);
    (lo, hi)
}

/// The part of a `width` x `height` image that `spec` with a `border` reads, or None when the
/// image is too small for the spec (the resize reports that).
fn source_region(
    width: u32,
    height: u32,
    spec: &PreprocessSpec,
    border: u32,
) -> Option<jpeg::Region> {
    if width <= 2 * border || height <= 2 * border {
        return None;
    }
    let (w, h) = (width - 2 * border, height - 2 * border);
    let (nw, nh) = resized_dims(w, h, spec.resize);
    if nw < spec.crop || nh < spec.crop {
        return None;
    }
    let (x0, y0) = (center_offset(nw, spec.crop), center_offset(nh, spec.crop));
    let filter = spec.interpolation;
    let (x_lo, x_hi) = reach(x0, spec.crop, w as f64 / nw as f64, w, filter);
    let (y_lo, y_hi) = reach(y0, spec.crop, h as f64 / nh as f64, h, filter);
    Some(jpeg::Region {
        x: border + x_lo,
        y: border + y_lo,
        width: x_hi - x_lo,
        height: y_hi - y_lo,
    })
}

/// The full transform into `out` (CHW, `spec.tensor_len()` floats): resize, crop, `ToTensor`,
/// `Normalize`, computed in f32 as torchvision does.
pub fn preprocess_into(
    img: &RgbImage,
    spec: &PreprocessSpec,
    border: u32,
    out: &mut [f32],
) -> Result<(), String> {
    let plane = spec.crop as usize * spec.crop as usize;
    debug_assert_eq!(out.len(), 3 * plane);
    // ToTensor + Normalize per channel, as a table over the 256 levels: the same f32 arithmetic
    // as torchvision, done once per level instead of once per pixel.
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|v| (v as f32 / 255.0 - spec.mean[c]) / spec.std[c])
    });
    let bpp = img.layout.bytes_per_pixel();
    with_resized_crop(img, spec, border, |crop| {
        // One channel plane at a time: each pass writes one output stream (faster than three
        // interleaved ones).
        for ((channel, values), lut) in out.chunks_exact_mut(plane).enumerate().zip(&lut) {
            for (value, px) in values.iter_mut().zip(crop.chunks_exact(bpp)) {
                *value = lut[px[channel] as usize];
            }
        }
    })
}

/// Load, decode and preprocess one image file into `out`.
pub fn preprocess_file(
    path: &Path,
    spec: &PreprocessSpec,
    border: u32,
    out: &mut [f32],
) -> Result<(), String> {
    with_file_bytes(path, |bytes| preprocess_bytes(bytes, spec, border, out))
}

/// Decode and preprocess one encoded image into `out`. A JPEG is decoded only as far as the
/// resize reads it.
pub fn preprocess_bytes(
    bytes: &[u8],
    spec: &PreprocessSpec,
    border: u32,
    out: &mut [f32],
) -> Result<(), String> {
    let img = decode_for(bytes, Some((spec, border)))?;
    let result = preprocess_into(&img, spec, border, out);
    recycle_region(img);
    result
}

#[cfg(test)]
mod tests;
