//! An initializer's values, found without copying them: the element type, the one value field
//! (raw bytes, a typed list, or external data) and its span in the file.

use super::*;

pub(super) const FLOAT: i32 = 1;

pub(super) const FLOAT16: i32 = 10;

pub(super) const DOUBLE: i32 = 11;

pub(super) const BFLOAT16: i32 = 16;

/// Where a tensor's values are.
#[derive(Debug, Clone)]
pub(super) enum Payload {
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
    pub(super) whole: Range<usize>,
    pub(super) payload: Payload,
}

impl Tensor {
    pub(super) fn is_float(&self) -> bool {
        matches!(self.data_type, FLOAT | FLOAT16 | BFLOAT16 | DOUBLE)
    }
    /// Bytes per element of the float types mixed.
    pub(super) fn width(&self) -> Option<usize> {
        match self.data_type {
            FLOAT => Some(4),
            FLOAT16 | BFLOAT16 => Some(2),
            DOUBLE => Some(8),
            _ => None,
        }
    }
    /// Bytes per element of any fixed-width type (for external data written without `length`).
    pub(super) fn byte_width(&self) -> Option<usize> {
        match self.data_type {
            2 | 3 | 9 => Some(1),
            4 | 5 => Some(2),
            6 | 12 => Some(4),
            7 | 13 => Some(8),
            _ => self.width(),
        }
    }
    pub(super) fn elements(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
    }
}

/// A TensorProto's name, shape, type and payload location.
pub(super) fn tensor(bytes: &[u8], whole: Range<usize>) -> proto::Parse<Tensor> {
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

pub(super) fn value_field_name(number: u64) -> &'static str {
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
