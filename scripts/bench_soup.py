"""Peak memory and time of `robust-eval soup` (uniform) and `interpolate` as the number of models
grows: the figures in docs/interventions.md. Beside scripts/bench.py, which measures evaluation.

The ingredients are bare .onnx files, given ImageNet's preprocessing
(--assume-imagenet-preprocessing): only their weights matter here. Each ingredient is the model with every float initializer perturbed (seeded noise of 1 % of its
scale), saved as its own file, inline or (--external) with external data, so k soups read k
distinct files as the paper's k fine-tunes would be. Peak memory is the maximum resident set size
of the robust-eval process (/usr/bin/time -v), time its wall-clock time; one run each.

Needs: a built robust-eval (cargo build --release), numpy and onnx in .venv, GNU time.

  .venv/bin/python scripts/bench_soup.py --model ../shared/reference/models/efficientnet_lite0.onnx \\
      [--counts 8,24,72] [--external] [--binary target/release/robust-eval] [--work DIR]
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper


def ingredients(model, count, folder, external):
    """`count` perturbed copies of `model` in `folder` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = onnx.load(str(model))
    paths = []
    for k in range(count):
        path = folder / f"m{k:03d}.onnx"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(k)
        copy = onnx.ModelProto()
        copy.CopyFrom(base)
        for t in copy.graph.initializer:
            a = numpy_helper.to_array(t)
            if a.dtype != np.float32:
                continue
            noise = rng.standard_normal(a.shape).astype(np.float32) * (0.01 * float(np.std(a)) + 1e-8)
            t.CopyFrom(numpy_helper.from_array(a + noise, t.name))
        onnx.save(copy, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                  location=f"m{k:03d}.data", size_threshold=0)
    return paths


def measured(command):
    """(peak resident MiB, wall seconds) of one run of `command`."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *map(str, command)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return kib / 1024, wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=pathlib.Path)
    p.add_argument("--counts", default="8,24,72")
    p.add_argument("--external", action="store_true", help="ingredients with external data")
    p.add_argument("--binary", default="target/release/robust-eval", type=pathlib.Path)
    p.add_argument("--work", type=pathlib.Path, help="folder for the ingredients (kept; default: a temporary one)")
    args = p.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    work = args.work or pathlib.Path(tempfile.mkdtemp(prefix="bench-soup-"))
    try:
        layout = "external" if args.external else "inline"
        paths = ingredients(args.model, max(counts), work / layout, args.external)
        one = sum(f.stat().st_size for f in (work / layout).glob("m000.*")) / 2**20
        print(f"model {args.model.name}: {one:.1f} MiB per ingredient ({layout} weights); "
              f"binary {args.binary}")
        print(f"{'command':<24} {'k':>4} {'peak RSS MiB':>13} {'x model':>8} {'wall s':>8}")
        out = work / "out"
        mib, wall = measured([args.binary, "interpolate", paths[0], paths[1], "--alphas", "0.5",
                              "--out", out, "--family", "w", "--assume-imagenet-preprocessing"])
        print(f"{'interpolate (1 alpha)':<24} {2:>4} {mib:>13.1f} {mib / one:>8.2f} {wall:>8.2f}")
        for k in counts:
            shutil.rmtree(out, ignore_errors=True)
            mib, wall = measured([args.binary, "soup", *paths[:k], "--out", out, "--name", f"soup{k}",
                                  "--assume-imagenet-preprocessing"])
            print(f"{'soup (uniform)':<24} {k:>4} {mib:>13.1f} {mib / one:>8.2f} {wall:>8.2f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
