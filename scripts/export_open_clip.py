#!/usr/bin/env python3
"""Export an OpenCLIP model's image tower to ONNX with a zero-shot ImageNet head and a robust-eval
model card beside it.

    python scripts/export_open_clip.py MODEL PRETRAINED --out DIR [--weights FILE] [--random-init]
                                       [--model-config JSON] [--opset N] [--name NAME]
                                       [--classifier STATE_DICT [--encoder-prefix P] [--head-prefix P]]

MODEL and PRETRAINED are OpenCLIP names (`ViT-B-32 openai`, `ViT-B-16 laion2b_s34b_b88k`; see
open_clip.list_pretrained()). Writes
  DIR/<name>.onnx      the image tower: input "input" [N,3,size,size] float32 NCHW RGB, output
                       "embedding" [N,embed_dim], the raw image features before normalisation
  DIR/<name>.head.npy  the zero-shot classifier, float32 [1000, embed_dim], C order: each ImageNet
                       class name through the 80 OpenAI ImageNet prompt templates
                       (open_clip.IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES), each text
                       embedding L2-normalised, averaged over the templates, the mean L2-normalised
                       again (open_clip.build_zero_shot_classifier)
  DIR/<name>.toml      the card: group "zero-shot", [head] scale = logit_scale.exp(), so that
                       logits = scale * normalize(embedding) @ head.T; preprocessing from the
                       model's own preprocess config (model.visual.preprocess_cfg): OpenCLIP
                       resizes the shorter side to the crop size, so resize == crop.
Then runs the ONNX image tower with ONNX Runtime and PyTorch on the same random batch and fails
(exit 1) if the embeddings differ by more than --tolerance times their scale.

A fine-tuned classifier (`--classifier STATE_DICT`): instead of the zero-shot head, the image tower
and the learned linear head of a wise-ft-style fine-tune, as WiSE-FT interpolates them. STATE_DICT is
a torch.save'd state dict (`torch.save(model.state_dict(), path)` of wise-ft's ImageClassifier):
the image encoder's CLIP weights under --encoder-prefix (default `image_encoder.model.`, as wise-ft's
ImageEncoder holds the CLIP model) and the head's under --head-prefix (default
`classification_head.`: `weight` [classes, embed_dim] and `bias` [classes]); any other state dict
maps by these two options. Writes DIR/<name>.onnx, DIR/<name>.head.npy (the weight as is, any row
norm), DIR/<name>.bias.npy and the card: group "fine-tuned", [head] kind = "linear", scale 1,
normalize = true (wise-ft's ClassificationHead normalises the image features), so that
logits = normalize(embedding) @ weight.T + bias. No text tower runs.

Weights: downloaded by OpenCLIP by default (Hugging Face hub or the tag's URL); `--weights FILE`
loads a local checkpoint instead, keeping the tag's preprocessing and QuickGELU setting;
`--random-init` builds the model untrained (tests). `--model-config JSON` registers a model config
file first (open_clip.add_model_config); its file stem is the MODEL name to pass.

The text tower encodes 80,000 prompts: minutes on a GPU (--device cuda, the default when one is
visible), much longer on a CPU for large text towers.

Exit status: 0 exported and checked; 1 ONNX and PyTorch disagree on the image tower, or the head
came out of the wrong shape; 2 bad arguments (an unknown model or pretrained tag, a missing
--model-config), missing packages (pip install -r scripts/requirements-export.txt, or one that a
model or its tokenizer needs besides) or weights that could not be downloaded or loaded.
"""
import argparse
import logging
import os
import sys
import time
import warnings

import export_common as common
from export_common import REQUIREMENTS, die

common.init("export_open_clip")
try:
    import numpy as np
    import open_clip
    import torch
except ImportError as e:  # one line, no traceback
    common.missing_package(e)


PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode_image(x, normalize=False)


def zero_shot_head(model, tokenizer, device, classes_per_batch):
    """[1000, embed_dim] float32, rows L2-normalised: open_clip.build_zero_shot_classifier over the
    ImageNet class names and the 80 OpenAI templates, in chunks so that progress can be printed."""
    classnames = list(open_clip.IMAGENET_CLASSNAMES)
    templates = list(open_clip.OPENAI_IMAGENET_TEMPLATES)
    chunk = max(classes_per_batch, 50)
    cols = []
    t0 = time.time()
    for start in range(0, len(classnames), chunk):
        names = classnames[start:start + chunk]
        cols.append(open_clip.build_zero_shot_classifier(
            model, tokenizer, names, templates, num_classes_per_batch=classes_per_batch, device=device).float().cpu())
        done = start + len(names)
        elapsed = time.time() - t0
        eta = elapsed / done * (len(classnames) - done)
        print(f"export_open_clip: text tower: {done}/{len(classnames)} classes "
              f"({done * len(templates)} prompts), {elapsed:.0f} s, about {eta:.0f} s left", flush=True)
    head = torch.cat(cols, dim=1).T.contiguous().numpy().astype(np.float32)
    return np.ascontiguousarray(head)


