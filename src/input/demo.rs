//! The embedded `demo` suite: synthetic images and small ONNX models compiled into the binary (made
//! by `scripts/make_demo.py`, see demo/README.md), extracted on first use so `robust-eval run --suite
//! demo` works on a fresh machine with no datasets and no downloads.

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/demo");
const DEMO_SUITE: &str = include_str!("../../suites/demo.toml");

fn files<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    out.extend(dir.files());
    for sub in dir.dirs() {
        files(sub, out);
    }
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROBUST_EVAL_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("robust-eval");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("robust-eval");
    }
    std::env::temp_dir().join("robust-eval")
}

/// Extract the demo (once per content version) and return the folder holding `suites/demo.toml`
/// and `demo/`.
pub fn extract() -> Result<PathBuf> {
    let mut all = Vec::new();
    files(&DEMO, &mut all);
    let mut hasher = Sha256::new();
    hasher.update(DEMO_SUITE.as_bytes());
    for f in &all {
        hasher.update(f.path().to_string_lossy().as_bytes());
        hasher.update(f.contents());
    }
    let digest = format!("{:x}", hasher.finalize());
    let root = cache_root();
    let target = root.join(format!("demo-{}", &digest[..16]));
    if target.join("suites").join("demo.toml").is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    // Unpack beside the target and rename, so a concurrent or interrupted extraction never leaves
    // a half-written demo that a later run trusts.
    let tmp = tempfile::tempdir_in(&root).map_err(|e| Error::io(&root, e))?;
    let write = |rel: &Path, bytes: &[u8]| -> Result<()> {
        let path = tmp.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    };
    write(Path::new("suites/demo.toml"), DEMO_SUITE.as_bytes())?;
    for f in &all {
        write(&Path::new("demo").join(f.path()), f.contents())?;
    }
    let staged = tmp.keep();
    if std::fs::rename(&staged, &target).is_err() {
        // Another process won the race; its copy is identical.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(target)
}
