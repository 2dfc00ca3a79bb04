"""Helpers shared by scripts/export_timm.py, export_torchvision.py and export_open_clip.py: error
messages and exit codes, the model card writer, the ONNX export and its check against PyTorch.

Not a script of its own. It imports only the standard library at module level, so that a script can
import it before its heavy packages and turn a missing one into a single line and exit 2:

    import export_common as common
    from export_common import die

    common.init("export_x")  # the message prefix; numpy and onnxruntime present, or exit 2
    try:
        import torch
    except ImportError as e:
        common.missing_package(e)

numpy, onnxruntime and torch are imported inside the functions that use them (init has checked the
first two up front, and by then the script has imported torch).
"""
import inspect
import os
import re
import sys
import warnings

REQUIREMENTS = "pip install -r scripts/requirements-export.txt"
# The prefix of every message; each script sets its own name.
PROG = "export"
# The resampling filters a card's [preprocess] interpolation may name.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


def die(msg, code=2):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


def missing_package(e):
    """One line, no traceback, exit 2: for `except ImportError as e` around a script's imports."""
    die(f"missing Python package '{e.name}': {REQUIREMENTS}")


def init(prog):
    """Set the message prefix, and exit 2 with one line unless the packages used here are installed."""
    global PROG
    PROG = prog
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:  # one line, no traceback
        missing_package(e)


def warn_loudly(text):
    """A warning between two rows of '!' on stderr, for preprocessing robust-eval cannot reproduce."""
    bar = "!" * 78
    print(f"{bar}\nWARNING: {text}\n{bar}", file=sys.stderr)


def check_weight_args(a):
    """--weights and --random-init exclude each other, and --weights must name a file."""
    if a.weights and a.random_init:
        die("--weights and --random-init exclude each other")
    if a.weights and not os.path.isfile(a.weights):
        die(f"--weights {a.weights}: no such file")


def first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load_failed(e, a, download, fetched="the checkpoint"):
    """Exit 2 for an exception raised while building the model or loading its weights. download
    completes 'could not download ...' for the hub case; fetched names what to download by hand."""
    first = first_line(e)
    if a.weights:
        die(f"could not load --weights {a.weights} into {a.model}: {type(e).__name__}: {first}")
    if a.random_init:
        die(f"could not build {a.model}: {type(e).__name__}: {first}")
    die(f"could not download {download} ({type(e).__name__}: {first[:200]}). Download {fetched} "
        f"elsewhere and pass it with --weights FILE (or use --random-init for a test export)")


def sanitise_name(name):
    return re.sub(r"[^A-Za-z0-9._\-+=]", "_", name)


def output_paths(out, name, *suffixes):
    """Creates the folder out; returns out/<name><suffix> for each suffix."""
    os.makedirs(out, exist_ok=True)
    return [os.path.join(out, name + s) for s in suffixes]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def input_table(library):
    """The card's [input] table: the export names the input "input", NCHW, RGB."""
    return ("input", [
        ("name", "input", "ONNX input name set by the export"),
        ("layout", "nchw", "PyTorch layout"),
        ("channels", "rgb", f"{library} models take RGB"),
    ])


def write_card(path, header, top, tables):
    """header: comment lines; top: [(key, value, comment)]; tables: [(name, [(key, value, comment)])]."""
    lines = [f"# {h}" for h in header]

    def entry(k, v, c):
        s = f"{k} = {toml_value(v)}"
        return f"{s:<44} # {c}" if c else s

    lines += [entry(*kv) for kv in top]
    for name, entries in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines += [entry(*kv) for kv in entries]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


# Model metadata saying BatchNorm was kept as BatchNormalization nodes (robust-eval's interpolate
# and soup then do not warn that the graph looks folded).
BATCHNORM_KEY = "robust_eval.batchnorm"


def export_onnx(module, example, path, input_name, output_name, opset, keep_batchnorm=False):
    """Export with the TorchScript exporter. By default its eval-mode peephole folds each
    BatchNorm into the convolution before it (faster inference). `keep_batchnorm` exports in
    TrainingMode.PRESERVE with the module in eval mode instead: BatchNormalization nodes with their
    weight, bias, running mean and running variance as initializers, so that mixing the ONNX
    initializers (robust-eval interpolate / soup) is mixing the state dicts, as the papers do; the
    model's metadata then says robust_eval.batchnorm = unfolded."""
    import torch

    kwargs = dict(
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
    )
    if keep_batchnorm:
        module.eval()
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: mature and dependable for classifiers
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha else None
    if mha:
        mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused kernel has no ONNX export
    tmp = path + ".tmp"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), tmp, **kwargs)
    finally:
        if mha:
            mha.set_fastpath_enabled(fastpath)
    if keep_batchnorm:
        mark_batchnorm_unfolded(tmp)
    os.replace(tmp, path)


def mark_batchnorm_unfolded(path):
    """Add robust_eval.batchnorm = unfolded to the model's metadata (onnx.helper)."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    if not any(n.op_type == "BatchNormalization" for n in model.graph.node):
        return  # nothing to say: the network has no BatchNorm, or it was folded after all
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        BATCHNORM_KEY: "unfolded"})
    onnx.save(model, path)


def check_onnx(module, path, input_name, shape, tolerance):
    """Max |ONNX − PyTorch| on a random batch of 2; returns (diff, limit)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *shape), generator=g)
    with torch.no_grad():
        ref = module(x).numpy()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {input_name: x.numpy()})[0]
    if out.shape != ref.shape:
        die(f"ONNX output shape {out.shape} differs from PyTorch's {ref.shape}", 1)
    diff = float(np.abs(out - ref).max())
    limit = tolerance * max(1.0, float(np.abs(ref).max()))
    return diff, limit


def export_checked(module, example, path, output_name, quantity, opset, tolerance, keep_batchnorm=False):
    """Export module (input "input", output output_name) to path, run it with ONNX Runtime and PyTorch
    on a random batch of 2 shaped like example, print the largest difference of the quantity
    ("logit", "embedding") and exit 1 if it is above tolerance x the output's scale."""
    export_onnx(module, example, path, "input", output_name, opset, keep_batchnorm)
    diff, limit = check_onnx(module, path, "input", tuple(example.shape[1:]), tolerance)
    print(f"{PROG}: max |onnx - torch| {quantity} difference on a random batch of 2: {diff:.3g} "
          f"(allowed {limit:.3g})")
    if not diff <= limit:
        die(f"ONNX Runtime and PyTorch disagree by {diff:.3g} > {limit:.3g}; not writing the card", 1)
