"""Peak memory of `robust-eval run` against the number of models in one preprocessing group, with
and without --memory-budget, and the time waves cost.

Each row runs the real binary on N copies (hard links) of one model, all with the same
preprocessing, over the first --limit images of a folder, and reads the child's peak resident set
from the kernel (os.wait4's ru_maxrss): the figure the OOM killer and a scheduler's memory limit
see. The waves and the estimate are the ones the run itself reports.

  .venv/bin/python scripts/bench_memory.py --images ../shared/reference/imagenet-sample \\
      --onnx ../shared/reference/models/efficientnet_lite0.onnx --copies 1,10,30 --budgets none,2GB

Card settings (--crop, --resize, --interpolation, --mean, --std) default to EfficientNet-Lite0's.
"none" runs with a budget too large to bind (one pass, the behaviour before budgets).

For each model count, every budgeted run's results are compared with the unbudgeted one ("none"
must be among --budgets for that): evals.csv less its timing columns (seconds, images_per_s), and
every predictions file byte for byte. The table's last column says "identical" or what differs;
a difference also makes the script exit 1, after the table.
"""
import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, help="folder of images (e.g. the ImageNet sample)")
    p.add_argument("--onnx", required=True, help="the model copied N times")
    p.add_argument("--copies", default="1,10,30", help="comma-separated model counts")
    p.add_argument("--budgets", default="none", help="comma-separated --memory-budget values, or none")
    p.add_argument("--limit", type=int, default=200, help="images evaluated")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--extra", default="", help="more `run` arguments, space-separated")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--interpolation", default="bicubic")
    p.add_argument("--mean", default="0.49803922, 0.49803922, 0.49803922")
    p.add_argument("--std", default="0.50196078, 0.50196078, 0.50196078")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "robust-eval"))
    return p.parse_args()


def make_suite(work, images, limit):
    files = sorted(f for f in os.listdir(images) if f.lower().endswith((".jpeg", ".jpg", ".png")))[:limit]
    with open(os.path.join(work, "bench.csv"), "w") as f:
        f.write("path,label\n")
        for name in files:
            f.write('"{}",0\n'.format(os.path.abspath(os.path.join(images, name)).replace('"', '""')))
    with open(os.path.join(work, "bench.toml"), "w") as f:
        f.write('name = "bench"\nid = "bench"\n[datasets.bench]\nmanifest = "bench.csv"\nscoring = "all-classes"\n')
    return len(files)


def make_models(work, args, count):
    folder = os.path.join(work, f"models-{count}")
    os.makedirs(folder)
    for i in range(count):
        name = f"copy-{i:03d}"
        onnx = os.path.join(folder, name + ".onnx")
        try:
            os.link(os.path.abspath(args.onnx), onnx)
        except OSError:
            subprocess.run(["cp", args.onnx, onnx], check=True)
        with open(os.path.join(folder, name + ".toml"), "w") as f:
            f.write(
                f'name = "{name}"\nonnx = "{name}.onnx"\ngroup = "standard"\n[preprocess]\n'
                f'resize = {args.resize}\ncrop = {args.crop}\ninterpolation = "{args.interpolation}"\n'
                f"mean = [{args.mean}]\nstd = [{args.std}]\n[output]\nnum_classes = 1000\n"
            )
    return folder


def run_measured(argv):
    """Run argv; return (exit status, seconds, peak RSS in MB, stderr)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    return child.returncode, seconds, usage.ru_maxrss / 1024, text


TIMINGS = ("seconds", "images_per_s")


def evals_without_timings(out):
    """evals.csv's rows, the timing columns left out (they differ between any two runs)."""
    with open(os.path.join(out, "evals.csv"), newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    missing = [c for c in TIMINGS if c not in header]
    if missing:
        sys.exit(f"{out}/evals.csv has no column {', '.join(missing)}: {header}")
    keep = [i for i, c in enumerate(header) if c not in TIMINGS]
    return [[r[i] for i in keep] for r in rows]


def files_under(folder):
    found = {}
    for top, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(top, name)
            found[os.path.relpath(path, folder)] = path
    return found


def compare_results(reference, other):
    """'identical', or the first difference between two run folders' results."""
    if evals_without_timings(reference) != evals_without_timings(other):
        return "evals.csv differs (timings aside)"
    a, b = files_under(os.path.join(reference, "predictions")), files_under(os.path.join(other, "predictions"))
    if sorted(a) != sorted(b):
        return f"predictions files differ: {sorted(set(a) ^ set(b))[:3]}"
    for rel in sorted(a):
        with open(a[rel], "rb") as x, open(b[rel], "rb") as y:
            if x.read() != y.read():
                return f"predictions/{rel} differs"
    return f"identical ({len(a)} predictions files)"


def main():
    args = parse_args()
    counts = [int(c) for c in args.copies.split(",")]
    # The unbudgeted run first: it is what the others are compared with.
    budgets = sorted(args.budgets.split(","), key=lambda b: b != "none")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        images = make_suite(work, args.images, args.limit)
        size_mb = os.path.getsize(args.onnx) / 2**20
        print(f"model {os.path.basename(args.onnx)} ({size_mb:.1f} MB) x N, {images} images, "
              f"batch {args.batch_size}, {args.threads} threads", flush=True)
        for count in counts:
            models = make_models(work, args, count)
            for budget in budgets:
                out = os.path.join(work, f"out-{count}-{budget}")
                argv = [args.binary, "run", "--suite", os.path.join(work, "bench.toml"),
                        "--data-root", work, "--models", models, "--out", out, "--provider", "cpu",
                        # plain, not none: `none` also silences the line naming the waves.
                        "--progress", "plain", "--batch-size", str(args.batch_size),
                        "--threads", str(args.threads),
                        "--memory-budget", "1TB" if budget == "none" else budget]
                argv += args.extra.split()
                code, seconds, peak, stderr = run_measured(argv)
                if code != 0:
                    sys.exit(f"run failed ({code}) for {count} models, budget {budget}:\n{stderr}")
                found = re.search(r"run in (\d+) waves", stderr)
                waves = int(found.group(1)) if found else 1
                reference = os.path.join(work, f"out-{count}-none")
                if budget == "none":
                    same = "(reference)"
                elif os.path.isdir(reference):
                    same = compare_results(reference, out)
                else:
                    same = "not compared: no unbudgeted run"
                rows.append((count, budget, waves, peak, seconds, same))
                print(f"  {count} models, budget {budget}: {waves} wave(s), peak {peak:.0f} MB, {seconds:.1f} s; "
                      f"results {same}", file=sys.stderr, flush=True)
            # Each count's folders go once compared: 100 models' predictions add up.
            for budget in budgets:
                shutil.rmtree(os.path.join(work, f"out-{count}-{budget}"), ignore_errors=True)
            shutil.rmtree(models)
    print()
    print("| models | --memory-budget | waves | peak RSS | MB per model over one | wall time | results against none |")
    print("|---:|---|---:|---:|---:|---:|---|")
    base = {b: p for c, b, _, p, _, _ in rows if c == counts[0]}
    for count, budget, waves, peak, seconds, same in rows:
        extra = (peak - base[budget]) / (count - counts[0]) if count > counts[0] else float("nan")
        per = "" if extra != extra else f"{extra:.1f}"
        print(f"| {count} | {budget} | {waves} | {peak:.0f} MB | {per} | {seconds:.1f} s | {same} |")
    if any(not same.startswith(("identical", "(reference)", "not compared")) for *_, same in rows):
        sys.exit("bench_memory: a budgeted run's results differ from the unbudgeted run's")


if __name__ == "__main__":
    main()
