//! Tensor I/O: a model's input and output checked against its card, batches laid out as the
//! model wants them, and logits read back (a `[head]` applied where the card has one).

use super::*;

/// Element type and dimensions of a tensor outlet; float32 and float16 are accepted.
pub(super) fn tensor_dims(
    model: &str,
    what: &str,
    name: &str,
    dtype: &ValueType,
) -> Result<(bool, Vec<i64>)> {
    match dtype {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Ok((false, shape.to_vec())),
        ValueType::Tensor { ty: TensorElementType::Float16, shape, .. } => Ok((true, shape.to_vec())),
        ValueType::Tensor { ty, .. } => Err(Error::Usage(format!(
            "model `{model}`: {what} `{name}` is {ty:?}; only float32 and float16 inputs and outputs are supported"
        ))),
        other => Err(Error::Usage(format!("model `{model}`: {what} `{name}` is not a tensor ({other:?})"))),
    }
}

/// The outlet named in the card, or the first; an error lists the names there are.
pub(super) fn pick_outlet<'s>(
    outlets: &'s [ort::value::Outlet],
    wanted: Option<&str>,
    what: &str,
    model: &str,
    at: &str,
) -> Result<&'s ort::value::Outlet> {
    let names = || {
        outlets
            .iter()
            .map(|o| format!("`{}`", o.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(name) => outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
            Error::Usage(format!(
                "{at}: field `{what}.name`: model `{model}` has no {what} `{name}` (it has {})",
                names()
            ))
        }),
        None => {
            if what == "input" && outlets.len() > 1 {
                return Err(Error::Usage(format!(
                    "{at}: model `{model}` has {} inputs ({}); robust-eval feeds one image tensor",
                    outlets.len(),
                    names()
                )));
            }
            outlets
                .first()
                .ok_or_else(|| Error::Usage(format!("model `{model}` has no {what}s")))
        }
    }
}

/// The input's name and dimensions, read from a CPU session opened without optimisation (for
/// TensorRT's profile, which must name the input before the TensorRT session exists).
pub(super) fn inspect_input(card: &ModelCard) -> Result<(String, Vec<i64>)> {
    let rt = runtime()?;
    let session = Session::builder(&rt.env)?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(ort::Error::from)?
        .commit_from_file(&card.onnx)
        .map_err(|e| Error::Runtime(format!("cannot load {}: {e}", card.onnx.display())))?;
    let at = card.onnx.display().to_string();
    let input = pick_outlet(
        session.inputs(),
        card.input.name.as_deref(),
        "input",
        &card.name,
        &at,
    )?;
    let (_, dims) = tensor_dims(&card.name, "input", input.name(), input.dtype())?;
    Ok((input.name().to_string(), dims))
}

/// The input tensor must take `[N, 3, crop, crop]` (or NHWC) images as the card describes them.
pub(super) fn check_input_shape(
    card: &ModelCard,
    at: &str,
    input: &str,
    in_dims: &[i64],
) -> Result<()> {
    let crop = card.preprocess.crop as i64;
    let fits = |dim: i64, want: i64| dim == want || dim < 0;
    let (expected, shape_ok) = match card.input.layout {
        TensorLayout::Nchw => (
            format!("[N, 3, {crop}, {crop}]"),
            in_dims.len() == 4
                && fits(in_dims[1], 3)
                && fits(in_dims[2], crop)
                && fits(in_dims[3], crop),
        ),
        TensorLayout::Nhwc => (
            format!("[N, {crop}, {crop}, 3]"),
            in_dims.len() == 4
                && fits(in_dims[1], crop)
                && fits(in_dims[2], crop)
                && fits(in_dims[3], 3),
        ),
    };
    if !shape_ok {
        return Err(Error::Usage(format!(
            "{at}: model `{}` takes input `{}` of shape {in_dims:?}, which does not fit the card \
             (expected {expected} from preprocess.crop = {crop} and input.layout = {})",
            card.name,
            input,
            format!("{:?}", card.input.layout).to_lowercase()
        )));
    }
    Ok(())
}

/// The output must be `[N, width]` with the width the card implies (classes + offset, or the
/// zero-shot head's embedding width).
pub(super) fn check_output_width(
    card: &ModelCard,
    at: &str,
    output: &str,
    out_dims: &[i64],
) -> Result<()> {
    let model_width = card.model_output_width();
    let width_ok = out_dims.len() == 2 && (out_dims[1] < 0 || out_dims[1] as usize == model_width);
    if !width_ok {
        let from = match &card.head {
            Some(head) => format!(
                "the embedding width of the head's weights {}",
                head.weights_file.display()
            ),
            None => format!(
                "output.num_classes = {} and offset = {}",
                card.num_classes + card.offset,
                card.offset
            ),
        };
        return Err(Error::Usage(format!(
            "{at}: model `{}` output `{}` has shape {out_dims:?}, which does not fit the card \
             (expected [N, {model_width}] from {from})",
            card.name, output,
        )));
    }
    Ok(())
}