def load_classifier(model, path, encoder_prefix, head_prefix):
    """Load a fine-tuned state dict's image encoder into `model` and return its head (weight,
    bias) as float32 numpy arrays. Exit 2 naming the keys when the state dict does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint ends the same way
        die(f"--classifier {path}: not a readable state dict ({common.first_line(e)}); save it with "
            f"torch.save(model.state_dict(), path)")
    if not isinstance(state, dict):
        die(f"--classifier {path}: holds a {type(state).__name__}, not a state dict")
    encoder = {k[len(encoder_prefix):]: v for k, v in state.items() if k.startswith(encoder_prefix)}
    visual = {k: v for k, v in encoder.items() if k.startswith("visual.")}
    if not visual:
        die(f"--classifier {path}: no image-tower weights under '{encoder_prefix}visual.' "
            f"(keys start: {', '.join(sorted(state)[:5])}); set --encoder-prefix")
    own = {k for k in model.state_dict() if k.startswith("visual.")}
    missing, unexpected = sorted(own - set(visual)), sorted(set(visual) - own)
    if missing or unexpected:
        die(f"--classifier {path}: the image tower does not fit {model.__class__.__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(visual, strict=False)
    weight, bias = state.get(head_prefix + "weight"), state.get(head_prefix + "bias")
    if weight is None or weight.dim() != 2:
        die(f"--classifier {path}: no 2-D head weight '{head_prefix}weight'; set --head-prefix")
    if bias is None:
        bias = torch.zeros(weight.shape[0])
    if bias.shape != (weight.shape[0],):
        die(f"--classifier {path}: '{head_prefix}bias' has shape {tuple(bias.shape)}, "
            f"the weight {tuple(weight.shape)}")
    as_np = lambda t: np.ascontiguousarray(t.detach().float().cpu().numpy().astype(np.float32))
    return as_np(weight), as_np(bias)


def save_npy(path, array):
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="OpenCLIP model name, e.g. ViT-B-32")
    ap.add_argument("pretrained", help="OpenCLIP pretrained tag, e.g. openai or laion2b_s34b_b79k")
    ap.add_argument("--out", required=True, help="folder for <name>.onnx, <name>.head.npy and <name>.toml")
    ap.add_argument("--weights", metavar="FILE", help="local checkpoint instead of OpenCLIP's download")
    ap.add_argument("--random-init", action="store_true", help="untrained weights (tests)")
    ap.add_argument("--model-config", metavar="JSON", help="register this model config first (its stem names the model)")
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    ap.add_argument("--name", help="card name and file stem (default: MODEL.PRETRAINED)")
    ap.add_argument("--device", default="auto", help="device for the text tower: auto (cuda if visible), cpu, cuda")
    ap.add_argument("--classes-per-batch", type=int, default=10,
                    help="classes per text-tower forward (x80 prompts; default 10)")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest |ONNX - PyTorch| allowed, relative to max |embedding| (default 1e-3)")
    ap.add_argument("--classifier", metavar="STATE_DICT",
                    help="export a fine-tuned classifier: image encoder + linear head from this state dict")
    ap.add_argument("--encoder-prefix", default="image_encoder.model.",
                    help="--classifier: key prefix of the CLIP model (default image_encoder.model.)")
    ap.add_argument("--head-prefix", default="classification_head.",
                    help="--classifier: key prefix of the head's weight and bias (default classification_head.)")
    a = ap.parse_args()
    if a.classifier and not os.path.isfile(a.classifier):
        die(f"--classifier {a.classifier}: no such file")
    common.check_weight_args(a)
    if a.model_config:
        if not os.path.isfile(a.model_config):
            die(f"--model-config {a.model_config}: no such file")
        open_clip.add_model_config(a.model_config)
    if a.model not in open_clip.list_models():
        die(f"unknown OpenCLIP model '{a.model}' (open_clip {open_clip.__version__}; see open_clip.list_models())")
    tag_cfg = dict(open_clip.get_pretrained_cfg(a.model, a.pretrained) or {})
    if not tag_cfg and not a.weights and not a.random_init:
        tags = open_clip.list_pretrained_tags_by_model(a.model)
        die(f"'{a.pretrained}' is not a pretrained tag of {a.model}: {', '.join(tags) or 'none'}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device

    force_pp = {k: tag_cfg[k] for k in PREPROCESS_KEYS if tag_cfg.get(k) is not None}
    build = dict(force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)), force_preprocess_cfg=force_pp)
    logging.disable(logging.ERROR)  # open_clip logs its own download errors; ours below says what to do
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QuickGELU notices and the like
        try:
            if a.random_init:
                source = "random initialisation (--random-init): for tests only, the logits mean nothing"
                model = open_clip.create_model(a.model, pretrained=None, pretrained_text=False, **build)
            elif a.weights:
                source = f"local checkpoint {a.weights}"
                model = open_clip.create_model(a.model, pretrained=os.path.abspath(a.weights), **build)
            else:
                source = f"OpenCLIP pretrained tag '{a.pretrained}' ({tag_cfg.get('hf_hub') or tag_cfg.get('url')})"
                model = open_clip.create_model(a.model, pretrained=a.pretrained)
        except ImportError as e:
            die(f"missing Python package '{e.name}' for {a.model}: install it beside {REQUIREMENTS}")
        except Exception as e:  # noqa: BLE001 - any failure to fetch or load weights ends the same way
            common.load_failed(e, a, f"the weights of {a.model} '{a.pretrained}'")
    logging.disable(logging.NOTSET)
    model.eval()
    torch.set_grad_enabled(False)
    try:
        tokenizer = open_clip.get_tokenizer(a.model)
    except ImportError as e:
        die(f"missing Python package '{e.name}' for {a.model}'s tokenizer: install it beside {REQUIREMENTS}")

    pp = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    size = pp.get("size", getattr(model.visual, "image_size", 224))
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            print(f"WARNING: image size {size} is not square; robust-eval crops squares", file=sys.stderr)
        size = size[-1]
    crop = int(size)
    resize_mode = pp.get("resize_mode", "shortest")
    if resize_mode != "shortest":
        common.warn_loudly(f"OpenCLIP preprocesses {a.model} '{a.pretrained}' with resize_mode='{resize_mode}', "
                           f"not 'shortest'.\nrobust-eval only does resize-shorter-side + center crop, so its "
                           f"accuracy will differ.")
    # OpenCLIP's image_transform maps anything but "bilinear" to bicubic.
    interpolation = "bilinear" if pp.get("interpolation") == "bilinear" else "bicubic"
    mean = [float(v) for v in pp.get("mean", open_clip.OPENAI_DATASET_MEAN)]
    std = [float(v) for v in pp.get("std", open_clip.OPENAI_DATASET_STD)]
    scale = float(model.logit_scale.exp().item())

    name = common.sanitise_name(a.name or f"{a.model}.{a.pretrained}")
    onnx_path, head_path, card_path = common.output_paths(a.out, name, ".onnx", ".head.npy", ".toml")

    if a.classifier:
        export_classifier(a, model, source, crop, interpolation, mean, std, resize_mode, pp)
        return
    tower = ImageTower(model).eval()
    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    print(f"export_open_clip: exporting the image tower of {a.model} '{a.pretrained}' to {onnx_path} (opset {a.opset})")
    common.export_checked(tower, example, onnx_path, "embedding", "embedding", a.opset, a.tolerance)
    embed_dim = int(tower(example).shape[-1])

    print(f"export_open_clip: building the zero-shot head on {device}: 1000 classes x 80 templates")
    model.to(device)
    head = zero_shot_head(model, tokenizer, device, a.classes_per_batch)
    model.to("cpu")
    if head.shape != (1000, embed_dim):
        die(f"zero-shot head has shape {head.shape}, expected (1000, {embed_dim})", 1)
    tmp = head_path + ".tmp.npy"
    np.save(tmp, head)
    os.replace(tmp, head_path)

    common.write_card(card_path, [
        f"Exported by scripts/export_open_clip.py from open_clip {open_clip.__version__} '{a.model}' "
        f"'{a.pretrained}' (torch {torch.__version__}, opset {a.opset}).",
        f"Weights: {source}.",
        "The ONNX model is the image tower; the head is the zero-shot classifier over the 1000 ImageNet "
        "classes (open_clip.IMAGENET_CLASSNAMES x OPENAI_IMAGENET_TEMPLATES, build_zero_shot_classifier).",
        "Preprocessing from model.visual.preprocess_cfg (OpenCLIP resizes the shorter side to the crop size).",
    ], [
        ("name", name, "--name" if a.name else "MODEL.PRETRAINED"),
        ("onnx", os.path.basename(onnx_path), "relative to this card"),
        ("group", "zero-shot", "CLIP-style zero-shot classifier"),
    ], [
        preprocess_table(crop, interpolation, mean, std, resize_mode, pp),
        common.input_table("OpenCLIP"),
        ("output", [
            ("name", "embedding", f"image features before normalisation, [N, {embed_dim}]"),
            ("num_classes", 1000, "rows of the zero-shot head"),
            ("offset", 0, "no background class"),
        ]),
        ("head", [
            ("kind", "zero-shot", "logits = scale * normalize(embedding) @ weights.T"),
            ("weights", os.path.basename(head_path), f"float32 [1000, {embed_dim}], rows L2-normalised"),
            ("scale", scale, "model.logit_scale.exp()"),
        ]),
    ])
    print(f"export_open_clip: wrote {head_path} and {card_path} (embed_dim {embed_dim}, scale {scale:.4g})")


def preprocess_table(crop, interpolation, mean, std, resize_mode, pp):
    """The card's [preprocess], as model.visual.preprocess_cfg gives it (zero-shot and fine-tuned alike)."""
    return ("preprocess", [
        ("resize", crop, f"resize_mode '{resize_mode}': shorter side to the crop size"),
        ("crop", crop, "preprocess_cfg size"),
        ("interpolation", interpolation, f"preprocess_cfg interpolation ({pp.get('interpolation', 'bicubic')})"),
        ("mean", mean, "preprocess_cfg mean"),
        ("std", std, "preprocess_cfg std"),
    ])


