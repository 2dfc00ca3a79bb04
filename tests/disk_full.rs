//! Disk full and read-only results folders, for real: a small tmpfs mounted by the test (as
//! root; elsewhere the test says it was skipped). A run that runs out of space or cannot write
//! exits 2 naming the file, and every result stored before is still whole; given room again, the
//! run resumes to what an uninterrupted run stores.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use predicates::prelude::*;

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn demo_run(out: &Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args([
        "run",
        "--suite",
        "demo",
        "--provider",
        "cpu",
        "--progress",
        "plain",
        "--out",
    ])
    .arg(out)
    .timeout(std::time::Duration::from_secs(300));
    cmd
}

/// Every stored file is whole: evals.csv and run.json parse, every predictions file reads.
fn all_whole(out: &Path) -> usize {
    let rows = robust_eval::results::evals::read(&out.join("evals.csv")).unwrap();
    let store = robust_eval::results::store::ResultsStore::open(out).unwrap();
    for r in &rows {
        let preds = store.predictions_path(&r.model, &r.dataset);
        let df = robust_eval::results::store::read_predictions(&preds).unwrap();
        assert_eq!(df.height() as u64, r.n + r.failed, "{}", preds.display());
    }
    rows.len()
}

#[test]
fn a_full_or_read_only_disk_loses_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let Some(mount) = Mount::tmpfs(&out, "96k") else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: a_full_or_read_only_disk_loses_nothing_stored: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    demo_run(&out).assert().code(2).stderr(
        predicate::str::contains("No space left on device").and(predicate::str::contains(
            "the disk is full; nothing stored before was changed",
        )),
    );
    let stored = all_whole(&out);
    assert!(stored > 0, "some pairs fit before the disk filled");

    mount.remount("ro");
    let before = std::fs::read(out.join("evals.csv")).unwrap();
    demo_run(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Read-only file system"));
    assert_eq!(std::fs::read(out.join("evals.csv")).unwrap(), before);

    mount.remount("rw,size=20m");
    demo_run(&out).assert().success();
    let whole = dir.path().join("whole");
    demo_run(&whole).assert().success();
    assert_eq!(all_whole(&out), all_whole(&whole));
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("evals.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        strip(&out),
        strip(&whole),
        "evals.csv less its two timing columns"
    );
    drop(mount);
}
