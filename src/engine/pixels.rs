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
