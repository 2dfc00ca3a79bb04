//! An ONNX model's initializers as byte spans (ModelProto.graph = 7; GraphProto.node = 1,
//! .initializer = 5, .input = 11, .output = 12, .sparse_initializer = 15; TensorProto fields from
//! onnx.proto), the check that models share one graph, and writing a model whose floating-point
//! initializers are mixed from several.
//!
//! Float payloads (raw_data, packed float_data/double_data, external data) are fixed width, so a
//! mixed tensor has exactly the bytes its input had: the output is the first model's file with
//! only those payloads replaced (and external-data file names, `proto::rewrite`), never a decoded
//! and re-encoded model. Weights held in Constant nodes are not initializers: they are compared as
//! node attributes, and models differing there are refused.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use std::io::Read as _;

use super::proto::{self, fields, text, Field};
use crate::error::{Error, Location, Result};
use crate::results::store::{write_atomic, write_atomic_with, write_failed};

const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const BFLOAT16: i32 = 16;

/// Where a tensor's values are.
#[derive(Debug, Clone)]
enum Payload {
    /// raw_data (9), packed float_data (4) or packed double_data (10): the value bytes, little-endian.
    Inline(Range<usize>),
    /// data_location = EXTERNAL: `location` (whose value bytes are `location_span`), offset, length.
    External {
        location: String,
        location_span: Range<usize>,
        offset: u64,
        length: Option<u64>,
    },
    /// Any other encoding (int64_data, string_data, float16 in int32_data, ...): compared whole.
    Other,
}

#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    /// The whole TensorProto.
    whole: Range<usize>,
    payload: Payload,
}

impl Tensor {
    fn is_float(&self) -> bool {
        matches!(self.data_type, FLOAT | FLOAT16 | BFLOAT16 | DOUBLE)
    }
    /// Bytes per element of the float types mixed.
    fn width(&self) -> Option<usize> {
        match self.data_type {
            FLOAT => Some(4),
            FLOAT16 | BFLOAT16 => Some(2),
            DOUBLE => Some(8),
            _ => None,
        }
    }
    /// Bytes per element of any fixed-width type (for external data written without `length`).
    fn byte_width(&self) -> Option<usize> {
        match self.data_type {
            2 | 3 | 9 => Some(1),
            4 | 5 => Some(2),
            6 | 12 => Some(4),
            7 | 13 => Some(8),
            _ => self.width(),
        }
    }
    fn elements(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
    }
}

/// A model's graph, held without its weights: what the graphs are compared on, and where each
/// tensor's values lie in its files, read one tensor at a time when mixed. Memory is then a few
/// tensors, not k models, whatever the number of models mixed.
pub struct Model {
    pub file: PathBuf,
    /// The .onnx file's length when read: a file that changed since is refused, not mixed.
    len: u64,
    /// ModelProto fields that must match between models (ir_version 1, opset_import 8,
    /// functions 25), each field's bytes.
    model_fields: Vec<Vec<u8>>,
    /// Each node's bytes.
    nodes: Vec<Vec<u8>>,
    /// Graph inputs (11) and outputs (12), each field's bytes.
    signature: Vec<Vec<u8>>,
    pub tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
    /// The external files, by `location`: checked path and length.
    external: HashMap<String, (PathBuf, u64)>,
    /// metadata_props (14) as key, value.
    pub metadata: Vec<(String, String)>,
}

/// Largest .onnx file read: protobuf messages are limited to 2 GiB, so no valid model is larger
/// (bigger weights go to external data, read one tensor at a time).
const MAX_ONNX_BYTES: u64 = 2 << 30;

fn bad(file: &Path, message: impl Into<String>) -> Error {
    Error::input(Location::file(file), message)
}

/// `len` bytes of `file` from `offset`, read with that bound; an error if the file is shorter.
fn read_span(file: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(file, e))?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(len)
        .read_to_end(&mut out)
        .map_err(|e| Error::io(file, e))?;
    if out.len() as u64 != len {
        return Err(bad(
            file,
            format!(
                "the file ended at byte {} while reading {len} bytes from {offset}: it changed \
                 since it was checked",
                offset + out.len() as u64
            ),
        ));
    }
    Ok(out)
}

