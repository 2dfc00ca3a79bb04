//! How decoded pixels are laid out in memory: shared by the JPEG decoder and preprocessing.

/// How a decoded image's pixels are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelLayout {
    /// 3 bytes a pixel: R, G, B.
    Rgb,
    /// 4 bytes a pixel: R, G, B and a padding byte. libjpeg-turbo writes it as fast as RGB, and
    /// fast_image_resize's horizontal pass is faster on 4-byte pixels.
    Rgbx,
}

impl PixelLayout {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelLayout::Rgb => 3,
            PixelLayout::Rgbx => 4,
        }
    }
}

/// Limits on what one image may cost, so that no file can exhaust memory: its size on disk, and
/// its pixel count as its header declares it (a decompression bomb declares billions in a few
/// hundred bytes). Set once per process (`run --max-image-mb`, `--max-image-pixels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_file_bytes: u64,
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_file_bytes: 256 << 20,
            // Twice PIL's `Image.MAX_IMAGE_PIXELS`: where PIL stops warning and refuses.
            max_pixels: 178_956_970,
        }
    }
}

static LIMITS: std::sync::OnceLock<ImageLimits> = std::sync::OnceLock::new();

/// Set the limits for this process; only effective before the first image is read.
pub fn set_image_limits(limits: ImageLimits) -> bool {
    LIMITS.set(limits).is_ok()
}

pub fn image_limits() -> ImageLimits {
    *LIMITS.get_or_init(ImageLimits::default)
}

/// Refuse an image whose declared size is over the pixel limit, before any pixel is decoded.
pub fn check_pixels(width: u32, height: u32) -> Result<(), String> {
    let pixels = width as u64 * height as u64;
    let max = image_limits().max_pixels;
    if pixels > max {
        return Err(format!(
            "image of {width} x {height} = {pixels} pixels is over the limit of {max} \
             (a decompression bomb?); raise it with --max-image-pixels"
        ));
    }
    Ok(())
}
