#!/usr/bin/env python3
"""Export a timm image classifier to ONNX with a robust-eval model card beside it.

    python scripts/export_timm.py MODEL_NAME --out DIR [--weights FILE] [--random-init]
                                  [--opset N] [--name NAME] [--test-size] [--group GROUP]
                                  [--keep-batchnorm]

MODEL_NAME is a timm name with or without its pretrained tag (`resnet50.a1_in1k`, `resnet50`: the
default tag). Writes DIR/<name>.onnx (input "input" [N,3,crop,crop] float32 NCHW RGB, output
"logits" [N,classes], batch axis dynamic) and DIR/<name>.toml, the card, whose preprocessing comes
from the model's own pretrained config (timm.data.resolve_data_config): crop = input_size[-1],
resize = floor(crop / crop_pct) as timm's eval transform computes it, interpolation, mean, std.
Then runs the ONNX model with ONNX Runtime and the PyTorch model on the same random batch and fails
(exit 1) if the logits differ by more than --tolerance times the logit scale.

BatchNorm: folded into the convolutions by default (the exporter's eval-mode optimisation, faster
inference). `--keep-batchnorm` keeps BatchNormalization nodes, their weight, bias and running
statistics as initializers, and marks the model (metadata robust_eval.batchnorm = unfolded): export
this way the models meant for `robust-eval interpolate` or `soup`, so that mixing the ONNX weights
is mixing the state dicts, as WiSE-FT and model soups do. Averaging folded weights is not.

Weights: downloaded from the Hugging Face hub by default (timm's cache); `--weights FILE` loads a
local checkpoint (.safetensors / .pth / .bin) instead, keeping the tag's config; `--random-init`
builds the model untrained, still with the tag's config (for tests).

Exit status: 0 exported and checked; 1 ONNX and PyTorch disagree; 2 bad arguments (an unknown timm
model, --weights with --random-init, a missing --weights file), missing packages
(pip install -r scripts/requirements-export.txt) or weights that could not be downloaded or loaded.
"""
import argparse
import math
import os
import re
import sys

import export_common as common
from export_common import die

common.init("export_timm")
try:
    import timm
    import timm.data
    import torch
except ImportError as e:  # one line, no traceback
    common.missing_package(e)


# Tokens of a timm name (architecture and tag, split on . _ -) that mean training data beyond
# ImageNet-1k: ImageNet-21k/22k/12k, LAION, OpenAI/DFN/DataComp/MetaCLIP/WebLI image-text pairs,
# Instagram (ig, ig1b, ig65m, swsl semi-weakly supervised), JFT (noisy student), SWAG, YFCC
# (ssl semi-supervised), merged/mim data sets (m38m), LVD-142M (DINOv2), CLIP towers.
MORE_DATA_PREFIXES = (
    "in21k", "in22k", "22k", "in21", "in12k", "12k", "laion", "openai", "clip", "ig", "jft", "swag",
    "ssl", "swsl", "yfcc", "merged", "m38m", "dfn", "datacomp", "metaclip", "webli", "lvd142m",
    "siglip", "cc12m", "wit", "ns",
)
# Adversarially trained weights (tf_ens_adv_in1k, adv_in1k, AdvProp ap_in1k): a robustness intervention.
ROBUST_TOKENS = ("adv", "ap", "augmix")