/// A regular file's length; anything else (a FIFO, a device, a folder) is refused.
fn regular_file_len(file: &Path) -> Result<u64> {
    let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
    if !meta.is_file() {
        return Err(bad(file, "not a regular file"));
    }
    Ok(meta.len())
}

impl Model {
    pub fn read(file: &Path) -> Result<Model> {
        // Validates every external location (inside the model's folder) before anything is read.
        let externals = crate::input::onnx::external_data(file)?;
        let len = regular_file_len(file)?;
        if len > MAX_ONNX_BYTES {
            return Err(bad(
                file,
                format!("{len} bytes: larger than any ONNX protobuf (2 GiB); save the weights as external data"),
            ));
        }
        let bytes = read_span(file, 0, len)?;
        let mut model = Model::parse(file, &bytes)
            .map_err(|m| bad(file, format!("not a readable ONNX model: {m}")))?;
        model.len = len;
        drop(bytes);
        let folder = file.parent().unwrap_or(Path::new("."));
        let names: Vec<String> = model
            .tensors
            .iter()
            .filter_map(|t| match &t.payload {
                Payload::External { location, .. } => Some(location.clone()),
                _ => None,
            })
            .collect();
        for location in names {
            if model.external.contains_key(&location) {
                continue;
            }
            let path = folder.join(&location);
            // Only files the model's checked references name (inside its folder) are read.
            if !externals.iter().any(|e| e == &path) {
                return Err(bad(
                    file,
                    format!("external data `{location}` is not a checked reference of the model"),
                ));
            }
            let size = regular_file_len(&path)?;
            model.external.insert(location, (path, size));
        }
        // External data of a Constant node or a subgraph would be neither mixed nor written
        // beside the output: refused, not left pointing at a file the output lacks.
        if let Some(other) = externals
            .iter()
            .find(|e| !model.external.keys().any(|l| &folder.join(l) == *e))
        {
            return Err(bad(
                file,
                format!(
                    "external data {} is used outside the graph's initializers (a Constant node or \
                     a subgraph), which are not mixed: export the weights as initializers",
                    other.display()
                ),
            ));
        }
        model.check_payloads()?;
        Ok(model)
    }

