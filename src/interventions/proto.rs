//! The few protobuf mechanics the weight-space interventions need: listing a message's fields with
//! their byte spans, and writing a message back with some length-delimited values replaced.
//!
//! Why spans and not a decoded model: a WiSE-FT or soup output is the first model's bytes with
//! only the weight payloads (and external-data file names) replaced, so everything the tool does
//! not understand (metadata, attributes, functions, future fields) is carried over untouched,
//! with no encoder of ours in between to drop or reorder it.

use std::io::Write;
use std::ops::Range;

/// One field of a message: number, wire type, where its tag starts and what its value spans
/// (for wire type 2 the contents, without the length prefix).
#[derive(Debug, Clone)]
pub struct Field {
    pub number: u64,
    pub wire: u8,
    /// Tag start to value end: the whole field.
    pub whole: Range<usize>,
    /// Tag start to tag end.
    pub tag: Range<usize>,
    pub value: Range<usize>,
    /// The value of a varint field.
    pub varint: u64,
}

pub type Parse<T> = std::result::Result<T, String>;

pub fn varint(bytes: &[u8], at: &mut usize, end: usize) -> Parse<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if *at >= end {
            return Err("truncated varint".into());
        }
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The fields of the message spanning `range` of `bytes`, in file order.
pub fn fields(bytes: &[u8], range: Range<usize>) -> Parse<Vec<Field>> {
    let (mut at, end) = (range.start, range.end);
    let mut out = Vec::new();
    while at < end {
        let start = at;
        let key = varint(bytes, &mut at, end)?;
        let tag = start..at;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        let (value, varint_value) = match wire {
            0 => {
                let v0 = at;
                let v = varint(bytes, &mut at, end)?;
                (v0..at, v)
            }
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                if at + width > end {
                    return Err("a fixed-width field runs past its message".into());
                }
                at += width;
                (at - width..at, 0)
            }
            2 => {
                let len = varint(bytes, &mut at, end)?;
                let stop = (at as u64)
                    .checked_add(len)
                    .filter(|&s| s <= end as u64)
                    .ok_or("a field runs past its message")? as usize;
                let v = at..stop;
                at = stop;
                (v, 0)
            }
            _ => return Err(format!("unsupported protobuf wire type {wire}")),
        };
        out.push(Field {
            number,
            wire,
            whole: start..at,
            tag,
            value,
            varint: varint_value,
        });
    }
    Ok(out)
}

/// The message spanning `range`, with each edit's span (always the whole value of a
/// length-delimited field) replaced by its bytes, written to `out` as it goes. Fields holding no
/// edit are copied byte for byte; a field holding one is written with its new length, so only the
/// length prefixes of the messages around a changed value can differ from the input (none, when
/// lengths are kept). A nested message's new length is counted before it is written, so no
/// message is built in memory and no edit copied: a 1 GB model is not held three times over.
/// A malformed message is an `InvalidData` error; any other error is `out`'s.
pub fn rewrite(
    bytes: &[u8],
    range: Range<usize>,
    edits: &[(Range<usize>, Vec<u8>)],
    out: &mut impl Write,
) -> std::io::Result<()> {
    let edits: Vec<Edit> = edits.iter().collect();
    write_rewritten(bytes, range, &edits, out)
}

type Edit<'a> = &'a (Range<usize>, Vec<u8>);

/// The edits within `value`.
fn within<'a>(edits: &[Edit<'a>], value: &Range<usize>) -> Vec<Edit<'a>> {
    edits
        .iter()
        .copied()
        .filter(|(r, _)| r.start >= value.start && r.end <= value.end)
        .collect()
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn write_rewritten(
    bytes: &[u8],
    range: Range<usize>,
    edits: &[Edit],
    out: &mut impl Write,
) -> std::io::Result<()> {
    for field in fields(bytes, range).map_err(invalid)? {
        let inside = within(edits, &field.value);
        if inside.is_empty() || field.wire != 2 {
            out.write_all(&bytes[field.whole.clone()])?;
            continue;
        }
        out.write_all(&bytes[field.tag.clone()])?;
        let mut prefix = Vec::new();
        if inside.len() == 1 && inside[0].0 == field.value {
            put_varint(&mut prefix, inside[0].1.len() as u64);
            out.write_all(&prefix)?;
            out.write_all(&inside[0].1)?;
        } else {
            let len = rewritten_len(bytes, field.value.clone(), &inside)?;
            put_varint(&mut prefix, len as u64);
            out.write_all(&prefix)?;
            write_rewritten(bytes, field.value.clone(), &inside, out)?;
        }
    }
    Ok(())
}

/// How long `write_rewritten` makes the message spanning `range`.
fn rewritten_len(bytes: &[u8], range: Range<usize>, edits: &[Edit]) -> std::io::Result<usize> {
    let mut len = 0;
    for field in fields(bytes, range).map_err(invalid)? {
        let inside = within(edits, &field.value);
        if inside.is_empty() || field.wire != 2 {
            len += field.whole.len();
            continue;
        }
        let value = if inside.len() == 1 && inside[0].0 == field.value {
            inside[0].1.len()
        } else {
            rewritten_len(bytes, field.value.clone(), &inside)?
        };
        let mut prefix = Vec::new();
        put_varint(&mut prefix, value as u64);
        len += field.tag.len() + prefix.len() + value;
    }
    Ok(len)
}

/// A length-delimited value as text (names, op types).
pub fn text(bytes: &[u8], range: &Range<usize>) -> String {
    String::from_utf8_lossy(&bytes[range.clone()]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (number, value) in fields {
            put_varint(&mut out, number << 3 | 2);
            put_varint(&mut out, value.len() as u64);
            out.extend_from_slice(value);
        }
        out
    }

    #[test]
    fn rewrite_changes_only_the_edited_value_and_the_lengths_around_it() {
        let inner = message(&[(1, b"keep"), (2, b"old")]);
        let outer = message(&[(7, &inner), (9, b"tail")]);
        let f = fields(&outer, 0..outer.len()).unwrap();
        let g = fields(&outer, f[0].value.clone()).unwrap();
        let mut out = Vec::new();
        let edits = vec![(g[1].value.clone(), b"longer".to_vec())];
        rewrite(&outer, 0..outer.len(), &edits, &mut out).unwrap();
        let want = message(&[(7, &message(&[(1, b"keep"), (2, b"longer")])), (9, b"tail")]);
        assert_eq!(out, want);
        let mut same = Vec::new();
        rewrite(&outer, 0..outer.len(), &[], &mut same).unwrap();
        assert_eq!(same, outer);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let outer = message(&[(7, b"abcdef")]);
        for cut in 0..outer.len() {
            let _ = fields(&outer[..cut], 0..cut);
        }
        assert!(fields(&outer[..4], 0..4).is_err());
    }
}
