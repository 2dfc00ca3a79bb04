use super::*;

#[test]
fn zero_shot_logits_normalise_the_embedding_then_scale_cosines() {
    let weights = ndarray::arr2(&[[1.0f32, 0.0], [0.6, 0.8]]);
    let mut head = Head {
        kind: crate::input::card::HeadKind::ZeroShot,
        weights_file: "w.npy".into(),
        scale: 10.0,
        normalize: true,
        bias_file: None,
        weights: std::sync::Arc::new(weights),
        bias: None,
    };
    // [3, 4] has norm 5: its cosines with the two classes are 0.6 and 1.
    let logits = head_logits(&[3.0, 4.0, 0.0, 2.0], 2, &head);
    let want = [6.0, 10.0, 0.0, 8.0];
    for (got, want) in logits.iter().zip(want) {
        assert!((got - want).abs() < 1e-5, "{logits:?}");
    }
    // A linear head on the raw embedding, with a bias.
    head.normalize = false;
    head.scale = 1.0;
    head.bias = Some(std::sync::Arc::new(ndarray::arr1(&[0.5f32, -1.0])));
    let logits = head_logits(&[3.0, 4.0, 0.0, 2.0], 2, &head);
    let want = [3.5, 4.0, 0.5, 0.6];
    for (got, want) in logits.iter().zip(want) {
        assert!((got - want).abs() < 1e-5, "{logits:?}");
    }
}

#[test]
fn relayout_reverses_channels_and_interleaves() {
    // One 2x2 image: R plane 1..=4, G 5..=8, B 9..=12.
    let nchw: Vec<f32> = (1..=12).map(|v| v as f32).collect();
    let mut out = Vec::new();
    relayout(&nchw, 2, TensorLayout::Nchw, ChannelOrder::Bgr, &mut out);
    assert_eq!(out, [9., 10., 11., 12., 5., 6., 7., 8., 1., 2., 3., 4.]);
    relayout(&nchw, 2, TensorLayout::Nhwc, ChannelOrder::Rgb, &mut out);
    assert_eq!(out, [1., 5., 9., 2., 6., 10., 3., 7., 11., 4., 8., 12.]);
    relayout(&nchw, 2, TensorLayout::Nhwc, ChannelOrder::Bgr, &mut out);
    assert_eq!(out, [9., 5., 1., 10., 6., 2., 11., 7., 3., 12., 8., 4.]);
}