def export_classifier(a, model, source, crop, interpolation, mean, std, resize_mode, pp):
    """The fine-tuned classifier: image tower, linear head with bias, card (see --classifier)."""
    weight, bias = load_classifier(model, a.classifier, a.encoder_prefix, a.head_prefix)
    name = common.sanitise_name(a.name or f"{a.model}.{a.pretrained}.ft")
    onnx_path, head_path, bias_path, card_path = common.output_paths(
        a.out, name, ".onnx", ".head.npy", ".bias.npy", ".toml")
    tower = ImageTower(model).eval()
    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    print(f"export_open_clip: exporting the fine-tuned image tower of {a.model} to {onnx_path} (opset {a.opset})")
    common.export_checked(tower, example, onnx_path, "embedding", "embedding", a.opset, a.tolerance)
    embed_dim = int(tower(example).shape[-1])
    if weight.shape[1] != embed_dim:
        die(f"--classifier {a.classifier}: head weight {weight.shape} does not take the tower's "
            f"{embed_dim}-wide embedding", 1)
    save_npy(head_path, weight)
    save_npy(bias_path, bias)
    classes = int(weight.shape[0])
    common.write_card(card_path, [
        f"Exported by scripts/export_open_clip.py from open_clip {open_clip.__version__} '{a.model}' "
        f"(torch {torch.__version__}, opset {a.opset}): a fine-tuned classifier.",
        f"Architecture weights: {source}; image tower and head from {os.path.basename(a.classifier)} "
        f"('{a.encoder_prefix}', '{a.head_prefix}').",
        "The head is wise-ft's ClassificationHead: logits = normalize(embedding) @ weight.T + bias.",
        "Preprocessing from model.visual.preprocess_cfg (OpenCLIP resizes the shorter side to the crop size).",
    ], [
        ("name", name, "--name" if a.name else "MODEL.PRETRAINED.ft"),
        ("onnx", os.path.basename(onnx_path), "relative to this card"),
        ("group", "fine-tuned", "a CLIP image tower fine-tuned with a learned head"),
    ], [
        preprocess_table(crop, interpolation, mean, std, resize_mode, pp),
        common.input_table("OpenCLIP"),
        ("output", [
            ("name", "embedding", f"image features before normalisation, [N, {embed_dim}]"),
            ("num_classes", classes, "rows of the head"),
            ("offset", 0, "no background class"),
        ]),
        ("head", [
            ("kind", "linear", "logits = normalize(embedding) @ weights.T + bias"),
            ("weights", os.path.basename(head_path), f"float32 [{classes}, {embed_dim}], {a.head_prefix}weight"),
            ("bias", os.path.basename(bias_path), f"float32 [{classes}], {a.head_prefix}bias"),
            ("scale", 1.0, "the learned weight carries its own scale"),
            ("normalize", True, "wise-ft's ClassificationHead normalises the image features"),
        ]),
    ])
    print(f"export_open_clip: wrote {head_path}, {bias_path} and {card_path}")


if __name__ == "__main__":
    main()
