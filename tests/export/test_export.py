"""Tests of the export scripts (scripts/export_timm.py, export_torchvision.py, export_open_clip.py)
against the real robust-eval binary. Run by scripts/test_export.sh, which installs
scripts/requirements-export.txt (torch, timm, open_clip, ...) into .venv-export: this tier is not
part of scripts/test.sh.

Each script exports a small, randomly initialised model into a temporary folder; the test checks
the card's values, that `robust-eval models --json` finds the card valid, and, end to end, that
`robust-eval run` on a few PNG images reports the same top-5 as PyTorch on the same preprocessed
input. The images are resize x resize pixels, so robust-eval's resize is the identity and only the
center crop and normalisation matter, with no resampling differences to allow for. One test puts a
zero-shot OpenCLIP model and a timm classifier through one run and onto one accuracy-on-the-line
chart (fit and plot against the published timm cloud).

No network is used: weights are random, saved to a file and passed with --weights (so the test holds
the same PyTorch model), or --random-init.

Environment: ROBUST_EVAL_BIN (default target/release/robust-eval); ORT_DYLIB_PATH (default: the
libonnxruntime of this Python's onnxruntime wheel).
"""
import csv
import glob
import html
import json
import math
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
BIN = os.environ.get("ROBUST_EVAL_BIN") or os.path.join(ROOT, "target", "release", "robust-eval")
REQUIREMENTS_HINT = "pip install -r scripts/requirements-export.txt"
PIL_FILTERS = {
    "nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING,
}
N_IMAGES = 8


