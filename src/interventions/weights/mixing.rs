//! Mixing initializers, one tensor at a time: WiSE-FT's (1 − α)·θ₀ + α·θ₁ and a soup's running
//! float64 sum, written into a copy of the first model's file.

use super::*;

/// How the float initializers of the inputs become the output's.
#[derive(Debug, Clone, Copy)]
pub enum Recipe {
    /// WiSE-FT between two models: weight `alpha` on the second. Exactly the first at 0 and the
    /// second at 1 (bytes copied); otherwise `f32(1 − α)·a + f32(α)·b` in float32 arithmetic
    /// (1 − α taken in float64, then rounded), float16/bfloat16 widened to float32 and rounded
    /// back to nearest-even; float64 tensors in float64.
    Interpolate { alpha: f64 },
    /// Uniform soup: the float64 sum of the models' values in order, divided by their number,
    /// rounded to the tensor's type.
    Mean,
}

/// The mixed value bytes of one float tensor, from each model's bytes of it.
pub fn mix(data_type: i32, inputs: &[&[u8]], recipe: Recipe) -> Vec<u8> {
    if let Recipe::Interpolate { alpha } = recipe {
        if alpha == 0.0 || alpha == 1.0 {
            return inputs[(alpha == 1.0) as usize].to_vec();
        }
    }
    if data_type == DOUBLE {
        let vals: Vec<Vec<f64>> = inputs
            .iter()
            .map(|b| {
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            })
            .collect();
        let out = (0..vals[0].len()).map(|i| match recipe {
            Recipe::Interpolate { alpha } => (1.0 - alpha) * vals[0][i] + alpha * vals[1][i],
            Recipe::Mean => vals.iter().map(|v| v[i]).sum::<f64>() / vals.len() as f64,
        });
        return out.flat_map(f64::to_le_bytes).collect();
    }
    let vals: Vec<Vec<f32>> = inputs.iter().map(|b| to_f32(data_type, b)).collect();
    let out: Vec<f32> = match recipe {
        Recipe::Interpolate { alpha } => {
            let (wa, wb) = ((1.0 - alpha) as f32, alpha as f32);
            vals[0]
                .iter()
                .zip(&vals[1])
                .map(|(a, b)| wa * a + wb * b)
                .collect()
        }
        Recipe::Mean => (0..vals[0].len())
            .map(|i| {
                let sum: f64 = vals.iter().map(|v| f64::from(v[i])).sum();
                (sum / vals.len() as f64) as f32
            })
            .collect(),
    };
    from_f32(data_type, &out)
}

pub(super) fn to_f32(data_type: i32, bytes: &[u8]) -> Vec<f32> {
    match data_type {
        FLOAT16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        BFLOAT16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    }
}

pub(super) fn from_f32(data_type: i32, vals: &[f32]) -> Vec<u8> {
    match data_type {
        FLOAT16 => vals
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        BFLOAT16 => vals
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Adds one tensor's values (of `data_type`) to a float64 sum, element by element.
pub(super) fn add_to(sum: &mut [f64], data_type: i32, bytes: &[u8]) {
    if data_type == DOUBLE {
        for (s, c) in sum.iter_mut().zip(bytes.chunks_exact(8)) {
            *s += f64::from_le_bytes(c.try_into().unwrap());
        }
    } else {
        for (s, v) in sum.iter_mut().zip(to_f32(data_type, bytes)) {
            *s += f64::from(v);
        }
    }
}

/// `sum / count` rounded to the tensor's type (through float32 for the 32- and 16-bit types,
/// as `Recipe::Mean`).
pub(super) fn mean_of(sum: &[f64], count: usize, data_type: i32) -> Vec<u8> {
    let n = count as f64;
    if data_type == DOUBLE {
        return sum.iter().flat_map(|s| (s / n).to_le_bytes()).collect();
    }
    let out: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    from_f32(data_type, &out)
}

/// The float64 sum of the float initializers of the models added so far, in the order added:
/// the greedy soup's running sum (one model's worth of float64, whatever the number kept).
#[derive(Default)]
pub struct RunningSum {
    pub(super) sums: HashMap<String, Vec<f64>>,
    pub count: usize,
}

impl RunningSum {
    pub fn new() -> RunningSum {
        RunningSum::default()
    }

    /// Add a model (checked to be the same graph as the others), one tensor at a time.
    pub fn add(&mut self, model: &Model) -> Result<()> {
        for t in model.tensors.iter().filter(|t| t.is_float()) {
            let values = model.values(t)?;
            let n = t.elements().unwrap_or(0);
            let sum = self
                .sums
                .entry(t.name.clone())
                .or_insert_with(|| vec![0.0; n]);
            add_to(sum, t.data_type, &values);
        }
        self.count += 1;
        Ok(())
    }
}

/// Where each float tensor's mixed values come from.
pub enum Source<'a> {
    /// `recipe` over the models, read one tensor at a time.
    Models(&'a [&'a Model], Recipe),
    /// The mean of a running sum's models and, if given, one more (a greedy soup's trial).
    Sum(&'a RunningSum, Option<&'a Model>),
}

