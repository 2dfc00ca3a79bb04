use super::*;

#[test]
fn torchvision_resize_and_crop_arithmetic() {
    assert_eq!(resized_dims(500, 375, 256), (341, 256));
    assert_eq!(resized_dims(375, 500, 256), (256, 341));
    assert_eq!(resized_dims(300, 300, 256), (256, 256));
    // Python: round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(3.5) = 4
    assert_eq!(center_offset(225, 224), 0);
    assert_eq!(center_offset(227, 224), 2);
    assert_eq!(center_offset(229, 224), 2);
    assert_eq!(center_offset(231, 224), 4);
    assert_eq!(center_offset(341, 224), 58);
}

#[test]
fn truncated_jpeg_is_detected() {
    assert!(has_end_of_image(&[
        0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9
    ]));
    assert!(!has_end_of_image(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3]));
    // A thumbnail's EOI before the main scan does not count.
    assert!(!has_end_of_image(&[
        0xFF, 0xD8, 0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 1
    ]));
}

#[test]
fn constant_image_normalises_exactly() {
    let img = RgbImage {
        width: 40,
        height: 30,
        layout: PixelLayout::Rgb,
        pixels: vec![255; 40 * 30 * 3],
    };
    let spec = PreprocessSpec {
        resize: 20,
        crop: 16,
        interpolation: Interpolation::Bicubic,
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let mut out = vec![0.0; spec.tensor_len()];
    preprocess_into(&img, &spec, 0, &mut out).unwrap();
    assert!(out.iter().all(|&v| (v - 2.0).abs() < 1e-6));
}

#[test]
fn rgbx_and_rgb_give_the_same_tensor() {
    let (width, height) = (53, 41);
    let rgb: Vec<u8> = (0..width * height * 3)
        .map(|i| (i * 37 % 251) as u8)
        .collect();
    let rgbx: Vec<u8> = rgb
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 0xFF])
        .collect();
    let spec = PreprocessSpec {
        resize: 36,
        crop: 32,
        interpolation: Interpolation::Bicubic,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    let tensor = |layout, pixels| {
        let img = RgbImage {
            width,
            height,
            layout,
            pixels,
        };
        let mut out = vec![0.0; spec.tensor_len()];
        preprocess_into(&img, &spec, 2, &mut out).unwrap();
        (out, resize_crop(&img, &spec, 2).unwrap())
    };
    let (from_rgb, crop_rgb) = tensor(PixelLayout::Rgb, rgb);
    let (from_rgbx, crop_rgbx) = tensor(PixelLayout::Rgbx, rgbx);
    assert_eq!(crop_rgb.len(), 32 * 32 * 3);
    assert_eq!(crop_rgb, crop_rgbx);
    assert_eq!(from_rgb, from_rgbx);
    // Channel planes, not interleaved pixels: the first red value comes from the crop's first
    // byte, the first green one from its second.
    assert_eq!(from_rgb[0], (crop_rgb[0] as f32 / 255.0 - 0.485) / 0.229);
    assert_eq!(
        from_rgb[32 * 32],
        (crop_rgb[1] as f32 / 255.0 - 0.456) / 0.224
    );
}