def script(name, *args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args], capture_output=True, text=True,
                       env=e, cwd=ROOT, timeout=600)
    if check and p.returncode != 0:
        pytest.fail(f"{name} {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def robust_eval_env():
    env = dict(os.environ)
    if not env.get("ORT_DYLIB_PATH"):
        import onnxruntime

        libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
        if libs:
            env["ORT_DYLIB_PATH"] = libs[0]
    return env


def robust_eval(*args, check=True):
    if not os.path.isfile(BIN):
        pytest.fail(f"no robust-eval binary at {BIN}: cargo build --release, or set ROBUST_EVAL_BIN")
    p = subprocess.run([BIN, *args], capture_output=True, text=True, env=robust_eval_env(), timeout=600)
    if check and p.returncode != 0:
        pytest.fail(f"robust-eval {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def read_card(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def assert_models_valid(models_dir, names):
    """`robust-eval models --models DIR --json`: every card valid, exit 0."""
    p = robust_eval("models", "--models", models_dir, "--json", check=False)
    assert p.returncode == 0, f"robust-eval models exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    report = json.loads(p.stdout)
    found = {m["name"]: m for m in report["models"]}
    for name in names:
        assert name in found, f"{name} not listed by robust-eval models: {sorted(found)}"
        m = found[name]
        assert m["valid"] is True, f"{name}: {m.get('problems')}"
        assert not m.get("problems"), m.get("problems")


def make_images(folder, size, seed):
    """N_IMAGES size x size RGB PNGs with some structure (gradients, blocks, noise) and a manifest."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    for i in range(N_IMAGES):
        base = np.stack([
            np.sin(2 * math.pi * (xx * rng.uniform(0.5, 4) + rng.uniform())),
            np.cos(2 * math.pi * (yy * rng.uniform(0.5, 4) + rng.uniform())),
            np.sin(2 * math.pi * ((xx + yy) * rng.uniform(0.5, 3))),
        ], axis=-1)
        img = 127.5 + 80 * base + rng.normal(0, 25, (size, size, 3))
        y0, x0 = rng.integers(0, size // 2, 2)
        img[y0:y0 + size // 3, x0:x0 + size // 3] = rng.uniform(0, 255, 3)
        name = f"img{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(os.path.join(folder, name))
        rows.append((name, int(rng.integers(0, 1000))))
    with open(os.path.join(folder, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    with open(os.path.join(folder, "suite.toml"), "w") as f:
        f.write('name = "t"\nid = "imgs"\n[datasets.imgs]\nmanifest = "manifest.csv"\nscoring = "imagenet-1k"\n')
    return [os.path.join(folder, r[0]) for r in rows]


def preprocess(path, pp):
    """The card's pipeline in PIL + numpy: shorter side to resize, center crop, /255, normalise; NCHW."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    r, c = pp["resize"], pp["crop"]
    nw, nh = (r, int(r * h / w)) if w <= h else (int(r * w / h), r)
    img = img.resize((nw, nh), PIL_FILTERS[pp["interpolation"]])
    left, top = int(round((nw - c) / 2.0)), int(round((nh - c) / 2.0))
    x = np.asarray(img.crop((left, top, left + c, top + c)), dtype=np.float32) / 255.0
    x = (x - np.array(pp["mean"], dtype=np.float32)) / np.array(pp["std"], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def read_predictions(path):
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    for col in ("index", "path", "label", "target", "top5", "correct", "correct_top5"):
        assert col in t, f"{path} lacks column {col}: {sorted(t)}"
    return t


def assert_same_top5(pred_path, images, logits):
    """robust-eval's top-5 equals PyTorch's wherever the logit gaps around a rank make it well defined."""
    t = read_predictions(pred_path)
    assert len(t["index"]) == len(images)
    order = np.argsort(t["index"])
    checked = top1_checked = 0
    for row, img in zip(order, images):
        assert os.path.basename(t["path"][row]) == os.path.basename(img)
        got = list(t["top5"][row])
        assert len(got) == 5
        s = logits[t["index"][row]].astype(np.float64)
        idx = np.argsort(-s, kind="stable")
        ss = s[idx]
        eps = 1e-4 * max(1.0, float(np.abs(s).max()))
        for k in range(5):
            if (k == 0 or ss[k - 1] - ss[k] > eps) and ss[k] - ss[k + 1] > eps:
                assert got[k] == int(idx[k]), (
                    f"{img}: rank {k}: robust-eval {got} vs PyTorch {idx[:5].tolist()} (logits {ss[:6]})")
                checked += 1
                top1_checked += k == 0
        assert bool(t["correct"][row]) == (got[0] == t["target"][row])
    distinct = len({int(np.argmax(row)) for row in logits})
    assert distinct >= len(images) // 2, f"degenerate model: {distinct} distinct top-1 over {len(images)} images"
    assert top1_checked >= len(images) // 2, f"top-1 comparable on only {top1_checked} of {len(images)} images"
    assert checked >= 2 * len(images), f"only {checked} ranks were comparable"


def spread_head(features, linear, images, pp, seed):
    """Random CNNs give nearly the same top-5 for every input (the classifier sees a large common
    feature component). Re-draw the final linear layer on features centred and scaled over the test
    images, so each image gets its own, well separated top-5 and a wrong crop or normalisation in
    robust-eval shows up. The model is just other weights afterwards: it is saved and exported."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        f = features(torch.stack([preprocess(p, pp) for p in images]))
        mu, sd = f.mean(0), f.std(0) + 1e-6
        w = torch.randn(linear.out_features, f.shape[1], generator=g) / math.sqrt(f.shape[1]) / sd
        linear.weight.copy_(w)
        linear.bias.copy_(-(w @ mu))


def spread_clip(model, images, pp):
    """The same for a random CLIP image tower (every image lands on one class otherwise): rescale its
    final LayerNorm so the pooled token is centred and unit-variance over the test images."""
    ln = model.visual.ln_post
    seen = []
    hook = ln.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model.encode_image(torch.stack([preprocess(p, pp) for p in images]))
        hook.remove()
        out = seen[-1]
        pooled = out[:, 0] if out.dim() == 3 else out
        mu, sd = pooled.mean(0), pooled.std(0) + 1e-6
        ln.weight.copy_(ln.weight / sd)
        ln.bias.copy_((ln.bias - mu) / sd)


def run_end_to_end(tmp, models_dir, name, pp, forward, images):
    """robust-eval run over images (resize x resize), top-5 against forward(batch) -> logits."""
    data = os.path.dirname(images[0])
    out = os.path.join(tmp, "out")
    robust_eval("run", "--suite", os.path.join(data, "suite.toml"), "--models", models_dir, "--out", out,
                "--data-root", data, "--progress", "plain", "--provider", "cpu", "--threads", "2")
    with torch.no_grad():
        logits = forward(torch.stack([preprocess(p, pp) for p in images])).numpy()
    assert_same_top5(os.path.join(out, "predictions", name, "imgs.parquet"), images, logits)


# ---------------------------------------------------------------------------------------------- all

@pytest.mark.parametrize("name", ["export_timm.py", "export_torchvision.py", "export_open_clip.py"])
def test_missing_packages_one_line_and_exit_2(name, tmp_path):
    p = subprocess.run([sys.executable, "-S", os.path.join(SCRIPTS, name), "m", "x", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env={"PATH": os.environ.get("PATH", "")})
    assert p.returncode == 2, p.stderr
    assert REQUIREMENTS_HINT in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


# --------------------------------------------------------------------------------------------- timm

def test_timm_group_suggestions():
    sys.path.insert(0, SCRIPTS)
    try:
        import export_timm
    finally:
        sys.path.remove(SCRIPTS)
    expect = {
        "resnet50.a1_in1k": "standard",
        "resnet18.tv_in1k": "standard",
        "deit_base_distilled_patch16_224.fb_in1k": "standard",
        "efficientnet_b0.ra_in1k": "standard",
        "vit_base_patch16_224.augreg2_in21k_ft_in1k": "more-data",
        "convnext_base.fb_in22k_ft_in1k": "more-data",
        "convnext_tiny.in12k_ft_in1k": "more-data",
        "resnet50.fb_swsl_ig1b_ft_in1k": "more-data",
        "resnet50.fb_ssl_yfcc100m_ft_in1k": "more-data",
        "resnext101_32x8d.fb_wsl_ig1b_ft_in1k": "more-data",
        "vit_base_patch16_clip_224.openai_ft_in1k": "more-data",
        "vit_base_patch16_clip_224.laion2b_ft_in1k": "more-data",
        "tf_efficientnet_b0.ns_jft_in1k": "more-data",
        "regnety_160.swag_ft_in1k": "more-data",
        "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k": "more-data",
        "inception_resnet_v2.tf_ens_adv_in1k": "robust-intervention",
    }
    got = {n: export_timm.suggest_group(n)[0] for n in expect}
    assert got == expect


def test_timm_random_init_card(tmp_path):
    """test_vit.r160_in1k: input 160, crop_pct 0.95, bicubic, mean/std 0.5 -> resize floor(160/0.95) = 168."""
    out = str(tmp_path / "models")
    p = script("export_timm.py", "test_vit.r160_in1k", "--random-init", "--out", out)
    assert "max |onnx - torch|" in p.stdout
    card = read_card(os.path.join(out, "test_vit.r160_in1k.toml"))
    assert card["name"] == "test_vit.r160_in1k"
    assert card["onnx"] == "test_vit.r160_in1k.onnx" and os.path.isfile(os.path.join(out, card["onnx"]))
    assert card["group"] == "standard"
    assert card["preprocess"] == {"resize": 168, "crop": 160, "interpolation": "bicubic",
                                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    assert card["input"] == {"name": "input", "layout": "nchw", "channels": "rgb"}
    assert card["output"] == {"name": "logits", "num_classes": 1000, "offset": 0}
    assert_models_valid(out, ["test_vit.r160_in1k"])


def test_timm_download_failure_says_weights(tmp_path):
    p = script("export_timm.py", "resnet18.a1_in1k", "--out", str(tmp_path), env={"HF_HUB_OFFLINE": "1"}, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--weights FILE" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "resnet18.a1_in1k.toml")


def test_timm_weights_file_end_to_end(tmp_path):
    """resnet18.tv_in1k (crop 224, crop_pct 0.875 -> resize 256, bilinear) with weights from a file."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18.tv_in1k", pretrained=False).eval()
    expected = {"resize": 256, "crop": 224, "interpolation": "bilinear",
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    images = make_images(str(tmp_path / "data"), expected["resize"], seed=1)
    spread_head(lambda x: model.forward_head(model.forward_features(x), pre_logits=True), model.get_classifier(),
                images, expected, seed=1)
    weights = str(tmp_path / "resnet18.safetensors")
    from safetensors.torch import save_file

    save_file(model.state_dict(), weights)
    out = str(tmp_path / "models")
    script("export_timm.py", "resnet18.tv_in1k", "--weights", weights, "--out", out)
    card = read_card(os.path.join(out, "resnet18.tv_in1k.toml"))
    assert card["preprocess"] == expected
    assert card["output"]["num_classes"] == 1000 and card["output"]["offset"] == 0
    assert card["group"] == "standard"
    assert_models_valid(out, ["resnet18.tv_in1k"])
    run_end_to_end(str(tmp_path), out, "resnet18.tv_in1k", card["preprocess"], model, images)


# -------------------------------------------------------------------------------------- torchvision

def test_torchvision_weights_file_end_to_end(tmp_path):
    """resnet18 with IMAGENET1K_V1's transforms (resize 256, crop 224, bilinear), weights from a file."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    expected = {"resize": 256, "crop": 224, "interpolation": "bilinear",
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    images = make_images(str(tmp_path / "data"), expected["resize"], seed=2)
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    spread_head(lambda x: trunk(x).flatten(1), model.fc, images, expected, seed=2)
    weights = str(tmp_path / "resnet18.pth")
    torch.save(model.state_dict(), weights)
    out = str(tmp_path / "models")
    script("export_torchvision.py", "resnet18", "--weights-enum", "IMAGENET1K_V1", "--weights", weights, "--out", out)
    name = "resnet18.imagenet1k_v1"
    card = read_card(os.path.join(out, name + ".toml"))
    assert card["name"] == name and card["group"] == "standard"
    assert card["preprocess"] == expected
    assert card["input"]["name"] == "input" and card["output"] == {"name": "logits", "num_classes": 1000, "offset": 0}
    assert_models_valid(out, [name])
    run_end_to_end(str(tmp_path), out, name, card["preprocess"], model, images)


def test_torchvision_random_init_card(tmp_path):
    """mobilenet_v3_small with IMAGENET1K_V1 (resize 256, crop 224): --random-init keeps the enum's preprocessing."""
    out = str(tmp_path / "models")
    script("export_torchvision.py", "mobilenet_v3_small", "--weights-enum", "IMAGENET1K_V1", "--random-init",
           "--out", out)
    name = "mobilenet_v3_small.imagenet1k_v1"
    card = read_card(os.path.join(out, name + ".toml"))
    assert (card["preprocess"]["resize"], card["preprocess"]["crop"]) == (256, 224)
    assert card["group"] == "standard"
    assert_models_valid(out, [name])
    p = script("export_torchvision.py", "mobilenet_v3_small", "--weights-enum", "NOPE", "--random-init", "--out", out,
               check=False)
    assert p.returncode == 2 and "IMAGENET1K_V1" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------------------- open_clip

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_open_clip_weights_file_end_to_end(tmp_path):
    """A tiny custom CLIP (--model-config): image tower, 80-template zero-shot head, card, and top-5
    through robust-eval's [head] against normalize(encode_image) @ head.T * scale in PyTorch."""
    import open_clip

    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test", pretrained=None).eval()
    images = make_images(str(tmp_path / "data"), 64, seed=3)
    spread_clip(model, images, {"resize": 64, "crop": 64, "interpolation": "bicubic",
                                "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD})
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    weights = str(tmp_path / "tiny.pt")
    torch.save(model.state_dict(), weights)
    out = str(tmp_path / "models")
    p = script("export_open_clip.py", "tiny-clip-test", "test", "--model-config", str(config), "--weights", weights,
               "--out", out, "--device", "cpu")
    assert "max |onnx - torch|" in p.stdout and "1000/1000 classes" in p.stdout
    name = "tiny-clip-test.test"
    card = read_card(os.path.join(out, name + ".toml"))
    assert card["name"] == name and card["group"] == "zero-shot"
    pp = card["preprocess"]
    assert pp == {"resize": 64, "crop": 64, "interpolation": "bicubic",
                  "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    assert card["input"] == {"name": "input", "layout": "nchw", "channels": "rgb"}
    assert card["output"] == {"name": "embedding", "num_classes": 1000, "offset": 0}
    assert card["head"]["kind"] == "zero-shot" and card["head"]["weights"] == name + ".head.npy"
    assert abs(card["head"]["scale"] - 100.0) < 1e-3

    head = np.load(os.path.join(out, card["head"]["weights"]))
    assert head.dtype == np.float32 and head.shape == (1000, 32) and head.flags["C_CONTIGUOUS"]
    assert np.allclose(np.linalg.norm(head, axis=1), 1.0, atol=1e-5)
    # two rows recomputed the long way: every template, normalise, average, normalise
    tokenizer = open_clip.get_tokenizer("tiny-clip-test")
    with torch.no_grad():
        for c in (0, 999):
            texts = [t(open_clip.IMAGENET_CLASSNAMES[c]) for t in open_clip.OPENAI_IMAGENET_TEMPLATES]
            assert len(texts) == 80
            e = model.encode_text(tokenizer(texts))
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(dim=0)
            m = (m / m.norm()).numpy()
            assert np.abs(head[c] - m).max() < 1e-5, c

    assert_models_valid(out, [name])
    head_t = torch.from_numpy(head)

    def forward(x):
        f = model.encode_image(x)
        return 100.0 * (f / f.norm(dim=-1, keepdim=True)) @ head_t.T

    run_end_to_end(str(tmp_path), out, name, pp, forward, images)


# ------------------------------------------------------------------------ zero-shot and fine-tuned

def make_shift(src, dst):
    """The shift set: every image of src as a mirrored, inverted edge drawing (a stand-in for
    ImageNet-Sketch), same labels, its own manifest."""
    from PIL import ImageFilter, ImageOps

    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "manifest.csv"), newline="") as f:
        rows = list(csv.reader(f))
    for name, _ in rows[1:]:
        img = ImageOps.grayscale(Image.open(os.path.join(src, name)))
        img = ImageOps.invert(ImageOps.mirror(img.filter(ImageFilter.FIND_EDGES)))
        img.convert("RGB").save(os.path.join(dst, name))
    with open(os.path.join(dst, "manifest.csv"), "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_zero_shot_and_fine_tuned_on_one_chart(tmp_path):
    """An OpenCLIP zero-shot model (group zero-shot) and a timm classifier (group standard), exported
    into one models folder, evaluated by one `run` on an ID set and a shift, and drawn on the same
    accuracy-on-the-line chart. Two models are too few to fit a line on (a fit needs 3 baseline
    models: `run` says so and still stores the evaluation), so `fit` and `plot` place them against
    the published timm cloud (--baseline-cloud timm), which is why the datasets carry the cloud's
    names: imagenet (ID) and imagenet-sketch (the shift)."""
    models = str(tmp_path / "models")
    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY_CLIP))
    script("export_open_clip.py", "tiny-clip-test", "test", "--model-config", str(config), "--random-init",
           "--out", models, "--device", "cpu")
    script("export_timm.py", "test_vit.r160_in1k", "--random-init", "--out", models)
    zero_shot, fine_tuned = "tiny-clip-test.test", "test_vit.r160_in1k"
    groups = {zero_shot: "zero-shot", fine_tuned: "standard"}
    for name, group in groups.items():
        assert read_card(os.path.join(models, name + ".toml"))["group"] == group
    assert_models_valid(models, list(groups))

    data = tmp_path / "data"
    make_images(str(data / "imagenet"), 168, seed=4)
    make_shift(str(data / "imagenet"), str(data / "imagenet-sketch"))
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "zero-shot-vs-fine-tuned"\nid = "imagenet"\n'
                     '[datasets.imagenet]\nmanifest = "imagenet/manifest.csv"\nscoring = "imagenet-1k"\n'
                     '[datasets.imagenet-sketch]\nmanifest = "imagenet-sketch/manifest.csv"\nscoring = "imagenet-1k"\n')
    out = str(tmp_path / "results")
    p = robust_eval("run", "--suite", str(suite), "--models", models, "--data-root", str(data), "--out", out,
                    "--progress", "plain", "--provider", "cpu", "--threads", "2")
    assert "a fit needs at least 3" in p.stderr, p.stderr

    with open(os.path.join(out, "evals.csv"), newline="") as f:
        evals = {(r["model"], r["dataset"]): r for r in csv.DictReader(f)}
    for name, group in groups.items():
        for dataset in ("imagenet", "imagenet-sketch"):
            row = evals.get((name, dataset))
            assert row is not None, f"no {dataset} row for {name}: {sorted(evals)}"
            assert row["group"] == group and int(row["n"]) == N_IMAGES, row

    robust_eval("fit", "--results", out, "--baseline-cloud", "timm")
    with open(os.path.join(out, "robustness.csv"), newline="") as f:
        placed = {(r["model"], r["group"]) for r in csv.DictReader(f) if r["shift"] == "imagenet-sketch"}
    assert placed == set(groups.items()), placed
    with open(os.path.join(out, "fit.json")) as f:
        (sketch,) = [s for s in json.load(f)["shifts"] if s["shift"] == "imagenet-sketch"]
    assert sketch["n"] > 100, "fitted on the timm cloud"

    robust_eval("plot", "--results", out, "--baseline-cloud", "timm", "--labels")
    with open(os.path.join(out, "plots", "imagenet-sketch.svg"), encoding="utf-8") as f:
        svg = f.read()
    assert svg.startswith("<svg")
    assert "published baselines" in [t[0] for t in svg_texts(svg)], "no legend entry for the timm cloud"
    assert_labelled_in_group_colours(svg, groups)
    assert os.path.getsize(os.path.join(out, "plots", "imagenet-sketch.png")) > 0


# How far src/analysis/plot.rs (label_places) may put a label from its point: its box's near
# edge at most 64 px off along each axis, so within 64·√2 px of the point.
LABEL_REACH = 64 * math.sqrt(2) + 1
GREY = "#969696"  # the published cloud's points


def svg_texts(svg):
    """Each <text> as (content, x, y, font size in px): plotters writes the top-left corner of a
    label (dy 0.76em) and font-size = size / 1.24."""
    found = []
    for attrs, body in re.findall(r"<text ([^>]*)>\s*(.*?)\s*</text>", svg, re.S):
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        found.append((html.unescape(body), float(a["x"]), float(a["y"]), float(a["font-size"]) * 1.24))
    return found


def svg_discs(svg):
    """Each filled <circle> as (cx, cy, fill)."""
    found = []
    for attrs in re.findall(r"<circle ([^>]*)/>", svg):
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        if a.get("fill", "none") != "none":
            found.append((float(a["cx"]), float(a["cy"]), a["fill"].upper()))
    return found


def distance_to_box(x, y, box):
    x0, y0, x1, y1 = box
    return math.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1))


