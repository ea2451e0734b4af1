"""A small, deterministic writer (and reader) of the safetensors format.

The `safetensors` package orders the header's metadata by hash, so the same tensors give
different bytes from one run to the next; the weights digest must not change that way. Here
the header is JSON with sorted keys, tensors laid out in name order, the header padded with
spaces to a multiple of 8 bytes: the same inputs always give the same file.
"""

import json
import struct

import numpy as np

DTYPES = {np.dtype("float32"): "F32"}


def write(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in DTYPES:
            raise ValueError(f"{name}: unsupported dtype {array.dtype}")
        blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for blob in blobs:
            out.write(blob)


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    base = 8 + size
    kinds = {v: k for k, v in DTYPES.items()}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[base + start : base + end], dtype=kinds[info["dtype"]].newbyteorder("<")).reshape(info["shape"])
    return tensors