    fn parse(file: &Path, bytes: &[u8]) -> proto::Parse<Model> {
        let top = fields(bytes, 0..bytes.len())?;
        // Protobuf merges repeated message fields: a second graph field would add nodes and
        // initializers ONNX Runtime sees and this reader does not.
        let mut graphs = top.iter().filter(|f| f.number == 7 && f.wire == 2);
        let graph = graphs.next().ok_or("no graph")?;
        if graphs.next().is_some() {
            return Err("more than one graph field".into());
        }
        let whole = |f: &Field| bytes[f.whole.clone()].to_vec();
        let model_fields = top
            .iter()
            .filter(|f| matches!(f.number, 1 | 8 | 25))
            .map(whole)
            .collect();
        let mut metadata = Vec::new();
        for f in top.iter().filter(|f| f.number == 14 && f.wire == 2) {
            let (mut key, mut value) = (String::new(), String::new());
            for e in fields(bytes, f.value.clone())? {
                match (e.number, e.wire) {
                    (1, 2) => key = text(bytes, &e.value),
                    (2, 2) => value = text(bytes, &e.value),
                    _ => {}
                }
            }
            metadata.push((key, value));
        }
        let (mut nodes, mut signature, mut tensors) = (Vec::new(), Vec::new(), Vec::new());
        for f in fields(bytes, graph.value.clone())? {
            match (f.number, f.wire) {
                (1, 2) => nodes.push(bytes[f.value.clone()].to_vec()),
                (5, 2) => tensors.push(tensor(bytes, f.value)?),
                (11 | 12, 2) => signature.push(whole(&f)),
                (15, _) => return Err("sparse initializers are not supported".into()),
                _ => {}
            }
        }
        let mut index = HashMap::new();
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(format!("initializer `{}` is defined twice", t.name));
            }
        }
        Ok(Model {
            file: file.to_path_buf(),
            len: 0,
            model_fields,
            nodes,
            signature,
            tensors,
            index,
            external: HashMap::new(),
            metadata,
        })
    }

    /// Every float tensor's payload has the size its shape says (inside its file), so mixing is
    /// element for element and every read is bounded by the shape.
    fn check_payloads(&self) -> Result<()> {
        for t in self.tensors.iter().filter(|t| t.is_float()) {
            let why = match (&t.payload, t.width(), t.elements()) {
                (Payload::Other, _, _) => Some(
                    "is stored as int32_data/unpacked values; re-export it with raw_data (onnx.save \
                     does by default)"
                        .to_string(),
                ),
                (_, Some(w), Some(n)) => match n.checked_mul(w) {
                    Some(need) => {
                        let (_, _, got) = self.span(t)?;
                        (got != need as u64).then(|| {
                            format!("holds {got} bytes, its shape {:?} needs {need}", t.dims)
                        })
                    }
                    None => Some(format!("has a shape {:?} too large to hold", t.dims)),
                },
                _ => Some(format!("has an invalid shape {:?}", t.dims)),
            };
            if let Some(why) = why {
                return Err(bad(&self.file, format!("initializer `{}` {why}", t.name)));
            }
        }
        Ok(())
    }

    /// Where a tensor's value bytes are (the whole TensorProto for other encodings): file,
    /// offset and length, checked to lie inside the file.
    fn span(&self, t: &Tensor) -> Result<(&Path, u64, u64)> {
        match &t.payload {
            Payload::Inline(r) => Ok((self.file.as_path(), r.start as u64, r.len() as u64)),
            Payload::Other => Ok((
                self.file.as_path(),
                t.whole.start as u64,
                t.whole.len() as u64,
            )),
            Payload::External {
                location,
                offset,
                length,
                ..
            } => {
                let (path, size) = &self.external[location];
                let length = length
                    .or_else(|| Some(t.elements()?.checked_mul(t.byte_width()?)? as u64))
                    .unwrap_or(size - (*offset).min(*size));
                match offset.checked_add(length).filter(|e| e <= size) {
                    Some(_) => Ok((path.as_path(), *offset, length)),
                    None => Err(bad(
                        &self.file,
                        format!(
                            "initializer `{}`: offset {offset} + length {length} runs past the end \
                             of external file `{location}` ({size} bytes)",
                            t.name
                        ),
                    )),
                }
            }
        }
    }

    /// A tensor's value bytes, read from its file now (bounded by its checked span).
    fn values(&self, t: &Tensor) -> Result<Vec<u8>> {
        let (file, offset, len) = self.span(t)?;
        if file == self.file.as_path() && regular_file_len(file)? != self.len {
            return Err(bad(file, "the model changed since it was read"));
        }
        read_span(file, offset, len)
    }

    fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The op types of the graph's nodes.
    fn op_types(&self) -> Vec<String> {
        self.nodes.iter().map(|n| describe_node(n).0).collect()
    }

    /// Why the graph looks like BatchNorm was folded into its convolutions (Conv nodes with a
    /// bias, no BatchNormalization node, and no `robust_eval.batchnorm = unfolded` metadata), or
    /// `None`. Averaging folded weights is not averaging the weights and running statistics.
    pub fn looks_folded(&self) -> Option<String> {
        let said_unfolded = self
            .metadata
            .iter()
            .any(|(k, v)| k == "robust_eval.batchnorm" && v == "unfolded");
        let ops = self.op_types();
        let biased_convs = self
            .nodes
            .iter()
            .filter(|n| {
                let (op, ins, _) = describe_node(n);
                op == "Conv" && ins.len() == 3 && !ins[2].is_empty()
            })
            .count();
        let has_bn = ops.iter().any(|o| o == "BatchNormalization");
        (biased_convs > 0 && !has_bn && !said_unfolded).then(|| {
            format!(
                "{}: {biased_convs} Conv node(s) with a bias and no BatchNormalization node: the \
                 export looks like BatchNorm was folded into the convolutions, and mixing folded \
                 weights is not mixing the weights and running statistics as the papers do. \
                 Export with BatchNorm kept (scripts/export_timm.py --keep-batchnorm); a network \
                 without BatchNorm can say so with the model metadata robust_eval.batchnorm = \
                 unfolded",
                self.file.display()
            )
        })
    }
}

