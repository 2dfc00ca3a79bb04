//! One writer per results folder: an advisory lock (`flock`) on `<out>/.lock`, held for the whole
//! run and released by the kernel when the process ends, however it ends (so a killed run never
//! leaves a stale lock). The file holds the holder's pid, host and start time, so a second run
//! can name it. Readers (`fit`, `plot`, `report`, `gate`) take no lock: every file they read is
//! replaced atomically. Sharded runs each write a folder of their own, so they never share one.
//!
//! Where `flock` is not to be trusted across machines (an NFS or Lustre mount without working
//! `flock`, see docs), `ROBUST_EVAL_LOCK=file` makes the lock a file created with O_EXCL,
//! `<out>/.lock.exclusive`, holding host, boot id, pid and the pid's start time. A holder that
//! died leaves it behind: it is taken over only when the holder is provably gone (same host and
//! boot, and no process with that pid and start time; or the host has rebooted), or when
//! `ROBUST_EVAL_LOCK_TAKEOVER=1` says the user knows it is. Two writers are never let in.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The O_EXCL lock file's name.
pub const EXCLUSIVE_FILE: &str = ".lock.exclusive";

/// Held while a run writes a results folder; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    held: Held,
}

#[derive(Debug)]
enum Held {
    Flock(#[allow(dead_code)] File),
    /// The O_EXCL file, removed on drop (a killed holder leaves it: see `acquire_exclusive`).
    Exclusive(PathBuf),
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Held::Exclusive(path) = &self.held {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How the lock is taken: `flock` (default) or an O_EXCL file (`ROBUST_EVAL_LOCK=file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Flock,
    ExclusiveFile { takeover: bool },
}

impl LockKind {
    pub fn from_env() -> Result<LockKind> {
        let takeover = std::env::var("ROBUST_EVAL_LOCK_TAKEOVER").is_ok_and(|v| v == "1");
        match std::env::var("ROBUST_EVAL_LOCK").as_deref() {
            Err(_) | Ok("") | Ok("flock") => Ok(LockKind::Flock),
            Ok("file") => Ok(LockKind::ExclusiveFile { takeover }),
            Ok(other) => Err(Error::Usage(format!(
                "ROBUST_EVAL_LOCK={other:?}: expected flock (the default) or file"
            ))),
        }
    }
}

impl WriterLock {
    /// Take the folder's lock, or fail at once naming the run that holds it.
    pub fn acquire(dir: &Path) -> Result<WriterLock> {
        Self::acquire_as(dir, LockKind::from_env()?)
    }

    pub fn acquire_as(dir: &Path, kind: LockKind) -> Result<WriterLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        match kind {
            LockKind::Flock => acquire_flock(dir),
            LockKind::ExclusiveFile { takeover } => acquire_exclusive(dir, takeover),
        }
    }
}

fn in_use(dir: &Path, holder: &str, hint: &str) -> Error {
    Error::Usage(format!(
        "{} is in use by another robust-eval run ({}); wait for it to end, or give this run a \
         folder of its own with --out{hint}",
        dir.display(),
        match holder.trim() {
            "" => "pid unknown",
            h => h,
        }
    ))
}

fn acquire_flock(dir: &Path) -> Result<WriterLock> {
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
            let _ = (&file).take(200).read_to_string(&mut holder);
            return Err(in_use(dir, &holder, ""));
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let holder = Holder::me().describe();
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(holder.as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(WriterLock {
        held: Held::Flock(file),
    })
}

/// Who holds an O_EXCL lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Holder {
    host: String,
    /// /proc/sys/kernel/random/boot_id: a reboot ends every holder of the host.
    boot: String,
    pid: u32,
    /// The pid's start time in clock ticks since boot (/proc/PID/stat, field 22), so a pid
    /// reused by another process is not taken for the holder.
    start: u64,
    since: String,
}

impl Holder {
    fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            host: host(),
            boot: boot_id(),
            pid,
            start: start_ticks(pid).unwrap_or(0),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn describe(&self) -> String {
        format!("pid {} on {} since {}", self.pid, self.host, self.since)
    }

    /// Provably gone: on this host, and either the host rebooted since, or no process has the
    /// holder's pid with its start time. On another host nothing here can prove it.
    fn gone(&self) -> bool {
        if self.host != host() || self.boot.is_empty() {
            return false;
        }
        self.boot != boot_id() || start_ticks(self.pid) != Some(self.start)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold blanks: state is
    // field 3, the start time field 22.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

fn acquire_exclusive(dir: &Path, takeover: bool) -> Result<WriterLock> {
    let path = dir.join(EXCLUSIVE_FILE);
    let me = Holder::me();
    let json = serde_json::to_vec(&me).map_err(|e| Error::Other(e.to_string()))?;
    // Twice at most: once, and once more after taking over a holder that is gone.
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(&json)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
                return Ok(WriterLock {
                    held: Held::Exclusive(path),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = read_holder(&path);
                let gone = holder.as_ref().is_some_and(Holder::gone);
                if !(gone || takeover) {
                    let named = holder.map_or("holder unreadable".to_string(), |h| h.describe());
                    return Err(in_use(
                        dir,
                        &named,
                        &format!(
                            "; if that run is gone (its host crashed), delete {} or run again with \
                             ROBUST_EVAL_LOCK_TAKEOVER=1",
                            path.display()
                        ),
                    ));
                }
                take_over(dir, &path, holder.as_ref())?;
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Err(in_use(dir, "taken again while it was taken over", ""))
}

/// Remove a gone holder's file, under a second O_EXCL file so two runs taking over at once cannot
/// both remove one holder's file and then each other's.
fn take_over(dir: &Path, path: &Path, judged: Option<&Holder>) -> Result<()> {
    let guard = dir.join(format!("{EXCLUSIVE_FILE}.takeover"));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&guard)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => in_use(
                dir,
                "another run is taking its lock over",
                &format!("; if none is, delete {}", guard.display()),
            ),
            _ => Error::io(&guard, e),
        })?;
    // Still the holder judged gone (not a run that took it over in between)?
    let same = read_holder(path).as_ref() == judged;
    let removed = if same {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    } else {
        Ok(())
    };
    let _ = std::fs::remove_file(&guard);
    removed
}

/// This machine's name, for provenance and the writer lock.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: LockKind = LockKind::ExclusiveFile { takeover: false };

    #[test]
    fn the_exclusive_file_lets_one_writer_in_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = WriterLock::acquire_as(dir.path(), FILE).unwrap();
        let e = WriterLock::acquire_as(dir.path(), FILE)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("in use") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        assert!(!dir.path().join(EXCLUSIVE_FILE).exists());
        WriterLock::acquire_as(dir.path(), FILE).unwrap();
    }

    fn leave_lock(dir: &Path, holder: &Holder) {
        std::fs::write(
            dir.join(EXCLUSIVE_FILE),
            serde_json::to_vec(holder).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over_one_elsewhere_only_when_told() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has ended: its pid no longer has its start time.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_ticks(pid).unwrap_or(1);
        child.wait().unwrap();
        let dead = Holder {
            pid,
            start,
            ..Holder::me()
        };
        leave_lock(dir.path(), &dead);
        let lock = WriterLock::acquire_as(dir.path(), FILE).unwrap();
        drop(lock);

        let elsewhere = Holder {
            host: "another-node".into(),
            ..dead
        };
        leave_lock(dir.path(), &elsewhere);
        let e = WriterLock::acquire_as(dir.path(), FILE)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another-node") && e.contains("ROBUST_EVAL_LOCK_TAKEOVER=1"),
            "{e}"
        );
        WriterLock::acquire_as(dir.path(), LockKind::ExclusiveFile { takeover: true }).unwrap();
    }

    #[test]
    fn a_live_holder_on_this_host_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        leave_lock(dir.path(), &Holder::me());
        assert!(WriterLock::acquire_as(dir.path(), FILE).is_err());
    }
}
