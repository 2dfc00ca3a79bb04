//! JPEG decoding with libjpeg-turbo (its TurboJPEG 3 API), the decoder inside PIL: the same
//! integer IDCT and fancy upsampling, so the pixels are PIL's bit for bit. A decode can be
//! limited to a region: only the part of the image the resize will read is run through the IDCT
//! and colour conversion, and decoding stops after its last row.

use std::cell::RefCell;
use std::ffi::{c_int, CStr};

use turbojpeg_sys as tj;

use crate::engine::pixels::{check_pixels, PixelLayout};

/// Extra pixels decoded around a region, so fancy upsampling at the region's edges sees the same
/// neighbours as in a full decode. Upsampling reaches one chroma sample (2 pixels) further; over
/// 1200 random regions of real JPEGs (4:4:4, 4:2:2, 4:2:0, greyscale, baseline and progressive),
/// 1 pixel already gave every pixel of a full decode and 0 did not.
const EDGE_MARGIN: u32 = 2;

/// A rectangle of image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// What the header says about an image.
#[derive(Debug, Clone, Copy)]
struct Header {
    width: u32,
    height: u32,
    colorspace: c_int,
    /// Width of an iMCU column: cropping regions start on a multiple of it. None when
    /// libjpeg-turbo cannot tell the subsampling (and so cannot crop).
    imcu_width: Option<u32>,
}

impl Header {
    /// Whether libjpeg-turbo converts this image to RGB as PIL's `convert("RGB")` does (YCbCr,
    /// greyscale, RGB). CMYK and YCCK are left to the caller.
    fn converts_to_rgb(&self) -> bool {
        matches!(
            self.colorspace as u32,
            tj::TJCS_TJCS_YCbCr | tj::TJCS_TJCS_GRAY | tj::TJCS_TJCS_RGB
        )
    }
}

/// One decompressor per thread, made on first use and kept.
struct Decompressor(tj::tjhandle);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

fn with_decompressor<R>(f: impl FnOnce(tj::tjhandle) -> Result<R, String>) -> Result<R, String> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            // SAFETY: plain constructor; a null handle is checked below.
            let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
            if handle.is_null() {
                return Err("cannot start the JPEG decoder".into());
            }
            *slot = Some(Decompressor(handle));
        }
        f(slot.as_ref().map(|d| d.0).expect("set above"))
    })
}

/// The last error on `handle`, and whether it was only a warning (libjpeg's "corrupt JPEG data"
/// kind, after which the image is still decoded in full, as PIL loads it).
fn last_error(handle: tj::tjhandle) -> (String, bool) {
    // SAFETY: the handle is live; tj3GetErrorStr returns a NUL-terminated string it owns.
    unsafe {
        let text = CStr::from_ptr(tj::tj3GetErrorStr(handle))
            .to_string_lossy()
            .trim()
            .to_string();
        let warning = tj::tj3GetErrorCode(handle) == tj::TJERR_TJERR_WARNING as c_int;
        (text, warning)
    }
}

