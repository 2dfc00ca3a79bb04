#!/usr/bin/env python3
"""Scaling figures for sharded runs: the same work as one run and as N shards, then the merge.

Runs `robust-eval run` once, then `run --shard I/N` for each I one after the other (as N jobs on N
machines would run them, minus the waiting), then `robust-eval merge`, and prints per process the
wall time and peak memory (from the kernel's rusage of that child), the shards' imbalance (slowest
shard over the mean), the merge's cost, and each shard's fixed cost: the same shard run again with
nothing left to do (process start, ONNX Runtime, one session per model it has work for, the hash
cache). Usage:

    .venv/bin/python scripts/bench_shards.py --shards 4 -- --suite demo
    .venv/bin/python scripts/bench_shards.py --shards 4 --images DIR --card CARD.toml

With --images and --card it builds a one-dataset suite over the images in DIR (every image labelled
class 0: only the time is measured) and runs the model of CARD on it.

Everything after `--` is passed to every `run`. Results go to a temporary folder (--work to keep).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run cmd; return its wall seconds and peak resident memory in MB."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} exited {code}:\n{stderr}")
    return seconds, usage.ru_maxrss / 1024


def images_suite(images: Path, card: Path, work: Path) -> list[str]:
    """A suite over every image in `images`, and the run arguments that use it."""
    work.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    lines = ["path,label"] + [f'"{p.resolve()}",0' for p in files]
    (work / "images.csv").write_text("\n".join(lines) + "\n")
    (work / "suite.toml").write_text(
        'name = "images"\nid = "images"\n[datasets.images]\nmanifest = "images.csv"\nscoring = "all-classes"\n'
    )
    return ["--suite", str(work / "suite.toml"), "--data-root", str(work), "--models", str(card.resolve()),
            "--allow-failures", str(len(files))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "robust-eval"))
    parser.add_argument("--work", help="keep results here instead of a temporary folder")
    parser.add_argument("--images", help="a folder of images to build a one-dataset suite over")
    parser.add_argument("--card", help="the model card to run on --images")
    parser.add_argument("run_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    run_args = [a for a in args.run_args if a != "--"]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-shards-"))
    if args.images:
        run_args += images_suite(Path(args.images), Path(args.card), work)
    n = args.shards
    run = [args.binary, "run", "--progress", "none", *run_args]

    single_s, single_mb = timed([*run, "--out", str(work / "single")])
    sharded = work / "sharded"
    shards = [timed([*run, "--out", str(sharded), "--shard", f"{i}/{n}"]) for i in range(n)]
    fixed = [timed([*run, "--out", str(sharded), "--shard", f"{i}/{n}"])[0] for i in range(n)]
    merge_s, merge_mb = timed([args.binary, "merge", str(sharded)])

    times = [s for s, _ in shards]
    mean = statistics.mean(times)
    print(f"work: robust-eval run {' '.join(run_args)}")
    print(f"{'':28}{'seconds':>9}{'peak MB':>9}")
    print(f"{'one run':28}{single_s:9.2f}{single_mb:9.0f}")
    for i, (s, mb) in enumerate(shards):
        print(f"{f'shard {i}/{n}':28}{s:9.2f}{mb:9.0f}")
    print(f"{'merge':28}{merge_s:9.2f}{merge_mb:9.0f}")
    print(f"shards: sum {sum(times):.2f} s ({sum(times) / single_s:.2f}x one run), "
          f"slowest {max(times):.2f} s, mean {mean:.2f} s, imbalance (slowest / mean) {max(times) / mean:.2f}")
    print(f"fixed cost per shard (the shard again, nothing to do): median {statistics.median(fixed):.2f} s, "
          f"max {max(fixed):.2f} s")
    print(f"wall time on {n} machines: slowest shard + merge = {max(times) + merge_s:.2f} s, "
          f"speed-up {single_s / (max(times) + merge_s):.2f}x over one run")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
