#!/usr/bin/env python3
"""Export a torchvision image classifier to ONNX with a robust-eval model card beside it.

    python scripts/export_torchvision.py MODEL_NAME --out DIR [--weights-enum NAME] [--weights FILE]
                                         [--random-init] [--opset N] [--name NAME]

MODEL_NAME is a torchvision classification model (`resnet50`, `vit_b_16`, ...; see
torchvision.models.list_models(module=torchvision.models)). --weights-enum names the member of its
weights enum (`IMAGENET1K_V2`, `IMAGENET1K_SWAG_E2E_V1`, default `DEFAULT`). Writes
DIR/<name>.onnx (input "input" [N,3,crop,crop] float32 NCHW RGB, output "logits" [N,classes],
batch axis dynamic) and DIR/<name>.toml, the card, whose preprocessing is the weights' own
`.transforms()` (resize_size, crop_size, interpolation, mean, std) and whose class count is
`len(meta["categories"])`. Then runs the ONNX model with ONNX Runtime and the PyTorch model on the
same random batch and fails (exit 1) if the logits differ by more than --tolerance times the logit
scale.

Weights: downloaded by torchvision by default (its torch hub cache); `--weights FILE` loads a local
state dict (.pth / .safetensors) through the same builder, so model-specific settings that come with
pretrained weights (e.g. inception's transform_input) still apply; `--random-init` builds the
model untrained (same builder and architecture settings, no load), still with the enum's
preprocessing (for tests).

Exit status: 0 exported and checked; 1 ONNX and PyTorch disagree; 2 bad arguments (a model that is
not a torchvision classifier, a --weights-enum its enum lacks, --weights with --random-init),
missing packages (pip install -r scripts/requirements-export.txt) or a state dict that could not be
downloaded or loaded.
"""
import argparse
import os
import sys

import export_common as common
from export_common import die

common.init("export_torchvision")
try:
    import torch
    import torchvision
    import torchvision.models as tvm
    from torchvision.models._api import WeightsEnum
except ImportError as e:  # one line, no traceback
    common.missing_package(e)


