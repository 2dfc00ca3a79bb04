#!/usr/bin/env python3
"""Labelled shifts of real ImageNet images, made with Pillow, to validate `robust-eval estimate`.

Usage: scripts/make_validation_shifts.py REFERENCE OUT [--images N]

REFERENCE is the shared reference folder (imagenet-sample/, models/); OUT gets

  id/manifest.csv                    the first N sample JPEGs as they are (absolute paths)
  <shift>/*.png, <shift>/manifest.csv  the same images, each shifted one way:
      blur       Gaussian blur, radius 3 px
      contrast   contrast cut to 30 % (ImageEnhance.Contrast 0.3)
      jpeg       re-encoded as JPEG at quality 8 (stored as PNG so nothing else is lost)
      pixelate   down to a quarter of each side (box filter) and back up (nearest)
  models/efficientnet_lite{0,1,2}.toml  robust-eval model cards for the reference models,
                                     with the preprocessing their provenance files record
  suite.toml                         the suite over all of it (ID `id`)

Then:  robust-eval run --suite OUT/suite.toml --out OUT/results
and docs/confidence.md's table is scripts/estimate_mae.py OUT/results/estimates.csv.
Each shift is a fixed function of the image (no randomness), so the files are reproducible.
"""
import argparse
import csv
import io
import pathlib

from PIL import Image, ImageEnhance, ImageFilter

MODELS = [("efficientnet_lite0", 256, 224), ("efficientnet_lite1", 272, 240), ("efficientnet_lite2", 292, 260)]


def blur(im):
    return im.filter(ImageFilter.GaussianBlur(3))


def contrast(im):
    return ImageEnhance.Contrast(im).enhance(0.3)


def jpeg(im):
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=8)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def pixelate(im):
    w, h = im.size
    small = im.resize((max(1, w // 4), max(1, h // 4)), Image.BOX)
    return small.resize((w, h), Image.NEAREST)


SHIFTS = {"blur": blur, "contrast": contrast, "jpeg": jpeg, "pixelate": pixelate}


def write_manifest(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    sample = args.reference.resolve() / "imagenet-sample"
    files = sorted(p for p in sample.iterdir() if p.suffix == ".JPEG")[: args.images]
    out = args.out.resolve()
    (out / "id").mkdir(parents=True, exist_ok=True)
    write_manifest(out / "id" / "manifest.csv", [(str(p), p.name[:9]) for p in files])
    for name, shift in SHIFTS.items():
        d = out / name
        d.mkdir(exist_ok=True)
        rows = []
        for p in files:
            target = d / (p.stem.replace("'", "") + ".png")
            if not target.exists():
                # Written beside and renamed, so an interrupted run leaves no truncated image.
                partial = target.with_suffix(".partial.png")
                with Image.open(p) as im:
                    shift(im.convert("RGB")).save(partial)
                partial.replace(target)
            rows.append((str(target), p.name[:9]))
        write_manifest(d / "manifest.csv", rows)
    models = out / "models"
    models.mkdir(exist_ok=True)
    mean, std = 127 / 255, 128 / 255
    for name, resize, crop in MODELS:
        onnx = args.reference.resolve() / "models" / f"{name}.onnx"
        (models / f"{name}.toml").write_text(
            f'name = "{name}"\nonnx = "{onnx}"\ngroup = "standard"\n[preprocess]\nresize = {resize}\ncrop = {crop}\n'
            f'interpolation = "bicubic"\nmean = [{mean}, {mean}, {mean}]\nstd = [{std}, {std}, {std}]\n'
        )
    suite = [f'name = "validation"\nid = "id"\nmodels = "{models}"\n',
             f'[datasets.id]\nmanifest = "{out / "id" / "manifest.csv"}"\nscoring = "imagenet-1k"\n']
    for name in SHIFTS:
        suite.append(f'[datasets.{name}]\nmanifest = "{out / name / "manifest.csv"}"\nscoring = "imagenet-1k"\n')
    (out / "suite.toml").write_text("".join(suite))


if __name__ == "__main__":
    main()
