//! What the user hands in: suites, manifests, model cards, label spaces and the demo suite.

pub mod card;
pub mod corruptions;
pub mod demo;
pub mod labels;
pub mod manifest;
pub mod onnx;
pub mod preprocessing;
pub mod scoring;
pub mod suite;

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Location, Result};

/// Largest suite, model card, gate configuration or baseline list read: these are a few KB.
pub const MAX_SETTINGS_BYTES: u64 = 16 << 20;

/// Read a text file the user hands in (suite, card, manifest, evals.csv, run.json, gate config),
/// refusing what is not a regular file (a FIFO or device would block or never end) and anything
/// over `max_bytes`, so no input can make a read unbounded.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String> {
    // Looked at before opening: opening a FIFO blocks until something writes to it.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::input(Location::file(path), "not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
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

/// Whether a name from data (a model, dataset or suite name) may become one component of a file
/// name: letters, digits and `. _ - + = @`, not starting with `.`, at most 200 characters. Such a
/// name cannot leave its folder, hide a file or carry markup.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+=@".contains(c))
}

/// Check a name the user gives a model, dataset or suite (`what`): a safe name without `@`,
/// which `run` keeps for class-restricted views (`imagenet@imagenet-r`).
pub fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    if is_safe_name(name) && !name.contains('@') {
        Ok(())
    } else {
        Err(format!(
            "{what} name `{name}` may contain only letters, digits and . _ - + = \
             (at most 200, not starting with '.'): it names files and folders"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_a_folder_or_carry_markup_are_not_safe() {
        for bad in [
            "", "..", ".hidden", "a/b", "a\\b", "../x", "<svg>", "a b", "a\0b", "x\"y",
        ] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in [
            "imagenetv2-threshold0.7",
            "imagenet@imagenet-r",
            "vit_b16+laion=2b",
        ] {
            assert!(is_safe_name(good), "{good}");
        }
        assert!(check_name("dataset", "imagenet@x").is_err());
        assert!(!is_safe_name(&"a".repeat(201)));
    }

    #[test]
    fn a_fifo_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.map(|s| s.success()).unwrap_or(false) {
            let err = read_text(&fifo, 1 << 20).unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        let big = dir.path().join("big.csv");
        std::fs::write(&big, vec![b'a'; 2 << 20]).unwrap();
        assert!(read_text(&big, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("larger than 1 MB"));
    }
}
