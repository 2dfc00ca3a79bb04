"""Benchmark robust-eval against the reference Python pipeline, side by side on the same machine.

Both sides run on the same images, model, batch size and threads, interleaved and repeated; the
table gives medians and the ratio robust-eval / Python for each stage:

  decode alone      one core; files already in memory (robust-eval: zune-jpeg; Python: PIL)
  preprocessing     one core; decode, resize (shorter side, antialiased), center crop, normalise
  inference alone   ONNX Runtime on a pre-built batch, --threads intra-op threads
  end to end        robust-eval `run` vs a DataLoader-style pipeline: --workers processes doing PIL
                    preprocessing, feeding ONNX Runtime in the main process

Needs: a built robust-eval (cargo build --release), and Pillow, numpy, onnxruntime in .venv
(scripts/setup.sh --test). No torch.

  .venv/bin/python scripts/bench.py --images ../shared/reference/imagenet-sample \\
      --card my-model.toml [--limit 1000] [--repeats 3] [--batch-size 64] [--threads 2] [--workers 2]

The card is a robust-eval model card (its preprocessing is used on both sides).
"""
import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from pil_pipeline import transform_u8  # noqa: E402  (the same reference the parity tests use)


def load_card(path):
    with open(path, "rb") as f:
        card = tomllib.load(f)
    pre = card.get("preprocess", {})
    onnx = card["onnx"]
    if not os.path.isabs(onnx):
        onnx = os.path.join(os.path.dirname(os.path.abspath(path)), onnx)
    return {
        "onnx": onnx,
        "resize": pre.get("resize", 256),
        "crop": pre.get("crop", 224),
        "interpolation": pre.get("interpolation", "bilinear"),
        "mean": np.array(pre.get("mean", [0.485, 0.456, 0.406]), np.float32).reshape(3, 1, 1),
        "std": np.array(pre.get("std", [0.229, 0.224, 0.225]), np.float32).reshape(3, 1, 1),
    }


def preprocess(path, c):
    x = transform_u8(path, c["resize"], c["crop"], c["interpolation"]).astype(np.float32) / 255.0
    return (x.transpose(2, 0, 1) - c["mean"]) / c["std"]


_CARD = None


def _init(card):
    global _CARD
    _CARD = card


def _work(path):
    return preprocess(path, _CARD)


def python_figures(paths, c, batch, threads, workers):
    blobs = [open(p, "rb").read() for p in paths]
    t = time.perf_counter()
    for b in blobs:
        Image.open(io.BytesIO(b)).convert("RGB")
    decode = len(blobs) / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in paths:
        preprocess(p, c)
    pre = len(paths) / (time.perf_counter() - t)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(c["onnx"], opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.stack([preprocess(p, c) for p in paths[:batch]] * (batch // max(1, len(paths[:batch])) + 1))[:batch]
    sess.run(None, {name: x})
    runs = max(2, len(paths) // batch)
    t = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {name: x})
    infer = runs * batch / (time.perf_counter() - t)
    t = time.perf_counter()
    sess = ort.InferenceSession(c["onnx"], opts, providers=["CPUExecutionProvider"])
    with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(c,)) as pool:
        pending = []
        for arr in pool.imap(_work, paths, chunksize=8):
            pending.append(arr)
            if len(pending) == batch:
                sess.run(None, {name: np.stack(pending)})
                pending = []
        if pending:
            sess.run(None, {name: np.stack(pending)})
    e2e = len(paths) / (time.perf_counter() - t)
    return {"decode_per_core": decode, "preprocess_per_core": pre, "inference": infer, "end_to_end": e2e}


def rust_figures(binary, images, card, limit, batch, threads):
    out = subprocess.run(
        [binary, "bench", "--images", images, "--model", card, "--limit", str(limit), "--batch-size", str(batch),
         "--threads", str(threads), "--json"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--card", required=True)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "robust-eval"))
    a = ap.parse_args()
    exts = (".jpg", ".jpeg", ".png")
    paths = sorted(os.path.join(a.images, f) for f in os.listdir(a.images) if f.lower().endswith(exts))[: a.limit]
    c = load_card(a.card)
    keys = ["decode_per_core", "preprocess_per_core", "inference", "end_to_end"]
    ours, theirs = {k: [] for k in keys}, {k: [] for k in keys}
    meta = None
    for r in range(a.repeats):
        f = rust_figures(a.binary, a.images, a.card, a.limit, a.batch_size, a.threads)
        meta = f
        for k in keys:
            ours[k].append(f[k])
        p = python_figures(paths, c, a.batch_size, a.threads, a.workers)
        for k in keys:
            theirs[k].append(p[k])
        print(f"repeat {r + 1}/{a.repeats}: robust-eval end to end {f['end_to_end']:.1f}/s, Python {p['end_to_end']:.1f}/s", file=sys.stderr)
    med = lambda v: statistics.median(v)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; ONNX Runtime {meta['onnxruntime']} ({meta['provider']}); "
          f"{len(paths)} images, batch {a.batch_size}, {a.threads} threads, {a.workers} Python workers; medians of {a.repeats}")
    print(f"{'stage':<22}{'robust-eval':>14}{'Python':>12}{'ratio':>9}")
    names = {"decode_per_core": "decode (per core)", "preprocess_per_core": "preprocess (per core)",
             "inference": "inference alone", "end_to_end": "end to end"}
    for k in keys:
        o, t = med(ours[k]), med(theirs[k])
        print(f"{names[k]:<22}{o:>12.1f}/s{t:>10.1f}/s{o / t:>8.2f}x")
    pre, inf, cores = med(ours["preprocess_per_core"]), med(ours["inference"]), meta["cores"]
    limit = cores / (1 / pre + cores / inf)
    print(f"preprocessing vs decode alone: {100 * pre / med(ours['decode_per_core']):.0f} %; "
          f"end to end vs the {limit:.1f}/s limit: {100 * med(ours['end_to_end']) / limit:.0f} %")


if __name__ == "__main__":
    main()