def assert_labelled_in_group_colours(svg, groups):
    """Each model's name is written once on the chart, within reach of a point in its group's
    colour (the legend's), and the groups have colours of their own, not the cloud's grey.
    Models with equal accuracies share a point: then each label is near both colours."""
    texts = svg_texts(svg)
    discs = svg_discs(svg)
    legend = {}
    for group in set(groups.values()):
        entry = [t for t in texts if t[0] == group]
        assert len(entry) == 1, f"legend entry {group!r}: {entry}; texts {[t[0] for t in texts]}"
        _, x, y, size = entry[0]
        # Its marker: the disc nearest the entry's text, a few px to its left.
        marker = min(discs, key=lambda d: math.hypot(d[0] - x, d[1] - (y + size / 2)))
        assert math.hypot(marker[0] - x, marker[1] - (y + size / 2)) < 40, (group, marker, entry)
        legend[group] = marker
    colours = {marker[2] for marker in legend.values()}
    assert len(colours) == len(legend) and GREY not in colours, f"group colours {legend}"
    points = [d for d in discs if d not in legend.values() and d[2] != GREY]
    for name, group in groups.items():
        labels = [t for t in texts if t[0] == name]
        assert len(labels) == 1, f"{name} written {len(labels)} times: {[t[0] for t in texts]}"
        _, x, y, size = labels[0]
        # An upper bound on the label's box (plot.rs measures it at most 0.62 em a character + 2):
        # a larger box only brings the point nearer.
        box = (x, y, x + len(name) * size * 0.8 + 2, y + size + 2)
        near = [(px, py) for px, py, fill in points
                if fill == legend[group][2] and distance_to_box(px, py, box) <= LABEL_REACH]
        assert near, (f"{name}: no {group} point ({legend[group][2]}) within {LABEL_REACH:.0f} px of its label "
                      f"at {box}; points {points}")


