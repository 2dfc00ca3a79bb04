//! What the user hands in: suites, manifests, model cards, label spaces and the demo suite.

pub mod card;
pub mod demo;
pub mod labels;
pub mod manifest;
pub mod suite;

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Location, Result};

/// Read a text file the user hands in (suite, card, manifest, evals.csv, run.json, gate config),
/// refusing what is not a regular file (a FIFO or device would block or never end) and anything
/// over `max_bytes`, so no input can make a read unbounded.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::input(Location::file(path), "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::input(
            Location::file(path),
            format!(
                "larger than {} MB, the most this file may hold",
                max_bytes >> 20
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| Error::input(Location::file(path), format!("not UTF-8 text: {e}")))
}
