"""Benchmark robust-eval against the reference Python pipeline, side by side on the same machine.

Both sides run on the same images, model, batch size and threads, interleaved and repeated; the
table gives medians and the ratio robust-eval / Python for each stage:

  decode alone      one core; files already in memory; whole images (both sides use libjpeg-turbo)
  preprocessing     one core; decode, resize (shorter side, antialiased), center crop, normalise
                    (robust-eval decodes only the part of a JPEG the resize reads)
  inference alone   ONNX Runtime on a pre-built batch, --threads intra-op threads
  end to end        robust-eval `run` vs a DataLoader-style pipeline: --workers processes doing PIL
                    preprocessing, feeding ONNX Runtime in the main process

Needs: a built robust-eval (cargo build --release), and Pillow, numpy, onnxruntime in .venv
(scripts/setup.sh --test). No torch.

  .venv/bin/python scripts/bench.py --images ../shared/reference/imagenet-sample \\
      --card my-model.toml [--limit 1000] [--repeats 3] [--batch-size 64] [--threads 2] [--workers 2]

With --gpu-like it measures the loader that feeds a GPU instead (see gpu_like below), optionally
against an older build:

  .venv/bin/python scripts/bench.py --gpu-like --images ../shared/reference/imagenet-sample \\
      --card benches/free_224.toml [--before OLD/robust-eval] [--repeats 5]

The card is a robust-eval model card (its preprocessing is used on both sides).

--c-like: the 224-pixel mode. The images are first made into what ImageNet-C ships (as
hendrycks/robustness make_imagenet_c.py makes them, corruption aside: Resize(256) bilinear,
CenterCrop(224), saved as JPEG quality 85, optimize=True) in a temporary folder, and both sides
evaluate them as the imagenet-c suite does (`resize = "none"`: centre crop only, so on 224-pixel
images and a 224 model no resize; robust-eval `bench --resize none`).
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


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def c_like_tree(paths, out_dir):
    """The images as ImageNet-C ships them, uncorrupted: Resize(256) (bilinear, torchvision's
    default in make_imagenet_c.py), CenterCrop(224), JPEG quality 85 with optimize=True."""
    made = []
    for p in paths:
        im = Image.fromarray(transform_u8(p, 256, 224, "bilinear"))
        target = os.path.join(out_dir, os.path.splitext(os.path.basename(p))[0] + ".JPEG")
        im.save(target, quality=85, optimize=True)
        made.append(target)
    return made


def rust_figures(binary, images, card, limit, batch, threads, shared, resize="model", extra=()):
    out = subprocess.run(
        [binary, "bench", "--images", images, "--model", card, "--limit", str(limit), "--batch-size", str(batch),
         "--threads", str(threads), "--shared-models", str(shared), "--resize", resize, "--json", *extra],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def gpu_like(a):
    """The loader in the GPU-like plan: one inference worker fed by every core's loader thread
    (--inference-workers 1), on a model whose inference is nearly free, so end to end is the
    loader's throughput. Compared with decode alone on as many cores (whole images, the floor of
    any loader) and with preprocessing on as many cores (the loader's ceiling). With --before, an
    older build runs in turn with this one, which goes first every other repeat."""
    builds = [("this build", a.binary)] + ([("--before", a.before)] if a.before else [])
    figures = {name: [] for name, _ in builds}
    for r in range(a.repeats):
        for name, binary in builds if r % 2 == 0 else builds[::-1]:
            f = rust_figures(binary, a.images, a.card, a.limit, a.batch_size, a.threads, 0,
                             extra=["--inference-workers", "1"])
            figures[name].append(f)
            print(f"repeat {r + 1}/{a.repeats}, {name}: end to end {f['end_to_end']:.1f}/s", file=sys.stderr)
    med = statistics.median
    meta = figures["this build"][-1]
    cores = meta["cores"]
    print(f"machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} cores; ONNX Runtime {meta['onnxruntime']} "
          f"({meta['provider']}); {meta['images']} images, batch {a.batch_size}, --inference-workers 1, "
          f"{cores} loader threads; medians of {a.repeats}")
    print(f"{'build':<12}{'decode/core':>13}{'preprocess/core':>17}{'end to end':>13}{'vs decode':>11}{'vs preprocess':>15}")
    for name, _ in builds:
        runs = figures[name]
        vs_decode = [f["end_to_end"] / (cores * f["decode_per_core"]) for f in runs]
        vs_pre = [f["end_to_end"] / (cores * f["preprocess_per_core"]) for f in runs]
        print(f"{name:<12}{med(f['decode_per_core'] for f in runs):>11.1f}/s"
              f"{med(f['preprocess_per_core'] for f in runs):>15.1f}/s{med(f['end_to_end'] for f in runs):>11.1f}/s"
              f"{100 * med(vs_decode):>10.0f} %{100 * med(vs_pre):>13.0f} %")
        print(f"{'':<12}end to end vs decode alone on {cores} cores, repeat by repeat: "
              f"{', '.join(f'{100 * v:.0f} %' for v in vs_decode)}")
    if a.before:
        paired = [n["end_to_end"] / o["end_to_end"] for n, o in zip(figures["this build"], figures["--before"])]
        print(f"end to end, this build / --before, repeat by repeat (each pair run back to back): "
              f"{', '.join(f'{r:.2f}x' for r in paired)}; median {med(paired):.2f}x")
    print(f"this build, last repeat: {meta['bound_detail']}")


def peak_rss_mb(cmd):
    """Run a command; its peak resident memory in MB (from wait4's rusage, this child only)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024


def memory_figures(binary, paths, card, lengths, batch, threads):
    """Peak memory of `robust-eval run` over manifests of each length (the images repeated)."""
    figures = []
    with tempfile.TemporaryDirectory() as work:
        for n in lengths:
            manifest = os.path.join(work, f"m{n}.csv")
            with open(manifest, "w") as f:
                f.write("path,label\n")
                for i in range(n):
                    p = os.path.abspath(paths[i % len(paths)]).replace('"', '""')
                    f.write(f'"{p}",0\n')
            suite = os.path.join(work, f"s{n}.toml")
            with open(suite, "w") as f:
                f.write(f'name = "mem"\nid = "d"\n[datasets.d]\nmanifest = "{manifest}"\nscoring = "all-classes"\n')
            t = time.perf_counter()
            mb = peak_rss_mb([binary, "run", "--suite", suite, "--models", card, "--out", os.path.join(work, f"out{n}"),
                              "--provider", "cpu", "--batch-size", str(batch), "--threads", str(threads),
                              "--progress", "none"])
            figures.append((n, mb, time.perf_counter() - t))
            print(f"memory: {n} images: peak {mb:.0f} MB ({figures[-1][2]:.0f} s)", file=sys.stderr)
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--card", required=True)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--shared-models", type=int, default=3,
                    help="also time N copies of the model sharing decoded batches (robust-eval only)")
    ap.add_argument("--memory", type=int, default=0, metavar="N",
                    help="also compare robust-eval's peak memory on a 1000-row and an N-row manifest "
                         "(the images repeated; N=50000 takes N / end-to-end rate seconds)")
    ap.add_argument("--c-like", action="store_true",
                    help="the 224-pixel mode: the images made 224 x 224 as ImageNet-C ships them, crop only")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "robust-eval"))
    ap.add_argument("--gpu-like", action="store_true",
                    help="measure the loader instead: --inference-workers 1 on the card (best a nearly free model, "
                         "benches/free_224.toml), against decode alone; no Python side")
    ap.add_argument("--before", metavar="BINARY",
                    help="with --gpu-like: an older robust-eval build to run in turn with --binary")
    a = ap.parse_args()
    if a.gpu_like:
        return gpu_like(a)
    exts = (".jpg", ".jpeg", ".png")
    paths = sorted(os.path.join(a.images, f) for f in os.listdir(a.images) if f.lower().endswith(exts))[: a.limit]
    c = load_card(a.card)
    resize = "model"
    if a.c_like:
        tree = tempfile.TemporaryDirectory(prefix="c-like-")  # removed when main returns
        paths = c_like_tree(paths, tree.name)
        a.images, resize = tree.name, "none"
        c["resize"] = c["crop"]  # crop only, as `resize = "none"`
        sizes = [os.path.getsize(p) for p in paths]
        print(f"c-like tree: {len(paths)} images, 224 x 224, median {statistics.median(sizes) / 1024:.1f} KB", file=sys.stderr)
    keys = ["decode_per_core", "preprocess_per_core", "inference", "end_to_end"]
    ours, theirs = {k: [] for k in keys}, {k: [] for k in keys}
    meta = None
    shared = []
    for r in range(a.repeats):
        f = rust_figures(a.binary, a.images, a.card, a.limit, a.batch_size, a.threads, a.shared_models, resize)
        meta = f
        if f.get("shared_models"):
            shared.append((f["shared_seconds"], f["shared_budget_seconds"], f["one_model_seconds"]))
        for k in keys:
            ours[k].append(f[k])
        p = python_figures(paths, c, a.batch_size, a.threads, a.workers)
        for k in keys:
            theirs[k].append(p[k])
        print(f"repeat {r + 1}/{a.repeats}: robust-eval end to end {f['end_to_end']:.1f}/s, Python {p['end_to_end']:.1f}/s", file=sys.stderr)
    med = lambda v: statistics.median(v)
    print(f"machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} cores; ONNX Runtime {meta['onnxruntime']} ({meta['provider']}); "
          f"{len(paths)} images{' (c-like, 224 px, crop only)' if a.c_like else ''}, batch {a.batch_size}, {a.threads} threads, {a.workers} Python workers; medians of {a.repeats}")
    print(f"{'stage':<22}{'robust-eval':>14}{'Python':>12}{'ratio':>9}")
    names = {"decode_per_core": "decode (per core)", "preprocess_per_core": "preprocess (per core)",
             "inference": "inference alone", "end_to_end": "end to end"}
    for k in keys:
        o, t = med(ours[k]), med(theirs[k])
        print(f"{names[k]:<22}{o:>12.1f}/s{t:>10.1f}/s{o / t:>8.2f}x")
    pre, inf, cores = med(ours["preprocess_per_core"]), med(ours["inference"]), meta["cores"]
    limit = cores / (1 / pre + cores / inf)
    # Paired figures: both halves of each ratio measured together (decode and preprocessing take
    # turns over the same images; each robust-eval / Python pair runs back to back).
    floor = [p / d for p, d in zip(ours["preprocess_per_core"], ours["decode_per_core"])]
    paired = [o / t for o, t in zip(ours["end_to_end"], theirs["end_to_end"])]
    print(f"preprocessing vs decode alone, repeat by repeat: {', '.join(f'{100 * r:.0f} %' for r in floor)}; "
          f"median {100 * med(floor):.0f} %")
    print(f"end to end vs Python, repeat by repeat (each pair run back to back): "
          f"{', '.join(f'{r:.2f}x' for r in paired)}; median {med(paired):.2f}x")
    print(f"robust-eval end to end, last repeat: {meta['bound_detail']}")
    targets = [
        ("preprocessing per core >= 2x PIL", f"{pre / med(theirs['preprocess_per_core']):.2f}x",
         pre >= 2 * med(theirs["preprocess_per_core"])),
        ("preprocessing >= 90 % of decode alone", f"{100 * med(floor):.0f} %", med(floor) >= 0.9),
        ("end to end >= 1.5x Python", f"{med(paired):.2f}x", med(paired) >= 1.5),
        (f"end to end >= 90 % of the {limit:.1f}/s limit", f"{100 * med(ours['end_to_end']) / limit:.0f} %",
         med(ours["end_to_end"]) >= 0.9 * limit),
    ]
    if shared:
        took, budget, one = (med([s[i] for s in shared]) for i in range(3))
        print(f"{a.shared_models} models sharing decoded batches: {took:.1f} s; one model {one:.1f} s; budget "
              f"(one model + {a.shared_models - 1} x inference alone x 1.1) {budget:.1f} s")
        targets.append((f"{a.shared_models} models within the budget", f"{100 * took / budget:.0f} % of it",
                        took <= budget))
    if a.memory:
        figures = memory_figures(a.binary, paths, a.card, [len(paths), a.memory], a.batch_size, a.threads)
        (n1, m1, _), (n2, m2, _) = figures
        print(f"peak memory: {n1} images {m1:.0f} MB, {n2} images {m2:.0f} MB")
        targets.append((f"peak memory for {n2} images within 5 % of {n1}", f"{100 * (m2 / m1 - 1):+.1f} %",
                        abs(m2 / m1 - 1) <= 0.05))
    print("targets:")
    for name, figure, met in targets:
        print(f"  {name:<50}{figure:>12}  {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
