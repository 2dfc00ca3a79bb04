"""The reference Python pipeline the tests hold robust-eval to: PIL decode and convert("RGB"),
torchvision's Resize (shorter side, PIL antialiased filter) and CenterCrop, ToTensor, Normalize,
then ONNX Runtime. Written without torch so it runs anywhere Pillow, numpy and onnxruntime do;
the resize and crop arithmetic is torchvision's (see resized_dims / center_offset).

  crops    LIST OUT --resize R --crop C --interpolation I [--border B]
           write each image's uint8 RGB crop (C*C*3 bytes, HWC) to OUT, concatenated
  predict  MANIFEST ONNX OUT --resize R --crop C --interpolation I --mean m m m --std s s s
           write OUT as CSV index,top1 (argmax over all logits)
  decoded  LIST OUT
           write each image's Image.open(p).convert("RGB") as a line "WIDTH HEIGHT SHA256-OF-PIXELS"
  odd      OUT_DIR SOURCE_JPEG...
           write images in PIL's odd modes (L, LA, P, P+transparency, RGBA, CMYK JPEG, L JPEG, I;16)
  recoded  OUT_DIR SOURCE_JPEG...
           write each image again as JPEGs of other kinds: baseline and progressive, 4:4:4, 4:2:2
           and 4:2:0 chroma subsampling, odd sizes (not multiples of the 8- or 16-pixel iMCU)
  synthetic OUT_DIR
           write photo-like RGB sources (gradients, stripes, hard edges, noise) as PNG at odd sizes
           (333x251, 97x513, 17x9, 1x1): the tests' own images where the reference is absent
  made     OUT_DIR SOURCE...
           write each source as JPEGs of every kind PIL's libjpeg writes: baseline and
           progressive at 4:4:4, 4:2:2 and 4:2:0, greyscale, CMYK, and with an EXIF block whose
           orientation tag says "rotate 90" (convert("RGB") ignores it)
  c_like   OUT_DIR SOURCE...
           write each source as ImageNet-C's files are made (make_imagenet_c.py: Resize(256),
           CenterCrop(224), saved as JPEG quality 85): 224x224 JPEGs
  center   LIST OUT --crop C
           write each image's torchvision CenterCrop(C) alone (Hendrycks' ImageNet-C test.py
           transform, before ToTensor), uint8 RGB HWC, concatenated
"""
import argparse
import csv
import os
import sys

import numpy as np
from PIL import Image

FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


