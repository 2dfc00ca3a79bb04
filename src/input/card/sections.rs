//! A card's sections checked and completed: `[preprocess]` (or the ImageNet defaults, when the
//! user allows them), `[input]`, `[output]` and `[intervention]`.

use super::*;

pub(super) static ASSUME_IMAGENET: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// `--assume-imagenet-preprocessing`: a bare `.onnx`, or a card's `[preprocess]` lacking keys,
/// takes the ImageNet defaults for this process instead of being refused.
pub fn set_assume_imagenet_preprocessing(yes: bool) {
    ASSUME_IMAGENET.store(yes, std::sync::atomic::Ordering::Relaxed);
}

pub(super) fn assume_imagenet() -> bool {
    ASSUME_IMAGENET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The defaults a model gets with `--assume-imagenet-preprocessing` or `defaults = "imagenet"`.
pub const IMAGENET_DEFAULTS: &str = "resize 256, crop 224, interpolation \"bilinear\", \
mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]";

/// The `[preprocess]` keys a card leaves out. A model's preprocessing decides its accuracy
/// (EfficientNet-Lite with ImageNet's mean and std instead of its own loses ~14 points), so a
/// default is taken only when the card or the command line says so.
pub(super) fn missing_preprocess_keys(p: &RawPreprocess) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (key, given) in [
        ("resize", p.resize.is_some()),
        ("crop", p.crop.is_some()),
        ("interpolation", p.interpolation.is_some()),
        ("mean", p.mean.is_some()),
        ("std", p.std.is_some()),
    ] {
        if !given {
            missing.push(key);
        }
    }
    missing
}

pub(super) fn check_complete(p: &RawPreprocess, at: &KeyLocator) -> Result<()> {
    match p.defaults.as_deref() {
        Some("imagenet") => return Ok(()),
        Some(other) => {
            return Err(Error::input(
                at(Some("preprocess"), "defaults"),
                format!(
                    "unknown defaults `{other}`; the one set is \"imagenet\" ({IMAGENET_DEFAULTS})"
                ),
            ))
        }
        None => {}
    }
    let missing = missing_preprocess_keys(p);
    if missing.is_empty() || assume_imagenet() {
        return Ok(());
    }
    Err(Error::input(
        at(None, "preprocess"),
        format!(
            "[preprocess] does not give {}: a model's preprocessing decides its accuracy, so none \
             is assumed. Give every key, or add `defaults = \"imagenet\"` to [preprocess] (or pass \
             --assume-imagenet-preprocessing) to take ImageNet's for the missing ones: {IMAGENET_DEFAULTS}",
            missing.join(", ")
        ),
    ))
}

/// The card's `[preprocess]`, each missing key taken from the standard ImageNet preprocessing
/// (where the card or the command line says so: `check_complete`), every value checked.
pub(super) fn preprocess_of(p: RawPreprocess, at: &KeyLocator) -> Result<PreprocessSpec> {
    // Checked first, reported after the values: a wrong value is the more specific error.
    let complete = check_complete(&p, at);
    let std_spec = PreprocessSpec::imagenet_default();
    let interpolation = match p.interpolation {
        Some(s) => s
            .parse::<Interpolation>()
            .map_err(|m| Error::input(at(Some("preprocess"), "interpolation"), m))?,
        None => std_spec.interpolation,
    };
    let triple = |v: Option<Vec<f32>>, default: [f32; 3], key: &str| -> Result<[f32; 3]> {
        match v {
            None => Ok(default),
            Some(v) => <[f32; 3]>::try_from(v.as_slice()).map_err(|_| {
                Error::input(
                    at(Some("preprocess"), key),
                    format!("expected 3 numbers (one per RGB channel), got {}", v.len()),
                )
            }),
        }
    };
    let preprocess = PreprocessSpec {
        resize: p.resize.unwrap_or(std_spec.resize),
        crop: p.crop.unwrap_or(std_spec.crop),
        interpolation,
        mean: triple(p.mean, std_spec.mean, "mean")?,
        std: triple(p.std, std_spec.std, "std")?,
    };
    if preprocess.crop == 0 || preprocess.crop > 4096 {
        return Err(Error::input(
            at(Some("preprocess"), "crop"),
            "crop must be between 1 and 4096 pixels",
        ));
    }
    if preprocess.resize < preprocess.crop || preprocess.resize > 8192 {
        return Err(Error::input(
            at(Some("preprocess"), "resize"),
            format!(
                "resize ({}) must be at least crop ({}) and at most 8192",
                preprocess.resize, preprocess.crop
            ),
        ));
    }
    if preprocess.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::input(
            at(Some("preprocess"), "std"),
            "every std must be a positive number",
        ));
    }
    if preprocess.mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::input(
            at(Some("preprocess"), "mean"),
            "every mean must be a finite number",
        ));
    }
    complete?;
    Ok(preprocess)
}