def load_file(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file as load_st

        return load_st(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="torchvision classification model, e.g. resnet50")
    ap.add_argument("--out", required=True, help="folder for <name>.onnx and <name>.toml")
    ap.add_argument("--weights-enum", default="DEFAULT", metavar="NAME",
                    help="member of the model's weights enum, e.g. IMAGENET1K_V2 (default DEFAULT)")
    ap.add_argument("--weights", metavar="FILE", help="local state dict instead of torchvision's download")
    ap.add_argument("--random-init", action="store_true", help="untrained weights (tests); keeps the enum's preprocessing")
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    ap.add_argument("--name", help="card name and file stem (default: model.weights_enum, lower case)")
    ap.add_argument("--group", help="override the suggested group")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest |ONNX - PyTorch| allowed, relative to max |logit| (default 1e-3)")
    a = ap.parse_args()
    common.check_weight_args(a)
    models = tvm.list_models(module=tvm)
    if a.model not in models:
        die(f"'{a.model}' is not a torchvision classification model (torchvision {torchvision.__version__}): "
            f"{', '.join(models)}")
    enum = tvm.get_model_weights(a.model)
    try:
        weights = enum[a.weights_enum]
    except KeyError:
        die(f"{enum.__name__} has no member '{a.weights_enum}': {', '.join(enum.__members__)}")

    torch.set_grad_enabled(False)
    categories = weights.meta.get("categories") or []
    original = WeightsEnum.get_state_dict
    original_load = torch.nn.Module.load_state_dict
    if a.random_init:
        # Build through the same builder as the pretrained weights, so the architecture settings that
        # come with them (ViT's image_size, inception's transform_input, ...) apply, but skip the load.
        source = f"random initialisation (--random-init), with {weights.name}'s preprocessing: for tests only"

        class Untrained(dict):
            pass

        def load_unless_untrained(self, state_dict, *args, **kwargs):
            if isinstance(state_dict, Untrained):
                return None
            return original_load(self, state_dict, *args, **kwargs)

        WeightsEnum.get_state_dict = lambda self, *args, **kwargs: Untrained()
        torch.nn.Module.load_state_dict = load_unless_untrained
        try:
            model = tvm.get_model(a.model, weights=weights)
        finally:
            WeightsEnum.get_state_dict = original
            torch.nn.Module.load_state_dict = original_load
    else:
        if a.weights:
            source = f"local state dict {a.weights}, loaded as {enum.__name__}.{weights.name}"
            WeightsEnum.get_state_dict = lambda self, *args, **kwargs: load_file(os.path.abspath(a.weights))
        else:
            source = f"{enum.__name__}.{weights.name} ({weights.url})"
        try:
            model = tvm.get_model(a.model, weights=weights)
        except Exception as e:  # noqa: BLE001 - any failure to fetch or load weights ends the same way
            common.load_failed(e, a, weights.url, fetched="it")
        finally:
            WeightsEnum.get_state_dict = original
    model.eval()

    t = weights.transforms()
    crop_size = list(getattr(t, "crop_size", [224]))
    resize_size = list(getattr(t, "resize_size", [256]))
    if len(crop_size) != 1 or len(resize_size) != 1:
        print(f"WARNING: {weights.name} transforms use crop {crop_size} / resize {resize_size}; robust-eval "
              f"resizes the shorter side and crops a square", file=sys.stderr)
    crop = int(crop_size[-1])
    resize = int(resize_size[0])
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    if interpolation not in common.INTERPOLATIONS:
        print(f"WARNING: interpolation '{interpolation}' is not one robust-eval knows; using bilinear",
              file=sys.stderr)
        interpolation = "bilinear"
    mean = [float(v) for v in t.mean]
    std = [float(v) for v in t.std]

    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    num_out = int(model(example).shape[-1])
    offset = 1 if num_out == 1001 else 0
    if categories and num_out != len(categories):
        print(f"WARNING: the model has {num_out} outputs but {weights.name} lists {len(categories)} categories",
              file=sys.stderr)
    if num_out not in (1000, 1001):
        print(f"WARNING: {a.model} has {num_out} outputs, not ImageNet-1k's 1000", file=sys.stderr)

    full = f"{a.model}.{weights.name.lower()}"
    name = common.sanitise_name(a.name or full)
    extra = "SWAG" in weights.name.upper() or "SWAG" in str(weights.meta.get("recipe", "")).upper()
    if a.group:
        group, group_src = a.group, "--group"
    elif extra:
        group, group_src = "more-data", "SWAG weights: pre-trained on 3.6B Instagram images, then ImageNet-1k"
    else:
        group, group_src = "standard", f"{weights.name}: trained on ImageNet-1k only"
    onnx_path, card_path = common.output_paths(a.out, name, ".onnx", ".toml")

    print(f"export_torchvision: exporting {full} to {onnx_path} (opset {a.opset})")
    common.export_checked(model, example, onnx_path, "logits", "logit", a.opset, a.tolerance)

    common.write_card(card_path, [
        f"Exported by scripts/export_torchvision.py from torchvision {torchvision.__version__} '{a.model}' "
        f"(torch {torch.__version__}, opset {a.opset}).",
        f"Weights: {source}.",
        f"Preprocessing from {enum.__name__}.{weights.name}.transforms(); classes from its meta['categories'].",
    ], [
        ("name", name, "--name" if a.name else "model.weights (torchvision)"),
        ("onnx", os.path.basename(onnx_path), "relative to this card"),
        ("group", group, "suggested: " + group_src),
    ], [
        ("preprocess", [
            ("resize", resize, "transforms().resize_size"),
            ("crop", crop, "transforms().crop_size"),
            ("interpolation", interpolation, "transforms().interpolation"),
            ("mean", mean, "transforms().mean"),
            ("std", std, "transforms().std"),
        ]),
        common.input_table("torchvision"),
        ("output", [
            ("name", "logits", "ONNX output name set by the export"),
            ("num_classes", num_out, f"the model's output width (meta['categories']: {len(categories)})"),
            ("offset", offset, "1001 outputs: class 0 is background" if offset else "no background class"),
        ]),
    ])
    print(f"export_torchvision: wrote {card_path} (group {group}: {group_src})")


if __name__ == "__main__":
    main()