def resized_dims(w, h, size):
    # torchvision.transforms.functional._compute_resized_output_size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def transform_u8(path, resize, crop, interpolation, border=0):
    img = Image.open(path).convert("RGB")
    if border:
        w, h = img.size
        img = img.crop((border, border, w - border, h - border))
    nw, nh = resized_dims(*img.size, resize)
    img = img.resize((nw, nh), FILTERS[interpolation])
    left = int(round((nw - crop) / 2.0))
    top = int(round((nh - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    return np.asarray(img, dtype=np.uint8)


def cmd_crops(a):
    paths = [line.rstrip("\n") for line in open(a.list, encoding="utf-8") if line.strip()]
    with open(a.out, "wb") as out:
        for p in paths:
            out.write(transform_u8(p, a.resize, a.crop, a.interpolation, a.border).tobytes())


def cmd_decoded(a):
    import hashlib

    paths = [line.rstrip("\n") for line in open(a.list, encoding="utf-8") if line.strip()]
    with open(a.out, "w") as out:
        for p in paths:
            img = Image.open(p).convert("RGB")
            digest = hashlib.sha256(img.tobytes()).hexdigest()
            out.write(f"{img.width} {img.height} {digest}\n")


def cmd_predict(a):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("REF_THREADS", "2"))
    session = ort.InferenceSession(a.onnx, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    mean = np.array(a.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.array(a.std, dtype=np.float32).reshape(3, 1, 1)
    base = os.path.dirname(a.manifest)
    with open(a.manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    results = []
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        batch = []
        for r in chunk:
            p = r["path"] if os.path.isabs(r["path"]) else os.path.join(base, r["path"])
            x = transform_u8(p, a.resize, a.crop, a.interpolation).astype(np.float32) / 255.0
            batch.append((x.transpose(2, 0, 1) - mean) / std)
        logits = session.run(None, {name: np.stack(batch).astype(np.float32)})[0]
        results.extend(int(i) for i in logits.argmax(axis=1))
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "top1"])
        for i, t in enumerate(results):
            w.writerow([i, t])


def cmd_odd(a):
    os.makedirs(a.out_dir, exist_ok=True)
    for n, src in enumerate(a.sources):
        rgb = Image.open(src).convert("RGB")
        stem = os.path.join(a.out_dir, f"{n:02d}")
        rgb.convert("L").save(stem + "_L.png")
        rgb.convert("LA").save(stem + "_LA.png")
        rgb.convert("P", palette=Image.ADAPTIVE, colors=64).save(stem + "_P.png")
        p = rgb.convert("P", palette=Image.ADAPTIVE, colors=32)
        p.info["transparency"] = 0
        p.save(stem + "_Ptrns.png", transparency=0)
        rgba = rgb.copy()
        rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
        rgba.save(stem + "_RGBA.png")
        rgb.convert("CMYK").save(stem + "_CMYK.jpg", quality=92)
        rgb.convert("L").save(stem + "_L.jpg", quality=92)
        arr = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 3).astype(np.uint16)  # 0..765: PIL clips at 255
        Image.fromarray(arr).save(stem + "_I16.png")
        rgb.save(stem + "_RGB.bmp")
        rgb.save(stem + "_RGB.webp", lossless=True)


def cmd_recoded(a):
    os.makedirs(a.out_dir, exist_ok=True)
    for n, src in enumerate(a.sources):
        rgb = Image.open(src).convert("RGB")
        w, h = rgb.size
        odd = rgb.crop((0, 0, w - 1 - n % 7, h - 3 - n % 5))
        for subsampling, name in ((0, "444"), (1, "422"), (2, "420")):
            stem = os.path.join(a.out_dir, f"{n:02d}_{name}")
            odd.save(stem + "_baseline.jpg", quality=90, subsampling=subsampling)
            odd.save(stem + "_progressive.jpg", quality=90, subsampling=subsampling, progressive=True)


SYNTHETIC_SIZES = ((333, 251), (97, 513), (17, 9), (1, 1))


def synthetic(w, h, seed):
    """A photo-like image: smooth gradients and stripes, two hard-edged shapes, sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    red = 128 + 100 * np.sin(x / (5 + seed)) * np.cos(y / 11)
    green = 255 * x / max(w - 1, 1)
    blue = 255 * y / max(h - 1, 1)
    img = np.stack([red, green, blue], axis=-1)
    img[h // 4 : h // 2, w // 5 : w // 2] = (20, 200, 40)
    disc = (x - 0.7 * w) ** 2 + (y - 0.6 * h) ** 2 < (0.2 * min(w, h)) ** 2
    img[disc] = (240, 30, 90)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def cmd_synthetic(a):
    os.makedirs(a.out_dir, exist_ok=True)
    for n, (w, h) in enumerate(SYNTHETIC_SIZES):
        synthetic(w, h, n).save(os.path.join(a.out_dir, f"{n:02d}_{w}x{h}.png"))


def cmd_made(a):
    os.makedirs(a.out_dir, exist_ok=True)
    for n, src in enumerate(a.sources):
        rgb = Image.open(src).convert("RGB")
        stem = os.path.join(a.out_dir, f"{n:02d}")
        for subsampling, name in ((0, "444"), (1, "422"), (2, "420")):
            rgb.save(f"{stem}_{name}_baseline.jpg", quality=90, subsampling=subsampling)
            rgb.save(f"{stem}_{name}_progressive.jpg", quality=90, subsampling=subsampling, progressive=True)
        for mode in ("L", "CMYK"):
            rgb.convert(mode).save(f"{stem}_{mode}_baseline.jpg", quality=92)
            rgb.convert(mode).save(f"{stem}_{mode}_progressive.jpg", quality=92, progressive=True)
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: the stored pixels are to be rotated 90 degrees clockwise
        exif[0x010F] = "robust-eval tests"  # Make
        rgb.save(f"{stem}_exif_orientation6.jpg", quality=90, exif=exif)
        rgb.save(f"{stem}_exif_orientation6_progressive.jpg", quality=90, exif=exif, progressive=True)


def cmd_c_like(a):
    os.makedirs(a.out_dir, exist_ok=True)
    for n, src in enumerate(a.sources):
        img = Image.open(src).convert("RGB")
        nw, nh = resized_dims(*img.size, 256)
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = int(round((nw - 224) / 2.0)), int(round((nh - 224) / 2.0))
        img = img.crop((left, top, left + 224, top + 224))
        img.save(os.path.join(a.out_dir, f"{n:02d}_c_like.JPEG"), quality=85)


def cmd_center(a):
    paths = [line.rstrip("\n") for line in open(a.list, encoding="utf-8") if line.strip()]
    with open(a.out, "wb") as out:
        for p in paths:
            img = Image.open(p).convert("RGB")
            w, h = img.size
            left, top = int(round((w - a.crop) / 2.0)), int(round((h - a.crop) / 2.0))
            crop = img.crop((left, top, left + a.crop, top + a.crop))
            out.write(np.asarray(crop, dtype=np.uint8).tobytes())


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crops")
    c.add_argument("list")
    c.add_argument("out")
    p = sub.add_parser("predict")
    p.add_argument("manifest")
    p.add_argument("onnx")
    p.add_argument("out")
    p.add_argument("--mean", type=float, nargs=3, required=True)
    p.add_argument("--std", type=float, nargs=3, required=True)
    for s in (c, p):
        s.add_argument("--resize", type=int, required=True)
        s.add_argument("--crop", type=int, required=True)
        s.add_argument("--interpolation", default="bilinear", choices=sorted(FILTERS))
        s.add_argument("--border", type=int, default=0)
    d = sub.add_parser("decoded")
    d.add_argument("list")
    d.add_argument("out")
    o = sub.add_parser("odd")
    o.add_argument("out_dir")
    o.add_argument("sources", nargs="+")
    r = sub.add_parser("recoded")
    r.add_argument("out_dir")
    r.add_argument("sources", nargs="+")
    y = sub.add_parser("synthetic")
    y.add_argument("out_dir")
    m = sub.add_parser("made")
    m.add_argument("out_dir")
    m.add_argument("sources", nargs="+")
    cl = sub.add_parser("c_like")
    cl.add_argument("out_dir")
    cl.add_argument("sources", nargs="+")
    ce = sub.add_parser("center")
    ce.add_argument("list")
    ce.add_argument("out")
    ce.add_argument("--crop", type=int, required=True)
    a = ap.parse_args()
    commands = {"crops": cmd_crops, "decoded": cmd_decoded, "predict": cmd_predict, "odd": cmd_odd,
                "recoded": cmd_recoded, "synthetic": cmd_synthetic, "made": cmd_made,
                "c_like": cmd_c_like, "center": cmd_center}
    commands[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