/// Re-lay out an NCHW RGB batch as the model takes it: channels reversed for BGR, and
/// interleaved for NHWC.
pub(super) fn relayout(
    batch: &[f32],
    side: usize,
    layout: TensorLayout,
    channels: ChannelOrder,
    out: &mut Vec<f32>,
) {
    let plane = side * side;
    out.clear();
    out.resize(batch.len(), 0.0);
    for (image, dst) in batch
        .chunks_exact(3 * plane)
        .zip(out.chunks_exact_mut(3 * plane))
    {
        for c in 0..3 {
            let from = match channels {
                ChannelOrder::Rgb => c,
                ChannelOrder::Bgr => 2 - c,
            };
            let src = &image[from * plane..(from + 1) * plane];
            match layout {
                TensorLayout::Nchw => dst[c * plane..(c + 1) * plane].copy_from_slice(src),
                TensorLayout::Nhwc => {
                    for (p, v) in src.iter().enumerate() {
                        dst[p * 3 + c] = *v;
                    }
                }
            }
        }
    }
}

/// A head's logits: `scale · normalize?(e) · Wᵀ + bias` (the card's `[head]`), each embedding
/// row L2-normalised first when the head says so.
pub(super) fn head_logits(embeddings: &[f32], n: usize, head: &Head) -> Vec<f32> {
    let dim = head.embedding_width();
    let mut e = ndarray::Array2::from_shape_vec((n, dim), embeddings.to_vec())
        .expect("embedding rows have the head's width (checked when the model was opened)");
    if head.normalize {
        for mut row in e.rows_mut() {
            let norm = row.dot(&row).sqrt();
            if norm > 0.0 {
                row.mapv_inplace(|v| v / norm);
            }
        }
    }
    let mut logits = e.dot(&head.weights.t());
    if head.scale != 1.0 {
        logits *= head.scale;
    }
    if let Some(bias) = &head.bias {
        logits += &**bias;
    }
    logits.into_raw_vec_and_offset().0
}

impl Classifier for OrtClassifier {
    fn classify(&mut self, batch: &[f32], n: usize) -> Result<Vec<f32>> {
        let run_n = self.fixed_batch.unwrap_or(n);
        let side = self.crop;
        let per_image = 3 * side * side;
        let mut data: &[f32] = &batch[..n * per_image];
        // A fixed-batch model gets its last, short batch padded with zeros.
        if run_n > n || self.layout != TensorLayout::Nchw || self.channels != ChannelOrder::Rgb {
            relayout(data, side, self.layout, self.channels, &mut self.scratch);
            self.scratch.resize(run_n * per_image, 0.0);
            data = &self.scratch;
        }
        let dims = match self.layout {
            TensorLayout::Nchw => [run_n, 3, side, side],
            TensorLayout::Nhwc => [run_n, side, side, 3],
        };
        let outputs = if self.input_f16 {
            self.scratch_f16.clear();
            self.scratch_f16
                .extend(data.iter().map(|v| f16::from_f32(*v)));
            let tensor = TensorRef::from_array_view((dims, &self.scratch_f16[..]))?;
            self.session.run_with_options(
                ort::inputs![self.input.as_str() => tensor],
                &self.run_options,
            )?
        } else {
            let tensor = TensorRef::from_array_view((dims, data))?;
            self.session.run_with_options(
                ort::inputs![self.input.as_str() => tensor],
                &self.run_options,
            )?
        };
        let value = &outputs[self.output.as_str()];
        let (shape, mut rows): (Vec<i64>, Vec<f32>) = if self.output_f16 {
            let (shape, v) = value.try_extract_tensor::<f16>()?;
            (shape.to_vec(), v.iter().map(|x| x.to_f32()).collect())
        } else {
            let (shape, v) = value.try_extract_tensor::<f32>()?;
            (shape.to_vec(), v.to_vec())
        };
        if shape.len() != 2 || shape[0] as usize != run_n || shape[1] as usize != self.model_width {
            return Err(Error::Runtime(format!(
                "model output `{}` has shape {shape:?}; expected [{run_n}, {}] ({})",
                self.output,
                self.model_width,
                if self.head.is_some() {
                    "the head's embedding width"
                } else {
                    "card: num_classes + offset"
                }
            )));
        }
        // Padding rows of a fixed-batch model are dropped.
        rows.truncate(n * self.model_width);
        Ok(match &self.head {
            Some(head) => head_logits(&rows, n, head),
            None => rows,
        })
    }

    fn provider(&self) -> &str {
        &self.provider
    }

    fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }
}
