#!/usr/bin/env python3
"""Merge's cost against the number of shards: the demo suite (1,400 images, every model) run as
N shards, every shard a real `run --shard I/N` holding real work, then `robust-eval merge` timed
(wall seconds and peak resident memory from the kernel's rusage of that child) and its open file
descriptors sampled from /proc while it runs. Usage:

    .venv/bin/python scripts/bench_merge.py --counts 10 100 1000

The shards run one after the other (about 0.5 s each on one core); each count's shards are run
once into --work (a temporary folder unless given) and reused by a later call with the same
--work. The merge is run --repeat times and the fastest kept.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_ARGS = ["--suite", "demo", "--threads", "1", "--loader-threads", "1", "--progress", "none",
            "--allow-failures", "1000000"]


def run_shards(binary: str, out: Path, count: int) -> None:
    for i in range(count):
        if (out / "shards" / f"{i}-of-{count}" / "run.json").is_file():
            continue  # kept from an earlier call: a finished shard resumes to nothing anyway
        subprocess.run([binary, "run", *RUN_ARGS, "--out", str(out), "--shard", f"{i}/{count}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed_merge(binary: str, out: Path) -> tuple[float, float, int]:
    """One merge: wall seconds, peak RSS in MB, most file descriptors seen open at once."""
    start = time.perf_counter()
    proc = subprocess.Popen([binary, "merge", str(out), "--allow-failures", "1000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fds = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            fds = max(fds, len(os.listdir(f"/proc/{proc.pid}/fd")))
        except OSError:
            pass
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"merge {out} exited {code}: {proc.stderr.read().decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024, fds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "robust-eval"))
    parser.add_argument("--work", help="keep the shards here instead of a temporary folder")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-merge-"))
    print(f"{'shards':>7} {'merge s':>9} {'peak MB':>9} {'open fds':>9}")
    for count in args.counts:
        out = work / f"n{count}"
        run_shards(args.binary, out, count)
        best = min((timed_merge(args.binary, out) for _ in range(args.repeat)), key=lambda r: r[0])
        print(f"{count:>7} {best[0]:>9.2f} {best[1]:>9.1f} {best[2]:>9}", flush=True)


if __name__ == "__main__":
    main()