def suggest_group(full_name):
    tokens = [t for t in re.split(r"[._\-]", full_name.lower()) if t]
    for t in tokens:
        for p in MORE_DATA_PREFIXES:
            if t == p or (t.startswith(p) and len(p) > 2) or (p == "ig" and re.fullmatch(r"ig\d*[bm]?", t)):
                return "more-data", f"'{t}' in the name means pre-training data beyond ImageNet-1k"
    for t in tokens:
        if t in ROBUST_TOKENS:
            return "robust-intervention", f"'{t}' in the name means adversarial / robust training"
    return "standard", "no extra-data or robust-training marker in the name: ImageNet-1k only"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="timm model name, e.g. resnet50.a1_in1k or convnext_tiny")
    ap.add_argument("--out", required=True, help="folder for <name>.onnx and <name>.toml")
    ap.add_argument("--weights", metavar="FILE", help="local checkpoint instead of the hub download")
    ap.add_argument("--random-init", action="store_true", help="untrained weights (tests); keeps the tag's config")
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    ap.add_argument("--name", help="card name and file stem (default: architecture.tag)")
    ap.add_argument("--group", help="override the suggested group")
    ap.add_argument("--test-size", action="store_true",
                    help="use the config's test_input_size / test_crop_pct where it has them")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest |ONNX - PyTorch| allowed, relative to max |logit| (default 1e-3)")
    ap.add_argument("--keep-batchnorm", action="store_true",
                    help="keep BatchNorm unfolded, for interpolate / soup (default: folded)")
    a = ap.parse_args()
    common.check_weight_args(a)
    if not timm.is_model(a.model):
        die(f"unknown timm model '{a.model}' (timm {timm.__version__}; see timm.list_models())")

    torch.set_grad_enabled(False)
    if a.random_init:
        kwargs = dict(pretrained=False)
        source = "random initialisation (--random-init): for tests only, the logits mean nothing"
    elif a.weights:
        kwargs = dict(pretrained=True, pretrained_cfg_overlay=dict(file=os.path.abspath(a.weights)))
        source = f"local checkpoint {a.weights}"
    else:
        kwargs = dict(pretrained=True)
        source = None
    try:
        model = timm.create_model(a.model, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure to fetch or load weights ends the same way
        common.load_failed(e, a, f"the weights of {a.model} from the Hugging Face hub")
    model.eval()
    cfg = dict(model.pretrained_cfg or {})
    arch = cfg.get("architecture") or a.model.split(".")[0]
    tag = cfg.get("tag") or ""
    full = f"{arch}.{tag}" if tag else arch
    if source is None:
        source = f"pretrained weights of {full} from the Hugging Face hub ({cfg.get('hf_hub_id') or 'timm'})"
    name = common.sanitise_name(a.name or full)
    onnx_path, card_path = common.output_paths(a.out, name, ".onnx", ".toml")

    data = timm.data.resolve_data_config({}, model=model, use_test_size=a.test_size)
    size_key = "test_input_size" if a.test_size and cfg.get("test_input_size") else "input_size"
    pct_key = "test_crop_pct" if a.test_size and cfg.get("test_crop_pct") else "crop_pct"
    _, h, w = data["input_size"]
    if h != w:
        print(f"WARNING: input size {h}x{w} is not square; robust-eval crops squares, the card uses {w}",
              file=sys.stderr)
    crop = int(w)
    crop_pct = float(data.get("crop_pct") or 0.875)
    resize = int(math.floor(crop / crop_pct))
    crop_mode = data.get("crop_mode", "center") or "center"
    if crop_mode != "center":
        common.warn_loudly(f"timm evaluates {full} with crop_mode='{crop_mode}', not 'center'. robust-eval only "
                           f"does\nresize-shorter-side + center crop, so its accuracy will differ from timm's tables.")
    interpolation = data.get("interpolation", "bicubic")
    if interpolation not in common.INTERPOLATIONS:
        print(f"WARNING: timm interpolation '{interpolation}' is not one robust-eval knows; using bicubic",
              file=sys.stderr)
        interpolation = "bicubic"
    mean = [float(v) for v in data["mean"]]
    std = [float(v) for v in data["std"]]

    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    num_out = int(model(example).shape[-1])
    label_offset = int(cfg.get("label_offset") or 0)
    if num_out == 1001:
        offset = label_offset or 1
        offset_src = (f"pretrained_cfg label_offset = {label_offset}" if label_offset
                      else "1001 outputs: class 0 is the background class")
    else:
        offset = 0
        offset_src = ("timm already dropped the checkpoint's background class (label_offset = "
                      f"{label_offset})" if label_offset else "no background class")
    if num_out not in (1000, 1001):
        print(f"WARNING: {full} has {num_out} outputs, not ImageNet-1k's 1000: scoring it on ImageNet "
              f"needs 'all-classes' or a 1000-class head", file=sys.stderr)

    group, group_src = (a.group, "--group") if a.group else suggest_group(full)

    print(f"export_timm: exporting {full} to {onnx_path} (opset {a.opset})")
    common.export_checked(model, example, onnx_path, "logits", "logit", a.opset, a.tolerance,
                          keep_batchnorm=a.keep_batchnorm)

    header = [
        f"Exported by scripts/export_timm.py from timm {timm.__version__} '{a.model}' "
        f"(torch {torch.__version__}, opset {a.opset}).",
        f"Weights: {source}.",
        f"Preprocessing from the model's pretrained config (timm.data.resolve_data_config, {size_key} / {pct_key}).",
    ]
    if crop_mode != "center":
        header.append(f"WARNING: timm's own eval uses crop_mode = '{crop_mode}'; this card does resize + center crop.")
    common.write_card(card_path, header, [
        ("name", name, "timm name (architecture.tag)" if not a.name else "--name"),
        ("onnx", os.path.basename(onnx_path), "relative to this card"),
        ("group", group, "suggested: " + group_src),
    ], [
        ("preprocess", [
            ("resize", resize, f"floor(crop / crop_pct) = floor({crop} / {crop_pct}), as timm's eval transform"),
            ("crop", crop, f"pretrained_cfg {size_key}[-1]"),
            ("interpolation", interpolation, "pretrained_cfg interpolation"),
            ("mean", mean, "pretrained_cfg mean"),
            ("std", std, "pretrained_cfg std"),
        ]),
        common.input_table("timm"),
        ("output", [
            ("name", "logits", "ONNX output name set by the export"),
            ("num_classes", num_out, "the model's output width"),
            ("offset", offset, offset_src),
        ]),
    ])
    print(f"export_timm: wrote {card_path} (group {group}: {group_src})")


if __name__ == "__main__":
    main()
