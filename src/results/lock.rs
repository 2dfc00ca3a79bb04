//! One writer per results folder: an advisory lock (`flock`) on `<out>/.lock`, held for the whole
//! run and released by the kernel when the process ends, however it ends (so a killed run never
//! leaves a stale lock). The file holds the holder's pid, host and start time, so a second run
//! can name it. Readers (`fit`, `plot`, `report`, `gate`) take no lock: every file they read is
//! replaced atomically. Sharded runs each write a folder of their own, so they never share one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Held while a run writes a results folder; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Take the folder's lock, or fail at once naming the run that holds it.
    pub fn acquire(dir: &Path) -> Result<WriterLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.take(200).read_to_string(&mut holder);
                return Err(Error::Usage(format!(
                    "{} is in use by another robust-eval run ({}); wait for it to end, \
                     or give this run a folder of its own with --out",
                    dir.display(),
                    match holder.trim() {
                        "" => "pid unknown".to_string(),
                        h => h.to_string(),
                    }
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let holder = format!(
            "pid {} on {} since {}",
            std::process::id(),
            crate::results::store::host(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(holder.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(WriterLock { _file: file })
    }
}
