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

use super::proto::{self, fields, text, Field};
use crate::error::{Error, Location, Result};

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

/// A model read whole into memory, with its graph's parts located.
pub struct Model {
    pub file: PathBuf,
    bytes: Vec<u8>,
    /// ModelProto fields that must match between models (ir_version 1, opset_import 8,
    /// functions 25), by field number.
    model_fields: Vec<Field>,
    nodes: Vec<Range<usize>>,
    /// Graph inputs (11) and outputs (12).
    signature: Vec<Field>,
    pub tensors: Vec<Tensor>,
    /// The external files, by `location`, read on demand.
    external: HashMap<String, Vec<u8>>,
}

fn bad(file: &Path, message: impl Into<String>) -> Error {
    Error::input(Location::file(file), message)
}

impl Model {
    pub fn read(file: &Path) -> Result<Model> {
        // Validates every external location (inside the model's folder) before anything is read.
        let externals = crate::input::onnx::external_data(file)?;
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let mut model = Model::parse(file, bytes)
            .map_err(|m| bad(file, format!("not a readable ONNX model: {m}")))?;
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
            let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            model.external.insert(location, data);
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

    fn parse(file: &Path, bytes: Vec<u8>) -> proto::Parse<Model> {
        let top = fields(&bytes, 0..bytes.len())?;
        // Protobuf merges repeated message fields: a second graph field would add nodes and
        // initializers ONNX Runtime sees and this reader does not.
        let mut graphs = top.iter().filter(|f| f.number == 7 && f.wire == 2);
        let graph = graphs.next().ok_or("no graph")?;
        if graphs.next().is_some() {
            return Err("more than one graph field".into());
        }
        let model_fields = top
            .iter()
            .filter(|f| matches!(f.number, 1 | 8 | 25))
            .cloned()
            .collect();
        let (mut nodes, mut signature, mut tensors) = (Vec::new(), Vec::new(), Vec::new());
        for f in fields(&bytes, graph.value.clone())? {
            match (f.number, f.wire) {
                (1, 2) => nodes.push(f.value),
                (5, 2) => tensors.push(tensor(&bytes, f.value)?),
                (11 | 12, 2) => signature.push(f),
                (15, _) => return Err("sparse initializers are not supported".into()),
                _ => {}
            }
        }
        let mut names: Vec<&str> = tensors.iter().map(|t: &Tensor| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("initializer `{}` is defined twice", twice[0]));
        }
        Ok(Model {
            file: file.to_path_buf(),
            bytes,
            model_fields,
            nodes,
            signature,
            tensors,
            external: HashMap::new(),
        })
    }

