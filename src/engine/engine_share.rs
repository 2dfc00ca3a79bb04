//! TensorRT engines shared by the shards of one study. ONNX Runtime writes an engine into its
//! cache folder in place while it builds it, so shards never build into one folder together: each
//! builds into its own (`<out>/shards/I-of-N/tensorrt-cache`). Around that:
//!
//! - before its sessions start, a shard copies into its own folder every finished engine the
//!   study's folder (`<out>/tensorrt-cache`) holds that its own lacks (`seed`);
//! - after its run, it publishes the engines it built there (`publish`): each copied to a
//!   temporary file beside it and renamed into place, never over an engine already there, so a
//!   reader sees a whole engine or none.
//!
//! A model's engine is thus built by the shards of the first wave that have work for it (at most
//! as many as run at once), and loaded by every later shard. The schedulers' front ends go
//! further: their first job, `run --engines-only` (`pipeline::engines::build_for_study`), builds every model's
//! engine once and publishes it before any shard starts, so every shard loads them all.
//! Engine names are ONNX Runtime's, keyed by the model's content and the GPU's compute capability,
//! so an engine of another model or another GPU is never loaded in place of the right one: it is
//! copied and unused. One TensorRT version per study (engines are specific to it).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::TEMP_PREFIX;

/// The finished files of a cache folder: regular files, neither hidden nor temporary.
fn finished_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && !name.starts_with(TEMP_PREFIX)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Copy `from` to `to` through a temporary file beside `to`, renamed into place unless `to`
/// exists by then. Returns whether it was copied.
fn copy_whole(from: &Path, to: &Path) -> Result<bool> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut source = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::io::copy(&mut source, temp.as_file_mut()).map_err(|e| Error::io(to, e))?;
    temp.as_file().sync_all().map_err(|e| Error::io(to, e))?;
    match temp.persist_noclobber(to) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(to, e.error)),
    }
}

/// Copy the engines of `shared` that `own` lacks into `own`; returns how many.
pub fn seed(shared: &Path, own: &Path) -> Result<usize> {
    let mut copied = 0;
    for file in finished_files(shared) {
        let target = own.join(file.file_name().unwrap_or_default());
        if !target.exists() && copy_whole(&file, &target)? {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Publish the engines of `own` that `shared` lacks into `shared`; returns how many.
pub fn publish(own: &Path, shared: &Path) -> Result<usize> {
    seed(own, shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_go_both_ways_whole_and_never_over_one_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, own) = (dir.path().join("shared"), dir.path().join("own"));
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("a_sm90.engine"), b"built by shard 0").unwrap();
        std::fs::write(shared.join(format!("{TEMP_PREFIX}x")), b"half").unwrap();
        assert_eq!(seed(&shared, &own).unwrap(), 1);
        assert_eq!(
            std::fs::read(own.join("a_sm90.engine")).unwrap(),
            b"built by shard 0"
        );
        assert!(!own.join(format!("{TEMP_PREFIX}x")).exists());

        std::fs::write(own.join("b_sm90.engine"), b"built here").unwrap();
        std::fs::write(own.join("a_sm90.engine"), b"rebuilt").unwrap();
        assert_eq!(publish(&own, &shared).unwrap(), 1);
        assert_eq!(
            std::fs::read(shared.join("b_sm90.engine")).unwrap(),
            b"built here"
        );
        assert_eq!(
            std::fs::read(shared.join("a_sm90.engine")).unwrap(),
            b"built by shard 0",
            "an engine already published is not replaced"
        );
        assert_eq!(seed(&dir.path().join("none"), &own).unwrap(), 0);
    }
}
