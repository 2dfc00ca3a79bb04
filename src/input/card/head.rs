//! A card's `[head]`: the class embeddings (and bias) read from bounded .npy files and checked.

use super::*;

pub(super) fn load_head(raw: RawHead, base: &Path, at: &KeyLocator) -> Result<Head> {
    let field = |key: &str| at(Some("head"), key);
    let kind = match raw.kind.as_str() {
        "zero-shot" => HeadKind::ZeroShot,
        "linear" => HeadKind::Linear,
        other => {
            return Err(Error::input(
                field("kind"),
                format!("unknown head kind `{other}`; expected \"zero-shot\" or \"linear\""),
            ))
        }
    };
    let normalize = match (kind, raw.normalize) {
        (HeadKind::ZeroShot, None | Some(true)) => true,
        (HeadKind::ZeroShot, Some(false)) => {
            return Err(Error::input(
                field("normalize"),
                "a zero-shot head compares normalised embeddings (cosine similarity); \
                 use kind = \"linear\" for a head on the raw embedding",
            ))
        }
        (HeadKind::Linear, Some(n)) => n,
        (HeadKind::Linear, None) => {
            return Err(Error::input(
                field("normalize"),
                "a linear head must say whether the embedding is L2-normalised first: \
                 `normalize = true` as wise-ft's ClassificationHead on CLIP, `false` for a \
                 plain linear layer",
            ))
        }
    };
    if kind == HeadKind::ZeroShot && raw.bias.is_some() {
        return Err(Error::input(
            field("bias"),
            "a zero-shot head has no bias; use kind = \"linear\" for a head with one",
        ));
    }
    let default_scale = if kind == HeadKind::ZeroShot {
        100.0
    } else {
        1.0
    };
    let scale = raw.scale.unwrap_or(default_scale);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::input(
            field("scale"),
            "scale must be a positive number (CLIP's exp(logit_scale), 100 when trained)",
        ));
    }
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let file = resolve(raw.weights);
    let weights = read_head_weights(&file, kind == HeadKind::ZeroShot)
        .map_err(|m| Error::input(field("weights"), format!("{}: {m}", file.display())))?;
    let (bias_file, bias) = match raw.bias {
        None => (None, None),
        Some(b) => {
            let b = resolve(b);
            let bias = read_head_bias(&b, weights.nrows())
                .map_err(|m| Error::input(field("bias"), format!("{}: {m}", b.display())))?;
            (Some(b), Some(Arc::new(bias)))
        }
    };
    Ok(Head {
        kind,
        weights_file: file,
        scale,
        normalize,
        bias_file,
        weights: Arc::new(weights),
        bias,
    })
}

/// Largest head file read (.npy weights or bias): 64 Mi float32 values.
pub(super) const MAX_HEAD_BYTES: u64 = 256 << 20;

pub(super) fn open_npy(file: &Path) -> std::result::Result<std::io::Take<std::fs::File>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(file).map_err(|_| "no such file".to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_HEAD_BYTES {
        return Err(format!(
            "{} bytes; a head file may hold at most {MAX_HEAD_BYTES}",
            meta.len()
        ));
    }
    let reader = std::fs::File::open(file).map_err(|e| e.to_string())?;
    Ok(reader.take(MAX_HEAD_BYTES))
}

/// A `.npy` float32 matrix [classes, embedding width], finite; rows L2-normalised for a
/// zero-shot head.
pub(super) fn read_head_weights(
    file: &Path,
    unit_rows: bool,
) -> std::result::Result<Array2<f32>, String> {
    use ndarray_npy::ReadNpyExt;
    let weights = Array2::<f32>::read_npy(open_npy(file)?).map_err(|e| {
        format!("expected a 2-D float32 .npy array [classes, embedding width] ({e})")
    })?;
    if weights.nrows() == 0 || weights.ncols() == 0 {
        return Err(format!("the array is empty ({:?})", weights.shape()));
    }
    if weights.iter().any(|v| !v.is_finite()) {
        return Err("the array holds NaN or infinite values".into());
    }
    if !unit_rows {
        return Ok(weights);
    }
    for (class, row) in weights.rows().into_iter().enumerate() {
        let norm = row.dot(&row).sqrt();
        if (norm - 1.0).abs() > 1e-2 {
            return Err(format!(
                "row {class} has L2 norm {norm:.4}; a zero-shot head's class embeddings must be \
                 L2-normalised (a head with rows of any norm is kind = \"linear\")"
            ));
        }
    }
    Ok(weights)
}

/// A `.npy` float32 vector of one finite value per class.
pub(super) fn read_head_bias(
    file: &Path,
    classes: usize,
) -> std::result::Result<Array1<f32>, String> {
    use ndarray_npy::ReadNpyExt;
    let bias = Array1::<f32>::read_npy(open_npy(file)?)
        .map_err(|e| format!("expected a 1-D float32 .npy array [classes] ({e})"))?;
    if bias.len() != classes {
        return Err(format!(
            "{} values; the head's weights have {classes} classes (rows)",
            bias.len()
        ));
    }
    if bias.iter().any(|v| !v.is_finite()) {
        return Err("the array holds NaN or infinite values".into());
    }
    Ok(bias)
}
