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
use crate::files::{write_atomic_with, write_failed};

mod mixing;
mod tensors;

pub use mixing::*;
pub use tensors::*;

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