# ------------------------------------------------------------ WiSE-FT and soups on real architectures

def merge(alpha, theta_0, theta_1):
    """wise-ft's `_merge` (src/wise_ft.py) without Fisher weights: every key mixed element by
    element. Integer buffers (BatchNorm's num_batches_tracked) are equal on both sides and kept."""
    return {k: ((1 - alpha) * theta_0[k] + alpha * theta_1[k]) if theta_0[k].is_floating_point() else theta_0[k]
            for k in theta_0}


def perturbed(state, seed, scale=0.05):
    """Every float tensor plus seeded noise of `scale` x its own spread; running means moved by
    `scale`, running variances kept positive (multiplied by exp(noise))."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if not v.is_floating_point() or v.numel() == 0:
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = v * torch.exp(scale * 4 * torch.randn(v.shape, generator=g))
        elif k.endswith("running_mean"):
            out[k] = v + scale * torch.randn(v.shape, generator=g)
        else:
            spread = float(v.std()) if v.numel() > 1 else float(v.abs()) + 1e-3
            out[k] = v + scale * max(spread, 1e-3) * torch.randn(v.shape, generator=g)
    return out


def run_models(tmp, data, models_dir, tag):
    out = os.path.join(tmp, "results-" + tag)
    robust_eval("run", "--suite", os.path.join(data, "suite.toml"), "--models", models_dir, "--out", out,
                "--data-root", data, "--progress", "plain", "--provider", "cpu", "--threads", "2")
    return out


def test_wise_ft_of_a_clip_classifier_equals_pytorch_merge(tmp_path):
    """The paper's flagship case: a zero-shot CLIP (image tower + logit_scale x text-embedding head,
    no bias) and its fine-tuned classifier (every tower weight moved, a learned head with a bias),
    exported by export_open_clip.py (--classifier for the fine-tune), interpolated by robust-eval
    at α 0, 0.5 and 1: top-5 equals PyTorch's `_merge` of the two state dicts, evaluated as wise-ft
    evaluates an ImageClassifier (ClassificationHead normalises the features)."""
    import open_clip

    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test", pretrained=None).eval()
    # No two tensors equal, as in a trained model: the exporter shares equal initializers (the
    # ones and zeros of fresh LayerNorms), which would give the two exports different graphs.
    model.load_state_dict(perturbed(model.state_dict(), seed=6))
    data = str(tmp_path / "data")
    images = make_images(data, 64, seed=5)
    pp = {"resize": 64, "crop": 64, "interpolation": "bicubic",
          "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD}
    spread_clip(model, images, pp)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    torch.save(model.state_dict(), str(tmp_path / "zs.pt"))
    models = str(tmp_path / "models")
    common = ("tiny-clip-test", "test", "--model-config", str(config), "--out", models)
    script("export_open_clip.py", *common, "--weights", str(tmp_path / "zs.pt"), "--device", "cpu", "--name", "zs")
    zs_card = read_card(os.path.join(models, "zs.toml"))
    head = torch.from_numpy(np.load(os.path.join(models, zs_card["head"]["weights"])))
    scale = zs_card["head"]["scale"]

    prefix = "image_encoder.model."
    visual = {k: v for k, v in model.state_dict().items() if k.startswith("visual.")}
    theta_0 = {prefix + k: v for k, v in visual.items()}
    theta_0["classification_head.weight"] = (torch.tensor(scale, dtype=torch.float32) * head).float()
    theta_0["classification_head.bias"] = torch.zeros(head.shape[0])
    theta_1 = perturbed(theta_0, seed=7)
    theta_1["classification_head.bias"] = torch.randn(head.shape[0], generator=torch.Generator().manual_seed(8))
    torch.save(theta_1, str(tmp_path / "ft.pt"))
    script("export_open_clip.py", *common, "--random-init", "--classifier", str(tmp_path / "ft.pt"), "--name", "ft")
    ft_card = read_card(os.path.join(models, "ft.toml"))
    assert ft_card["group"] == "fine-tuned"
    assert ft_card["head"] == {"kind": "linear", "weights": "ft.head.npy", "bias": "ft.bias.npy",
                               "scale": 1.0, "normalize": True}
    assert np.array_equal(np.load(os.path.join(models, "ft.bias.npy")), theta_1["classification_head.bias"].numpy())

    wise = str(tmp_path / "wise")
    robust_eval("interpolate", os.path.join(models, "zs.toml"), os.path.join(models, "ft.toml"),
                "--alphas", "0,0.5,1", "--family", "w", "--out", wise)
    assert read_card(os.path.join(wise, "w-a0.50.toml"))["head"]["kind"] == "linear"
    out = run_models(str(tmp_path), data, wise, "wise")
    batch = torch.stack([preprocess(p, pp) for p in images])
    for alpha, name in ((0.0, "w-a0.00"), (0.5, "w-a0.50"), (1.0, "w-a1.00")):
        merged = merge(alpha, theta_0, theta_1)
        m = open_clip.create_model("tiny-clip-test", pretrained=None).eval()
        m.load_state_dict({k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}, strict=False)
        w, b = merged["classification_head.weight"], merged["classification_head.bias"]
        with torch.no_grad():
            f = m.encode_image(batch)
            logits = ((f / f.norm(dim=-1, keepdim=True)) @ w.T + b).numpy()
        assert_same_top5(os.path.join(out, "predictions", name, "imgs.parquet"), images, logits)


def calibrate_batchnorm(model, batch):
    """Every BatchNorm's running statistics set to the batch's (a cumulative average over one
    batch: momentum None), as a trained network's are to its data: a random network's 0/1
    statistics let activations drift layer by layer until every image gets the same class."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def test_interpolating_a_batchnorm_resnet_equals_interpolating_its_state_dicts(tmp_path):
    """A random timm ResNet with BatchNorm and a perturbed copy, each with running statistics of
    its own (calibrated on the test images, so they differ between the two), exported with
    --keep-batchnorm: robust-eval's interpolate (α 0.3) and uniform soup predict as PyTorch's mix
    of the state dicts, weights and running statistics alike. The default (folded) export is what
    interpolate warns about."""
    import onnx
    import timm

    torch.manual_seed(0)
    # zero_init_last=False: timm zeroes each block's last BatchNorm scale, which would leave the
    # residual branches (and their statistics) out of the predictions.
    model = timm.create_model("resnet18.tv_in1k", pretrained=False, zero_init_last=False).eval()
    pp = {"resize": 256, "crop": 224, "interpolation": "bilinear",
          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    data = str(tmp_path / "data")
    images = make_images(data, pp["resize"], seed=2)
    batch = torch.stack([preprocess(p, pp) for p in images])
    features = lambda x: model.forward_head(model.forward_features(x), pre_logits=True)  # noqa: E731
    # No two tensors equal, as in a trained model: the exporter shares equal initializers (the
    # ones and zeros of fresh BatchNorms), which would give the two exports different graphs.
    model.load_state_dict(perturbed(model.state_dict(), seed=3, scale=0.2))
    calibrate_batchnorm(model, batch)
    spread_head(features, model.get_classifier(), images, pp, seed=1)
    theta_0 = {k: v.clone() for k, v in model.state_dict().items()}
    # The "fine-tuned" side: every weight moved by 5 % of its spread, then its own statistics.
    model.load_state_dict(perturbed(theta_0, seed=4, scale=0.05))
    calibrate_batchnorm(model, batch)
    spread_head(features, model.get_classifier(), images, pp, seed=1)
    theta_1 = {k: v.clone() for k, v in model.state_dict().items()}
    stats = [k for k in theta_0 if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 40
    moved = [float((theta_1[k] - theta_0[k]).abs().max() / theta_0[k].abs().max()) for k in stats]
    assert min(moved) > 1e-3, f"running statistics barely differ between the two models: {min(moved)}"
    models = str(tmp_path / "models")
    folded = str(tmp_path / "folded")
    for name, theta in (("ra", theta_0), ("rb", theta_1)):
        torch.save(theta, str(tmp_path / f"{name}.pth"))
        script("export_timm.py", "resnet18.tv_in1k", "--weights", str(tmp_path / f"{name}.pth"), "--out", models,
               "--name", name, "--keep-batchnorm")
        graph = onnx.load(os.path.join(models, f"{name}.onnx"))
        ops = [n.op_type for n in graph.graph.node]
        assert ops.count("BatchNormalization") == 20, ops
        assert {p.key: p.value for p in graph.metadata_props}["robust_eval.batchnorm"] == "unfolded"
        script("export_timm.py", "resnet18.tv_in1k", "--weights", str(tmp_path / f"{name}.pth"), "--out", folded,
               "--name", name)
    warned = robust_eval("interpolate", os.path.join(folded, "ra.toml"), os.path.join(folded, "rb.toml"),
                         "--alphas", "0.5", "--out", str(tmp_path / "folded-wise"))
    assert "BatchNorm was folded" in warned.stderr, warned.stderr

    mixed = str(tmp_path / "mixed")
    p = robust_eval("interpolate", os.path.join(models, "ra.toml"), os.path.join(models, "rb.toml"),
                    "--alphas", "0.3", "--family", "w", "--out", mixed)
    assert "folded" not in p.stderr, p.stderr
    robust_eval("soup", os.path.join(models, "ra.toml"), os.path.join(models, "rb.toml"), "--name", "soup",
                "--out", mixed)
    out = run_models(str(tmp_path), data, mixed, "mixed")
    for weights, name in ((merge(0.3, theta_0, theta_1), "w-a0.30"), (merge(0.5, theta_0, theta_1), "soup")):
        m = timm.create_model("resnet18.tv_in1k", pretrained=False).eval()
        m.load_state_dict(weights)
        with torch.no_grad():
            logits = m(batch).numpy()
        assert_same_top5(os.path.join(out, "predictions", name, "imgs.parquet"), images, logits)
