//! What an ONNX file refers to outside itself: the external-data files its tensors name
//! (`location` in `TensorProto.external_data`). A model is untrusted input, so every such file
//! must lie inside the model's own folder: no absolute path, no `..`, and no symlink out of the
//! folder. The check runs when a card is read, before ONNX Runtime sees the model or any weight
//! is read; the files found are also part of the resume key (new weights are evaluated again).
//!
//! The protobuf is walked with a reader that seeks past every field it does not need (the
//! weights themselves), so memory stays flat whatever the model's size. Only the messages that
//! can hold tensors are entered: ModelProto.graph and .functions, GraphProto.node, .initializer
//! and .sparse_initializer, NodeProto.attribute, AttributeProto.t/.g/.tensors/.graphs and sparse
//! tensors, FunctionProto.node (field numbers from onnx.proto).

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Location, Result};

/// Deepest nesting of graphs in graphs followed (If/Loop bodies): far beyond real models, and a
/// bound for hostile ones.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    Entry,
}

impl Message {
    /// The child message a length-delimited field holds, for the fields that can lead to tensors.
    fn child(self, field: u64) -> Option<Message> {
        use Message::*;
        match (self, field) {
            (Model, 7) | (Attribute, 6) | (Attribute, 11) => Some(Graph),
            (Model, 25) => Some(Function),
            (Graph, 1) | (Function, 7) => Some(Node),
            (Graph, 5)
            | (Attribute, 5)
            | (Attribute, 10)
            | (SparseTensor, 1)
            | (SparseTensor, 2) => Some(Tensor),
            (Graph, 15) | (Attribute, 22) | (Attribute, 23) => Some(SparseTensor),
            (Node, 5) => Some(Attribute),
            (Tensor, 13) => Some(Entry),
            _ => None,
        }
    }
}

struct Walker<R> {
    reader: R,
    /// `location` values found, in file order.
    locations: Vec<String>,
}

impl<R: Read + Seek> Walker<R> {
    fn varint(&mut self, end: u64) -> std::result::Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            if self.position()? >= end {
                return Err("truncated varint".into());
            }
            let mut byte = [0u8];
            self.reader
                .read_exact(&mut byte)
                .map_err(|e| e.to_string())?;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn position(&mut self) -> std::result::Result<u64, String> {
        self.reader.stream_position().map_err(|e| e.to_string())
    }

    /// Walk the fields of one `message` up to byte `end`. `key` holds an Entry's key.
    fn message(
        &mut self,
        message: Message,
        end: u64,
        depth: usize,
    ) -> std::result::Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nested more than {MAX_DEPTH} deep"));
        }
        let (mut key, mut value) = (None::<String>, None::<String>);
        while self.position()? < end {
            let tag = self.varint(end)?;
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    self.varint(end)?;
                }
                1 | 5 => {
                    let skip = if wire == 1 { 8 } else { 4 };
                    let to = self.position()? + skip;
                    self.skip_to(to, end)?;
                }
                2 => {
                    let len = self.varint(end)?;
                    let start = self.position()?;
                    let stop = start
                        .checked_add(len)
                        .filter(|&s| s <= end)
                        .ok_or("a field runs past its message")?;
                    match (message, field) {
                        (Message::Entry, 1 | 2) => {
                            let text = self.string(len)?;
                            if field == 1 {
                                key = Some(text)
                            } else {
                                value = Some(text)
                            }
                        }
                        _ => match message.child(field) {
                            Some(child) => self.message(child, stop, depth + 1)?,
                            None => self.skip_to(stop, end)?,
                        },
                    }
                    if self.position()? != stop {
                        return Err("a field's length does not match its contents".into());
                    }
                }
                _ => return Err(format!("unsupported protobuf wire type {wire}")),
            }
        }
        if let (Message::Entry, Some("location"), Some(v)) = (message, key.as_deref(), value) {
            self.locations.push(v);
        }
        Ok(())
    }

    fn string(&mut self, len: u64) -> std::result::Result<String, String> {
        if len > 4096 {
            return Err("an external-data entry longer than 4096 bytes".into());
        }
        let mut bytes = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|_| "an external-data entry that is not UTF-8".into())
    }

    fn skip_to(&mut self, to: u64, end: u64) -> std::result::Result<(), String> {
        if to > end {
            return Err("a field runs past its message".into());
        }
        self.reader
            .seek(SeekFrom::Start(to))
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The external-data files `model` refers to, each checked to lie inside the model's folder
/// (symlinks resolved); an error naming the model and the offending location otherwise.
pub fn external_data(model: &Path) -> Result<Vec<PathBuf>> {
    let file = std::fs::File::open(model).map_err(|e| Error::io(model, e))?;
    let len = file.metadata().map_err(|e| Error::io(model, e))?.len();
    let mut walker = Walker {
        reader: BufReader::new(file),
        locations: Vec::new(),
    };
    walker.message(Message::Model, len, 0).map_err(|m| {
        Error::input(
            Location::file(model),
            format!("not a readable ONNX model: {m}"),
        )
    })?;
    let folder = model.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for location in walker.locations {
        let file = inside(folder, &location).map_err(|why| {
            Error::input(
                Location::file(model),
                format!("external data `{location}` {why}; refused before reading any weight"),
            )
        })?;
        if !files.contains(&file) {
            files.push(file);
        }
    }
    Ok(files)
}

/// `location` resolved in `folder`, if it stays there.
fn inside(folder: &Path, location: &str) -> std::result::Result<PathBuf, String> {
    let relative = Path::new(location);
    if relative.is_absolute() || location.starts_with('\\') || location.contains(':') {
        return Err("is an absolute path".into());
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("leaves the model's folder (`..`)".into());
    }
    let path = folder.join(relative);
    let real_folder = folder
        .canonicalize()
        .map_err(|e| format!("cannot be checked: {e}"))?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot be opened: {e}"))?;
    if !real.starts_with(&real_folder) {
        return Err(format!(
            "is a link to {}, outside the model's folder",
            real.display()
        ));
    }
    Ok(path)
}
