//! Files written so that a reader sees either the old one or the whole new one: the one way
//! every stage writes its outputs (manifests, results, plots, reports, scheduler files, models).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Prefix of the temporary files `write_atomic` writes beside their target: a process killed
/// mid-write leaves one behind, which no reader opens and `remove_orphans` deletes.
pub const TEMP_PREFIX: &str = ".robust-eval-tmp-";

/// Write a file so that it is either the old one or the whole new one, whatever happens: the
/// bytes go to a temporary file beside it, are synced, and renamed over it; then the folder is
/// synced, so the rename itself survives a power cut. A failed write (disk full, read-only
/// folder) leaves the old file as it was and says which file could not be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        file.write_all(bytes).map_err(|e| write_failed(path, e))
    })
}

/// Why `path` could not be written, with a hint for a full disk or a read-only file system.
pub fn write_failed(path: &Path, e: std::io::Error) -> Error {
    let hint = match e.kind() {
        std::io::ErrorKind::StorageFull => " (the disk is full; nothing stored before was changed)",
        std::io::ErrorKind::ReadOnlyFilesystem => " (the file system is read-only)",
        _ => "",
    };
    Error::Other(format!("cannot write {}: {e}{hint}", path.display()))
}

/// `write_atomic` with the contents written by `fill` into the temporary file (large outputs
/// streamed rather than held in memory); an error from `fill` leaves the old file as it was.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failed = |e: std::io::Error| write_failed(path, e);
    std::fs::create_dir_all(dir).map_err(failed)?;
    // Readable as any file the user writes (the umask applies), not tempfile's private 0600.
    #[cfg(unix)]
    let permissions = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666);
    #[cfg(not(unix))]
    let permissions = std::fs::metadata(dir).map_err(failed)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(permissions)
        .tempfile_in(dir)
        .map_err(failed)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(failed)?;
    tmp.persist(path).map_err(|e| failed(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// Delete the temporary files that killed runs left in a results folder (its top level,
/// `predictions/*/` and `plots/`). Only files named with `TEMP_PREFIX` are touched.
pub fn remove_orphans(dir: &Path) {
    let mut folders = vec![dir.to_path_buf(), dir.join("plots")];
    if let Ok(models) = std::fs::read_dir(dir.join("predictions")) {
        folders.extend(models.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