impl Source<'_> {
    /// The mixed value bytes of `t` (a float tensor of the first model).
    pub(super) fn mixed(&self, t: &Tensor) -> Result<Vec<u8>> {
        let of = |m: &Model| m.values(m.tensor(&t.name).expect("graphs checked equal"));
        match self {
            Source::Models(models, Recipe::Interpolate { alpha }) => {
                let (a, b) = (of(models[0])?, of(models[1])?);
                Ok(mix(
                    t.data_type,
                    &[&a, &b],
                    Recipe::Interpolate { alpha: *alpha },
                ))
            }
            Source::Models(models, Recipe::Mean) => {
                let mut sum = vec![0.0; t.elements().unwrap_or(0)];
                for &m in models.iter() {
                    add_to(&mut sum, t.data_type, &of(m)?);
                }
                Ok(mean_of(&sum, models.len(), t.data_type))
            }
            Source::Sum(running, plus) => {
                let mut sum = running
                    .sums
                    .get(&t.name)
                    .cloned()
                    .unwrap_or_else(|| vec![0.0; t.elements().unwrap_or(0)]);
                if let Some(m) = *plus {
                    add_to(&mut sum, t.data_type, &of(m)?);
                }
                let count = running.count + usize::from(plus.is_some());
                Ok(mean_of(&sum, count.max(1), t.data_type))
            }
        }
    }
}

/// The names of the output's external-data files (`<stem>.data`, `<stem>.data2`, ...), one per
/// external file of `first`, in first use order: (old location, new name).
pub fn external_names(first: &Model, stem: &str) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = Vec::new();
    for t in &first.tensors {
        if let Payload::External { location, .. } = &t.payload {
            if !names.iter().any(|(old, _)| old == location) {
                let k = names.len() + 1;
                let new = match k {
                    1 => format!("{stem}.data"),
                    _ => format!("{stem}.data{k}"),
                };
                names.push((location.clone(), new));
            }
        }
    }
    names
}

/// Write `<out>/<stem>.onnx` and its external data: `first`'s files with every float
/// initializer replaced by `source`'s mix, one tensor at a time. External files are streamed
/// (the first's file copied, mixed tensors written at their offsets); the .onnx is the first's
/// bytes with only the payloads and external file names replaced (`proto::rewrite`), streamed
/// into the output file. Memory: the .onnx file about twice (input, mixed payloads) and a few
/// tensors.
pub fn write_mixed(first: &Model, source: &Source, out: &Path, stem: &str) -> Result<PathBuf> {
    let names = external_names(first, stem);
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    for t in &first.tensors {
        if let Payload::External {
            location_span,
            location,
            ..
        } = &t.payload
        {
            let new = &names.iter().find(|(old, _)| old == location).unwrap().1;
            edits.push((location_span.clone(), new.as_bytes().to_vec()));
        }
        if let (true, Payload::Inline(span)) = (t.is_float(), &t.payload) {
            edits.push((span.clone(), source.mixed(t)?));
        }
    }
    for (location, new) in &names {
        let (path, size) = &first.external[location];
        let target = out.join(new);
        write_atomic_with(&target, |file| {
            use std::io::{Seek, SeekFrom, Write};
            let failed = |e| write_failed(&target, e);
            let mut input = std::fs::File::open(path)
                .map_err(|e| Error::io(path, e))?
                .take(*size);
            std::io::copy(&mut input, file).map_err(failed)?;
            let floats = first.tensors.iter().filter(|t| t.is_float());
            for t in floats {
                let Payload::External { location: l, .. } = &t.payload else {
                    continue;
                };
                if l != location {
                    continue;
                }
                let (_, offset, _) = first.span(t)?;
                let mixed = source.mixed(t)?;
                file.seek(SeekFrom::Start(offset)).map_err(failed)?;
                file.write_all(&mixed).map_err(failed)?;
            }
            Ok(())
        })?;
    }
    if regular_file_len(&first.file)? != first.len {
        return Err(bad(&first.file, "the model changed since it was read"));
    }
    let bytes = read_span(&first.file, 0, first.len)?;
    let file = out.join(format!("{stem}.onnx"));
    write_atomic_with(&file, |f| {
        use std::io::Write;
        let mut writer = std::io::BufWriter::new(f);
        proto::rewrite(&bytes, 0..bytes.len(), &edits, &mut writer)
            .and_then(|()| writer.flush())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => bad(&first.file, e.to_string()),
                _ => write_failed(&file, e),
            })
    })?;
    Ok(file)
}
