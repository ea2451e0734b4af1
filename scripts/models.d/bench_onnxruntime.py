"""Times onnxruntime (CPU) on the multi-style network, for the Rust benchmark to compare.

    bench_onnxruntime.py MODEL.onnx INPUTS.safetensors RUNS

Every tensor of INPUTS.safetensors whose name is not "style_weights" is an image [1,3,h,w];
"style_weights" [26] is the style mix. After one warm-up run per image, prints one JSON line:
{"onnxruntime": VERSION, "threads": N, "ms": {"NAME": median milliseconds per image, ...}}.
"""

import json
import os
import statistics
import sys
import time

import onnxruntime as ort

import safetensors_io


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: bench_onnxruntime.py MODEL.onnx INPUTS.safetensors RUNS")
    model, inputs, runs = sys.argv[1], safetensors_io.read(sys.argv[2]), int(sys.argv[3])
    weights = inputs.pop("style_weights")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    ms = {}
    for name, image in inputs.items():
        feed = {"image": image, "style_weights": weights}
        session.run(["stylized"], feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(["stylized"], feed)
            times.append((time.perf_counter() - start) * 1000.0)
        ms[name] = statistics.median(times)
    print(json.dumps({"onnxruntime": ort.__version__, "threads": os.cpu_count(), "ms": ms}))


if __name__ == "__main__":
    main()