/// A TensorProto's name, shape, type and payload location.
fn tensor(bytes: &[u8], whole: Range<usize>) -> proto::Parse<Tensor> {
    let (mut name, mut dims, mut data_type) = (String::new(), Vec::new(), 0i32);
    let (mut inline, mut external, mut location_external) = (None, Vec::new(), false);
    let mut other = false;
    // Value fields seen (float_data 4, int32_data 5, string_data 6, int64_data 7, raw_data 9,
    // double_data 10, uint64_data 11), each counted once per occurrence.
    let mut value_fields: Vec<(u64, u8)> = Vec::new();
    for f in fields(bytes, whole.clone())? {
        if matches!(f.number, 4..=7 | 9..=11) && !(f.wire == 2 && f.value.is_empty()) {
            value_fields.push((f.number, f.wire));
        }
        match (f.number, f.wire) {
            (1, 0) => dims.push(f.varint as i64),
            (1, 2) => {
                let mut at = f.value.start;
                while at < f.value.end {
                    dims.push(proto::varint(bytes, &mut at, f.value.end)? as i64);
                }
            }
            (2, 0) => data_type = f.varint as i32,
            (3, _) => return Err("segmented tensors are not supported".into()),
            (8, 2) => name = text(bytes, &f.value),
            (4 | 9 | 10, 2) => inline = Some(f.value),
            (13, 2) => {
                let (mut key, mut value) = (String::new(), None);
                for e in fields(bytes, f.value.clone())? {
                    // Strings only: what input::onnx checked is what is read here.
                    match (e.number, e.wire) {
                        (1, 2) => key = text(bytes, &e.value),
                        (2, 2) => value = Some(e.value),
                        _ => {}
                    }
                }
                if let Some(v) = value {
                    external.push((key, v));
                }
            }
            (14, 0) => location_external = f.varint == 1,
            (4..=7 | 10 | 11, _) => other = true,
            _ => {}
        }
    }
    // ONNX Runtime reads raw_data when present and protobuf merges repeated fields, so a second
    // value field (or one value given twice) would be mixed where ORT does not look: refused, as
    // onnx.checker refuses a tensor without "one and only one value field".
    let mut numbers: Vec<u64> = value_fields.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let repeated = value_fields.iter().filter(|(_, wire)| *wire == 2).count() > 1;
    if numbers.len() > 1 || (location_external && !numbers.is_empty()) || repeated {
        let names: Vec<&str> = numbers.iter().map(|&n| value_field_name(n)).collect();
        return Err(format!(
            "tensor `{name}` holds its values in more than one field ({}{}); a tensor must have \
             one and only one value field (onnx.checker): re-save it with onnx.save",
            names.join(", "),
            if location_external {
                " and external data"
            } else if repeated {
                ", given twice"
            } else {
                ""
            }
        ));
    }
    let payload = if location_external {
        let get = |k: &str| external.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let number = |k: &str| -> proto::Parse<Option<u64>> {
            get(k)
                .map(|v| {
                    text(bytes, v)
                        .parse::<u64>()
                        .map_err(|_| format!("tensor `{name}`: external `{k}` is not a number"))
                })
                .transpose()
        };
        let span =
            get("location").ok_or(format!("tensor `{name}`: external data without a location"))?;
        Payload::External {
            location: text(bytes, span),
            location_span: span.clone(),
            offset: number("offset")?.unwrap_or(0),
            length: number("length")?,
        }
    } else {
        match inline {
            Some(r) if !other => Payload::Inline(r),
            _ => Payload::Other,
        }
    };
    Ok(Tensor {
        name,
        dims,
        data_type,
        whole,
        payload,
    })
}

fn value_field_name(number: u64) -> &'static str {
    match number {
        4 => "float_data",
        5 => "int32_data",
        6 => "string_data",
        7 => "int64_data",
        9 => "raw_data",
        10 => "double_data",
        _ => "uint64_data",
    }
}

/// What a node is, for messages: op type and inputs/outputs.
fn describe_node(bytes: &[u8]) -> (String, Vec<String>, Vec<String>) {
    let (mut op, mut ins, mut outs) = (String::new(), Vec::new(), Vec::new());
    for f in fields(bytes, 0..bytes.len()).unwrap_or_default() {
        match f.number {
            1 => ins.push(text(bytes, &f.value)),
            2 => outs.push(text(bytes, &f.value)),
            4 => op = text(bytes, &f.value),
            _ => {}
        }
    }
    (op, ins, outs)
}