/// The card's `[input]`: which input, its layout and channel order.
pub(super) fn input_of(raw: RawInput, at: &KeyLocator) -> Result<InputSpec> {
    Ok(InputSpec {
        name: raw.name,
        layout: match raw.layout.as_deref() {
            None | Some("nchw") => TensorLayout::Nchw,
            Some("nhwc") => TensorLayout::Nhwc,
            Some(other) => {
                return Err(Error::input(
                    at(Some("input"), "layout"),
                    format!("unknown layout `{other}`; expected nchw or nhwc"),
                ))
            }
        },
        channels: match raw.channels.as_deref() {
            None | Some("rgb") => ChannelOrder::Rgb,
            Some("bgr") => ChannelOrder::Bgr,
            Some(other) => {
                return Err(Error::input(
                    at(Some("input"), "channels"),
                    format!("unknown channel order `{other}`; expected rgb or bgr"),
                ))
            }
        },
    })
}

/// The classes a model scores (its outputs less the offset) and the offset, checked against a
/// zero-shot head's rows when there is one.
pub(super) fn classes_of(
    raw: &RawOutput,
    head_rows: Option<usize>,
    at: &KeyLocator,
) -> Result<(usize, usize)> {
    let num_classes = raw.num_classes.or(head_rows).unwrap_or(1000);
    let offset = raw.offset.unwrap_or(0);
    if let Some(rows) = head_rows {
        if num_classes != rows || offset != 0 {
            return Err(Error::input(
                at(Some("output"), "num_classes"),
                format!(
                    "the head has {rows} classes (rows of its weights), so output.num_classes must be {rows} \
                     and output.offset 0"
                ),
            ));
        }
    }
    if num_classes == 0 {
        return Err(Error::input(
            at(Some("output"), "num_classes"),
            "num_classes must be at least 1",
        ));
    }
    if offset >= num_classes {
        return Err(Error::input(
            at(Some("output"), "offset"),
            format!("offset {offset} leaves no classes of {num_classes}"),
        ));
    }
    Ok((num_classes - offset, offset))
}

/// The card's `[intervention]`, checked: a known kind, a finite α, names that are
/// safe (they become model names on charts and in reports, and may be looked up as models).
pub(super) fn intervention_of(
    raw: RawIntervention,
    model: &str,
    at: &KeyLocator,
) -> Result<Intervention> {
    let field = |key: &str| at(Some("intervention"), key);
    let family = raw.family.unwrap_or_else(|| model.to_string());
    check_name("family", &family).map_err(|m| Error::input(field("family"), m))?;
    let names = |key: &str, list: Option<Vec<String>>| -> Result<Vec<String>> {
        let list = list.ok_or_else(|| Error::input(field(key), format!("missing `{key}`")))?;
        for n in &list {
            check_name("model", n).map_err(|m| Error::input(field(key), m))?;
        }
        Ok(list)
    };
    match raw.kind.as_str() {
        "wise-ft" => {
            let alpha = raw.alpha.ok_or_else(|| {
                Error::input(
                    field("alpha"),
                    "missing `alpha` (the weight of the fine-tuned side)",
                )
            })?;
            if !(0.0..=1.0).contains(&alpha) {
                return Err(Error::input(
                    field("alpha"),
                    format!(
                        "alpha must lie in [0, 1] (0: zero-shot, 1: fine-tuned), not {alpha}: \
                         WiSE-FT interpolates, it does not extrapolate"
                    ),
                ));
            }
            let endpoints: [String; 2] =
                names("endpoints", raw.endpoints)?
                    .try_into()
                    .map_err(|v: Vec<String>| {
                        Error::input(
                            field("endpoints"),
                            format!("expected 2 names (zero-shot, fine-tuned), got {}", v.len()),
                        )
                    })?;
            Ok(Intervention::WiseFt {
                family,
                alpha,
                endpoints,
            })
        }
        "soup" => {
            let members = names("members", raw.members)?;
            if members.is_empty() {
                return Err(Error::input(
                    field("members"),
                    "a soup needs at least one member",
                ));
            }
            let recipe = raw.recipe.unwrap_or_else(|| "uniform".into());
            if !matches!(recipe.as_str(), "uniform" | "greedy") {
                return Err(Error::input(
                    field("recipe"),
                    format!("unknown recipe `{recipe}`; expected uniform or greedy"),
                ));
            }
            Ok(Intervention::Soup {
                family,
                members,
                recipe,
            })
        }
        other => Err(Error::input(
            field("kind"),
            format!("unknown intervention kind `{other}`; expected wise-ft or soup"),
        )),
    }
}
