"""Write benches/free_224.onnx: an ImageNet-shaped "classifier" whose inference is nearly free, for
measuring the loader in the GPU-like plan (one inference worker fed by the loader threads) on the
CPU: with inference costing next to nothing, `run`'s throughput is the loader's.

Input `input` [N,3,224,224] float32; output `logits` [N,1000] = mean colour [N,3] @ W [3,1000] + b,
with fixed pseudo-random W and b (about 16 kB). It costs about one read of the batch.
The card beside it, benches/free_224.toml, preprocesses as benches/efficientnet_lite0.toml does.

Run: .venv/bin/python benches/make_free_model.py   (needs the `onnx` package)
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    rng = np.random.default_rng(27)
    weights = numpy_helper.from_array(rng.standard_normal((3, 1000)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(1000).astype(np.float32), "b")
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mean", "W"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "free_224",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    out = pathlib.Path(__file__).with_name("free_224.onnx")
    onnx.save(model, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
