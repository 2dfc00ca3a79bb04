//! sha256 of model files, cached in the results folder by (path, size, mtime): a model of
//! hundreds of MB is hashed once, not on every run. A missing or unreadable cache is rebuilt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::input::manifest::sha256_file;

/// The cache file in a results folder.
pub const FILE_NAME: &str = ".hash-cache.json";
/// A cache this large is not ours; it is ignored (and rewritten).
const MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    /// Modification time in nanoseconds since the epoch.
    mtime_ns: u128,
    sha256: String,
}

#[derive(Debug)]
pub struct HashCache {
    file: PathBuf,
    entries: BTreeMap<String, Entry>,
    changed: bool,
}

fn read_entries(file: &Path) -> Option<BTreeMap<String, Entry>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .ok()?
        .take(MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// Size and mtime of a file: what must be unchanged for its cached hash to stand.
fn stamp(path: &Path) -> Result<(u64, u128)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((meta.len(), mtime))
}

impl HashCache {
    /// The cache of results folder `out` (empty if it has none or it cannot be read).
    pub fn open(out: &Path) -> HashCache {
        let file = out.join(FILE_NAME);
        HashCache {
            entries: read_entries(&file).unwrap_or_default(),
            file,
            changed: false,
        }
    }

    /// sha256 of `path`, from the cache when the file's size and mtime are unchanged.
    pub fn sha256(&mut self, path: &Path) -> Result<String> {
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let (size, mtime_ns) = stamp(path)?;
        if let Some(e) = self.entries.get(&key) {
            // mtime 0: the file system keeps none, so the stamp proves nothing.
            if e.size == size && e.mtime_ns == mtime_ns && mtime_ns != 0 {
                return Ok(e.sha256.clone());
            }
        }
        let sha256 = sha256_file(path)?;
        // A file changed while it was hashed is not cached: its stamp may not match the hash.
        if stamp(path)? == (size, mtime_ns) {
            self.entries.insert(
                key,
                Entry {
                    size,
                    mtime_ns,
                    sha256: sha256.clone(),
                },
            );
            self.changed = true;
        }
        Ok(sha256)
    }

    /// Write the cache if it changed (atomically, like every file of a results folder).
    pub fn save(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let json =
            serde_json::to_vec_pretty(&self.entries).map_err(|e| Error::Other(e.to_string()))?;
        crate::files::write_atomic(&self.file, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_reused_until_size_or_mtime_change() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"first").unwrap();
        let mut cache = HashCache::open(dir.path());
        let first = cache.sha256(&model).unwrap();
        assert_eq!(first, sha256_file(&model).unwrap());
        cache.save().unwrap();

        // A stale entry with the file's real stamp is believed: proof the hash was not recomputed.
        let mut entries = read_entries(&dir.path().join(FILE_NAME)).unwrap();
        entries
            .values_mut()
            .for_each(|e| e.sha256 = "cached".into());
        std::fs::write(
            dir.path().join(FILE_NAME),
            serde_json::to_vec(&entries).unwrap(),
        )
        .unwrap();
        assert_eq!(
            HashCache::open(dir.path()).sha256(&model).unwrap(),
            "cached"
        );

        // A different size invalidates it.
        std::fs::write(&model, b"second!").unwrap();
        let mut cache = HashCache::open(dir.path());
        assert_eq!(cache.sha256(&model).unwrap(), sha256_file(&model).unwrap());

        // A corrupt cache is ignored, not an error.
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let mut cache = HashCache::open(dir.path());
        assert_eq!(cache.sha256(&model).unwrap(), sha256_file(&model).unwrap());
    }
}
