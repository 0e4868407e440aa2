"""Compares the tensors of two GGUF files byte for byte (e.g. the same model
quantized by llama.cpp and by `runnel quantize`): per tensor, same type and
identical data, or how many bytes differ.

  bench/compare/.venv/bin/python bench/compare/compare_quantized.py A.gguf B.gguf
"""
import struct
import sys

import gguf_meta

# ggml type id -> (elements per block, bytes per block)
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 12: (256, 144),
          14: (256, 210), 30: (1, 2)}


def tensor_bytes(path):
    with open(path, "rb") as f:
        blob = f.read()
    import io
    r = io.BytesIO(blob)
    if r.read(4) != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    _, n_tensors, n_kv = struct.unpack("<IQQ", r.read(20))
    g = gguf_meta._Reader(r)
    meta = {}
    for _ in range(n_kv):
        k = g.string()
        meta[k] = g.value(g.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = g.string()
        nd = g.unpack("<I")
        ne = [g.unpack("<Q") for _ in range(nd)]
        t = g.unpack("<I")
        off = g.unpack("<Q")
        infos.append((name, ne, t, off))
    align = meta.get("general.alignment", 32)
    data = (r.tell() + align - 1) // align * align
    out = {}
    for name, ne, t, off in infos:
        if t not in BLOCKS:
            raise SystemExit(f"{path}: tensor {name}: type {t} not handled")
        n = 1
        for x in ne:
            n *= x
        blk, size = BLOCKS[t]
        out[name] = (t, blob[data + off: data + off + n // blk * size])
    return out


def main():
    a, b = tensor_bytes(sys.argv[1]), tensor_bytes(sys.argv[2])
    same = differ = 0
    for name, (ta, da) in a.items():
        if name not in b:
            print(f"only in {sys.argv[1]}: {name}")
            differ += 1
            continue
        tb, db = b[name]
        if ta != tb:
            print(f"{name}: type {gguf_meta.GGML_TYPES.get(ta, ta)} vs {gguf_meta.GGML_TYPES.get(tb, tb)}")
            differ += 1
        elif da != db:
            n = sum(x != y for x, y in zip(da, db))
            print(f"{name}: {n} of {len(da)} bytes differ")
            differ += 1
        else:
            same += 1
    for name in b:
        if name not in a:
            print(f"only in {sys.argv[2]}: {name}")
            differ += 1
    print(f"{same} tensors identical, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