fn read_header_with(handle: tj::tjhandle, bytes: &[u8]) -> Result<Header, String> {
    // SAFETY: the buffer and its length come from one slice.
    let status = unsafe { tj::tj3DecompressHeader(handle, bytes.as_ptr(), bytes.len() as _) };
    if status != 0 {
        return Err(format!("corrupt JPEG: {}", last_error(handle).0));
    }
    // SAFETY: reading parameters of a live handle.
    let get = |param: u32| unsafe { tj::tj3Get(handle, param as c_int) };
    let (width, height) = (
        get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if width <= 0 || height <= 0 {
        return Err("corrupt JPEG: no image size in its header".into());
    }
    if get(tj::TJPARAM_TJPARAM_PRECISION) != 8 {
        return Err("unsupported JPEG: more than 8 bits per sample".into());
    }
    let (width, height) = (width as u32, height as u32);
    check_pixels(width, height)?;
    Ok(Header {
        width,
        height,
        colorspace: get(tj::TJPARAM_TJPARAM_COLORSPACE),
        imcu_width: imcu_width(get(tj::TJPARAM_TJPARAM_SUBSAMP)),
    })
}

/// Decode a JPEG into the first `width * height * layout.bytes_per_pixel()` bytes of `pixels`
/// (grown to at least that, never shrunk), and return its size; or None, leaving `pixels` alone,
/// when libjpeg-turbo does not convert its colour space to RGB (see `Header::converts_to_rgb`).
/// `region_for` picks, from the image's size, the region that must be decoded: only the pixels in
/// (at least) that region are written, in place, the rest of the buffer keeping what it held.
/// Without one, every pixel is.
pub fn decode(
    bytes: &[u8],
    region_for: impl FnOnce(u32, u32) -> Option<Region>,
    layout: PixelLayout,
    pixels: &mut Vec<u8>,
) -> Result<Option<(u32, u32)>, String> {
    with_decompressor(|handle| {
        let header = read_header_with(handle, bytes)?;
        if !header.converts_to_rgb() {
            return Ok(None);
        }
        let (width, height) = (header.width, header.height);
        let bytes_per_pixel = layout.bytes_per_pixel();
        let stride = width as usize * bytes_per_pixel;
        // Grown, never shrunk: a buffer kept from a larger image is not zeroed again.
        let needed = stride * height as usize;
        if pixels.len() < needed {
            pixels.resize(needed, 0);
        }
        let area = header
            .imcu_width
            .and_then(|imcu| region_for(width, height).map(|r| widened(r, width, height, imcu)));
        let full = Region {
            x: 0,
            y: 0,
            width,
            height,
        };
        let mut area = area.unwrap_or(full);
        if area != full {
            let crop = tj::tjregion {
                x: area.x as c_int,
                y: area.y as c_int,
                w: area.width as c_int,
                h: area.height as c_int,
            };
            // SAFETY: live handle; the region lies within the image (see `widened`).
            if unsafe { tj::tj3SetCroppingRegion(handle, crop) } != 0 {
                // Not every JPEG can be cropped (lossless ones, say): decode it whole.
                area = full;
            }
        }
        if area == full {
            let whole = tj::tjregion {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            };
            // SAFETY: live handle; the empty region means "no cropping".
            unsafe { tj::tj3SetCroppingRegion(handle, whole) };
        }
        let offset = area.y as usize * stride + area.x as usize * bytes_per_pixel;
        // The rows of the region land where they belong in the full-size buffer: same stride,
        // first row at the region's corner. The decoder writes `area.height` rows of
        // `area.width` pixels, which fit in `pixels[offset..]`.
        let dst = pixels[offset..].as_mut_ptr();
        // SAFETY: see above; `bytes` and its length come from one slice.
        let status = unsafe {
            tj::tj3Decompress8(
                handle,
                bytes.as_ptr(),
                bytes.len() as _,
                dst,
                stride as c_int,
                match layout {
                    PixelLayout::Rgb => tj::TJPF_TJPF_RGB as c_int,
                    // The padding byte is 0xFF, like an opaque alpha.
                    PixelLayout::Rgbx => tj::TJPF_TJPF_RGBX as c_int,
                },
            )
        };
        if status != 0 {
            let (text, warning) = last_error(handle);
            if !warning {
                return Err(format!("corrupt JPEG: {text}"));
            }
        }
        Ok(Some((width, height)))
    })
}

/// libjpeg-turbo's iMCU width for a TJSAMP_* subsampling (its header's `tjMCUWidth`).
fn imcu_width(subsampling: c_int) -> Option<u32> {
    let widths = [8, 16, 16, 8, 8, 32, 8];
    usize::try_from(subsampling)
        .ok()
        .and_then(|s| widths.get(s).copied())
}

/// `region` grown by the upsampling margin, its left edge moved down to an iMCU boundary, and
/// clipped to the image.
fn widened(region: Region, width: u32, height: u32, imcu_width: u32) -> Region {
    let x = region.x.saturating_sub(EDGE_MARGIN) / imcu_width * imcu_width;
    let y = region.y.saturating_sub(EDGE_MARGIN);
    let right = (region.x + region.width + EDGE_MARGIN).min(width);
    let bottom = (region.y + region.height + EDGE_MARGIN).min(height);
    Region {
        x,
        y,
        width: right.saturating_sub(x),
        height: bottom.saturating_sub(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widened_region_is_aligned_and_inside_the_image() {
        let r = widened(
            Region {
                x: 70,
                y: 30,
                width: 200,
                height: 300,
            },
            500,
            320,
            16,
        );
        assert_eq!(r.x, 64);
        assert_eq!(r.y, 28);
        assert_eq!(r.x + r.width, 272);
        assert_eq!(r.y + r.height, 320);
    }

    #[test]
    fn imcu_width_follows_the_subsampling() {
        assert_eq!(imcu_width(tj::TJSAMP_TJSAMP_444), Some(8));
        assert_eq!(imcu_width(tj::TJSAMP_TJSAMP_420), Some(16));
        assert_eq!(imcu_width(tj::TJSAMP_TJSAMP_411), Some(32));
        assert_eq!(imcu_width(tj::TJSAMP_TJSAMP_UNKNOWN), None);
    }
}