/// A node's bytes without its name (3) and doc_string (6): exporters number node names
/// differently for the same network, and neither changes what the node computes.
fn node_key(bytes: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    for f in fields(bytes, 0..bytes.len()).unwrap_or_default() {
        if !matches!(f.number, 3 | 6) {
            key.extend_from_slice(&bytes[f.whole]);
        }
    }
    key
}

/// Check that `b` is the same network as `a`: same opsets and functions, same nodes in order
/// (op type, domain, inputs, outputs, attributes; names may differ), same graph inputs and
/// outputs, the same initializers (names, shapes, types), and equal non-float initializers.
/// The error names both files and the first difference.
pub fn check_same_graph(a: &Model, b: &Model) -> Result<()> {
    let differ = |what: String| {
        Error::Usage(format!(
            "{} and {} are not the same graph: {what}; only models of one architecture, exported \
             the same way, can be mixed",
            a.file.display(),
            b.file.display()
        ))
    };
    if a.model_fields != b.model_fields {
        return Err(differ("the IR version, opsets or functions differ".into()));
    }
    for (i, (na, nb)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        if node_key(na) == node_key(nb) {
            continue;
        }
        let (oa, ia, xa) = describe_node(na);
        let (ob, ib, xb) = describe_node(nb);
        let what = if oa != ob {
            format!("node {i}: {oa} in A, {ob} in B")
        } else if ia != ib || xa != xb {
            format!("node {i} ({oa}): inputs {ia:?} -> {xa:?} in A, {ib:?} -> {xb:?} in B")
        } else {
            format!(
                "node {i} ({oa}): attributes differ (weights in Constant nodes are not \
                 initializers and cannot be mixed)"
            )
        };
        return Err(differ(what));
    }
    if a.nodes.len() != b.nodes.len() {
        return Err(differ(format!(
            "{} nodes in A, {} in B",
            a.nodes.len(),
            b.nodes.len()
        )));
    }
    if a.signature != b.signature {
        return Err(differ("the graph's inputs or outputs differ".into()));
    }
    for ta in &a.tensors {
        let Some(tb) = b.tensor(&ta.name) else {
            return Err(differ(format!(
                "initializer `{}` is in A, not in B",
                ta.name
            )));
        };
        if ta.dims != tb.dims || ta.data_type != tb.data_type {
            return Err(differ(format!(
                "initializer `{}`: shape {:?} type {} in A, shape {:?} type {} in B",
                ta.name, ta.dims, ta.data_type, tb.dims, tb.data_type
            )));
        }
        if !ta.is_float() && a.values(ta)? != b.values(tb)? {
            return Err(Error::Usage(format!(
                "initializer `{}` (ONNX type {}, not floating point) differs between {} and {}: \
                 integer weights cannot be interpolated, and shapes or indices must agree",
                ta.name,
                ta.data_type,
                a.file.display(),
                b.file.display()
            )));
        }
    }
    if let Some(tb) = b.tensors.iter().find(|t| a.tensor(&t.name).is_none()) {
        return Err(differ(format!(
            "initializer `{}` is in B, not in A",
            tb.name
        )));
    }
    Ok(())
}

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

fn to_f32(data_type: i32, bytes: &[u8]) -> Vec<f32> {
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

fn from_f32(data_type: i32, vals: &[f32]) -> Vec<u8> {
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
fn add_to(sum: &mut [f64], data_type: i32, bytes: &[u8]) {
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
fn mean_of(sum: &[f64], count: usize, data_type: i32) -> Vec<u8> {
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
    sums: HashMap<String, Vec<f64>>,
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
    fn mixed(&self, t: &Tensor) -> Result<Vec<u8>> {
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
/// bytes with only the payloads and external file names replaced (`proto::rewrite`). Memory:
/// the .onnx file about three times (input, mixed payloads, output) and a few tensors.
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
    let mut onnx = Vec::with_capacity(bytes.len());
    proto::rewrite(&bytes, 0..bytes.len(), &edits, &mut onnx).map_err(|m| bad(&first.file, m))?;
    drop((bytes, edits));
    let file = out.join(format!("{stem}.onnx"));
    write_atomic(&file, &onnx)?;
    Ok(file)
}
