#!/usr/bin/env python3
"""The way checkpoint-merge scripts usually average today, as a baseline for pma: per tensor,
every input memory-mapped, accumulated in float32 with torch, cast back to the tensor's dtype,
written into one safetensors file, fsynced. Reads safetensors headers itself (Debian's torch has
no safetensors package). Usage: torch_baseline.py OUT CHECKPOINT_DIR... (oldest first)"""
import json
import mmap
import os
import struct
import sys

import torch

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}
SIZES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}


def tensors_of(ckpt):
    """name -> (mmap, absolute offset, dtype, shape) for a sharded or single-file checkpoint."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for name in files:
        f = open(os.path.join(ckpt, name), "rb")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        (n,) = struct.unpack("<Q", mm[:8])
        header = json.loads(mm[8 : 8 + n])
        for k, v in header.items():
            if k != "__metadata__":
                out[k] = (mm, 8 + n + v["data_offsets"][0], v["dtype"], v["shape"])
    return out


def main():
    out, ckpts = sys.argv[1], sys.argv[2:]
    inputs = [tensors_of(c) for c in ckpts]
    w = 1.0 / len(ckpts)
    newest = inputs[-1]
    names = list(newest)
    header, pos = {"__metadata__": {"format": "pt"}}, 0
    for k in names:
        _, _, dt, shape = newest[k]
        nbytes = SIZES[dt]
        for d in shape:
            nbytes *= d
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for k in names:
            _, _, dt, shape = newest[k]
            count = 1
            for d in shape:
                count *= d
            acc = torch.zeros(count, dtype=torch.float32)
            for t in inputs:
                mm, off, _, _ = t[k]
                x = torch.frombuffer(mm, dtype=DTYPES[dt], count=count, offset=off)
                acc.add_(x.float(), alpha=w)
            f.write(acc.to(DTYPES[dt]).view(torch.uint8).numpy().tobytes())
        f.flush()
        os.fsync(f.fileno())


if __name__ == "__main__":
    main()