    /// Every float tensor's payload has the size its shape says, so mixing is element for element.
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
                        let got = self.values(t)?.len();
                        (got != need).then(|| {
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

    /// A tensor's value bytes (inline or from its external file), or the whole TensorProto for
    /// other encodings.
    fn values(&self, t: &Tensor) -> Result<&[u8]> {
        match &t.payload {
            Payload::Inline(r) => Ok(&self.bytes[r.clone()]),
            Payload::Other => Ok(&self.bytes[t.whole.clone()]),
            Payload::External {
                location,
                offset,
                length,
                ..
            } => {
                let data = &self.external[location];
                let length = length
                    .or_else(|| Some(t.elements()?.checked_mul(t.byte_width()?)? as u64))
                    .unwrap_or(data.len() as u64 - (*offset).min(data.len() as u64));
                let end = offset
                    .checked_add(length)
                    .filter(|&e| e <= data.len() as u64);
                match end {
                    Some(end) => Ok(&data[*offset as usize..end as usize]),
                    None => Err(bad(
                        &self.file,
                        format!(
                            "initializer `{}`: offset {offset} + length {length} runs past the end \
                             of external file `{location}` ({} bytes)",
                            t.name,
                            data.len()
                        ),
                    )),
                }
            }
        }
    }

    fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A TensorProto's name, shape, type and payload location.
fn tensor(bytes: &[u8], whole: Range<usize>) -> proto::Parse<Tensor> {
    let (mut name, mut dims, mut data_type) = (String::new(), Vec::new(), 0i32);
    let (mut inline, mut external, mut location_external) = (None, Vec::new(), false);
    let mut other = false;
    for f in fields(bytes, whole.clone())? {
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

/// What a node is, for messages: op type and inputs/outputs.
fn describe_node(bytes: &[u8], node: &Range<usize>) -> (String, Vec<String>, Vec<String>) {
    let (mut op, mut ins, mut outs) = (String::new(), Vec::new(), Vec::new());
    for f in fields(bytes, node.clone()).unwrap_or_default() {
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
fn node_key(bytes: &[u8], node: &Range<usize>) -> Vec<u8> {
    let mut key = Vec::new();
    for f in fields(bytes, node.clone()).unwrap_or_default() {
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
    let field_bytes = |m: &Model, fs: &[Field]| -> Vec<Vec<u8>> {
        fs.iter()
            .map(|f| m.bytes[f.whole.clone()].to_vec())
            .collect()
    };
    if field_bytes(a, &a.model_fields) != field_bytes(b, &b.model_fields) {
        return Err(differ("the IR version, opsets or functions differ".into()));
    }
    for (i, (na, nb)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        if node_key(&a.bytes, na) == node_key(&b.bytes, nb) {
            continue;
        }
        let (oa, ia, xa) = describe_node(&a.bytes, na);
        let (ob, ib, xb) = describe_node(&b.bytes, nb);
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
    if field_bytes(a, &a.signature) != field_bytes(b, &b.signature) {
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

/// Files making up one output model: the .onnx bytes and its external-data files (name, bytes).
pub struct Mixed {
    pub onnx: Vec<u8>,
    pub external: Vec<(String, Vec<u8>)>,
}

/// The first model with every float initializer mixed from all `models` (already checked to be
/// the same graph). External data is written with the first model's layout (same offsets and
/// lengths) into files named `<stem>.data`, `<stem>.data2`, ... beside the output model.
pub fn write_mixed(models: &[&Model], recipe: Recipe, stem: &str) -> Result<Mixed> {
    let first = models[0];
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut external: Vec<(String, String, Vec<u8>)> = Vec::new(); // old location, new, bytes
    for t in &first.tensors {
        if let Payload::External {
            location,
            location_span,
            ..
        } = &t.payload
        {
            if !external.iter().any(|(old, _, _)| old == location) {
                let k = external.len() + 1;
                let new = if k == 1 {
                    format!("{stem}.data")
                } else {
                    format!("{stem}.data{k}")
                };
                external.push((location.clone(), new, first.external[location].clone()));
            }
            let new = &external
                .iter()
                .find(|(old, _, _)| old == location)
                .unwrap()
                .1;
            edits.push((location_span.clone(), new.as_bytes().to_vec()));
        }
        if !t.is_float() {
            continue;
        }
        let inputs = models
            .iter()
            .map(|m| m.values(m.tensor(&t.name).expect("graphs checked equal")))
            .collect::<Result<Vec<_>>>()?;
        let mixed = mix(t.data_type, &inputs, recipe);
        match &t.payload {
            Payload::Inline(span) => edits.push((span.clone(), mixed)),
            Payload::External {
                location, offset, ..
            } => {
                let file = &mut external
                    .iter_mut()
                    .find(|(old, _, _)| old == location)
                    .unwrap()
                    .2;
                let start = *offset as usize;
                file[start..start + mixed.len()].copy_from_slice(&mixed);
            }
            Payload::Other => unreachable!("refused when read"),
        }
    }
    let mut onnx = Vec::with_capacity(first.bytes.len());
    proto::rewrite(&first.bytes, 0..first.bytes.len(), &edits, &mut onnx)
        .map_err(|m| bad(&first.file, m))?;
    Ok(Mixed {
        onnx,
        external: external
            .into_iter()
            .map(|(_, new, bytes)| (new, bytes))
            .collect(),
    })
}
